//! What this service does with other services' events. Organization events go to the shared
//! org-role replica and, in the same transaction, to this service's own data (WS-8 needs nothing:
//! direct roles are kept as they are; WS-9: a removed member loses their direct roles, a purged
//! organization loses its workspaces): [`organization`]. Identity events feed the API-key
//! replica, remove a deleted user's direct roles, and record ended sessions (rule ID-4):
//! [`identity`].

pub mod identity;
pub mod merge;
pub mod organization;

use std::collections::HashSet;
use std::sync::Mutex;

use orgplane_platform::Call;
use orgplane_platform::audit::{self, AuditLogWriter, Entry};
use orgplane_platform::error::ApiResult;
use orgplane_proto::workspace::v1::WorkspaceRole;
use sea_orm::ConnectionTrait;
use sea_orm::entity::prelude::*;

use crate::domain::model::workspace_role;
use crate::store::entity::{api_key, counter, member, request, workspace};
use crate::store::memory::{Memory, bump_version};

pub(crate) fn take(set: &Mutex<HashSet<String>>) -> Vec<String> {
    set.lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect()
}

pub(crate) fn note(set: &Mutex<HashSet<String>>, org: &str) {
    set.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(org.to_owned());
}

/// Removes the direct roles matching `filter` and audits each removal as a system action;
/// returns the organizations touched.
pub(crate) async fn remove_members<C: ConnectionTrait>(
    txn: &C,
    audit: &AuditLogWriter,
    filter: sea_orm::Condition,
    why: &str,
) -> ApiResult<HashSet<String>> {
    let rows = member::Entity::find()
        .filter(filter.clone())
        .all(txn)
        .await?;
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    member::Entity::delete_many()
        .filter(filter)
        .exec(txn)
        .await?;
    let mut orgs = HashSet::new();
    for r in rows {
        // A summary rather than a resource image: the role as its enum name, lowerCamelCase keys
        // (ORG-10).
        let role = workspace_role(r.role);
        let role = if role == WorkspaceRole::Unspecified {
            r.role.to_string()
        } else {
            role.as_str_name().to_owned()
        };
        audit
            .write(
                txn,
                &Call::system(),
                Entry::new(
                    &r.organization_id,
                    "workspace_member.remove",
                    "workspace_member",
                    &format!("{}/{}", r.workspace_id, r.user_id),
                )
                .with_details(serde_json::json!({
                    "workspaceId": r.workspace_id,
                    "userId": r.user_id,
                    "role": role,
                    "reason": why,
                })),
            )
            .await?;
        orgs.insert(r.organization_id);
    }
    bump_version(txn).await?;
    Ok(orgs)
}

/// Removes everything of a purged organization (WS-9, ORG-7).
pub(crate) async fn purge_organization<C: ConnectionTrait>(
    txn: &C,
    organization_id: &str,
) -> ApiResult<()> {
    member::Entity::delete_many()
        .filter(member::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    workspace::Entity::delete_many()
        .filter(workspace::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    counter::Entity::delete_many()
        .filter(counter::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    request::Entity::delete_many()
        .filter(request::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    api_key::Entity::delete_many()
        .filter(api_key::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    audit::row::Entity::delete_many()
        .filter(audit::row::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    bump_version(txn).await?;
    Ok(())
}

/// Re-reads the organizations `touched` collected into memory (after their events committed).
pub(crate) async fn refresh_touched(memory: &Memory, touched: &Mutex<HashSet<String>>) {
    let orgs = take(touched);
    if orgs.is_empty() {
        return;
    }
    let _guard = memory.refresh_lock().await;
    for org in &orgs {
        if let Err(e) = memory.reload_organization(org).await {
            tracing::warn!(error = %e, "refreshing the workspace memory failed");
        }
    }
}

/// Reloads all of memory after a re-sync.
pub(crate) async fn reload_all(memory: &Memory, touched: &Mutex<HashSet<String>>) {
    take(touched);
    let mut guard = memory.refresh_lock().await;
    if let Err(e) = memory.reload_all(&mut guard).await {
        tracing::warn!(error = %e, "reloading the workspace memory failed");
    }
}
