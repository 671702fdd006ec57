//! SCIM Group use cases (rule ID-14): an organization's groups (`displayName` unique ignoring
//! case) and their members, who must be SCIM users of the same organization. Groups are how an
//! identity provider assigns organization roles: every membership change re-computes the
//! affected users' roles under the organization's rules and owes one ProvisionMember per user
//! whose role moves ([`super::roles::settle`]).

use std::collections::BTreeSet;

use orgplane_platform::events::WriteUnit;
use orgplane_platform::{ApiError, ApiResult};
use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, QuerySelect, Set};
use serde_json::json;

use super::ScimPrincipal;
use super::common::{delete_at, linked, org_row, org_row_at, update_at};
use super::provisioning::deliver_due;
use super::roles::{Touch, settle};
use super::settings;
use crate::app::{App, new_id};
use crate::store::entity::{scim_group, scim_group_member, scim_user};
use orgplane_platform::error::Reason;

type Groups = scim_group::Entity;

/// Reason of the 409 when `displayName` is taken in the organization.
pub const GROUP_NAME_TAKEN: Reason = Reason::ScimGroupNameTaken;

/// A Group as the client wrote it (POST or PUT, or the result of a PATCH).
#[derive(Debug, Clone, Default)]
pub struct ScimGroupInput {
    /// `displayName` (required).
    pub display_name: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// The `value`s of `members`: SCIM user ids.
    pub members: Vec<String>,
}

/// A member of a group, for the `members` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    /// The SCIM user id.
    pub id: String,
    /// Its `userName`.
    pub user_name: String,
}

/// A Group resource, read.
#[derive(Debug, Clone)]
pub struct ScimGroup {
    /// The row.
    pub row: scim_group::Model,
    /// Its members.
    pub members: Vec<MemberRef>,
}

/// How a group list is narrowed in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupLookup {
    /// Every group of the organization.
    All,
    /// `displayName eq …` (ignoring case).
    DisplayName(String),
    /// `externalId eq …`.
    ExternalId(String),
    /// `id eq …`.
    Id(String),
}

fn taken() -> ApiError {
    ApiError::already_exists(GROUP_NAME_TAKEN, "a group with this displayName exists")
}

fn unique_or(e: DbErr) -> ApiError {
    if orgplane_platform::db::is_unique_violation(&e) {
        taken()
    } else {
        e.into()
    }
}

/// The checked display name and its key.
fn display_name(raw: &str) -> ApiResult<(String, String)> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ApiError::invalid_argument("displayName", "required"));
    }
    if name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid_argument(
            "displayName",
            "at most 256 characters, no control characters",
        ));
    }
    Ok((name.to_owned(), name.to_lowercase()))
}

impl App {
    async fn scim_group_view(&self, row: scim_group::Model) -> ApiResult<ScimGroup> {
        let ids = linked(
            &self.db,
            scim_group_member::Column::ScimUserId,
            scim_group_member::Column::GroupId,
            &row.id,
        )
        .await?;
        let members = if ids.is_empty() {
            Vec::new()
        } else {
            scim_user::Entity::find()
                .filter(scim_user::Column::Id.is_in(ids))
                .order_by_asc(scim_user::Column::UserNameKey)
                .all(&self.db)
                .await?
                .into_iter()
                .map(|u| MemberRef {
                    id: u.id,
                    user_name: u.user_name,
                })
                .collect()
        };
        Ok(ScimGroup { row, members })
    }

    /// The member ids, de-duplicated, each a SCIM user of the organization (else 400 naming it).
    async fn checked_members<C: ConnectionTrait>(
        &self,
        db: &C,
        p: &ScimPrincipal,
        members: &[String],
    ) -> ApiResult<BTreeSet<String>> {
        let wanted: BTreeSet<String> = members.iter().map(|m| m.trim().to_owned()).collect();
        if wanted.is_empty() {
            return Ok(wanted);
        }
        let known: BTreeSet<String> = scim_user::Entity::find()
            .select_only()
            .column(scim_user::Column::Id)
            .filter(scim_user::Column::OrganizationId.eq(&p.organization_id))
            .filter(scim_user::Column::Id.is_in(wanted.iter().cloned()))
            .into_tuple::<String>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        if let Some(unknown) = wanted.difference(&known).next() {
            return Err(ApiError::invalid_argument(
                "members",
                format!("{unknown} is not a user of this organization"),
            ));
        }
        Ok(wanted)
    }

    /// Sets the group's members to `members` in `txn`; answers the users added or removed.
    async fn set_members<C: ConnectionTrait>(
        &self,
        txn: &C,
        p: &ScimPrincipal,
        group_id: &str,
        members: &BTreeSet<String>,
    ) -> ApiResult<Vec<String>> {
        let current: BTreeSet<String> = scim_group_member::Entity::find()
            .select_only()
            .column(scim_group_member::Column::ScimUserId)
            .filter(scim_group_member::Column::GroupId.eq(group_id))
            .into_tuple::<String>()
            .all(txn)
            .await?
            .into_iter()
            .collect();
        let removed: Vec<String> = current.difference(members).cloned().collect();
        let added: Vec<String> = members.difference(&current).cloned().collect();
        if !removed.is_empty() {
            scim_group_member::Entity::delete_many()
                .filter(scim_group_member::Column::GroupId.eq(group_id))
                .filter(scim_group_member::Column::ScimUserId.is_in(removed.iter().cloned()))
                .exec(txn)
                .await?;
        }
        for user in &added {
            scim_group_member::ActiveModel {
                group_id: Set(group_id.to_owned()),
                scim_user_id: Set(user.clone()),
                organization_id: Set(p.organization_id.clone()),
            }
            .insert(txn)
            .await?;
        }
        Ok(removed.into_iter().chain(added).collect())
    }

    /// POST /Groups.
    pub async fn scim_create_group(
        &self,
        p: &ScimPrincipal,
        input: ScimGroupInput,
    ) -> ApiResult<ScimGroup> {
        let (name, key) = display_name(&input.display_name)?;
        let call = p.call();
        let rules = settings::load(&self.db, &p.organization_id).await?;
        let unit = WriteUnit::begin(&self.outbox, &call).await?;
        let members = self.checked_members(&*unit, p, &input.members).await?;
        let now = self.now_ms();
        let row = scim_group::Model {
            id: new_id("scimg"),
            organization_id: p.organization_id.clone(),
            display_name: name,
            display_name_key: key,
            external_id: input.external_id,
            version: 1,
            create_time_ms: now,
            update_time_ms: now,
        };
        scim_group::ActiveModel::from(row.clone())
            .insert(&*unit)
            .await
            .map_err(unique_or)?;
        let touched = self.set_members(&*unit, p, &row.id, &members).await?;
        let moved = settle(
            &*unit,
            &rules,
            &p.organization_id,
            &touched,
            Touch::Always,
            now,
        )
        .await?;
        let details = json!({
            "displayName": row.display_name,
            "members": members,
            "rolesMoved": moved,
        });
        self.scim_audit::<Groups, _>(&*unit, &call, p, "scim.group.created", &row.id, details)
            .await?;
        unit.commit().await?;
        deliver_due(self).await;
        self.scim_group_view(row).await
    }

    /// GET /Groups/{id}.
    pub async fn scim_get_group(&self, p: &ScimPrincipal, id: &str) -> ApiResult<ScimGroup> {
        let row = org_row::<Groups, _>(&self.db, p, id).await?;
        self.scim_group_view(row).await
    }

    /// GET /Groups: the organization's groups, narrowed by `lookup` in the store.
    pub async fn scim_list_groups(
        &self,
        p: &ScimPrincipal,
        lookup: GroupLookup,
    ) -> ApiResult<Vec<ScimGroup>> {
        let mut q = scim_group::Entity::find()
            .filter(scim_group::Column::OrganizationId.eq(&p.organization_id))
            .order_by_asc(scim_group::Column::CreateTimeMs)
            .order_by_asc(scim_group::Column::Id);
        q = match lookup {
            GroupLookup::All => q,
            GroupLookup::DisplayName(v) => {
                q.filter(scim_group::Column::DisplayNameKey.eq(v.trim().to_lowercase()))
            }
            GroupLookup::ExternalId(v) => q.filter(scim_group::Column::ExternalId.eq(v)),
            GroupLookup::Id(v) => q.filter(scim_group::Column::Id.eq(v)),
        };
        let rows = q.all(&self.db).await?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in rows {
            groups.push(self.scim_group_view(row).await?);
        }
        Ok(groups)
    }

    /// PUT /Groups/{id} (and PATCH, with the patched document): replaces the group and its
    /// members when its version is `expected_version` (when given).
    pub async fn scim_replace_group(
        &self,
        p: &ScimPrincipal,
        id: &str,
        input: ScimGroupInput,
        expected_version: Option<i64>,
    ) -> ApiResult<ScimGroup> {
        let (name, key) = display_name(&input.display_name)?;
        let call = p.call();
        let before = org_row_at::<Groups, _>(&self.db, p, id, expected_version).await?;
        let rules = settings::load(&self.db, &p.organization_id).await?;
        let unit = WriteUnit::begin(&self.outbox, &call).await?;
        let members = self.checked_members(&*unit, p, &input.members).await?;
        let now = self.now_ms();
        let renamed = key != before.display_name_key;
        let mut am: scim_group::ActiveModel = before.clone().into();
        am.display_name = Set(name);
        am.display_name_key = Set(key);
        am.external_id = Set(input.external_id);
        am.version = Set(before.version + 1);
        am.update_time_ms = Set(now);
        update_at(&*unit, am, id, before.version, unique_or).await?;
        let mut touched = self.set_members(&*unit, p, id, &members).await?;
        if renamed {
            // A new name may match another mapping: every member's role is re-computed.
            touched.extend(members.iter().cloned());
            touched.sort();
            touched.dedup();
        }
        let moved = settle(
            &*unit,
            &rules,
            &p.organization_id,
            &touched,
            Touch::Always,
            now,
        )
        .await?;
        let row = org_row::<Groups, _>(&*unit, p, id).await?;
        let details = json!({
            "displayName": row.display_name,
            "members": members,
            "rolesMoved": moved,
        });
        self.scim_audit::<Groups, _>(&*unit, &call, p, "scim.group.replaced", id, details)
            .await?;
        unit.commit().await?;
        deliver_due(self).await;
        self.scim_group_view(row).await
    }

    /// DELETE /Groups/{id}: its members' roles are re-computed without it.
    pub async fn scim_delete_group(
        &self,
        p: &ScimPrincipal,
        id: &str,
        expected_version: Option<i64>,
    ) -> ApiResult<()> {
        let call = p.call();
        let before = org_row_at::<Groups, _>(&self.db, p, id, expected_version).await?;
        let rules = settings::load(&self.db, &p.organization_id).await?;
        let unit = WriteUnit::begin(&self.outbox, &call).await?;
        let touched = self.set_members(&*unit, p, id, &BTreeSet::new()).await?;
        delete_at::<Groups, _>(&*unit, id, before.version).await?;
        let moved = settle(
            &*unit,
            &rules,
            &p.organization_id,
            &touched,
            Touch::Always,
            self.now_ms(),
        )
        .await?;
        let details = json!({
            "displayName": before.display_name,
            "rolesMoved": moved,
        });
        self.scim_audit::<Groups, _>(&*unit, &call, p, "scim.group.deleted", id, details)
            .await?;
        unit.commit().await?;
        deliver_due(self).await;
        Ok(())
    }
}
