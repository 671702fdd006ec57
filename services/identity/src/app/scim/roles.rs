//! The organization role of SCIM users (rule ID-14): what their groups map to under the
//! organization's [`RoleRules`], and the one [`Owed::Provision`] per user whose role moves.
//! Shared by the User and Group writes and by UpdateScimSettings' re-application.

use std::collections::HashMap;

use orgplane_platform::ApiResult;
use orgplane_proto::organization::v1::OrgRole;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QuerySelect, Set};

use super::provisioning::{Owed, owe, request_id};
use super::settings::RoleRules;
use crate::store::entity::{scim_group, scim_group_member, scim_user};

/// The lower-cased display names of the groups `scim_user_id` is a member of.
pub(super) async fn group_keys<C: ConnectionTrait>(
    txn: &C,
    scim_user_id: &str,
) -> ApiResult<Vec<String>> {
    let group_ids: Vec<String> = scim_group_member::Entity::find()
        .select_only()
        .column(scim_group_member::Column::GroupId)
        .filter(scim_group_member::Column::ScimUserId.eq(scim_user_id))
        .into_tuple()
        .all(txn)
        .await?;
    if group_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(scim_group::Entity::find()
        .select_only()
        .column(scim_group::Column::DisplayNameKey)
        .filter(scim_group::Column::Id.is_in(group_ids))
        .into_tuple()
        .all(txn)
        .await?)
}

/// The role `scim_user_id` has under `rules`.
pub(super) async fn role_of<C: ConnectionTrait>(
    txn: &C,
    rules: &RoleRules,
    scim_user_id: &str,
) -> ApiResult<OrgRole> {
    let keys = group_keys(txn, scim_user_id).await?;
    Ok(rules.role_for(keys.iter().map(String::as_str)))
}

/// How [`settle`] treats users whose role stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Touch {
    /// Their resource changed (group memberships): a new version even when the role stays.
    Always,
    /// Only a moved role is a change (new role rules).
    WhenMoved,
}

/// Re-computes the role of each of `scim_user_ids` (of `organization_id`) in `txn` and owes
/// one ProvisionMember per active user whose role moved; answers how many moved.
pub(super) async fn settle<C: ConnectionTrait>(
    txn: &C,
    rules: &RoleRules,
    organization_id: &str,
    scim_user_ids: &[String],
    touch: Touch,
    now_ms: i64,
) -> ApiResult<i32> {
    let mut moved = 0;
    let rows: HashMap<String, scim_user::Model> = scim_user::Entity::find()
        .filter(scim_user::Column::OrganizationId.eq(organization_id))
        .filter(scim_user::Column::Id.is_in(scim_user_ids.iter().cloned()))
        .all(txn)
        .await?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    for id in scim_user_ids {
        let Some(row) = rows.get(id) else { continue };
        let role = role_of(txn, rules, id).await?;
        let moves = row.active && row.applied_role != role as i32;
        if !moves && touch == Touch::WhenMoved {
            continue;
        }
        let version = row.version + 1;
        let mut am: scim_user::ActiveModel = row.clone().into();
        am.version = Set(version);
        am.update_time_ms = Set(now_ms);
        if moves {
            am.applied_role = Set(role as i32);
            owe(
                txn,
                organization_id,
                &row.user_id,
                &request_id(id, version),
                Owed::Provision(role),
                now_ms,
            )
            .await?;
            moved += 1;
        }
        am.update(txn).await?;
    }
    Ok(moved)
}
