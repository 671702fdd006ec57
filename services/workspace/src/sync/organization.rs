//! The consumer of the organization service's events: the shared org-role replica, and this
//! service's data in the same transaction (WS-9: a removed member loses their direct roles, a
//! purged organization loses its workspaces).

use std::collections::HashSet;
use std::sync::Mutex;

use futures::future::BoxFuture;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::error::ApiResult;
use orgplane_platform::events::handlers::{OrgEventsExtension, OrgRoleEvents};
use orgplane_platform::replica::{RoleReplica, member_row, org_row};
use orgplane_proto::events::v1::Event;
use orgplane_proto::events::v1::event::Payload;
use sea_orm::DatabaseTransaction;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Query;

use super::{note, purge_organization, refresh_touched, reload_all, remove_members};
use crate::store::entity::{member, workspace};
use crate::store::memory::Memory;

/// What the workspace service adds to the shared role replica's handling of organization
/// events (wrapped in [`OrgRoleEvents`]).
pub struct OrgEvents {
    memory: Memory,
    audit: AuditLogWriter,
    touched: Mutex<HashSet<String>>,
}

impl OrgEvents {
    /// The handler of organization events: `replica`, then this service's tables and memory.
    pub fn handler(
        replica: RoleReplica,
        memory: Memory,
        audit: AuditLogWriter,
    ) -> OrgRoleEvents<OrgEvents> {
        OrgRoleEvents::new(replica, Self::new(memory, audit))
    }

    fn new(memory: Memory, audit: AuditLogWriter) -> Self {
        Self {
            memory,
            audit,
            touched: Mutex::new(HashSet::new()),
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
                _ => {}
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
                return;
            }
            refresh_touched(&self.memory, &self.touched).await;
            for event in events {
                if let Some(Payload::OrganizationPurged(e)) = &event.payload {
                    self.memory.forget_keys_of(&e.organization_id);
                }
            }
        })
    }
}
