//! Verified domains (rule ORG-14): register, read, list, change the policy, remove. The DNS
//! check is [`super::verify`]; what domains mean for invites and members is
//! [`super::provision`]. Only a VERIFIED domain's changes are events (`DomainChanged`,
//! `DomainDeleted`): the other services keep VERIFIED domains only.

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::convert::{check_etag, etag_mismatch};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::events::v1::{DomainChanged, DomainDeleted, event};
use orgplane_proto::organization::v1::DomainState;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::access::{Access, as_not_found_of};
use super::{App, Page, Revised};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::domains::{self as rules, MAX_DOMAINS_PER_ORGANIZATION};
use crate::domain::validate::{self, required};
use crate::domain::{Error, Result};
use crate::store::domain;
use crate::store::query::new_id;

/// What a request says of a domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainFields {
    /// The domain's id (updates only).
    pub id: String,
    /// The domain name as given (create only).
    pub domain_name: String,
    /// `DomainPolicy` as its number.
    pub policy: i32,
}

/// CreateDomain.
#[derive(Debug, Clone, Default)]
pub struct CreateDomain {
    /// The organization.
    pub organization_id: String,
    /// The domain (the request's `domain`, if any).
    pub domain: Option<DomainFields>,
    /// The AIP-155 request id, or empty.
    pub request_id: String,
}

/// ListDomains.
#[derive(Debug, Clone, Default)]
pub struct ListDomains {
    /// The organization.
    pub organization_id: String,
    /// `DomainState` filter as its number (0: every state).
    pub state: i32,
    /// Requested page size.
    pub page_size: i32,
    /// Token of the page to read.
    pub page_token: String,
}

/// UpdateDomain: the policy.
#[derive(Debug, Clone, Default)]
pub struct UpdateDomain {
    /// The new values (the request's `domain`, if any).
    pub domain: Option<DomainFields>,
    /// The update mask's paths.
    pub paths: Vec<String>,
    /// The etag read, or empty.
    pub etag: String,
}

/// A domain as answered: the row, the time its state is read at, and its challenge record's
/// name under the configured prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainView {
    /// The domain.
    pub domain: domain::Model,
    /// When the state is read (a never verified domain expires by time alone).
    pub now_ms: i64,
    /// The challenge record's name (`<prefix>.<domain>`).
    pub record_name: String,
}

impl DomainView {
    /// The state at [`Self::now_ms`].
    pub fn state(&self) -> DomainState {
        rules::state_at(
            self.domain.state,
            self.domain.verify_time_ms,
            self.domain.expire_time_ms,
            self.now_ms,
        )
    }
}

/// `DomainChanged` of `d` as it stands now (VERIFIED or not).
pub(crate) fn changed(d: &domain::Model, state: DomainState) -> event::Payload {
    event::Payload::DomainChanged(DomainChanged {
        domain_id: d.id.clone(),
        organization_id: d.organization_id.clone(),
        domain_name: d.domain_name.clone(),
        state: state as i32,
        policy: d.policy,
    })
}

/// A database error of an update of a domain's state or policy: the only unique index such an
/// update can meet is the one-enforcing-holder index (`store::domains::ENFORCING_INDEX`, ORG-14), so a unique
/// violation is `DOMAIN_CLAIMED` for `domain_name`; other errors unchanged.
pub(crate) fn claimed_or(e: DbErr, domain_name: &str) -> Error {
    if orgplane_platform::db::is_unique_violation(&e) {
        return Error::DomainClaimed {
            domain_name: domain_name.to_owned(),
        };
    }
    e.into()
}

impl App {
    /// The view of `d` now.
    pub fn domain_view(&self, d: domain::Model) -> DomainView {
        DomainView {
            record_name: rules::challenge_name(
                &self.config.domain_challenge_prefix,
                &d.domain_name,
            ),
            domain: d,
            now_ms: self.now_ms(),
        }
    }

    /// The domain `domain_id` with the caller's access to its organization, which must allow
    /// OWNER/ADMIN work; NOT_FOUND for the domain when either is not visible.
    pub(crate) async fn domain_access(
        &self,
        call: &Call,
        domain_id: &str,
    ) -> Result<(domain::Model, Access)> {
        require_caller(&call.principal)?;
        required("domain_id", domain_id)?;
        let not_found = || Error::not_found("domain", domain_id);
        let d = domain::Entity::find_by_id(domain_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(not_found)?;
        let access = Access::resolve(
            &self.db,
            &call.principal,
            &d.organization_id,
            Deleted::Hidden,
        )
        .await
        .map_err(as_not_found_of("domain", domain_id))?;
        access.require(OrgAction::ManageOrganization)?;
        Ok((d, access))
    }

    /// CreateDomain (rule ORG-14).
    pub async fn create_domain(&self, call: &Call, cmd: CreateDomain) -> Result<DomainView> {
        let (_, actor) = call.principal.actor();
        let key = validate::request_id(&cmd.request_id)
            .ok()
            .flatten()
            .map(|r| format!("CreateDomain|{actor}|{}|{r}", cmd.organization_id));
        let first = self.create_domain_once(call, cmd.clone()).await;
        self.or_created_meanwhile(key.as_deref(), first, || self.create_domain_once(call, cmd))
            .await
    }

    async fn create_domain_once(&self, call: &Call, cmd: CreateDomain) -> Result<DomainView> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        required("organization_id", &cmd.organization_id)?;
        let input = cmd
            .domain
            .ok_or_else(|| Error::invalid("domain", "required"))?;
        let name = rules::registrable(
            "domain.domain_name",
            &input.domain_name,
            &self.consumer_domains,
        )?;
        let policy = rules::policy("domain.policy", input.policy, true)?;
        let request_id = validate::request_id(&cmd.request_id)?;
        let access =
            Access::resolve(&self.db, principal, &cmd.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::ManageOrganization)?;
        let org = access.org;
        let (_, actor) = principal.actor();
        let key = request_id.map(|r| format!("CreateDomain|{actor}|{}|{r}", org.id));
        if let Some(id) = self.idempotent(key.as_deref()).await? {
            let d = domain::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await?
                .ok_or_else(|| Error::not_found("domain", &id))?;
            return Ok(self.domain_view(d));
        }
        let now = self.now_ms();
        let window_ms = self.config.domain_verification_window_days.max(1) * 24 * 3600 * 1000;
        let d = domain::Model {
            id: new_id("dom"),
            organization_id: org.id.clone(),
            domain_name: name.clone(),
            state: DomainState::Pending as i32,
            policy: policy as i32,
            token: rules::new_token(),
            check_outcome: 0,
            check_found: "[]".to_owned(),
            check_detail: String::new(),
            check_time_ms: None,
            create_time_ms: now,
            update_time_ms: now,
            verify_time_ms: None,
            expire_time_ms: now + window_ms,
            version: 1,
        };
        let txn = WriteUnit::begin(&self.outbox, call).await?;
        crate::store::query::lock_organization(&*txn, &org.id).await?;
        let count = domain::Entity::find()
            .filter(domain::Column::OrganizationId.eq(org.id.clone()))
            .count(&*txn)
            .await?;
        if count >= MAX_DOMAINS_PER_ORGANIZATION {
            return Err(Error::DomainLimit {
                organization_id: org.id.clone(),
                max: MAX_DOMAINS_PER_ORGANIZATION,
            });
        }
        domain::Entity::insert(domain::ActiveModel::from(d.clone()))
            .exec(&*txn)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    Error::DomainAlreadyRegistered {
                        domain_name: name.clone(),
                    }
                } else {
                    e.into()
                }
            })?;
        self.remember(&txn, key.as_deref(), &org.id, &d.id).await?;
        let view = self.domain_view(d);
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&org.id, "domain.create", "domain", &view.domain.id)
                    .change(None, Some(&view)),
            )
            .await?;
        txn.commit().await?;
        Ok(view)
    }

    /// GetDomain: OWNER/ADMIN of its organization.
    pub async fn get_domain(&self, call: &Call, domain_id: &str) -> Result<DomainView> {
        let (d, _) = self.domain_access(call, domain_id).await?;
        Ok(self.domain_view(d))
    }

    /// ListDomains: by domain name, optionally in one state.
    pub async fn list_domains(&self, call: &Call, cmd: ListDomains) -> Result<Page<DomainView>> {
        require_caller(&call.principal)?;
        required("organization_id", &cmd.organization_id)?;
        let size = orgplane_platform::pagination::page_size(cmd.page_size)?;
        let state = DomainState::try_from(cmd.state)
            .map_err(|_| Error::invalid("state", "unknown state"))?;
        let access = Access::resolve(
            &self.db,
            &call.principal,
            &cmd.organization_id,
            Deleted::Hidden,
        )
        .await?;
        access.require(OrgAction::ManageOrganization)?;
        let org = access.org;
        let scope = format!("ListDomains|{}|{}", org.id, cmd.state);
        let cursor: Option<String> = self.runtime.page_tokens.decode(&scope, &cmd.page_token)?;
        let now = self.now_ms();
        let live = Condition::any()
            .add(domain::Column::VerifyTimeMs.is_not_null())
            .add(domain::Column::ExpireTimeMs.gt(now));
        let stored = |s: DomainState| domain::Column::State.eq(s as i32);
        let condition = match state {
            DomainState::Unspecified => Condition::all(),
            DomainState::Verified => Condition::all().add(stored(DomainState::Verified)),
            DomainState::Pending | DomainState::Failed => {
                Condition::all().add(stored(state)).add(live)
            }
            DomainState::Expired => Condition::all()
                .add(domain::Column::State.ne(DomainState::Verified as i32))
                .add(domain::Column::VerifyTimeMs.is_null())
                .add(domain::Column::ExpireTimeMs.lte(now)),
        };
        let mut query = domain::Entity::find()
            .filter(domain::Column::OrganizationId.eq(org.id.clone()))
            .filter(condition);
        if let Some(after) = cursor {
            query = query.filter(domain::Column::DomainName.gt(after));
        }
        let rows = query
            .order_by_asc(domain::Column::DomainName)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let (rows, next_page_token) = self
            .runtime
            .page_tokens
            .page(&scope, rows, size, |d| d.domain_name.clone());
        Ok(Page {
            items: rows.into_iter().map(|d| self.domain_view(d)).collect(),
            next_page_token,
        })
    }

    /// UpdateDomain: the policy (rule ORG-14). A VERIFIED domain's change publishes
    /// `DomainChanged`; its revision is answered (0 when none was published).
    pub async fn update_domain(
        &self,
        call: &Call,
        cmd: UpdateDomain,
    ) -> Result<Revised<DomainView>> {
        require_caller(&call.principal)?;
        let input = cmd
            .domain
            .ok_or_else(|| Error::invalid("domain", "required"))?;
        required("domain.id", &input.id)?;
        validate::mask_paths(&cmd.paths, &["policy"])?;
        let policy = rules::policy("domain.policy", input.policy, false)?;
        let (before, _) = self.domain_access(call, &input.id).await?;
        check_etag(&cmd.etag, before.version, "domain")?;
        if before.policy == policy as i32 {
            return Ok(Revised {
                value: self.domain_view(before),
                revision: 0,
            });
        }
        let mut after = before.clone();
        after.policy = policy as i32;
        after.update_time_ms = self.now_ms();
        after.version += 1;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        let updated = domain::Entity::update_many()
            .col_expr(domain::Column::Policy, Expr::value(after.policy))
            .col_expr(
                domain::Column::UpdateTimeMs,
                Expr::value(after.update_time_ms),
            )
            .col_expr(domain::Column::Version, Expr::value(after.version))
            .filter(domain::Column::Id.eq(before.id.clone()))
            .filter(domain::Column::Version.eq(before.version))
            .exec(&*txn)
            .await
            .map_err(|e| claimed_or(e, &before.domain_name))?;
        if updated.rows_affected == 0 {
            return Err(etag_mismatch("domain").into());
        }
        let (before_view, after_view) = (self.domain_view(before), self.domain_view(after));
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &after_view.domain.organization_id,
                    "domain.update",
                    "domain",
                    &after_view.domain.id,
                )
                .change(Some(&before_view), Some(&after_view)),
            )
            .await?;
        if after_view.state() == DomainState::Verified {
            txn.append(changed(&after_view.domain, DomainState::Verified))
                .await?;
        }
        let revision = txn.commit().await?.unwrap_or(0);
        Ok(Revised {
            value: after_view,
            revision,
        })
    }

    /// DeleteDomain (rule ORG-14). A VERIFIED domain's removal publishes `DomainDeleted`; the
    /// answer is the revision to wait for.
    pub async fn delete_domain(&self, call: &Call, domain_id: &str, etag: &str) -> Result<i64> {
        let (d, _) = self.domain_access(call, domain_id).await?;
        check_etag(etag, d.version, "domain")?;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        let deleted = domain::Entity::delete_many()
            .filter(domain::Column::Id.eq(d.id.clone()))
            .filter(domain::Column::Version.eq(d.version))
            .exec(&*txn)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(etag_mismatch("domain").into());
        }
        let view = self.domain_view(d);
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &view.domain.organization_id,
                    "domain.delete",
                    "domain",
                    &view.domain.id,
                )
                .change(Some(&view), None),
            )
            .await?;
        if view.state() == DomainState::Verified {
            txn.append(event::Payload::DomainDeleted(DomainDeleted {
                domain_id: view.domain.id.clone(),
                organization_id: view.domain.organization_id.clone(),
                domain_name: view.domain.domain_name.clone(),
            }))
            .await?;
        }
        Ok(txn.commit_at_revision().await?)
    }
}
