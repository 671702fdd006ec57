//! How this service stays in step with the others: the consumer of identity's `UserDeleted`
//! (rule ID-9), `UserProfileChanged`, `UserEmailVerified` and `SessionsRevoked` (rule ID-4)
//! ([`identity`]) and of the
//! workspace service's workspace events (which units hold workspaces, rule ORG-9,
//! [`workspace`]); and the `ListRoleAssignments` snapshot other services re-sync from
//! ([`snapshot`]).
//!
//! When a producer compacted events this service had not applied, the consumer re-syncs
//! (list-then-watch): it notes a revision of the producer first, rebuilds what it keeps from the
//! producer's existing read RPCs (identity's `BatchGetUsers` for the members' users, the
//! workspace service's `ListWorkspaces` for the unit placements), and watches again from the
//! noted revision, re-applying the later events idempotently.

pub mod identity;
pub mod snapshot;
pub mod workspace;

use futures::future::BoxFuture;
use orgplane_platform::ApiResult;
use orgplane_platform::events::EventHandler;
use orgplane_proto::events::v1::{Event, Producer, event::Payload};
use sea_orm::DatabaseTransaction;

use crate::app::SharedApp;

/// Applies identity's and the workspace service's events to this service (one instance per
/// watched producer).
#[derive(Debug, Clone)]
pub struct Events {
    app: SharedApp,
    producer: Producer,
}

impl Events {
    /// A handler of `producer`'s events writing through `app`.
    pub fn new(app: SharedApp, producer: Producer) -> Self {
        Self { app, producer }
    }
}

impl EventHandler for Events {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            match &event.payload {
                Some(Payload::UserDeleted(e)) => {
                    self.app
                        .remove_deleted_user(txn, &event.request_id, &e.user_id)
                        .await
                }
                Some(Payload::UserProfileChanged(e)) => self.app.profile_changed(txn, e).await,
                Some(Payload::UserEmailVerified(e)) => {
                    self.app
                        .email_verified(txn, &event.request_id, &e.user_id, &e.email)
                        .await
                }
                Some(Payload::WorkspaceCreated(e)) => {
                    self.app
                        .place_workspace(txn, &e.organization_id, &e.workspace_id, &e.unit_id)
                        .await
                }
                Some(Payload::WorkspaceUpdated(e)) => {
                    self.app
                        .place_workspace(txn, &e.organization_id, &e.workspace_id, &e.unit_id)
                        .await
                }
                Some(Payload::SessionsRevoked(_)) => {
                    orgplane_platform::revocation::apply(txn, event).await
                }
                _ => Ok(()),
            }
        })
    }

    fn resync<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move {
            match self.producer {
                Producer::Workspace => self.app.resync_workspaces(txn).await,
                _ => self.app.resync_identity(txn).await,
            }
        })
    }

    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Ended sessions (identity's `SessionsRevoked`): refused by this process from now on.
            self.app
                .runtime
                .revocations
                .committed(&self.app.db, events, resynced)
                .await;
            // Wake this service's own watchers for the MemberRemoved events just committed.
            if let Ok(head) = self.app.outbox.head().await {
                self.app.outbox.committed(head.revision);
            }
        })
    }
}
