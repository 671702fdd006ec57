//! Organizations (rules ORG-1, ORG-3, ORG-8, ORG-11): create, read, list, update. The audit
//! log read (ORG-10) is in [`super::audit_log`].

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::auth::{ApiKeyKind, Principal};
use orgplane_platform::convert::{check_etag, etag_mismatch};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::events::v1::{MemberAdded, OrganizationCreated, OrganizationUpdated, event};
use orgplane_proto::organization::v1::{OrgRole, OrganizationState};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, Query};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use serde::{Deserialize, Serialize};

use super::access::Access;
use super::{App, Page, Revised};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::validate::{self, required};
use crate::domain::{Error, Result};
use crate::store::query::{keyset, like_escape, new_id};
use crate::store::{member, organization};

/// The editable fields of an organization as a request gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganizationFields {
    /// The organization's id (updates only).
    pub id: String,
    /// Display name.
    pub name: String,
    /// `OrganizationType` as its number.
    pub org_type: i32,
    /// Primary business email, or empty.
    pub primary_email: String,
    /// `OrganizationKind` as its number (create only; ORG-13).
    pub kind: i32,
}

/// CreateOrganization.
#[derive(Debug, Clone, Default)]
pub struct CreateOrganization {
    /// The new organization.
    pub organization: OrganizationFields,
    /// The AIP-155 request id, or empty.
    pub request_id: String,
}

/// ListOrganizations (ORG-8).
#[derive(Debug, Clone, Default)]
pub struct ListOrganizations {
    /// Requested page size.
    pub page_size: i32,
    /// Token of the page to read.
    pub page_token: String,
    /// Case-insensitive substring of the name.
    pub name_contains: String,
    /// `OrganizationState` filter as its number.
    pub state: i32,
    /// `OrganizationType` filter as its number.
    pub org_type: i32,
    /// `name` or `create_time`, optionally followed by ` desc`.
    pub order_by: String,
    /// Whether owners also see their DELETED organizations.
    pub show_deleted: bool,
}

/// UpdateOrganization (ORG-3).
#[derive(Debug, Clone, Default)]
pub struct UpdateOrganization {
    /// The new values (the request's `organization`, if any).
    pub organization: Option<OrganizationFields>,
    /// The update mask's paths.
    pub paths: Vec<String>,
    /// The etag read, or empty.
    pub etag: String,
}

/// The validated page size, state filter and order of a listing of organizations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listing {
    size: u64,
    state: OrganizationState,
    by_name: bool,
    desc: bool,
}

impl Listing {
    /// INVALID_ARGUMENT for a bad page size, state, type or order; `state` DELETED needs
    /// `show_deleted` (ORG-8).
    pub(crate) fn of(cmd: &ListOrganizations) -> Result<Self> {
        let size = orgplane_platform::pagination::page_size(cmd.page_size)?;
        let state = OrganizationState::try_from(cmd.state)
            .map_err(|_| Error::invalid("state", "unknown state"))?;
        if state == OrganizationState::Deleted && !cmd.show_deleted {
            return Err(Error::invalid(
                "state",
                "DELETED organizations are listed only with show_deleted",
            ));
        }
        if cmd.org_type != 0 {
            validate::org_type(cmd.org_type).map_err(|_| Error::invalid("type", "unknown type"))?;
        }
        let order: Vec<&str> = cmd.order_by.split_whitespace().collect();
        let (by_name, desc) = match order.as_slice() {
            [] | ["create_time"] | ["create_time", "asc"] => (false, false),
            ["create_time", "desc"] => (false, true),
            ["name"] | ["name", "asc"] => (true, false),
            ["name", "desc"] => (true, true),
            _ => {
                return Err(Error::invalid(
                    "order_by",
                    "use `name` or `create_time`, optionally followed by ` desc`",
                ));
            }
        };
        Ok(Self {
            size,
            state,
            by_name,
            desc,
        })
    }
}

#[derive(Serialize, Deserialize)]
enum OrgCursor {
    Time(i64, String),
    Name(String, String),
}

/// ALREADY_EXISTS `ORGANIZATION_NAME_TAKEN` for the unique-name index (ORG-1).
pub(crate) fn name_taken(e: sea_orm::DbErr) -> Error {
    if orgplane_platform::db::is_unique_violation(&e) {
        Error::NameTaken
    } else {
        e.into()
    }
}

/// The idempotency key of CreateOrganization: per calling user and request id.
fn create_organization_key(user_id: &str, request_id: &str) -> String {
    format!("CreateOrganization|{user_id}|{request_id}")
}

impl App {
    /// CreateOrganization (rules ORG-1, ID-1).
    pub async fn create_organization(
        &self,
        call: &Call,
        cmd: CreateOrganization,
    ) -> Result<Revised<organization::Model>> {
        let key = match (
            call.principal.require_user(),
            validate::request_id(&cmd.request_id),
        ) {
            (Ok(user), Ok(Some(r))) => Some(create_organization_key(&user.user_id, &r)),
            _ => None,
        };
        let first = self.create_organization_once(call, cmd.clone()).await;
        self.or_created_meanwhile(key.as_deref(), first, || {
            self.create_organization_once(call, cmd)
        })
        .await
    }

    async fn create_organization_once(
        &self,
        call: &Call,
        cmd: CreateOrganization,
    ) -> Result<Revised<organization::Model>> {
        let user = call.principal.require_user()?;
        let input = cmd.organization;
        let name = validate::name("organization.name", &input.name)?;
        let org_type = validate::org_type(input.org_type)?;
        let kind = validate::org_kind(input.kind)?;
        let primary_email =
            validate::optional_email("organization.primary_email", &input.primary_email)?;
        let key = validate::request_id(&cmd.request_id)?
            .map(|r| create_organization_key(&user.user_id, &r));
        if let Some(id) = self.idempotent(key.as_deref()).await? {
            let org = organization::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await?
                .ok_or_else(|| Error::not_found("organization", &id))?;
            return Ok(Revised {
                value: org,
                revision: self.head_revision().await?,
            });
        }
        let account =
            self.users
                .get(&user.user_id, call)
                .await?
                .ok_or_else(|| Error::UserNotFound {
                    user_id: user.user_id.clone(),
                })?;
        if !account.business {
            return Err(Error::BusinessAccountRequired {
                user_id: user.user_id.clone(),
            });
        }
        if !account.email_verified {
            return Err(Error::EmailNotVerified {
                user_id: user.user_id.clone(),
                before: "creating an organization",
            });
        }
        let now = self.now_ms();
        let org = organization::Model {
            id: new_id("org"),
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
            kind,
            operator_id: String::new(),
            merged_into_id: String::new(),
        };
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        organization::Entity::insert(organization::ActiveModel::from(org.clone()))
            .exec(&*txn)
            .await
            .map_err(name_taken)?;
        member::Entity::insert(member::ActiveModel::from(member::Model {
            organization_id: org.id.clone(),
            user_id: user.user_id.clone(),
            email: orgplane_platform::email::canonical_email("email", &account.email)
                .map(|e| e.key)
                .unwrap_or_else(|_| account.email.to_lowercase()),
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
                    .change(None, Some(&org)),
            )
            .await?;
        txn.append(event::Payload::OrganizationCreated(OrganizationCreated {
            organization_id: org.id.clone(),
            name: org.name.clone(),
            owner_user_id: org.owner_user_id.clone(),
            primary_email: org.primary_email.clone(),
            operator_organization_id: String::new(),
        }))
        .await?;
        txn.append(event::Payload::MemberAdded(MemberAdded {
            organization_id: org.id.clone(),
            user_id: user.user_id.clone(),
            role: OrgRole::Owner as i32,
        }))
        .await?;
        let revision = txn.commit_at_revision().await?;
        Ok(Revised {
            value: org,
            revision,
        })
    }

    /// GetOrganization.
    pub async fn get_organization(
        &self,
        call: &Call,
        organization_id: &str,
    ) -> Result<organization::Model> {
        require_caller(&call.principal)?;
        required("organization_id", organization_id)?;
        if let Some(tombstone) = self.merged_for_former_owner(call, organization_id).await? {
            return Ok(tombstone);
        }
        let access = Access::resolve(
            &self.db,
            &call.principal,
            organization_id,
            Deleted::VisibleToOwner,
        )
        .await?;
        access.require(OrgAction::Read)?;
        Ok(access.org)
    }

    /// GetMyOrganization (rule ORG-11).
    pub async fn get_my_organization(&self, call: &Call) -> Result<organization::Model> {
        let principal = call.principal.as_ref();
        principal.require_authenticated()?;
        let key = match principal {
            Principal::ApiKey(k) if k.kind == ApiKeyKind::Admin => k,
            _ => return Err(Error::AdminKeyRequired),
        };
        let access =
            Access::resolve(&self.db, principal, &key.organization_id, Deleted::Hidden).await?;
        Ok(access.org)
    }

    /// ListOrganizations (rule ORG-8). MERGED organizations (rule ORG-15) are listed to no one,
    /// not even their former OWNER with `show_deleted`.
    pub async fn list_organizations(
        &self,
        call: &Call,
        cmd: ListOrganizations,
    ) -> Result<Page<organization::Model>> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        let listing = Listing::of(&cmd)?;
        let active = organization::Column::State.eq(OrganizationState::Active as i32);
        let deleted = organization::Column::State.eq(OrganizationState::Deleted as i32);
        let query = organization::Entity::find();
        let query = match principal {
            Principal::User(u) => {
                let mine = Query::select()
                    .column(member::Column::OrganizationId)
                    .from(member::Entity)
                    .and_where(member::Column::UserId.eq(u.user_id.clone()))
                    .to_owned();
                let visible = if cmd.show_deleted {
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
                if cmd.show_deleted {
                    // MERGED tombstones are listed to no one (rule ORG-15).
                    query.filter(organization::Column::State.ne(OrganizationState::Merged as i32))
                } else {
                    query.filter(active)
                }
            }
        };
        let (_, actor) = principal.actor();
        self.list_page(&format!("ListOrganizations|{actor}"), query, &cmd, listing)
            .await
    }

    /// One page of `visible` (the organizations the caller may see) under `cmd`'s filters,
    /// order and page token, the token bound to `scope` and to the filters (ORG-8; also
    /// ListChildOrganizations, ORG-13).
    pub(crate) async fn list_page(
        &self,
        scope: &str,
        visible: Select<organization::Entity>,
        cmd: &ListOrganizations,
        listing: Listing,
    ) -> Result<Page<organization::Model>> {
        let Listing {
            size,
            state,
            by_name,
            desc,
        } = listing;
        // A literal substring of a name (`%` and `_` are matched as themselves); a name has at
        // most 100 characters, so a longer filter could never match (ORG-8).
        if cmd.name_contains.chars().count() > 100 {
            return Err(Error::invalid("name_contains", "at most 100 characters"));
        }
        let scope = format!(
            "{scope}|{}|{}|{}|{}|{by_name}|{desc}",
            cmd.name_contains, cmd.state, cmd.org_type, cmd.show_deleted
        );
        let cursor: Option<OrgCursor> = self.runtime.page_tokens.decode(&scope, &cmd.page_token)?;
        let mut query = visible;
        if state != OrganizationState::Unspecified {
            query = query.filter(organization::Column::State.eq(state as i32));
        }
        if cmd.org_type != 0 {
            query = query.filter(organization::Column::OrgType.eq(cmd.org_type));
        }
        if !cmd.name_contains.is_empty() {
            let pattern = format!("%{}%", like_escape(&cmd.name_contains.to_lowercase()));
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
                return Err(Error::invalid(
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
        let (items, next_page_token) = self.runtime.page_tokens.page(&scope, rows, size, |o| {
            if by_name {
                OrgCursor::Name(o.name_key.clone(), o.id.clone())
            } else {
                OrgCursor::Time(o.create_time_ms, o.id.clone())
            }
        });
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// UpdateOrganization (rule ORG-3).
    pub async fn update_organization(
        &self,
        call: &Call,
        cmd: UpdateOrganization,
    ) -> Result<Revised<organization::Model>> {
        require_caller(&call.principal)?;
        let input = cmd
            .organization
            .ok_or_else(|| Error::invalid("organization", "required"))?;
        required("organization.id", &input.id)?;
        let paths = validate::mask_paths(&cmd.paths, &["name", "type", "primary_email"])?;
        let mut name = None;
        let mut org_type = None;
        let mut primary_email = None;
        for p in &paths {
            match p.as_str() {
                "name" => name = Some(validate::name("organization.name", &input.name)?),
                "type" => org_type = Some(validate::org_type(input.org_type)?),
                _ => {
                    primary_email = Some(validate::optional_email(
                        "organization.primary_email",
                        &input.primary_email,
                    )?)
                }
            }
        }
        let access = Access::resolve(&self.db, &call.principal, &input.id, Deleted::Hidden).await?;
        access.require_or_operator(OrgAction::ManageOrganization)?;
        let operator = access.acting_operator().map(str::to_owned);
        let before = access.org;
        check_etag(&cmd.etag, before.version, "organization")?;
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
            return Err(etag_mismatch("organization").into());
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
                .change(Some(&before), Some(&after))
                .as_operator(operator.as_deref()),
            )
            .await?;
        txn.append(event::Payload::OrganizationUpdated(OrganizationUpdated {
            organization_id: after.id.clone(),
            name: after.name.clone(),
            primary_email: after.primary_email.clone(),
        }))
        .await?;
        let revision = txn.commit_at_revision().await?;
        Ok(Revised {
            value: after,
            revision,
        })
    }
}
