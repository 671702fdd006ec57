//! The two event consumers: organization events (roles through the shared replica, billing
//! accounts on creation, purge) and workspace events (names and archival for reports and
//! ingestion checks). Each applies an event in the transaction that advances its cursor.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::auth::ServiceTokenSource;
use orgplane_platform::clock::SharedClock;
use orgplane_platform::convert::millis_of;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::events::EventHandler;
use orgplane_platform::replica::{RoleReplica, org_row};
use orgplane_proto::events::v1::Event;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::workspace::v1::ListWorkspacesRequest;
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DatabaseTransaction, QuerySelect, Set};
use tonic::transport::Channel;

use crate::accounts;
use crate::entity::{account, purged, workspace};

/// Organization events: the role replica plus billing accounts (BILL-2) and purges (BILL-5).
pub struct OrganizationEvents {
    replica: RoleReplica,
    audit: AuditLogWriter,
    clock: SharedClock,
}

impl OrganizationEvents {
    /// A handler around the shared `replica`.
    pub fn new(replica: RoleReplica, audit: AuditLogWriter, clock: SharedClock) -> Self {
        Self {
            replica,
            audit,
            clock,
        }
    }

    /// After a re-sync: accounts for organizations created while this service was away, and a
    /// purge for accounts whose organization is gone.
    async fn reconcile(&self, txn: &DatabaseTransaction) -> ApiResult<()> {
        let orgs = org_row::Entity::find().all(txn).await?;
        let known: HashSet<String> = orgs.iter().map(|o| o.organization_id.clone()).collect();
        let accounts: Vec<String> = account::Entity::find()
            .select_only()
            .column(account::Column::OrganizationId)
            .into_tuple()
            .all(txn)
            .await?;
        let now = self.clock.now();
        let with_account: HashSet<String> = accounts.iter().cloned().collect();
        for org in &orgs {
            if !with_account.contains(&org.organization_id) {
                accounts::create_for_organization(
                    txn,
                    &self.audit,
                    &org.organization_id,
                    &org.primary_email,
                    now,
                )
                .await?;
            }
        }
        for id in accounts.iter().filter(|id| !known.contains(*id)) {
            accounts::purge_organization(txn, &self.audit, id, now).await?;
        }
        Ok(())
    }
}

impl EventHandler for OrganizationEvents {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            self.replica.apply(txn, event).await?;
            match &event.payload {
                Some(Payload::OrganizationCreated(e)) => {
                    accounts::create_for_organization(
                        txn,
                        &self.audit,
                        &e.organization_id,
                        &e.primary_email,
                        self.clock.now(),
                    )
                    .await?;
                }
                Some(Payload::OrganizationPurged(e)) => {
                    accounts::purge_organization(
                        txn,
                        &self.audit,
                        &e.organization_id,
                        self.clock.now(),
                    )
                    .await?;
                }
                _ => {}
            }
            Ok(())
        })
    }

    fn resync<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move {
            let revision = self.replica.resync(txn).await?;
            self.reconcile(txn).await?;
            Ok(revision)
        })
    }

    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        Box::pin(self.replica.committed(events, resynced))
    }
}

/// Workspace events: names and archival of workspaces.
pub struct WorkspaceEvents {
    channel: Channel,
    tokens: Arc<dyn ServiceTokenSource>,
}

impl WorkspaceEvents {
    /// A handler that re-syncs from the workspace service over `channel`.
    pub fn new(channel: Channel, tokens: Arc<dyn ServiceTokenSource>) -> Self {
        Self { channel, tokens }
    }
}

async fn is_purged<C: ConnectionTrait>(db: &C, organization_id: &str) -> ApiResult<bool> {
    Ok(purged::Entity::find_by_id(organization_id.to_owned())
        .one(db)
        .await?
        .is_some())
}

async fn upsert_workspace<C: ConnectionTrait>(
    txn: &C,
    workspace_id: &str,
    organization_id: &str,
    name: &str,
    archive_time_ms: Option<i64>,
) -> ApiResult<()> {
    let mut update = vec![workspace::Column::OrganizationId, workspace::Column::Name];
    if archive_time_ms.is_some() {
        update.push(workspace::Column::ArchiveTimeMs);
    }
    workspace::Entity::insert(workspace::ActiveModel {
        workspace_id: Set(workspace_id.to_owned()),
        organization_id: Set(organization_id.to_owned()),
        name: Set(name.to_owned()),
        archive_time_ms: Set(archive_time_ms),
    })
    .on_conflict(
        OnConflict::column(workspace::Column::WorkspaceId)
            .update_columns(update)
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

fn event_time_ms(event: &Event) -> i64 {
    event
        .create_time
        .as_ref()
        .and_then(millis_of)
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
}

impl EventHandler for WorkspaceEvents {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let named = match &event.payload {
                Some(Payload::WorkspaceCreated(e)) => {
                    Some((&e.organization_id, &e.workspace_id, &e.name))
                }
                Some(Payload::WorkspaceUpdated(e)) => {
                    Some((&e.organization_id, &e.workspace_id, &e.name))
                }
                _ => None,
            };
            if let Some((org, id, name)) = named {
                if !is_purged(txn, org).await? {
                    upsert_workspace(txn, id, org, name, None).await?;
                }
                return Ok(());
            }
            let Some(Payload::WorkspaceArchived(e)) = &event.payload else {
                return Ok(());
            };
            if is_purged(txn, &e.organization_id).await? {
                return Ok(());
            }
            let existing = workspace::Entity::find_by_id(e.workspace_id.clone())
                .one(txn)
                .await?;
            let (org, name) = match &existing {
                Some(w) if w.archive_time_ms.is_some() => return Ok(()),
                Some(w) => (w.organization_id.as_str(), w.name.as_str()),
                None => (e.organization_id.as_str(), ""),
            };
            upsert_workspace(txn, &e.workspace_id, org, name, Some(event_time_ms(event))).await?;
            Ok(())
        })
    }

    fn resync<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move {
            let mut client = WorkspaceServiceClient::new(self.channel.clone())
                .max_decoding_message_size(64 * 1024 * 1024);
            let mut page_token = String::new();
            let mut revision = None;
            let mut rows = Vec::new();
            loop {
                let token = self.tokens.token().await?;
                let page = client
                    .list_workspaces(orgplane_platform::auth::outgoing(
                        ListWorkspacesRequest {
                            organization_id: "-".into(),
                            page_size: 1000,
                            page_token: page_token.clone(),
                            include_archived: true,
                            unit_id: String::new(),
                        },
                        Some(&token),
                        None,
                    ))
                    .await
                    .map_err(|s| {
                        ApiError::unavailable(
                            "SNAPSHOT_UNAVAILABLE",
                            format!("ListWorkspaces failed: {}", s.message()),
                        )
                    })?
                    .into_inner();
                revision.get_or_insert(page.revision);
                rows.extend(page.workspaces);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            let purged_orgs: HashSet<String> = purged::Entity::find()
                .select_only()
                .column(purged::Column::OrganizationId)
                .into_tuple()
                .all(txn)
                .await?
                .into_iter()
                .collect();
            workspace::Entity::delete_many().exec(txn).await?;
            for w in rows {
                if purged_orgs.contains(&w.organization_id) {
                    continue;
                }
                let archived = w.archive_time.as_ref().and_then(millis_of);
                upsert_workspace(txn, &w.id, &w.organization_id, &w.name, archived).await?;
            }
            Ok(revision.unwrap_or(0))
        })
    }
}
