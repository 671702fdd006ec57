//! Building the memory view from the replica's tables, streaming the members (a million rows
//! are never materialized at once: each row becomes an entry and is dropped).

use std::collections::HashMap;

use futures::TryStreamExt;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, StreamTrait};

use super::entry::{OrgEntry, role_of};
use super::store::{member_row, org_row, policy_row};
use crate::policy::SecurityPolicy;

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
    let mut rows = std::pin::pin!(member_row::Entity::find().stream(db).await?);
    while let Some(m) = rows.try_next().await? {
        let org = match view.get_mut(&m.organization_id) {
            Some(org) => org,
            None => view.entry(m.organization_id).or_default(),
        };
        org.members.insert(&m.user_id, role_of(m.role));
    }
    for org in view.values_mut() {
        org.members.shrink_to_fit();
    }
    Ok(view)
}
