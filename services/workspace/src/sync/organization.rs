//! The consumer of the organization service's events: the shared org-role replica, and this
//! service's data in the same transaction (WS-9: a removed member loses their direct roles, a
//! purged organization loses its workspaces; ORG-15: a merged candidate's workspaces, direct
//! roles and API keys move to the prime, see [`super::merge`]).

use std::collections::HashSet;
use std::sync::Mutex;

use futures::future::BoxFuture;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::error::ApiResult;
use orgplane_platform::events::Outbox;
use orgplane_platform::events::handlers::{OrgEventsExtension, OrgRoleEvents};
use orgplane_platform::replica::{Merge, RoleReplica, member_row, org_row};
use orgplane_proto::events::v1::Event;
use orgplane_proto::events::v1::event::Payload;
use sea_orm::DatabaseTransaction;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Query;

use super::merge::move_candidate;
use super::{note, purge_organization, refresh_touched, reload_all, remove_members};
use crate::store::entity::{member, workspace};
use crate::store::memory::Memory;

/// What the workspace service adds to the shared role replica's handling of organization
/// events (wrapped in [`OrgRoleEvents`]).
pub struct OrgEvents {
    memory: Memory,
    audit: AuditLogWriter,
    outbox: Outbox,
    touched: Mutex<HashSet<String>>,
    /// Set when a transaction appended to this service's outbox (a merge's `WorkspaceUpdated`).
    published: std::sync::atomic::AtomicBool,
}

impl OrgEvents {
    /// The handler of organization events: `replica`, then this service's tables and memory.
    /// `outbox` publishes the `WorkspaceUpdated` of workspaces a merge moved.
    pub fn handler(
        replica: RoleReplica,
        memory: Memory,
        audit: AuditLogWriter,
        outbox: Outbox,
    ) -> OrgRoleEvents<OrgEvents> {
        OrgRoleEvents::new(replica, Self::new(memory, audit, outbox))
    }

    fn new(memory: Memory, audit: AuditLogWriter, outbox: Outbox) -> Self {
        Self {
            memory,
            audit,
            outbox,
            touched: Mutex::new(HashSet::new()),
            published: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Moves what a merged candidate holds here to its prime (rule ORG-15).
    async fn merge(
        &self,
        txn: &DatabaseTransaction,
        merge: &Merge,
        request_id: &str,
    ) -> ApiResult<()> {
        let moved = move_candidate(txn, &self.audit, &self.outbox, merge, request_id).await?;
        if !moved.workspace_ids.is_empty() {
            self.published
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if moved.changed {
            note(&self.touched, &merge.candidate_organization_id);
            note(&self.touched, &merge.prime_organization_id);
        }
        Ok(())
    }

    /// Wakes this service's stream watchers after a commit that published.
    async fn announce(&self) {
        if !self
            .published
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        match self.outbox.head().await {
            Ok(head) => self.outbox.committed(head.revision),
            Err(e) => tracing::warn!(error = %e, "reading the outbox head failed"),
        }
    }
}

impl OrgEventsExtension for OrgEvents {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            match &event.payload {
                Some(Payload::MemberRemoved(e)) => {
                    let filter = sea_orm::Condition::all()
                        .add(member::Column::OrganizationId.eq(&e.organization_id))
                        .add(member::Column::UserId.eq(&e.user_id));
                    for org in
                        remove_members(txn, &self.audit, filter, "organization_member_removed")
                            .await?
                    {
                        note(&self.touched, &org);
                    }
                }
                Some(Payload::OrganizationPurged(e)) => {
                    purge_organization(txn, &e.organization_id).await?;
                    note(&self.touched, &e.organization_id);
                }
                Some(Payload::OrganizationsMerged(e)) => {
                    if let Some(merge) = Merge::of(e) {
                        self.merge(txn, &merge, &event.request_id).await?;
                    }
                }
                _ => {}
            }
            Ok(())
        })
    }

    fn reconcile_merges<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        merges: &'a [Merge],
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            for merge in merges {
                self.merge(txn, merge, "").await?;
            }
            Ok(())
        })
    }

    fn reconcile<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            // Organizations that are gone were purged while the events were compacted.
            let gone: Vec<String> = workspace::Entity::find()
                .filter(
                    workspace::Column::OrganizationId.not_in_subquery(
                        Query::select()
                            .column(org_row::Column::OrganizationId)
                            .from(org_row::Entity)
                            .to_owned(),
                    ),
                )
                .all(txn)
                .await?
                .into_iter()
                .map(|w| w.organization_id)
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            for org in gone {
                purge_organization(txn, &org).await?;
            }
            // Direct roles of people who are no longer members were removed meanwhile.
            let members: HashSet<(String, String)> = member_row::Entity::find()
                .all(txn)
                .await?
                .into_iter()
                .map(|m| (m.organization_id, m.user_id))
                .collect();
            let stale: Vec<member::Model> = member::Entity::find()
                .all(txn)
                .await?
                .into_iter()
                .filter(|m| !members.contains(&(m.organization_id.clone(), m.user_id.clone())))
                .collect();
            for m in stale {
                let filter = sea_orm::Condition::all()
                    .add(member::Column::WorkspaceId.eq(&m.workspace_id))
                    .add(member::Column::UserId.eq(&m.user_id));
                remove_members(txn, &self.audit, filter, "organization_member_removed").await?;
            }
            Ok(())
        })
    }

    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if resynced {
                reload_all(&self.memory, &self.touched).await;
                self.announce().await;
                return;
            }
            refresh_touched(&self.memory, &self.touched).await;
            for event in events {
                match &event.payload {
                    Some(Payload::OrganizationPurged(e)) => {
                        self.memory.forget_keys_of(&e.organization_id);
                    }
                    Some(Payload::OrganizationsMerged(e)) => {
                        if let Some(m) = Merge::of(e) {
                            self.memory
                                .move_keys(&m.candidate_organization_id, &m.prime_organization_id);
                        }
                    }
                    _ => {}
                }
            }
            self.announce().await;
        })
    }
}
