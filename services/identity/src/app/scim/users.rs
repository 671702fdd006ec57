//! SCIM User use cases (rule ID-14): create, read, list, replace and delete the User resources
//! of the organization a bearer token provisions; which account a `userName` names is
//! [`super::accounts`]. `active` true owes the organization a membership
//! with the role the user's groups map to; `active` false (and DELETE) owes its end and ends
//! the account's sessions at once through the revocation path every service follows. Each write
//! is one transaction with its audit record and what it owes ([`super::provisioning`]), which is
//! delivered right after the commit.

use std::sync::Arc;

use orgplane_platform::audit::Entry;
use orgplane_platform::auth::{Capabilities, Principal, ServicePrincipal};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::{ApiError, ApiResult, Call};
use sea_orm::entity::prelude::*;
use sea_orm::{ExprTrait, QueryOrder, QuerySelect, Set};
use serde_json::{Value, json};

use super::ScimPrincipal;
use super::accounts::{UserName, user_name_key};
use super::common::{delete_at, linked, org_row, org_row_at, update_at};
use super::provisioning::{Owed, deliver_due, owe, request_id};
use super::roles::{Touch, role_of, settle};
use super::settings;
use crate::app::{App, new_id};
use crate::store::entity::{scim_group, scim_group_member, scim_user};
use orgplane_platform::error::Reason;

type Users = scim_user::Entity;

/// Reason of the 409 when `userName` is taken in the organization.
pub const USER_NAME_TAKEN: Reason = Reason::ScimUserNameTaken;
/// Reason of the 412 when `If-Match` (or a concurrent write) names another version.
pub const VERSION_MISMATCH: Reason = Reason::ScimVersionMismatch;

/// Attributes never stored with a resource: server-assigned (`id`, `meta`), read-only
/// (`groups`) or secret (`password`).
const NOT_STORED: [&str; 4] = ["id", "meta", "groups", "password"];

/// A User as the client wrote it (POST or PUT, or the result of a PATCH).
#[derive(Debug, Clone)]
pub struct ScimUserInput {
    /// `userName`.
    pub user_name: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// `active` (true unless the client said otherwise).
    pub active: bool,
    /// The whole document (what is not stored is dropped here).
    pub resource: Value,
}

/// A group a user is in, for the read-only `groups` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    /// The group's SCIM id.
    pub id: String,
    /// Its `displayName`.
    pub display_name: String,
}

/// A User resource, read.
#[derive(Debug, Clone)]
pub struct ScimUser {
    /// The row.
    pub row: scim_user::Model,
    /// The groups it is in.
    pub groups: Vec<GroupRef>,
}

/// How a user list is narrowed in the store (a filter's equality on an indexed attribute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserLookup {
    /// Every user of the organization.
    All,
    /// `userName eq …` (compared in canonical form).
    UserName(String),
    /// `externalId eq …`.
    ExternalId(String),
    /// `id eq …`.
    Id(String),
}

impl ScimPrincipal {
    /// The call SCIM writes are made and audited as: the token (never its secret) acting as a
    /// service principal named by its id.
    pub fn call(&self) -> Call {
        Call {
            principal: Arc::new(Principal::Service(ServicePrincipal {
                name: self.token_id.clone(),
                capabilities: Capabilities::NONE,
            })),
            ..Call::system()
        }
    }
}

/// `resource` less what is never stored.
fn stored_resource(mut resource: Value) -> Value {
    if let Some(map) = resource.as_object_mut() {
        for key in NOT_STORED {
            map.remove(key);
        }
        map.retain(|k, _| !k.eq_ignore_ascii_case("password"));
    }
    resource
}

/// 412: the resource is no longer at the version the write read or named.
pub(super) fn version_mismatch() -> ApiError {
    ApiError::failed_precondition(
        VERSION_MISMATCH,
        "resource",
        "the resource changed: read it again",
    )
}

fn audit_image(row: &scim_user::Model) -> Value {
    json!({
        "id": row.id,
        "userName": row.user_name,
        "externalId": row.external_id,
        "active": row.active,
        "userId": row.user_id,
    })
}

impl App {
    async fn scim_user_view(&self, row: scim_user::Model) -> ApiResult<ScimUser> {
        let group_ids = linked(
            &self.db,
            scim_group_member::Column::GroupId,
            scim_group_member::Column::ScimUserId,
            &row.id,
        )
        .await?;
        let groups = if group_ids.is_empty() {
            Vec::new()
        } else {
            scim_group::Entity::find()
                .filter(scim_group::Column::Id.is_in(group_ids))
                .order_by_asc(scim_group::Column::DisplayNameKey)
                .all(&self.db)
                .await?
                .into_iter()
                .map(|g| GroupRef {
                    id: g.id,
                    display_name: g.display_name,
                })
                .collect()
        };
        Ok(ScimUser { row, groups })
    }

    /// POST /Users.
    pub async fn scim_create_user(
        &self,
        p: &ScimPrincipal,
        input: ScimUserInput,
    ) -> ApiResult<ScimUser> {
        let UserName {
            key,
            email,
            verified,
        } = self.scim_user_name(p, &input.user_name)?;
        let call = p.call();
        let taken =
            || ApiError::already_exists(USER_NAME_TAKEN, "userName is already provisioned here");
        if scim_user::Entity::find()
            .filter(scim_user::Column::OrganizationId.eq(&p.organization_id))
            .filter(scim_user::Column::UserNameKey.eq(&key))
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(taken());
        }
        let rules = settings::load(&self.db, &p.organization_id).await?;
        let mut unit = WriteUnit::begin(&self.outbox, &call).await?;
        let account = self
            .scim_account(&mut unit, &call, p, &email, verified, &input.resource)
            .await?;
        let now = self.now_ms();
        let role = rules.default_role;
        let row = scim_user::Model {
            id: new_id("scimu"),
            organization_id: p.organization_id.clone(),
            user_id: account.id.clone(),
            user_name: input.user_name.trim().to_owned(),
            user_name_key: key,
            external_id: input.external_id.clone(),
            active: input.active,
            resource: stored_resource(input.resource).to_string(),
            applied_role: if input.active { role as i32 } else { 0 },
            version: 1,
            create_time_ms: now,
            update_time_ms: now,
        };
        scim_user::ActiveModel::from(row.clone())
            .insert(&*unit)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    taken()
                } else {
                    e.into()
                }
            })?;
        let owed = if input.active {
            Owed::Provision(role)
        } else {
            Owed::Deprovision
        };
        owe(
            &*unit,
            &p.organization_id,
            &account.id,
            &request_id(&row.id, row.version),
            owed,
            now,
        )
        .await?;
        self.scim_audit::<Users, _>(
            &*unit,
            &call,
            p,
            "scim.user.created",
            &row.id,
            audit_image(&row),
        )
        .await?;
        unit.commit().await?;
        deliver_due(self).await;
        self.scim_user_view(row).await
    }

    /// GET /Users/{id}.
    pub async fn scim_get_user(&self, p: &ScimPrincipal, id: &str) -> ApiResult<ScimUser> {
        let row = org_row::<Users, _>(&self.db, p, id).await?;
        self.scim_user_view(row).await
    }

    /// GET /Users: the organization's users, narrowed by `lookup` in the store.
    pub async fn scim_list_users(
        &self,
        p: &ScimPrincipal,
        lookup: UserLookup,
    ) -> ApiResult<Vec<ScimUser>> {
        let mut q = scim_user::Entity::find()
            .filter(scim_user::Column::OrganizationId.eq(&p.organization_id))
            .order_by_asc(scim_user::Column::CreateTimeMs)
            .order_by_asc(scim_user::Column::Id);
        q = match lookup {
            UserLookup::All => q,
            UserLookup::UserName(v) => match user_name_key(&v) {
                Some(key) => q.filter(scim_user::Column::UserNameKey.eq(key)),
                None => return Ok(Vec::new()),
            },
            UserLookup::ExternalId(v) => q.filter(scim_user::Column::ExternalId.eq(v)),
            UserLookup::Id(v) => q.filter(scim_user::Column::Id.eq(v)),
        };
        let rows = q.all(&self.db).await?;
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            users.push(self.scim_user_view(row).await?);
        }
        Ok(users)
    }

    /// PUT /Users/{id} (and PATCH, with the patched document): replaces the resource when its
    /// version is `expected_version` (when given). A new `userName` is checked as at creation
    /// and renames the SCIM user only.
    pub async fn scim_replace_user(
        &self,
        p: &ScimPrincipal,
        id: &str,
        input: ScimUserInput,
        expected_version: Option<i64>,
    ) -> ApiResult<ScimUser> {
        let call = p.call();
        let before = org_row_at::<Users, _>(&self.db, p, id, expected_version).await?;
        let key = self.scim_user_name_key(p, &input.user_name)?;
        if key != before.user_name_key
            && scim_user::Entity::find()
                .filter(scim_user::Column::OrganizationId.eq(&p.organization_id))
                .filter(scim_user::Column::UserNameKey.eq(&key))
                .one(&self.db)
                .await?
                .is_some()
        {
            return Err(ApiError::already_exists(
                USER_NAME_TAKEN,
                "userName is already provisioned here",
            ));
        }
        let rules = settings::load(&self.db, &p.organization_id).await?;
        let mut unit = WriteUnit::begin(&self.outbox, &call).await?;
        let now = self.now_ms();
        let version = before.version + 1;
        let role = role_of(&*unit, &rules, id).await?;
        let owed = match (before.active, input.active) {
            (_, true) if !before.active || before.applied_role != role as i32 => {
                Some(Owed::Provision(role))
            }
            (true, false) => Some(Owed::Deprovision),
            _ => None,
        };
        let mut am: scim_user::ActiveModel = before.clone().into();
        am.user_name = Set(input.user_name.trim().to_owned());
        am.user_name_key = Set(key);
        am.external_id = Set(input.external_id.clone());
        am.active = Set(input.active);
        am.resource = Set(stored_resource(input.resource).to_string());
        am.applied_role = Set(if input.active { role as i32 } else { 0 });
        am.version = Set(version);
        am.update_time_ms = Set(now);
        update_at(&*unit, am, id, before.version, ApiError::from).await?;
        let row = org_row::<Users, _>(&*unit, p, id).await?;
        if let Some(owed) = owed {
            owe(
                &*unit,
                &p.organization_id,
                &row.user_id,
                &request_id(id, version),
                owed,
                now,
            )
            .await?;
        }
        let ended = if owed == Some(Owed::Deprovision) {
            self.revoke_sessions(&*unit, &row.user_id, None).await?
        } else {
            Vec::new()
        };
        let details = json!({"before": audit_image(&before), "after": audit_image(&row)});
        self.scim_audit::<Users, _>(&*unit, &call, p, "scim.user.replaced", id, details)
            .await?;
        let published = self.publish_revoked(&mut unit, &row.user_id, ended).await?;
        unit.commit().await?;
        self.announce_revoked(published);
        deliver_due(self).await;
        self.scim_user_view(row).await
    }

    /// DELETE /Users/{id}: the SCIM user and its group memberships go, the membership ends and
    /// the account's sessions end; the account stays (it may belong to other organizations).
    pub async fn scim_delete_user(
        &self,
        p: &ScimPrincipal,
        id: &str,
        expected_version: Option<i64>,
    ) -> ApiResult<()> {
        let call = p.call();
        let before = org_row_at::<Users, _>(&self.db, p, id, expected_version).await?;
        let mut unit = WriteUnit::begin(&self.outbox, &call).await?;
        let now = self.now_ms();
        delete_at::<Users, _>(&*unit, id, before.version).await?;
        let groups = linked(
            &*unit,
            scim_group_member::Column::GroupId,
            scim_group_member::Column::ScimUserId,
            id,
        )
        .await?;
        scim_group_member::Entity::delete_many()
            .filter(scim_group_member::Column::ScimUserId.eq(id))
            .exec(&*unit)
            .await?;
        if !groups.is_empty() {
            scim_group::Entity::update_many()
                .col_expr(
                    scim_group::Column::Version,
                    Expr::col(scim_group::Column::Version).add(1),
                )
                .col_expr(scim_group::Column::UpdateTimeMs, Expr::value(now))
                .filter(scim_group::Column::Id.is_in(groups))
                .exec(&*unit)
                .await?;
        }
        owe(
            &*unit,
            &p.organization_id,
            &before.user_id,
            &request_id(id, before.version + 1),
            Owed::Deprovision,
            now,
        )
        .await?;
        let ended = self.revoke_sessions(&*unit, &before.user_id, None).await?;
        let details = audit_image(&before);
        self.scim_audit::<Users, _>(&*unit, &call, p, "scim.user.deleted", id, details)
            .await?;
        let published = self
            .publish_revoked(&mut unit, &before.user_id, ended)
            .await?;
        unit.commit().await?;
        self.announce_revoked(published);
        deliver_due(self).await;
        Ok(())
    }

    /// Re-applies the organization role of every active SCIM user of `organization_id` under
    /// the organization's current [`super::settings::RoleRules`], owing one change per user whose
    /// role moves (exactly once); answers how many moved. UpdateScimSettings calls it after
    /// committing the new settings.
    pub async fn reapply_scim_roles(&self, call: &Call, organization_id: &str) -> ApiResult<i32> {
        let rules = settings::load(&self.db, organization_id).await?;
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let ids: Vec<String> = scim_user::Entity::find()
            .select_only()
            .column(scim_user::Column::Id)
            .filter(scim_user::Column::OrganizationId.eq(organization_id))
            .filter(scim_user::Column::Active.eq(true))
            .into_tuple()
            .all(&*unit)
            .await?;
        let moved = settle(
            &*unit,
            &rules,
            organization_id,
            &ids,
            Touch::WhenMoved,
            self.now_ms(),
        )
        .await?;
        if moved > 0 {
            self.audit
                .write(
                    &*unit,
                    call,
                    Entry::new(
                        organization_id,
                        "scim.roles.reapplied",
                        "organization",
                        organization_id,
                    )
                    .with_details(json!({ "moved": moved })),
                )
                .await?;
        }
        unit.commit().await?;
        deliver_due(self).await;
        Ok(moved)
    }
}
