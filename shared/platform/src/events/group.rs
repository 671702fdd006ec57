//! Group commit for the write units of one producer database ([`super::WriteUnit::begin_grouped`]).
//!
//! Every unit appending an event takes the outbox counter's row lock until it commits (PostgreSQL)
//! or the database's write lock (SQLite), so the units of a producer commit one after the other,
//! and each commit is a WAL flush: on this kind of machine about 3 ms on PostgreSQL (fdatasync), so
//! at most ~300–500 mutations per second however many arrive at once; on SQLite the writers that
//! lose the race for the lock sleep in SQLite's busy handler (1, 2, 5, 10 … ms) instead of queueing.
//!
//! Here the units of a producer queue in order (a fair async mutex) for one open transaction: each
//! runs its statements in a savepoint of it (a unit that fails rolls back its savepoint only), and
//! a committer task, queued behind the units waiting when the first of them finished, commits them
//! all at once and then tells each its outcome. A unit is answered only after that commit, so an
//! acknowledged write is as durable as before; when the commit fails, every unit of the group gets
//! the error (none of their writes is kept). A lone unit costs one savepoint and one task more.
//!
//! On by default on both backends. On PostgreSQL the statements of a group run one after the
//! other on one connection, which once measured slower than separate transactions (116 against
//! ~500 role changes/s); since a unit writes its rows at commit in one statement and numbers its
//! events after the group's last, `role_burst` measured 1,144–1,236 role changes/s grouped against
//! 561–590 not grouped, probe p99 25–27 ms against 1.1–1.5 s. The price on PostgreSQL: a group holds the
//! counter's row lock from its first event to its commit, so a unit of its own that locks a row
//! and then appends, while a grouped unit waits for that row, deadlocks; PostgreSQL breaks it after
//! `deadlock_timeout` (1 s), and the unit it rolls back answers ABORTED `CONCURRENT_RETRY`.
//!
//! The savepoint is this module's own (`SAVEPOINT unit`), not sqlx's nested transactions: sqlx
//! rolls back the *enclosing* transaction when a nested `begin` fails or is cancelled (say, a
//! client gives up while the connection is still busy with the statement of the unit before),
//! after which its `commit` of the group answers success without sending anything, and every
//! unit released into the group was acknowledged and lost. Here at most one savepoint exists in
//! the group's transaction: the turn's own, or an empty one begun for the next unit. A unit hands
//! its turn over with `RELEASE SAVEPOINT unit; SAVEPOINT unit` (on SQLite in the same round trip
//! as its deferred rows), so the next unit starts without a round trip of its own. A turn that
//! ends without handing over (an error, a cancelled call, a dead connection) is rolled back to by
//! whoever uses the transaction next (the next unit, or the committer), which leaves the empty
//! savepoint for the next unit; when that fails, or when a unit was cancelled in the middle of
//! its hand-over (whether its savepoint was released is then unknown), the group fails as a
//! whole: every unit of it is told to retry, and nothing of it is kept.
//!
//! Only mutations whose checks hold inside their transaction may be grouped — optimistic version
//! conditions in the statements themselves, or reads on the unit — since their reads on other
//! connections do not see what earlier units of the same open group wrote.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard, watch};

use super::Outbox;
use crate::db::WriteTransaction;
use crate::error::{ApiError, ApiResult, Reason};

/// How long a unit waits for its turn in the open transaction before it answers UNAVAILABLE: the
/// busy timeout of the SQLite connections, so a stuck group fails calls as a held lock did.
const TURN_TIMEOUT: Duration = Duration::from_secs(5);

/// Units released into one group at most; the next unit commits the group first. Each unit's
/// savepoint that writes takes a subtransaction id on PostgreSQL, and past 64 in one
/// transaction its per-backend cache of them overflows, after which every other session's
/// visibility checks look them up in `pg_subtrans` (a known slowdown of busy servers). A group
/// of 64 still shares one commit among 64 changes.
const MAX_UNITS: u64 = 64;

/// Counts of group commits, to show (and test) that units share commits.
#[derive(Debug, Default)]
pub struct GroupStats {
    /// Group transactions committed.
    pub commits: AtomicU64,
    /// Units whose savepoint was released into a group (committed with it, or failed with it).
    pub units: AtomicU64,
    /// Units waiting for their turn right now.
    pub queued: AtomicUsize,
}

/// The outcome of a group, once committed or failed.
type Outcome = Option<ApiResult<()>>;

/// The open transaction of a group and what its units are told.
struct Open {
    txn: WriteTransaction,
    done: watch::Sender<Outcome>,
    /// The last revision appended by a unit of the group: the counter's value when it commits.
    revision: Option<i64>,
    /// The counter row's value in the transaction (units number their events past `revision`
    /// without storing it; the committer stores it).
    stored: Option<i64>,
    /// Units released into the group.
    units: u64,
    /// An empty savepoint is begun for the next unit.
    ready: bool,
    /// A turn ended in its savepoint: rolled back to before the transaction is used again.
    unreleased: bool,
    /// A turn was cancelled in the middle of its hand-over: the group cannot be committed.
    broken: bool,
}

impl Open {
    fn new(txn: WriteTransaction) -> Self {
        Self {
            txn,
            done: watch::channel(None).0,
            revision: None,
            stored: None,
            units: 0,
            ready: false,
            unreleased: false,
            broken: false,
        }
    }

    /// Takes back what a failed or cancelled turn left in the transaction. A savepoint stays,
    /// empty, after it is rolled back to: this can be repeated, and the next unit starts in it.
    async fn recover(&mut self) -> Result<(), DbErr> {
        if self.broken {
            return Err(DbErr::Custom(
                "a unit was cancelled while it handed its turn over".into(),
            ));
        }
        if self.unreleased {
            self.txn
                .execute_unprepared("ROLLBACK TO SAVEPOINT unit")
                .await?;
            self.unreleased = false;
            self.ready = true;
        }
        Ok(())
    }

    /// Ends a group whose transaction cannot be committed: it is rolled back and every unit
    /// released into it is told to retry.
    fn fail(self, cause: &DbErr) {
        tracing::warn!(error = %cause, units = self.units, "a group commit's transaction failed");
        self.done.send_replace(Some(Err(ApiError::unavailable(
            Reason::DatabaseUnavailable,
            "the database transaction this change shared with others failed; nothing of it was kept, retry",
        )
        .retry_after(Duration::from_secs(1)))));
    }
}

/// The group commit of one outbox's database; cloned with the [`Outbox`].
#[derive(Clone, Default)]
pub(crate) struct Groups {
    /// Grouped units really share transactions (off: each is an ordinary unit).
    on: bool,
    slot: Arc<Mutex<Option<Open>>>,
    /// A committer task is queued for the slot.
    committer: Arc<AtomicBool>,
    stats: Arc<GroupStats>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A unit's place in an open group: exclusive use of the group's transaction, in the unit's
/// savepoint, until it is released or dropped.
pub(crate) struct Turn {
    guard: OwnedMappedMutexGuard<Option<Open>, Open>,
    stage: Stage,
    done: watch::Receiver<Outcome>,
    groups: Groups,
    outbox: Outbox,
}

/// Where a turn's savepoint stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Open (or being begun): the unit's writes can be rolled back to it.
    Open,
    /// The hand-over was sent and has not answered: released or not, nobody knows.
    HandingOver,
    /// Released: the unit's writes are the group's.
    HandedOver,
}

/// Kicks a committer when dropped, unless disarmed: a join that fails or is cancelled after
/// it took the slot may leave a group open.
struct KickOnDrop<'a> {
    groups: &'a Groups,
    outbox: &'a Outbox,
    armed: bool,
}

impl Drop for KickOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.groups.kick(self.outbox);
        }
    }
}

impl Groups {
    /// The counters.
    pub(crate) fn stats(&self) -> Arc<GroupStats> {
        self.stats.clone()
    }

    /// The group commit of a new outbox, on or off.
    pub(crate) fn new(on: bool) -> Self {
        Self {
            on,
            ..Self::default()
        }
    }

    /// Whether grouped units of this outbox share transactions.
    pub(crate) fn enabled(&self) -> bool {
        self.on
    }

    /// Waits for the turn in `outbox`'s open group (opening one when none is), and returns it
    /// with the unit's savepoint begun.
    pub(crate) async fn join(&self, outbox: &Outbox) -> ApiResult<Turn> {
        let mut slot = {
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
            let queued = self.stats.clone();
            let _count = scopeguard(move || {
                queued.queued.fetch_sub(1, Ordering::Relaxed);
            });
            tokio::time::timeout(TURN_TIMEOUT, self.slot.clone().lock_owned())
                .await
                .map_err(|_| {
                    ApiError::unavailable(
                        Reason::DatabaseUnavailable,
                        "the database is busy; retry",
                    )
                    .retry_after(Duration::from_secs(1))
                })?
        };
        let mut kick = KickOnDrop {
            groups: self,
            outbox,
            armed: true,
        };
        if let Some(open) = slot.as_mut()
            && let Err(cause) = open.recover().await
            && let Some(open) = slot.take()
        {
            open.fail(&cause);
        }
        if slot.as_ref().is_some_and(|open| open.units >= MAX_UNITS)
            && let Some(full) = slot.take()
        {
            // Committed by a task of its own: this call being cancelled must not leave the
            // group's units without an outcome.
            let (groups, outbox) = (self.clone(), outbox.clone());
            if let Err(e) = tokio::spawn(async move { groups.finish(&outbox, full).await }).await {
                // Its units answer UNAVAILABLE: the group ended without an outcome.
                tracing::error!(error = %e, "committing a full group failed");
            }
        }
        if slot.is_none() {
            let txn = crate::db::begin_write(outbox.connection()).await?;
            *slot = Some(Open::new(txn));
        }
        let mut guard = OwnedMutexGuard::try_map(slot, Option::as_mut)
            .map_err(|_| ApiError::internal("a group without its transaction"))?;
        let begun = std::mem::take(&mut guard.ready);
        let done = guard.done.subscribe();
        kick.armed = false;
        let turn = Turn {
            guard,
            stage: Stage::Open,
            done,
            groups: self.clone(),
            outbox: outbox.clone(),
        };
        if !begun {
            turn.guard.txn.execute_unprepared("SAVEPOINT unit").await?;
        }
        Ok(turn)
    }

    /// Queues a committer behind the units waiting now, unless one is queued already. It commits
    /// whatever group is open when its turn comes.
    fn kick(&self, outbox: &Outbox) {
        if self.committer.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (process exit): the open transaction rolls back when it is dropped.
            self.committer.store(false, Ordering::Release);
            return;
        };
        let groups = self.clone();
        let outbox = outbox.clone();
        runtime.spawn(async move {
            let mut slot = groups.slot.clone().lock_owned().await;
            groups.committer.store(false, Ordering::Release);
            if let Some(open) = slot.take() {
                groups.finish(&outbox, open).await;
            }
        });
    }

    /// Commits `open` (or rolls it back, when no unit was released into it) and tells its units
    /// the outcome.
    async fn finish(&self, outbox: &Outbox, mut open: Open) {
        if let Err(cause) = open.recover().await {
            open.fail(&cause);
            return;
        }
        let outcome = if open.units == 0 {
            open.txn.rollback().await.map_err(ApiError::from)
        } else {
            store_and_commit(open.txn, open.revision, open.stored).await
        };
        if outcome.is_ok() {
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            if let Some(revision) = open.revision {
                outbox.committed(revision);
            }
        }
        open.done.send_replace(Some(outcome));
    }
}

/// Stores the counter the group's units advanced (when they numbered events past the row's
/// value) and commits the group's transaction.
async fn store_and_commit(
    txn: WriteTransaction,
    revision: Option<i64>,
    stored: Option<i64>,
) -> ApiResult<()> {
    use sea_orm::ConnectionTrait;
    if let Some(revision) = revision
        && stored != Some(revision)
    {
        let backend = txn.get_database_backend();
        txn.execute_raw(Outbox::head_update(backend, revision))
            .await?;
    }
    txn.commit().await.map_err(ApiError::from)
}

impl Turn {
    /// What ends a unit's turn: its savepoint released, and the next unit's begun.
    pub(crate) const HAND_OVER: [&'static str; 2] = ["RELEASE SAVEPOINT unit", "SAVEPOINT unit"];

    /// The last revision a unit of the group appended, once one did: the next unit numbers its
    /// events after it.
    pub(crate) fn head(&self) -> Option<i64> {
        self.guard.revision
    }

    /// The group's transaction, in which the unit's savepoint is open.
    pub(crate) fn txn(&self) -> &DatabaseTransaction {
        &self.guard.txn
    }

    /// Marks the hand-over ([`Turn::HAND_OVER`]) as sent: a turn dropped before
    /// [`Turn::handed_over`] or [`Turn::hand_over_failed`] was cancelled while it ran, and fails
    /// its group.
    pub(crate) fn handing_over(&mut self) {
        self.stage = Stage::HandingOver;
    }

    /// The hand-over answered an error: the savepoint was not released (or the next one not
    /// begun, and rolling back to it will fail the group), so the next user rolls back to it.
    pub(crate) fn hand_over_failed(&mut self) {
        self.stage = Stage::Open;
    }

    /// After the hand-over succeeded (`revision`: the last event the unit appended; `stored`: the
    /// counter's value it stored, if it took one): hands the turn on and waits for the group's
    /// commit.
    pub(crate) async fn handed_over(
        mut self,
        revision: Option<i64>,
        stored: Option<i64>,
    ) -> ApiResult<()> {
        self.stage = Stage::HandedOver;
        let open = &mut *self.guard;
        open.ready = true;
        open.units += 1;
        if revision.is_some() {
            open.revision = revision;
        }
        if stored.is_some() {
            open.stored = stored;
        }
        self.groups.stats.units.fetch_add(1, Ordering::Relaxed);
        let mut done = self.done.clone();
        drop(self);
        let outcome = done.wait_for(Option::is_some).await.map_err(|_| {
            ApiError::unavailable(
                Reason::DatabaseUnavailable,
                "the group commit ended without an outcome; retry",
            )
        })?;
        outcome.clone().unwrap_or(Ok(()))
    }
}

impl Drop for Turn {
    /// A turn ends (handed over, failed or cancelled): what it did not hand over is taken back by
    /// the next user of the transaction, and a committer comes for the open group.
    fn drop(&mut self) {
        match self.stage {
            Stage::Open => self.guard.unreleased = true,
            Stage::HandingOver => self.guard.broken = true,
            Stage::HandedOver => {}
        }
        self.groups.kick(&self.outbox);
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
