//! The event handlers several services share, written once:
//!
//! - [`OrgRoleEvents`]: the organization-role replica every consumer of the organization's
//!   stream keeps, with the service's own additions ([`OrgEventsExtension`]) applied in the
//!   same transaction and after the same commit;
//! - [`RevocationEvents`]: identity's stream for a service that needs only the ended sessions
//!   and deactivated keys from it;
//! - [`read_snapshot`]: the paginated list-then-watch re-sync loop over a producer's snapshot RPC.

use std::future::Future;
use std::sync::Arc;

use crate::clients::ServiceChannel;
use futures::future::BoxFuture;
use orgplane_proto::events::v1::{Event, Producer};
use sea_orm::{DatabaseConnection, DatabaseTransaction};

use crate::clients::ServiceTokenSource;
use crate::error::Reason;
use crate::error::{ApiError, ApiResult};
use crate::events::{EventHandler, ProcessSpans};
use crate::replica::{Merge, RoleReplica};
use crate::revocation::{SessionRevocations, apply};

/// What a service does with organization events besides keeping the role replica.
pub trait OrgEventsExtension: Send + Sync + 'static {
    /// Applies `event` in `txn`, after the replica applied it. In a run of events that only set
    /// members' roles, the replica writes the whole run first: the extension then sees the
    /// replica's tables as of the run's last event.
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        let _ = (txn, event);
        Box::pin(async { Ok(()) })
    }

    /// Moves what the service holds of each merged candidate to its prime (rule ORG-15) after a
    /// re-sync whose snapshot reports `merges` — the `OrganizationsMerged` events were compacted
    /// before this consumer applied them. Runs in the re-sync's transaction, before
    /// [`Self::reconcile`] (which would otherwise treat what a candidate held as gone); must be
    /// harmless when the merge was already applied.
    fn reconcile_merges<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        merges: &'a [Merge],
    ) -> BoxFuture<'a, ApiResult<()>> {
        let _ = (txn, merges);
        Box::pin(async { Ok(()) })
    }

    /// Brings the service's own tables in line with a snapshot the replica just re-synced from
    /// (in the same transaction).
    fn reconcile<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<()>> {
        let _ = txn;
        Box::pin(async { Ok(()) })
    }

    /// Runs after the commit, once the replica's memory caught up (see
    /// [`EventHandler::committed`]).
    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        let _ = (events, resynced);
        Box::pin(async {})
    }
}

/// A replica with nothing added.
impl OrgEventsExtension for () {}

/// The organization-role replica and a service's additions, as one [`EventHandler`].
pub struct OrgRoleEvents<X> {
    replica: RoleReplica,
    extension: X,
}

impl<X: OrgEventsExtension> OrgRoleEvents<X> {
    /// A handler keeping `replica`, then running `extension`.
    pub fn new(replica: RoleReplica, extension: X) -> Self {
        Self { replica, extension }
    }
}

impl<X: OrgEventsExtension> EventHandler for OrgRoleEvents<X> {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            self.replica.apply(txn, event).await?;
            self.extension.apply(txn, event).await
        })
    }

    /// A run of events that only set members' roles (a burst of role changes) is written with
    /// one statement ([`RoleReplica::apply_member_roles`]) before the extension applies each of
    /// them in its span; any other event is applied alone.
    fn apply_batch<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        events: &'a [Event],
        spans: &'a ProcessSpans,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let mut rest = events;
            while !rest.is_empty() {
                let run = rest
                    .iter()
                    .take_while(|e| RoleReplica::member_role_set_by(e).is_some())
                    .count();
                if run < 2 {
                    let (one, after) = rest.split_at(1);
                    spans.each(one, |event| self.apply(txn, event)).await?;
                    rest = after;
                    continue;
                }
                let (run, after) = rest.split_at(run);
                self.replica.apply_member_roles(txn, run).await?;
                spans
                    .each(run, |event| self.extension.apply(txn, event))
                    .await?;
                rest = after;
            }
            Ok(())
        })
    }

    fn resync<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move {
            let (revision, merges) = self.replica.resync_with_merges(txn).await?;
            self.extension.reconcile_merges(txn, &merges).await?;
            self.extension.reconcile(txn).await?;
            Ok(revision)
        })
    }

    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.replica.committed(events, resynced).await;
            self.extension.committed(events, resynced).await;
        })
    }
}

/// One page of a producer's snapshot RPC.
#[derive(Debug)]
pub struct SnapshotPage<T> {
    /// The page's items.
    pub items: Vec<T>,
    /// The producer revision the snapshot is consistent at.
    pub revision: i64,
    /// The next page's token; empty on the last page.
    pub next_page_token: String,
}

/// Reads a whole snapshot through `fetch(page_token, service_token)` and returns the revision
/// of its first page with every item. A failed page is UNAVAILABLE `SNAPSHOT_UNAVAILABLE`
/// naming `rpc` (the consumer retries the re-sync after its backoff).
pub async fn read_snapshot<T, F, Fut>(
    tokens: &dyn ServiceTokenSource,
    rpc: &str,
    mut fetch: F,
) -> ApiResult<(i64, Vec<T>)>
where
    F: FnMut(String, Option<String>) -> Fut,
    Fut: Future<Output = Result<SnapshotPage<T>, tonic::Status>>,
{
    let mut page_token = String::new();
    let mut revision = None;
    let mut items = Vec::new();
    loop {
        let token = tokens.token().await?;
        let page = fetch(page_token, token).await.map_err(|s| {
            ApiError::unavailable(
                Reason::SnapshotUnavailable,
                format!("{rpc} failed: {}", s.message()),
            )
        })?;
        revision.get_or_insert(page.revision);
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok((revision.unwrap_or(0), items))
}

/// The consumer of identity's stream for a service that needs nothing else from it: applies
/// `SessionsRevoked` into its database and the process's [`SessionRevocations`], and notes key
/// deactivations there.
pub struct RevocationEvents {
    db: DatabaseConnection,
    revocations: Arc<SessionRevocations>,
    identity: ServiceChannel,
    tokens: Arc<dyn ServiceTokenSource>,
}

impl RevocationEvents {
    /// A handler writing into `db` and `revocations`; `identity` and `tokens` serve a re-sync.
    pub fn new(
        db: DatabaseConnection,
        revocations: Arc<SessionRevocations>,
        identity: impl Into<ServiceChannel>,
        tokens: Arc<dyn ServiceTokenSource>,
    ) -> Self {
        let identity: ServiceChannel = identity.into();
        Self {
            db,
            revocations,
            identity,
            tokens,
        }
    }
}

impl EventHandler for RevocationEvents {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(apply(txn, event))
    }

    fn resync<'a>(&'a self, _txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move {
            // Revocations matter for minutes, identity keeps events for days: everything still
            // relevant follows the compaction point, so watching from there loses nothing.
            crate::events::consumer::compacted_through(
                &self.identity,
                self.tokens.as_ref(),
                Producer::Identity,
            )
            .await
        })
    }

    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        Box::pin(self.revocations.committed(&self.db, events, resynced))
    }
}
