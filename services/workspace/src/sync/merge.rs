//! `OrganizationsMerged` (rule ORG-15) in the workspace service, applied in the transaction that
//! advances the organization cursor (after the shared role replica applied it): every workspace
//! the candidate still holds here — active and archived, listed in the event or not — becomes a
//! workspace of the prime with its id, name, unit and direct members; the API-key replica's
//! entries of the candidate follow; the prime's active-workspace counter (WS-1) is recounted.
//!
//! An active workspace whose name (ignoring case) is taken by an active workspace of the prime
//! (possible only when a rename raced the merge's conflict check) is renamed `"<name> (merged)"`,
//! else `"<name> (merged 2)"`, … (the first free one, in creation order). Each moved workspace
//! gets one audit record in the prime's log (`workspace.merge`, before and after images) and one
//! `WorkspaceUpdated` naming the prime, so the organization's and billing's workspace replicas
//! learn its new organization.
//!
//! Exactly once: everything is selected by "still in the candidate", so a second delivery finds
//! nothing to move and writes nothing (no rename, no record, no event); the counter is a recount.

use std::collections::HashSet;

use orgplane_platform::Call;
use orgplane_platform::audit::{AuditLogWriter, Entry};
use orgplane_platform::error::ApiResult;
use orgplane_platform::events::Outbox;
use orgplane_platform::replica::Merge;
use orgplane_proto::events::v1::WorkspaceUpdated;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::workspace::v1::WorkspaceState;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, QueryOrder};

use crate::domain::model::name_key;
use crate::store::entity::{api_key, counter, member, workspace};
use crate::store::memory::bump_version;

/// The longest workspace name (see `validate_name`).
const MAX_NAME_CHARS: usize = 100;

/// What a merge moved here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The workspaces moved, in the order they were moved.
    pub workspace_ids: Vec<String>,
    /// Whether anything at all changed (workspaces, members, keys).
    pub changed: bool,
}

/// The name a moved workspace called `name` takes in the prime, whose active name keys are
/// `taken`: its own when free, else the first free `"<name> (merged)"`, `"<name> (merged 2)"`, …
/// (the name shortened so that the suffix fits in 100 characters).
pub fn free_name(name: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(&name_key(name)) {
        return name.to_owned();
    }
    let mut n: u64 = 1;
    loop {
        let suffix = if n == 1 {
            " (merged)".to_owned()
        } else {
            format!(" (merged {n})")
        };
        let room = MAX_NAME_CHARS.saturating_sub(suffix.chars().count());
        let base: String = name.trim().chars().take(room).collect();
        let candidate = format!("{}{suffix}", base.trim_end());
        if !taken.contains(&name_key(&candidate)) {
            return candidate;
        }
        n += 1;
    }
}

/// Moves everything the candidate of `merge` holds here to its prime inside `txn` (see the
/// module documentation), publishing through `outbox` with `request_id`.
pub async fn move_candidate<C: ConnectionTrait>(
    txn: &C,
    audit: &AuditLogWriter,
    outbox: &Outbox,
    merge: &Merge,
    request_id: &str,
) -> ApiResult<Moved> {
    let candidate = merge.candidate_organization_id.as_str();
    let prime = merge.prime_organization_id.as_str();
    let rows = workspace::Entity::find()
        .filter(workspace::Column::OrganizationId.eq(candidate))
        .order_by_asc(workspace::Column::CreateTimeMs)
        .order_by_asc(workspace::Column::Id)
        .all(txn)
        .await?;
    let mut taken: HashSet<String> = workspace::Entity::find()
        .filter(workspace::Column::OrganizationId.eq(prime))
        .filter(workspace::Column::State.eq(WorkspaceState::Active as i32))
        .all(txn)
        .await?
        .into_iter()
        .map(|w| w.name_key)
        .collect();
    let now = chrono::Utc::now().timestamp_millis();
    let mut moved = Moved::default();
    for before in rows {
        let active = before.state == WorkspaceState::Active as i32;
        let mut after = before.clone();
        after.organization_id = prime.to_owned();
        if active {
            after.name = free_name(&before.name, &taken);
            after.name_key = name_key(&after.name);
            taken.insert(after.name_key.clone());
        }
        after.update_time_ms = now;
        after.version = before.version + 1;
        workspace::Entity::update_many()
            .col_expr(
                workspace::Column::OrganizationId,
                Expr::value(after.organization_id.clone()),
            )
            .col_expr(workspace::Column::Name, Expr::value(after.name.clone()))
            .col_expr(
                workspace::Column::NameKey,
                Expr::value(after.name_key.clone()),
            )
            .col_expr(workspace::Column::UpdateTimeMs, Expr::value(now))
            .col_expr(workspace::Column::Version, Expr::value(after.version))
            .filter(workspace::Column::Id.eq(&before.id))
            .filter(workspace::Column::OrganizationId.eq(candidate))
            .exec(txn)
            .await?;
        let entry = Entry::new(prime, "workspace.merge", "workspace", &after.id)
            .change(Some(&before), Some(&after));
        if after.name != before.name {
            tracing::info!(
                workspace_id = %after.id,
                from = %before.name,
                to = %after.name,
                "a merged workspace's name was taken in the prime; renamed"
            );
        }
        audit.write(txn, &Call::system(), entry).await?;
        outbox
            .append(
                txn,
                Payload::WorkspaceUpdated(WorkspaceUpdated {
                    organization_id: prime.to_owned(),
                    workspace_id: after.id.clone(),
                    name: after.name.clone(),
                    unit_id: after.unit_id.clone(),
                }),
                request_id,
            )
            .await?;
        moved.workspace_ids.push(after.id);
    }
    let members = member::Entity::update_many()
        .col_expr(
            member::Column::OrganizationId,
            Expr::value(prime.to_owned()),
        )
        .filter(member::Column::OrganizationId.eq(candidate))
        .exec(txn)
        .await?;
    let keys = api_key::Entity::update_many()
        .col_expr(
            api_key::Column::OrganizationId,
            Expr::value(prime.to_owned()),
        )
        .filter(api_key::Column::OrganizationId.eq(candidate))
        .exec(txn)
        .await?;
    moved.changed =
        !moved.workspace_ids.is_empty() || members.rows_affected > 0 || keys.rows_affected > 0;
    if moved.changed {
        recount(txn, prime).await?;
        counter::Entity::delete_by_id(candidate.to_owned())
            .exec(txn)
            .await?;
        bump_version(txn).await?;
    }
    Ok(moved)
}

/// Sets `organization_id`'s active-workspace counter (WS-1) to the number of its active
/// workspaces.
async fn recount<C: ConnectionTrait>(txn: &C, organization_id: &str) -> ApiResult<()> {
    let active = workspace::Entity::find()
        .filter(workspace::Column::OrganizationId.eq(organization_id))
        .filter(workspace::Column::State.eq(WorkspaceState::Active as i32))
        .count(txn)
        .await?;
    counter::Entity::insert(counter::ActiveModel {
        organization_id: sea_orm::Set(organization_id.to_owned()),
        active_count: sea_orm::Set(i64::try_from(active).unwrap_or(i64::MAX)),
    })
    .on_conflict(
        OnConflict::column(counter::Column::OrganizationId)
            .update_column(counter::Column::ActiveCount)
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_name_gets_the_first_free_merged_suffix() {
        let taken: HashSet<String> = ["shared", "shared (merged)", "other"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(free_name("Free", &taken), "Free");
        assert_eq!(free_name("Other", &taken), "Other (merged)");
        assert_eq!(free_name("Shared", &taken), "Shared (merged 2)");
        let long = "x".repeat(100);
        let taken: HashSet<String> = [long.clone()].into_iter().collect();
        let renamed = free_name(&long, &taken);
        assert_eq!(renamed.chars().count(), 100);
        assert!(renamed.ends_with(" (merged)"));
    }
}
