//! Write transactions, and the queue that SQLite writers of one file wait in.
//!
//! SQLite has one writer at a time. A `BEGIN IMMEDIATE` that finds the lock taken waits in
//! SQLite's busy handler, which sleeps 1, 2, 5, 10 … up to 100 ms between attempts on the
//! connection's thread: the lock is often free long before the waiter wakes, and every waiter
//! holds one of the pool's few connections while it sleeps. So the writers of a file opened by
//! [`super::connect`] first queue in this process, in order, on the file's [`WriteTurn`]; the
//! one at the head takes a connection and begins, and the next is woken when it commits or
//! rolls back. The busy handler stays as the fallback for writers this queue does not see
//! (another process, another pool on the file, or a turn waited for longer than
//! [`TURN_PATIENCE`]).
//!
//! Checkpoints (copying the WAL back into the database file) run outside the turn. SQLite's
//! automatic checkpoint runs inside the `COMMIT` that crosses its threshold, so the writer
//! holding the turn did it while every other writer waited: about a fifth of ingestion's time
//! (the bench's `usage_ingest_and_report`, 34–36k records/s with it, 44k without any
//! checkpoint). Every [`CHECKPOINT_EVERY`] commits of queued writers, one `PRAGMA
//! wal_checkpoint(PASSIVE)` runs on a task of its own after the turn has passed on, at most one
//! per file at a time; it copies what it can without waiting for readers or writers. The
//! automatic checkpoint stays as a backstop at [`super::SQLITE_AUTOCHECKPOINT_PAGES`], for
//! writers outside the queue. SQLite starts the WAL over only when a writer begins and finds it
//! wholly copied; under sustained writes that moment can wait for the backstop's checkpoint
//! (cheap then: little is left to copy), so a busy file's WAL grows to about 40 MB.
//! Measured, 4 pairs against the queue alone: ingestion 1.00–1.32× (36.8/32.6/33.8/36.4k →
//! 37.7/43.1/38.5/36.5k records/s); `role_burst` 1.05, 1.01.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait,
};
use tokio::sync::OwnedMutexGuard;

/// The write queue of one SQLite file in this process, and its checkpoints.
#[derive(Debug, Default)]
struct File {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Commits since the last checkpoint began.
    commits: AtomicU32,
    /// A checkpoint of the file is running.
    checkpointing: AtomicBool,
}

impl File {
    /// Counts a commit of `db`, with the turn passed on; every [`CHECKPOINT_EVERY`] commits
    /// starts a checkpoint unless one is running.
    fn committed(self: &Arc<Self>, db: &DatabaseConnection) {
        if self.commits.fetch_add(1, Ordering::Relaxed) + 1 < CHECKPOINT_EVERY
            || self.checkpointing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.commits.store(0, Ordering::Relaxed);
        let (file, db) = (self.clone(), db.clone());
        tokio::spawn(async move {
            if let Err(e) = db
                .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
                .await
            {
                // The next one copies what this one did not.
                tracing::debug!(error = %e, "WAL checkpoint failed");
            }
            file.checkpointing.store(false, Ordering::Release);
        });
    }
}

/// Commits of queued writers between two checkpoints of a file (see the module docs): a
/// thousand-record ingestion batch adds about a hundred pages to the WAL, a role change a few.
pub(super) const CHECKPOINT_EVERY: u32 = 32;

/// The queue of every SQLite file [`super::connect`] opened, by the file name its pool opens.
static TURNS: LazyLock<Mutex<HashMap<PathBuf, Arc<File>>>> = LazyLock::new(Default::default);

/// How long a writer waits in the queue before it begins anyway and waits in SQLite's busy
/// handler instead: the busy timeout, so a writer stuck holding the lock fails its waiters as
/// it did without the queue, never hangs them.
pub(super) const TURN_PATIENCE: Duration = Duration::from_secs(5);

/// Gives the SQLite file `db` opens a write queue (see the module docs).
pub(super) fn queue_writers(db: &DatabaseConnection) {
    let file = db
        .get_sqlite_connection_pool()
        .connect_options()
        .get_filename()
        .to_owned();
    TURNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(file)
        .or_default();
}

/// The write queue of `db`'s file, if it has one.
fn file_of(db: &DatabaseConnection) -> Option<Arc<File>> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    let options = db.get_sqlite_connection_pool().connect_options();
    let file: &Path = options.get_filename();
    TURNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(file)
        .cloned()
}

/// A transaction begun by [`begin_write`]: a [`DatabaseTransaction`] (it derefs to one) that
/// holds its file's write turn until it commits, rolls back or is dropped.
#[derive(Debug)]
pub struct WriteTransaction {
    // Dropped before the turn: an abandoned transaction starts its rollback first.
    txn: DatabaseTransaction,
    turn: Option<OwnedMutexGuard<()>>,
    /// The queued file and its pool, for the checkpoints after commits.
    file: Option<(Arc<File>, DatabaseConnection)>,
}

impl WriteTransaction {
    /// Commits, hands the turn to the next writer, then counts the commit towards the file's
    /// next checkpoint.
    pub async fn commit(self) -> Result<(), DbErr> {
        let Self { txn, turn, file } = self;
        txn.commit().await?;
        drop(turn);
        if let Some((file, db)) = file {
            file.committed(&db);
        }
        Ok(())
    }

    /// Rolls back, then hands the turn to the next writer.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl Deref for WriteTransaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

/// Statements run in the transaction, as on the [`DatabaseTransaction`] it derefs to: a
/// `&WriteTransaction` goes wherever a connection is asked for.
#[async_trait::async_trait]
impl ConnectionTrait for WriteTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }
}

/// Begins a transaction that will write. On SQLite it starts as `BEGIN IMMEDIATE`, taking the
/// write lock up front: a deferred transaction that reads and then writes fails at once with
/// SQLITE_BUSY when another connection committed in between, while an immediate one waits its
/// turn, in this process's queue of the file (module docs), then in the busy handler. On
/// PostgreSQL it is an ordinary transaction. Use it for every mutation.
pub async fn begin_write(db: &DatabaseConnection) -> Result<WriteTransaction, DbErr> {
    begin(db, true).await
}

/// [`begin_write`], in the file's queue if `queued` (the tests' control arm begins without).
async fn begin(db: &DatabaseConnection, queued: bool) -> Result<WriteTransaction, DbErr> {
    let backend = db.get_database_backend();
    let file = file_of(db).filter(|_| queued);
    let turn = match &file {
        Some(file) => tokio::time::timeout(TURN_PATIENCE, file.turn.clone().lock_owned())
            .await
            .ok(),
        None => None,
    };
    let txn = db
        .begin_with_options(sea_orm::TransactionOptions {
            sqlite_transaction_mode: (backend == DbBackend::Sqlite)
                .then_some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    Ok(WriteTransaction {
        txn,
        turn,
        file: file.map(|file| (file, db.clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{SQLITE_CONNECTIONS, connect, default_sqlite_url};

    /// Writers waiting for the write lock hold none of the pool's connections: with more of them
    /// queued behind a long write than the pool has connections, a read still gets one at once.
    /// Control: writers that begin outside the queue each wait in SQLite's busy handler on a
    /// connection of their own, and the read finds none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writers_leave_the_pool_to_readers() {
        for queued in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let db = connect(&default_sqlite_url(dir.path(), "svc"))
                .await
                .unwrap();
            db.execute_unprepared("CREATE TABLE t (x INTEGER)")
                .await
                .unwrap();
            let long = begin(&db, queued).await.unwrap();
            long.execute_unprepared("INSERT INTO t VALUES (0)")
                .await
                .unwrap();
            let writers: Vec<_> = (1..=SQLITE_CONNECTIONS + 2)
                .map(|i| {
                    let db = db.clone();
                    tokio::spawn(async move {
                        let txn = begin(&db, queued).await?;
                        txn.execute_unprepared(&format!("INSERT INTO t VALUES ({i})"))
                            .await?;
                        txn.commit().await
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let read = tokio::time::timeout(
                Duration::from_secs(1),
                db.execute_unprepared("SELECT count(*) FROM t"),
            )
            .await;
            long.commit().await.unwrap();
            for w in writers {
                w.await.unwrap().unwrap();
            }
            if queued {
                read.expect("a read waited for a connection behind queued writers")
                    .unwrap();
            } else {
                assert!(
                    read.is_err(),
                    "control: writers in the busy handler left a connection for the read"
                );
            }
        }
    }

    /// Queued writers checkpoint the WAL outside their turn: what they wrote reaches the
    /// database file, although the automatic checkpoint (the backstop) waits for 40 MB of WAL.
    /// Control: the same commits outside the queue leave every page in the WAL only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writers_checkpoint_the_wal() {
        const COMMITS: u32 = 20 * CHECKPOINT_EVERY;
        let mut in_file = Vec::new();
        for queued in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let db = connect(&default_sqlite_url(dir.path(), "svc"))
                .await
                .unwrap();
            db.execute_unprepared("CREATE TABLE t (x BLOB)")
                .await
                .unwrap();
            for _ in 0..COMMITS {
                let txn = begin(&db, queued).await.unwrap();
                // About four pages.
                txn.execute_unprepared("INSERT INTO t VALUES (randomblob(16000))")
                    .await
                    .unwrap();
                txn.commit().await.unwrap();
            }
            // The last checkpoint may still be running.
            tokio::time::sleep(Duration::from_millis(500)).await;
            in_file.push(std::fs::metadata(dir.path().join("svc.db")).unwrap().len());
        }
        let written = u64::from(COMMITS) * 16_000;
        assert!(
            in_file[0] > written / 2,
            "queued: {} bytes in the database file after {written} bytes written",
            in_file[0]
        );
        assert!(
            in_file[1] < written / 10,
            "control: {} bytes in the database file after {written} bytes written",
            in_file[1]
        );
    }
}
