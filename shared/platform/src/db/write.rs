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

use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait,
};
use tokio::sync::OwnedMutexGuard;

/// The write queue of one SQLite file in this process.
type WriteTurn = Arc<tokio::sync::Mutex<()>>;

/// The queue of every SQLite file [`super::connect`] opened, by the file name its pool opens.
static TURNS: LazyLock<Mutex<HashMap<PathBuf, WriteTurn>>> = LazyLock::new(Default::default);

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
fn turn_of(db: &DatabaseConnection) -> Option<WriteTurn> {
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
    _turn: Option<OwnedMutexGuard<()>>,
}

impl WriteTransaction {
    /// Commits, then hands the turn to the next writer.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
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
    let turn = match turn_of(db).filter(|_| queued) {
        Some(turn) => tokio::time::timeout(TURN_PATIENCE, turn.lock_owned())
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
    Ok(WriteTransaction { txn, _turn: turn })
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
}
