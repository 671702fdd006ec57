//! Building the memory view from the replica's tables, streaming the members one organization at
//! a time (a million rows are never materialized at once, nor handed over one by one).

use std::collections::HashMap;

use std::borrow::Cow;

use futures::TryStreamExt;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, DbBackend, Statement, StreamTrait};

use super::entry::{OrgEntry, role_of};
use super::store::{org_row, policy_row};
use crate::policy::SecurityPolicy;

/// One `[user_id, role]` of a member array (borrowed unless the id has JSON escapes).
#[derive(serde::Deserialize)]
struct MemberPair<'a>(#[serde(borrow)] Cow<'a, str>, i32);

/// The memory view of the replica in `db`: organizations, their policies and members.
pub(super) async fn view<C: ConnectionTrait + StreamTrait>(
    db: &C,
) -> Result<HashMap<String, OrgEntry>, DbErr> {
    let mut view: HashMap<String, OrgEntry> = org_row::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|o| {
            (
                o.organization_id,
                OrgEntry {
                    name: o.name,
                    primary_email: o.primary_email,
                    owner_user_id: o.owner_user_id,
                    state: o.state,
                    ..OrgEntry::default()
                },
            )
        })
        .collect();
    for p in policy_row::Entity::find().all(db).await? {
        if let Some(org) = view.get_mut(&p.organization_id) {
            org.policy = SecurityPolicy::from_parts(
                p.mfa_requirement,
                p.reauth_max_age_secs,
                p.sign_in_methods,
            );
        }
    }
    // One row per organization, its members in a JSON array of `[user_id, role]`: the driver
    // hands rows over one at a time (SQLite's from a thread of its own, a futex wake-up each),
    // which at a million members was most of the start-up; per organization it is 10k rows.
    let backend = ConnectionTrait::get_database_backend(db);
    let members = match backend {
        DbBackend::Postgres => {
            "SELECT organization_id, json_agg(json_build_array(user_id, role))::text \
             FROM replica_members GROUP BY organization_id"
        }
        _ => {
            "SELECT organization_id, json_group_array(json_array(user_id, role)) \
             FROM replica_members GROUP BY organization_id"
        }
    };
    let mut rows = std::pin::pin!(
        db.stream_raw(Statement::from_string(backend, members))
            .await?
    );
    while let Some(row) = rows.try_next().await? {
        let organization_id: String = row.try_get_by_index(0)?;
        let members: String = row.try_get_by_index(1)?;
        let members: Vec<MemberPair<'_>> = serde_json::from_str(&members).map_err(|e| {
            DbErr::Custom(format!(
                "the replicated members of {organization_id} do not decode: {e}"
            ))
        })?;
        let org = match view.get_mut(&organization_id) {
            Some(org) => org,
            None => view.entry(organization_id).or_default(),
        };
        for MemberPair(user_id, role) in members {
            org.members.insert(&user_id, role_of(role));
        }
    }
    for org in view.values_mut() {
        org.members.shrink_to_fit();
    }
    Ok(view)
}
