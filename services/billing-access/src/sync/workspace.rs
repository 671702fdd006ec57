//! Workspace events: names and archival of workspaces, for reports and ingestion checks.
//! Events of purged organizations are ignored (BILL-5). Events naming the candidate of a merge
//! applied here (ORG-15), which the workspace stream may deliver after the organization stream's
//! `OrganizationsMerged`, apply to the prime that absorbed it.

use std::sync::Arc;

use futures::future::BoxFuture;
use orgplane_platform::convert::millis_of;
use orgplane_platform::error::ApiResult;
use orgplane_platform::events::EventHandler;
use orgplane_proto::events::v1::Event;
use orgplane_proto::events::v1::event::Payload;
use sea_orm::DatabaseTransaction;
use sea_orm::entity::prelude::*;

use crate::domain::Result;
use crate::store::entity::workspace;
use crate::store::merge;
use crate::store::workspaces::{is_purged, purged_among, upsert};

/// Where a re-sync gets every workspace (over gRPC in [`crate::api::clients`]).
pub trait Snapshots: Send + Sync {
    /// The snapshot's revision and every workspace, archived ones included.
    fn workspaces(&self) -> BoxFuture<'_, Result<(i64, Vec<workspace::Model>)>>;
}

/// Workspace events: names and archival of workspaces.
pub struct WorkspaceEvents {
    snapshots: Arc<dyn Snapshots>,
}

impl WorkspaceEvents {
    /// A handler that re-syncs from `snapshots`.
    pub fn new(snapshots: Arc<dyn Snapshots>) -> Self {
        Self { snapshots }
    }
}

fn event_time_ms(event: &Event) -> i64 {
    event
        .create_time
        .as_ref()
        .and_then(millis_of)
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
}

fn row(
    workspace_id: &str,
    organization_id: &str,
    name: &str,
    archive: Option<i64>,
) -> workspace::Model {
    workspace::Model {
        workspace_id: workspace_id.to_owned(),
        organization_id: organization_id.to_owned(),
        name: name.to_owned(),
        archive_time_ms: archive,
    }
}

async fn apply(txn: &DatabaseTransaction, event: &Event) -> Result<()> {
    let named = match &event.payload {
        Some(Payload::WorkspaceCreated(e)) => Some((&e.organization_id, &e.workspace_id, &e.name)),
        Some(Payload::WorkspaceUpdated(e)) => Some((&e.organization_id, &e.workspace_id, &e.name)),
        _ => None,
    };
    if let Some((org, id, name)) = named {
        let org = merge::current_home(txn, org).await?;
        if !is_purged(txn, &org).await? {
            upsert(txn, row(id, &org, name, None)).await?;
        }
        return Ok(());
    }
    let Some(Payload::WorkspaceArchived(e)) = &event.payload else {
        return Ok(());
    };
    let home = merge::current_home(txn, &e.organization_id).await?;
    if is_purged(txn, &home).await? {
        return Ok(());
    }
    let existing = workspace::Entity::find_by_id(e.workspace_id.clone())
        .one(txn)
        .await?;
    let (org, name) = match &existing {
        Some(w) if w.archive_time_ms.is_some() => return Ok(()),
        Some(w) => (w.organization_id.as_str(), w.name.as_str()),
        None => (home.as_str(), ""),
    };
    upsert(
        txn,
        row(&e.workspace_id, org, name, Some(event_time_ms(event))),
    )
    .await
}

async fn resync(txn: &DatabaseTransaction, snapshots: &dyn Snapshots) -> Result<i64> {
    let (revision, rows) = snapshots.workspaces().await?;
    let purged = purged_among(txn, None::<std::iter::Empty<&str>>).await?;
    let merged = merge::all(txn).await?;
    workspace::Entity::delete_many().exec(txn).await?;
    for mut w in rows {
        // Follow merges to the organization that holds the workspace now (bounded: a chain
        // never loops, but a corrupt one must not hang the consumer).
        for _ in 0..merged.len() {
            match merged.get(&w.organization_id) {
                Some(prime) => w.organization_id = prime.clone(),
                None => break,
            }
        }
        if !purged.contains(&w.organization_id) {
            upsert(txn, w).await?;
        }
    }
    Ok(revision)
}

impl EventHandler for WorkspaceEvents {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move { Ok(apply(txn, event).await?) })
    }

    fn resync<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move { Ok(resync(txn, self.snapshots.as_ref()).await?) })
    }
}
