//! The organization service's domain: what every RPC does, free of tonic. Each method takes the
//! caller, the request context and the request message, and returns the response message or an
//! [`ApiError`]. Mutations write their rows, their audit record and (for role and lifecycle
//! changes) their event in one transaction (rules ORG-10, ORG-12).

use std::sync::Arc;

use orgplane_platform::audit::{AuditLogWriter, Entry};
use orgplane_platform::auth::{ApiKeyKind, Principal};
use orgplane_platform::call::Call;
use orgplane_platform::convert::{etag_mismatch, timestamp_ms};
use orgplane_platform::events::Outbox;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::mail::Mailer;
use orgplane_platform::roles::OrgAction;
use orgplane_platform::runtime::Runtime;
use orgplane_platform::{ApiError, ApiResult};
use orgplane_proto::events::v1::{
    OrganizationCreated, OrganizationDeleted, OrganizationRestored, OrganizationUpdated, event,
};
use orgplane_proto::organization::v1::{self as api, OrgRole, OrganizationState};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, Query};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};

use crate::Config;
use crate::authz::{Access, Deleted};
use crate::convert::{self, required};
use crate::store::{idempotency, member, organization};
use crate::users::Users;
use orgplane_platform::convert::check_etag;

/// How long a DELETED organization can be restored (ORG-7).
pub const PURGE_AFTER_MS: i64 = 7 * 24 * 3600 * 1000;

/// Everything the handlers need; shared by the gRPC layer, the purge job and the consumer.
#[derive(Debug)]
pub struct Core {
    /// The service's database.
    pub db: DatabaseConnection,
    /// Shared start-up dependencies (clock, page tokens, endpoints, service token).
    pub runtime: Runtime,
    /// This service's outbox.
    pub outbox: Outbox,
    /// This service's audit log.
    pub audit: AuditLogWriter,
    /// The identity service's user facts.
    pub users: Users,
    /// Where invite mail goes.
    pub mailer: Mailer,
    /// The service's settings.
    pub config: Config,
}

/// A shared handle on the domain.
pub type SharedCore = Arc<Core>;

/// Where the organization of a mutation's target is found: named by the request, or through
/// the invite or unit the request names.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The organization id the request names.
    Organization(String),
    /// The organization of this invite.
    Invite(String),
    /// The organization of this unit.
    Unit(String),
}

/// What a mutation RPC of this service aims at (ORG-10).
pub type Attempt = orgplane_platform::audit::Attempt<Scope>;

/// Writes a lifecycle transition (delete or undelete: state, delete and purge times) if nobody
/// changed the organization since `before` was read; ABORTED otherwise.
async fn set_lifecycle(
    txn: &DatabaseTransaction,
    before: &organization::Model,
    after: &organization::Model,
) -> ApiResult<()> {
    let updated = organization::Entity::update_many()
        .col_expr(organization::Column::State, Expr::value(after.state))
        .col_expr(
            organization::Column::DeleteTimeMs,
            Expr::value(after.delete_time_ms),
        )
        .col_expr(
            organization::Column::PurgeTimeMs,
            Expr::value(after.purge_time_ms),
        )
        .col_expr(
            organization::Column::UpdateTimeMs,
            Expr::value(after.update_time_ms),
        )
        .col_expr(organization::Column::Version, Expr::value(after.version))
        .filter(organization::Column::Id.eq(before.id.clone()))
        .filter(organization::Column::Version.eq(before.version))
        .exec(txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(etag_mismatch("organization"));
    }
    Ok(())
}

/// The image of an organization in audit records: its API message (ORG-10).
pub fn org_json(o: &organization::Model) -> api::Organization {
    convert::organization(o)
}

#[derive(Serialize, Deserialize)]
enum OrgCursor {
    Time(i64, String),
    Name(String, String),
}

/// `key > k OR (key = k AND id > i)` (or `<` when descending): the keyset condition.
pub fn keyset<C: ColumnTrait, I: ColumnTrait, V>(
    key: C,
    k: V,
    id: I,
    i: String,
    desc: bool,
) -> Condition
where
    V: Into<sea_orm::Value> + Clone,
{
    // The leading `key >= k` (or `<=`) lets the index seek straight to the cursor; the OR alone
    // makes SQLite scan the organization's rows from the start on every page.
    if desc {
        Condition::all().add(key.lte(k.clone())).add(
            Condition::any()
                .add(key.lt(k.clone()))
                .add(Condition::all().add(key.eq(k)).add(id.lt(i))),
        )
    } else {
        Condition::all().add(key.gte(k.clone())).add(
            Condition::any()
                .add(key.gt(k.clone()))
                .add(Condition::all().add(key.eq(k)).add(id.gt(i))),
        )
    }
}

impl Core {
    /// The current time (Unix ms) of the injectable clock.
    pub fn now_ms(&self) -> i64 {
        self.runtime.clock.now().timestamp_millis()
    }

    /// The outbox head: the revision of a mutation that changed nothing.
    pub async fn head_revision(&self) -> ApiResult<i64> {
        Ok(self.outbox.head().await?.revision)
    }

    /// Passes a mutation's `result` through unchanged, recording it first as OUTCOME_FAILURE
    /// when it is a refusal the audit log keeps and `attempt`'s organization exists here.
    pub async fn audited<T>(
        &self,
        call: &Call,
        attempt: Attempt,
        result: ApiResult<T>,
    ) -> ApiResult<T> {
        self.audit
            .audited(&self.db, call, result, || self.attempt_entry(attempt))
            .await
    }

    /// The audit entry of `attempt`, in its organization; `None` when that is unknown here.
    async fn attempt_entry(&self, attempt: Attempt) -> Option<Entry> {
        let found = match &attempt.scope {
            Scope::Organization(id) => organization::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await
                .map(|o| o.map(|o| o.id)),
            Scope::Invite(id) => crate::store::invite::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await
                .map(|i| i.map(|i| i.organization_id)),
            Scope::Unit(id) => crate::store::unit::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await
                .map(|u| u.map(|u| u.organization_id)),
        };
        let organization_id = found
            .inspect_err(|e| {
                tracing::warn!(error = %e, action = attempt.action, "could not resolve the organization of a refused mutation");
            })
            .ok()
            .flatten()?;
        Some(attempt.entry(&organization_id))
    }

    /// UNAUTHENTICATED `REAUTHENTICATION_REQUIRED` unless the caller is a user who signed in
    /// within the configured window (rule ID-6).
    pub fn step_up(&self, principal: &Principal) -> ApiResult<()> {
        let user = principal.require_user()?;
        let age = self.runtime.clock.now().timestamp() - user.auth_time;
        if age > self.config.step_up_max_age_secs {
            return Err(ApiError::unauthenticated(
                "REAUTHENTICATION_REQUIRED",
                "this action needs a recent sign-in: call IdentityService/Reauthenticate and retry with the new token",
            )
            .with_metadata("max_age_seconds", self.config.step_up_max_age_secs.to_string()));
        }
        Ok(())
    }

    /// The resource an earlier create call with the same request id produced.
    pub async fn idempotent(&self, key: Option<&str>) -> ApiResult<Option<String>> {
        let Some(key) = key else { return Ok(None) };
        Ok(idempotency::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?
            .map(|r| r.resource_id))
    }

    /// AIP-155 for duplicates in flight: when a create with a request id failed because a
    /// concurrent call with the same id committed meanwhile (it met that call's name, pending
    /// invite or idempotency key), the answer is the winner's resource, as a later retry would
    /// get — by running the create `again`, which now finds the key. Other failures stand.
    pub async fn or_created_meanwhile<T, F, Fut>(
        &self,
        key: Option<&str>,
        result: ApiResult<T>,
        again: F,
    ) -> ApiResult<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ApiResult<T>>,
    {
        match result {
            Err(e) => match self.idempotent(key).await {
                Ok(Some(_)) => again().await,
                _ => Err(e),
            },
            ok => ok,
        }
    }

    /// Remembers the resource a create call with a request id produced, in its transaction.
    pub async fn remember(
        &self,
        txn: &DatabaseTransaction,
        key: Option<&str>,
        organization_id: &str,
        resource_id: &str,
    ) -> ApiResult<()> {
        let Some(key) = key else { return Ok(()) };
        idempotency::Entity::insert(idempotency::ActiveModel {
            key: Set(key.to_owned()),
            organization_id: Set(organization_id.to_owned()),
            resource_id: Set(resource_id.to_owned()),
            create_time_ms: Set(self.now_ms()),
        })
        .exec(txn)
        .await
        .map_err(|e| {
            if orgplane_platform::db::is_unique_violation(&e) {
                ApiError::aborted(
                    "CONCURRENT_RETRY",
                    "a call with the same request_id is in progress; retry",
                )
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    /// Fills in members' emails and display names from identity.
    pub async fn enrich(&self, members: &mut [api::Member], call: &Call) -> ApiResult<()> {
        let ids: Vec<String> = members.iter().map(|m| m.user_id.clone()).collect();
        let users = self.users.batch(&ids, call).await?;
        for m in members.iter_mut() {
            if let Some(u) = users.get(&m.user_id) {
                m.email = u.email.clone();
                m.display_name = u.display_name.clone();
            }
        }
        Ok(())
    }

    /// As [`Self::enrich`], but after a committed change: identity being down leaves the stored
    /// email and no name rather than failing a mutation that already happened.
    pub async fn enrich_best_effort(&self, members: &mut [api::Member], call: &Call) {
        if let Err(e) = self.enrich(members, call).await {
            tracing::debug!(error = %e, "members returned without names");
        }
    }

    // ---------------------------------------------------------------- organizations

    /// CreateOrganization (rules ORG-1, ID-1).
    pub async fn create_organization(
        &self,
        call: &Call,
        req: api::CreateOrganizationRequest,
    ) -> ApiResult<api::CreateOrganizationResponse> {
        let principal = call.principal.as_ref();
        let key = match (
            principal.require_user(),
            convert::request_id(&req.request_id),
        ) {
            (Ok(user), Ok(Some(r))) => Some(create_organization_key(&user.user_id, &r)),
            _ => None,
        };
        let first = self.create_organization_once(call, req.clone()).await;
        self.or_created_meanwhile(key.as_deref(), first, || {
            self.create_organization_once(call, req)
        })
        .await
    }

    async fn create_organization_once(
        &self,
        call: &Call,
        req: api::CreateOrganizationRequest,
    ) -> ApiResult<api::CreateOrganizationResponse> {
        let principal = call.principal.as_ref();
        let user = principal.require_user()?;
        let input = req.organization.unwrap_or_default();
        let name = convert::name("organization.name", &input.name)?;
        let org_type = convert::org_type(input.r#type)?;
        let primary_email = if input.primary_email.trim().is_empty() {
            String::new()
        } else {
            convert::email("organization.primary_email", &input.primary_email)?
        };
        let key = convert::request_id(&req.request_id)?
            .map(|r| create_organization_key(&user.user_id, &r));
        if let Some(id) = self.idempotent(key.as_deref()).await? {
            return self.created_again(&id).await;
        }
        let account = self.users.get(&user.user_id, call).await?.ok_or_else(|| {
            ApiError::failed_precondition(
                "USER_NOT_FOUND",
                &user.user_id,
                "the identity service does not know the calling user",
            )
        })?;
        if account.account_type != orgplane_proto::identity::v1::AccountType::Business as i32 {
            return Err(ApiError::failed_precondition(
                "BUSINESS_ACCOUNT_REQUIRED",
                &user.user_id,
                "only business accounts may create organizations",
            ));
        }
        if !account.email_verified {
            return Err(ApiError::failed_precondition(
                "EMAIL_NOT_VERIFIED",
                &user.user_id,
                "verify your email address before creating an organization",
            ));
        }
        let now = self.now_ms();
        let org = organization::Model {
            id: convert::new_id("org"),
            name_key: name.to_lowercase(),
            name,
            org_type,
            primary_email,
            state: OrganizationState::Active as i32,
            owner_user_id: user.user_id.clone(),
            creator_user_id: user.user_id.clone(),
            create_time_ms: now,
            update_time_ms: now,
            delete_time_ms: None,
            purge_time_ms: None,
            version: 1,
        };
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        organization::Entity::insert(organization::ActiveModel::from(org.clone()))
            .exec(&*txn)
            .await
            .map_err(name_taken)?;
        member::Entity::insert(member::ActiveModel::from(member::Model {
            organization_id: org.id.clone(),
            user_id: user.user_id.clone(),
            email: account.email.to_lowercase(),
            role: OrgRole::Owner as i32,
            create_time_ms: now,
            update_time_ms: now,
            version: 1,
        }))
        .exec(&*txn)
        .await?;
        self.remember(&txn, key.as_deref(), &org.id, &org.id)
            .await?;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&org.id, "organization.create", "organization", &org.id)
                    .change(None, Some(&org_json(&org))),
            )
            .await?;
        txn.append(event::Payload::OrganizationCreated(OrganizationCreated {
            organization_id: org.id.clone(),
            name: org.name.clone(),
            owner_user_id: org.owner_user_id.clone(),
            primary_email: org.primary_email.clone(),
        }))
        .await?;
        let revision = txn
            .append(event::Payload::MemberAdded(
                orgplane_proto::events::v1::MemberAdded {
                    organization_id: org.id.clone(),
                    user_id: user.user_id.clone(),
                    role: OrgRole::Owner as i32,
                },
            ))
            .await?;
        txn.commit().await?;
        Ok(api::CreateOrganizationResponse {
            organization: Some(convert::organization(&org)),
            revision,
        })
    }

    async fn created_again(&self, id: &str) -> ApiResult<api::CreateOrganizationResponse> {
        let org = organization::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("organization", id))?;
        Ok(api::CreateOrganizationResponse {
            organization: Some(convert::organization(&org)),
            revision: self.head_revision().await?,
        })
    }

    /// GetOrganization.
    pub async fn get_organization(
        &self,
        call: &Call,
        req: api::GetOrganizationRequest,
    ) -> ApiResult<api::GetOrganizationResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("organization_id", &req.organization_id)?;
        let access = Access::resolve(
            &self.db,
            principal,
            &req.organization_id,
            Deleted::VisibleToOwner,
        )
        .await?;
        access.require(OrgAction::Read)?;
        Ok(api::GetOrganizationResponse {
            organization: Some(convert::organization(&access.org)),
        })
    }

    /// GetMyOrganization (rule ORG-11).
    pub async fn get_my_organization(
        &self,
        call: &Call,
    ) -> ApiResult<api::GetMyOrganizationResponse> {
        let principal = call.principal.as_ref();
        principal.require_authenticated()?;
        let key = match principal {
            Principal::ApiKey(k) if k.kind == ApiKeyKind::Admin => k,
            _ => {
                return Err(ApiError::permission_denied(
                    "ADMIN_API_KEY_REQUIRED",
                    "GetMyOrganization answers only to an admin API key",
                ));
            }
        };
        let access =
            Access::resolve(&self.db, principal, &key.organization_id, Deleted::Hidden).await?;
        Ok(api::GetMyOrganizationResponse {
            organization: Some(convert::organization(&access.org)),
        })
    }

    /// ListOrganizations (rule ORG-8).
    pub async fn list_organizations(
        &self,
        call: &Call,
        req: api::ListOrganizationsRequest,
    ) -> ApiResult<api::ListOrganizationsResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        let size = orgplane_platform::pagination::page_size(req.page_size)?;
        let state = OrganizationState::try_from(req.state)
            .map_err(|_| ApiError::invalid_argument("state", "unknown state"))?;
        if state == OrganizationState::Deleted && !req.show_deleted {
            return Err(ApiError::invalid_argument(
                "state",
                "DELETED organizations are listed only with show_deleted",
            ));
        }
        if req.r#type != 0 {
            convert::org_type(req.r#type)
                .map_err(|_| ApiError::invalid_argument("type", "unknown type"))?;
        }
        let order: Vec<&str> = req.order_by.split_whitespace().collect();
        let (by_name, desc) = match order.as_slice() {
            [] | ["create_time"] | ["create_time", "asc"] => (false, false),
            ["create_time", "desc"] => (false, true),
            ["name"] | ["name", "asc"] => (true, false),
            ["name", "desc"] => (true, true),
            _ => {
                return Err(ApiError::invalid_argument(
                    "order_by",
                    "use `name` or `create_time`, optionally followed by ` desc`",
                ));
            }
        };
        let (_, actor) = principal.actor();
        let scope = format!(
            "ListOrganizations|{actor}|{}|{}|{}|{}|{by_name}|{desc}",
            req.name_contains, req.state, req.r#type, req.show_deleted
        );
        let cursor: Option<OrgCursor> = self.runtime.page_tokens.decode(&scope, &req.page_token)?;

        let active = organization::Column::State.eq(OrganizationState::Active as i32);
        let deleted = organization::Column::State.eq(OrganizationState::Deleted as i32);
        let mut query = organization::Entity::find();
        query = match principal {
            Principal::User(u) => {
                let mine = Query::select()
                    .column(member::Column::OrganizationId)
                    .from(member::Entity)
                    .and_where(member::Column::UserId.eq(u.user_id.clone()))
                    .to_owned();
                let visible = if req.show_deleted {
                    Condition::any().add(active).add(
                        Condition::all()
                            .add(deleted)
                            .add(organization::Column::OwnerUserId.eq(u.user_id.clone())),
                    )
                } else {
                    Condition::all().add(active)
                };
                query
                    .filter(organization::Column::Id.in_subquery(mine))
                    .filter(visible)
            }
            Principal::ApiKey(k) => query
                .filter(organization::Column::Id.eq(k.organization_id.clone()))
                .filter(active),
            _ => {
                if req.show_deleted {
                    query
                } else {
                    query.filter(active)
                }
            }
        };
        if state != OrganizationState::Unspecified {
            query = query.filter(organization::Column::State.eq(state as i32));
        }
        if req.r#type != 0 {
            query = query.filter(organization::Column::OrgType.eq(req.r#type));
        }
        if !req.name_contains.is_empty() {
            let pattern = format!(
                "%{}%",
                convert::like_escape(&req.name_contains.to_lowercase())
            );
            query = query.filter(
                Expr::col(organization::Column::NameKey).like(LikeExpr::new(pattern).escape('\\')),
            );
        }
        match cursor {
            Some(OrgCursor::Time(t, id)) if !by_name => {
                query = query.filter(keyset(
                    organization::Column::CreateTimeMs,
                    t,
                    organization::Column::Id,
                    id,
                    desc,
                ));
            }
            Some(OrgCursor::Name(n, id)) if by_name => {
                query = query.filter(keyset(
                    organization::Column::NameKey,
                    n,
                    organization::Column::Id,
                    id,
                    desc,
                ));
            }
            Some(_) => {
                return Err(ApiError::invalid_argument(
                    "page_token",
                    "the page token was issued for another order",
                ));
            }
            None => {}
        }
        let key_col = if by_name {
            organization::Column::NameKey
        } else {
            organization::Column::CreateTimeMs
        };
        let ord = if desc {
            sea_orm::Order::Desc
        } else {
            sea_orm::Order::Asc
        };
        let rows = query
            .order_by(key_col, ord.clone())
            .order_by(organization::Column::Id, ord)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let (rows, next) = self.runtime.page_tokens.page(&scope, rows, size, |o| {
            if by_name {
                OrgCursor::Name(o.name_key.clone(), o.id.clone())
            } else {
                OrgCursor::Time(o.create_time_ms, o.id.clone())
            }
        });
        Ok(api::ListOrganizationsResponse {
            organizations: rows.iter().map(convert::organization).collect(),
            next_page_token: next,
        })
    }

    /// UpdateOrganization (rule ORG-3).
    pub async fn update_organization(
        &self,
        call: &Call,
        req: api::UpdateOrganizationRequest,
    ) -> ApiResult<api::UpdateOrganizationResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        let input = req
            .organization
            .ok_or_else(|| ApiError::invalid_argument("organization", "required"))?;
        required("organization.id", &input.id)?;
        let paths =
            convert::mask_paths(req.update_mask.as_ref(), &["name", "type", "primary_email"])?;
        let mut name = None;
        let mut org_type = None;
        let mut primary_email = None;
        for p in &paths {
            match p.as_str() {
                "name" => name = Some(convert::name("organization.name", &input.name)?),
                "type" => org_type = Some(convert::org_type(input.r#type)?),
                _ => {
                    primary_email = Some(if input.primary_email.trim().is_empty() {
                        String::new()
                    } else {
                        convert::email("organization.primary_email", &input.primary_email)?
                    })
                }
            }
        }
        let access = Access::resolve(&self.db, principal, &input.id, Deleted::Hidden).await?;
        access.require(OrgAction::ManageOrganization)?;
        let before = access.org;
        check_etag(&req.etag, before.version, "organization")?;
        let mut after = before.clone();
        if let Some(n) = name {
            after.name_key = n.to_lowercase();
            after.name = n;
        }
        if let Some(t) = org_type {
            after.org_type = t;
        }
        if let Some(e) = primary_email {
            after.primary_email = e;
        }
        after.update_time_ms = self.now_ms();
        after.version = before.version + 1;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        let updated = organization::Entity::update_many()
            .col_expr(organization::Column::Name, Expr::value(after.name.clone()))
            .col_expr(
                organization::Column::NameKey,
                Expr::value(after.name_key.clone()),
            )
            .col_expr(organization::Column::OrgType, Expr::value(after.org_type))
            .col_expr(
                organization::Column::PrimaryEmail,
                Expr::value(after.primary_email.clone()),
            )
            .col_expr(
                organization::Column::UpdateTimeMs,
                Expr::value(after.update_time_ms),
            )
            .col_expr(organization::Column::Version, Expr::value(after.version))
            .filter(organization::Column::Id.eq(before.id.clone()))
            .filter(organization::Column::Version.eq(before.version))
            .filter(organization::Column::State.eq(OrganizationState::Active as i32))
            .exec(&*txn)
            .await
            .map_err(name_taken)?;
        if updated.rows_affected == 0 {
            return Err(etag_mismatch("organization"));
        }
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &before.id,
                    "organization.update",
                    "organization",
                    &before.id,
                )
                .change(Some(&org_json(&before)), Some(&org_json(&after))),
            )
            .await?;
        let revision = txn
            .append(event::Payload::OrganizationUpdated(OrganizationUpdated {
                organization_id: after.id.clone(),
                name: after.name.clone(),
                primary_email: after.primary_email.clone(),
            }))
            .await?;
        txn.commit().await?;
        Ok(api::UpdateOrganizationResponse {
            organization: Some(convert::organization(&after)),
            revision,
        })
    }

    /// DeleteOrganization (rules ORG-7, ID-6).
    pub async fn delete_organization(
        &self,
        call: &Call,
        req: api::DeleteOrganizationRequest,
    ) -> ApiResult<api::DeleteOrganizationResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("organization_id", &req.organization_id)?;
        let access =
            Access::resolve(&self.db, principal, &req.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::OwnerOnly)?;
        self.step_up(principal)?;
        let before = access.org;
        if req.confirm_name != before.name {
            return Err(convert::invalid(
                "CONFIRM_NAME_MISMATCH",
                "confirm_name",
                "type the organization's exact name to delete it",
            ));
        }
        check_etag(&req.etag, before.version, "organization")?;
        let now = self.now_ms();
        let mut after = before.clone();
        after.state = OrganizationState::Deleted as i32;
        after.delete_time_ms = Some(now);
        after.purge_time_ms = Some(now + PURGE_AFTER_MS);
        after.update_time_ms = now;
        after.version += 1;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        set_lifecycle(&txn, &before, &after).await?;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &before.id,
                    "organization.delete",
                    "organization",
                    &before.id,
                )
                .change(Some(&org_json(&before)), Some(&org_json(&after))),
            )
            .await?;
        let revision = txn
            .append(event::Payload::OrganizationDeleted(OrganizationDeleted {
                organization_id: before.id.clone(),
                purge_time: after.purge_time_ms.map(timestamp_ms),
            }))
            .await?;
        txn.commit().await?;
        Ok(api::DeleteOrganizationResponse {
            organization: Some(convert::organization(&after)),
            revision,
        })
    }

    /// UndeleteOrganization (rules ORG-7, ID-6).
    pub async fn undelete_organization(
        &self,
        call: &Call,
        req: api::UndeleteOrganizationRequest,
    ) -> ApiResult<api::UndeleteOrganizationResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("organization_id", &req.organization_id)?;
        let access = Access::resolve(
            &self.db,
            principal,
            &req.organization_id,
            Deleted::VisibleToOwner,
        )
        .await?;
        access.require(OrgAction::OwnerOnly)?;
        let before = access.org;
        let now = self.now_ms();
        if before.state != OrganizationState::Deleted as i32 {
            return Err(ApiError::failed_precondition(
                "ORGANIZATION_NOT_DELETED",
                &before.id,
                "the organization is not deleted",
            ));
        }
        if before.purge_time_ms.is_some_and(|p| p <= now) {
            return Err(ApiError::not_found("organization", &before.id));
        }
        self.step_up(principal)?;
        check_etag(&req.etag, before.version, "organization")?;
        let mut after = before.clone();
        after.state = OrganizationState::Active as i32;
        after.delete_time_ms = None;
        after.purge_time_ms = None;
        after.update_time_ms = now;
        after.version += 1;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        set_lifecycle(&txn, &before, &after).await?;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &before.id,
                    "organization.undelete",
                    "organization",
                    &before.id,
                )
                .change(Some(&org_json(&before)), Some(&org_json(&after))),
            )
            .await?;
        let revision = txn
            .append(event::Payload::OrganizationRestored(OrganizationRestored {
                organization_id: before.id.clone(),
            }))
            .await?;
        txn.commit().await?;
        Ok(api::UndeleteOrganizationResponse {
            organization: Some(convert::organization(&after)),
            revision,
        })
    }

    /// ListAuditEvents (rule ORG-10).
    pub async fn list_audit_events(
        &self,
        call: &Call,
        req: api::ListAuditEventsRequest,
    ) -> ApiResult<api::ListAuditEventsResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("organization_id", &req.organization_id)?;
        let filter = req.filter.unwrap_or_default();
        if let (Some(s), Some(e)) = (&filter.start_time, &filter.end_time)
            && (e.seconds, e.nanos) <= (s.seconds, s.nanos)
        {
            return Err(ApiError::invalid_argument(
                "filter.end_time",
                "must be after filter.start_time",
            ));
        }
        let access =
            Access::resolve(&self.db, principal, &req.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::ReadAuditLog)?;
        let (audit_events, next_page_token) = self
            .audit
            .list(
                &self.db,
                &self.runtime.page_tokens,
                &access.org.id,
                &filter,
                req.page_size,
                &req.page_token,
            )
            .await?;
        Ok(api::ListAuditEventsResponse {
            audit_events,
            next_page_token,
        })
    }
}

/// ALREADY_EXISTS `ORGANIZATION_NAME_TAKEN` for the unique-name index (ORG-1).
fn name_taken(e: sea_orm::DbErr) -> ApiError {
    if orgplane_platform::db::is_unique_violation(&e) {
        ApiError::already_exists(
            "ORGANIZATION_NAME_TAKEN",
            "you already created an organization with this name",
        )
    } else {
        e.into()
    }
}

/// The idempotency key of CreateOrganization: per calling user and request id.
fn create_organization_key(user_id: &str, request_id: &str) -> String {
    format!("CreateOrganization|{user_id}|{request_id}")
}
