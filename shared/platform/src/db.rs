//! Database bootstrap: one sea-orm connection from a URL, SQLite (the embedded default, one file
//! per service under `./data/`, WAL mode) or PostgreSQL (production), and migrations run at
//! start-up or by `orgplane migrate`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};
use sea_orm_migration::MigratorTrait;

mod write;

pub use write::{WriteTransaction, begin_write};

/// The default database URL of `service`: a SQLite file `<data_dir>/<service>.db`.
pub fn default_sqlite_url(data_dir: &Path, service: &str) -> String {
    format!("sqlite://{}/{service}.db?mode=rwc", data_dir.display())
}

/// Connects to `url` (`sqlite://…` or `postgres://…`) with Orgplane's pool settings. For a SQLite
/// file, the parent directory is created and the database switched to WAL mode.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5));
    if is_sqlite(url) {
        if let Some(path) = sqlite_path(url)
            && let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| DbErr::Custom(format!("cannot create {}: {e}", parent.display())))?;
        }
        let in_memory = is_in_memory(url);
        if !in_memory {
            switch_to_wal(url).await?;
        }
        let size = if in_memory { 1 } else { SQLITE_CONNECTIONS };
        // How many of the pool's connections are query-only: while none is, handing one out
        // costs no statement.
        let query_only = Arc::new(AtomicUsize::new(0));
        let marking = query_only.clone();
        // Every connection is opened at start and kept. SQLite silently opens a file it may not
        // write (read-only file system, immutable file) read-only, and such a connection would
        // keep refusing writes after the file became writable again: one opened while the file
        // is not writable is marked query-only, serves reads, and is replaced after
        // READ_ONLY_RETRY. The check before each acquire replaces sqlx's ping (meaningless for a
        // local file).
        options
            .max_connections(size)
            .min_connections(size)
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .test_before_acquire(false)
            .map_sqlx_sqlite_pool_opts(move |pool| {
                if in_memory {
                    return pool;
                }
                let marking = marking.clone();
                pool.after_connect(move |conn, _| {
                    let marking = marking.clone();
                    Box::pin(async move { mark_read_only(conn, &marking).await })
                })
            })
            .map_sqlx_sqlite_before_acquire(move |conn, meta| {
                let query_only = query_only.clone();
                Box::pin(async move { usable(conn, meta, &query_only).await })
            })
            .map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .pragma(
                        "wal_autocheckpoint",
                        SQLITE_AUTOCHECKPOINT_PAGES.to_string(),
                    )
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
    } else {
        options
            .max_connections(16)
            .min_connections(1)
            // A dead server must not hand out dead connections after it comes back.
            .test_before_acquire(true);
    }
    let db = Database::connect(options).await?;
    if is_sqlite(url) && !is_in_memory(url) {
        write::queue_writers(&db);
    }
    Ok(db)
}

/// Puts the SQLite file of `url` in WAL mode through one connection of its own, before the pool
/// opens its connections together: switching a new file's journal mode needs the file to itself,
/// and a connection racing the others for it fails with "database is locked" at once (no busy
/// wait applies to it). Afterwards each pooled connection's WAL pragma is a no-op.
async fn switch_to_wal(url: &str) -> Result<(), DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .max_connections(1)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5))
        });
    Database::connect(options).await?.close().await
}

/// WAL pages past which a commit checkpoints inside itself (SQLite's automatic checkpoint,
/// 1,000 by default): a backstop, since the write queue checkpoints outside the writers' turn
/// ([`write`]'s module docs); 40 MB of WAL.
const SQLITE_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Connections of a SQLite file's pool.
pub(crate) const SQLITE_CONNECTIONS: u32 = 8;

/// How long a connection that could open the file only read-only serves reads before it is
/// replaced by a fresh one (which can write again once the file can be written).
const READ_ONLY_RETRY: Duration = Duration::from_secs(1);

/// Marks `conn` query-only when SQLite could open the file only read-only: writes on it then
/// fail with SQLITE_READONLY (UNAVAILABLE) while reads keep working. The check rewrites the
/// header's `user_version` with its own value, a write that changes nothing. `query_only` counts
/// the pool's connections so marked.
async fn mark_read_only(
    conn: &mut sqlx::SqliteConnection,
    query_only: &AtomicUsize,
) -> Result<(), sqlx::Error> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await?;
    let rewrite = format!("PRAGMA user_version = {version}");
    match sqlx::query(sqlx::AssertSqlSafe(rewrite))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => Ok(()),
        // Another connection holds the lock (several open at once on a new file): the file is
        // writable, this connection just could not prove it now.
        Err(sqlx::Error::Database(e))
            if matches!(
                sqlite_primary_code(e.as_ref()),
                Some(SQLITE_BUSY | SQLITE_LOCKED)
            ) =>
        {
            Ok(())
        }
        Err(sqlx::Error::Database(e))
            if sqlite_primary_code(e.as_ref()) == Some(SQLITE_READONLY) =>
        {
            sqlx::query("PRAGMA query_only = 1")
                .execute(&mut *conn)
                .await?;
            query_only.fetch_add(1, Ordering::AcqRel);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// SQLITE_READONLY, the primary result code of a write refused on a read-only connection.
const SQLITE_READONLY: i64 = 8;
/// SQLITE_BUSY: the database file is locked by another connection.
const SQLITE_BUSY: i64 = 5;
/// SQLITE_LOCKED: a table is locked by a conflicting use of the same database.
const SQLITE_LOCKED: i64 = 6;

/// The primary result code (low byte of the extended code) of a SQLite error.
fn sqlite_primary_code(e: &dyn sqlx::error::DatabaseError) -> Option<i64> {
    e.code()?.parse::<i64>().ok().map(|c| c & 0xff)
}

/// Whether an idle pooled connection may be handed out.
///
/// Only outside any transaction: when a COMMIT fails (SQLITE_IOERR on a file that cannot be
/// written, SQLITE_FULL), SQLite has already rolled the transaction back but sqlx still counts it
/// open; the next BEGIN on that connection would become a SAVEPOINT whose RELEASE commits
/// nothing, acknowledging writes that are then lost while the connection holds the write lock.
/// And not a query-only connection older than [`READ_ONLY_RETRY`]: the pool opens a new one,
/// writable if the file is again. That is asked of the connection only while `query_only` (the
/// pool's count of such connections) is not zero: otherwise every acquire would cost a round
/// trip to the connection's thread.
async fn usable(
    conn: &mut sqlx::SqliteConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
    query_only: &AtomicUsize,
) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if conn.is_in_transaction() {
        return Ok(false);
    }
    if query_only.load(Ordering::Acquire) == 0 || meta.age < READ_ONLY_RETRY {
        return Ok(true);
    }
    let marked: i64 = sqlx::query_scalar("PRAGMA query_only")
        .fetch_one(&mut *conn)
        .await?;
    if marked != 0 {
        // Closed by the pool.
        query_only.fetch_sub(1, Ordering::AcqRel);
    }
    Ok(marked == 0)
}

/// Runs every pending migration of `M`.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), DbErr> {
    M::up(db, None).await
}

/// Connects and migrates: what every service does at start-up.
pub async fn open<M: MigratorTrait>(url: &str) -> Result<DatabaseConnection, DbErr> {
    let db = connect(url).await?;
    migrate::<M>(&db).await?;
    Ok(db)
}

/// Whether `url` names a SQLite database.
pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// Whether a SQLite `url` names an in-memory database (one per connection, no file).
fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// The file of a SQLite `url` (`None` for an in-memory database or another backend).
pub fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && !path.contains(":memory:")).then_some(path)
}

/// The URL with any password replaced by `***`, for logs and start-up banners.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The backend of a connection.
pub fn backend(db: &impl ConnectionTrait) -> DbBackend {
    db.get_database_backend()
}

/// True when `err` means the database cannot be reached or written right now (connection lost,
/// server shutting down, pool exhausted, SQLite file read-only or locked): callers get
/// UNAVAILABLE and retry, instead of INTERNAL.
pub fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => {
                    let code = db.code().unwrap_or_default();
                    if db
                        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                        .is_some()
                    {
                        // Class 08: connection exception; 57P0x: server shutting down;
                        // 25006: read-only transaction (a standby).
                        code.starts_with("08") || code.starts_with("57P") || code == "25006"
                    } else {
                        // SQLite primary result codes (low byte of the extended code):
                        // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN.
                        code.parse::<i64>()
                            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
                    }
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether `err` is PostgreSQL ending a transaction that lost a race with another: a deadlock it
/// broke (SQLSTATE 40P01) or a serialization failure (40001). Nothing of the transaction was
/// kept, so running it again is safe; concurrent upserts of shared rows (the usage rollups and
/// the tiers their triggers keep) meet it whatever order each transaction takes.
pub fn is_lost_race(err: &DbErr) -> bool {
    postgres_error_in(err, &["40P01", "40001"])
}

/// Whether `err` is PostgreSQL refusing text it cannot store: a NUL character (SQLSTATE 22021) or
/// one without an equivalent in the database's encoding (22P05). The text came from the caller —
/// protobuf strings may hold NUL — so this is the caller's error, not the server's.
pub fn is_unstorable_text(err: &DbErr) -> bool {
    postgres_error_in(err, &["22021", "22P05"])
}

/// Whether `err` is a PostgreSQL error whose SQLSTATE is one of `codes`.
fn postgres_error_in(err: &DbErr, codes: &[&str]) -> bool {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                sqlx::Error::Database(db) => {
                    db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                        .is_some()
                        && db.code().is_some_and(|code| codes.contains(&code.as_ref()))
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// True when `err` is a unique-constraint violation (a concurrent or repeated insert).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/identity"),
            "postgres://app:***@db:5432/identity"
        );
        assert_eq!(
            redact("postgres://app@db/identity"),
            "postgres://app@db/identity"
        );
        assert_eq!(
            redact("sqlite://./data/a.db?mode=rwc"),
            "sqlite://./data/a.db?mode=rwc"
        );
    }

    #[test]
    fn default_url_is_a_file_per_service() {
        assert_eq!(
            default_sqlite_url(Path::new("./data"), "workspace"),
            "sqlite://./data/workspace.db?mode=rwc"
        );
        assert_eq!(
            sqlite_path("sqlite://./data/x.db?mode=rwc"),
            Some("./data/x.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }

    fn api(err: DbErr) -> tonic::Status {
        crate::error::ApiError::from(err).into()
    }

    #[tokio::test]
    async fn a_write_to_a_read_only_sqlite_file_is_unavailable_with_retry_info() {
        use tonic_types::StatusExt;
        let dir = tempfile::tempdir().unwrap();
        let url = default_sqlite_url(dir.path(), "svc");
        let db = connect(&url).await.unwrap();
        db.execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .unwrap();
        // The file as a read-only file system or an immutable file presents it to SQLite: the
        // pool keeps the connection for reads and writes fail UNAVAILABLE.
        let ro = connect(&url.replace("mode=rwc", "mode=ro")).await.unwrap();
        ro.execute_unprepared("SELECT count(*) FROM t")
            .await
            .unwrap();
        let err = ro
            .execute_unprepared("INSERT INTO t VALUES (1)")
            .await
            .unwrap_err();
        assert!(is_unavailable(&err), "{err:?}");
        let status = api(err);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            crate::error::reason_of(&status).as_deref(),
            Some("DATABASE_UNAVAILABLE")
        );
        assert!(status.get_details_retry_info().is_some());
    }

    #[tokio::test]
    async fn an_unreachable_postgres_server_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = connect(&format!("postgres://postgres@127.0.0.1:{port}/x"))
            .await
            .unwrap_err();
        assert!(is_unavailable(&err), "{err:?}");
        assert_eq!(api(err).code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn a_constraint_violation_is_not_unavailable() {
        let db = connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        db.execute_unprepared("INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        let err = db
            .execute_unprepared("INSERT INTO t VALUES (1)")
            .await
            .unwrap_err();
        assert!(!is_unavailable(&err));
        assert!(is_unique_violation(&err));
        assert_eq!(api(err).code(), tonic::Code::Internal);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_sqlite_files_open_while_their_connections_race_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..10 {
            let opens = (0..4).map(|i| {
                let url = default_sqlite_url(dir.path(), &format!("svc{round}_{i}"));
                async move {
                    let db = connect(&url).await?;
                    db.execute_unprepared("CREATE TABLE t (x INTEGER)").await?;
                    db.execute_unprepared("INSERT INTO t VALUES (1)").await?;
                    Ok::<_, DbErr>(())
                }
            });
            for r in futures::future::join_all(opens).await {
                r.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn sqlite_file_is_created_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let url = default_sqlite_url(&dir.path().join("nested"), "svc");
        let db = connect(&url).await.unwrap();
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA journal_mode",
            ))
            .await
            .unwrap()
            .unwrap();
        let mode: String = row.try_get_by_index(0).unwrap();
        assert_eq!(mode, "wal");
        assert!(dir.path().join("nested/svc.db").exists());
    }
}

#[cfg(test)]
mod immutable_file_tests {
    use std::collections::{BTreeMap, HashSet};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn chattr(flag: &str, files: &[PathBuf]) -> bool {
        std::process::Command::new("chattr")
            .arg(flag)
            .args(files)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Writers commit while the database file and its WAL are made immutable for 2 s (needs
    /// root and a file system with the immutable flag; skipped otherwise): commits fail with
    /// SQLITE_IOERR or SQLITE_READONLY, every acknowledged one is in the database afterwards,
    /// every read succeeds meanwhile, and the pool writes again afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_commit_acknowledged_while_the_file_is_immutable_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let url = default_sqlite_url(dir.path(), "svc");
        let db = connect(&url).await.unwrap();
        db.execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .unwrap();
        let files = vec![dir.path().join("svc.db"), dir.path().join("svc.db-wal")];
        if !chattr("+i", &files) || !chattr("-i", &files) {
            println!("skipped: chattr +i is not available here");
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..4i64 {
            let db = db.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let (mut acked, mut errors) = (Vec::new(), Vec::new());
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let v = w * 1_000_000 + i;
                    let r: Result<(), DbErr> = async {
                        let txn = begin_write(&db).await?;
                        txn.execute_unprepared(&format!("INSERT INTO t VALUES ({v})"))
                            .await?;
                        txn.commit().await
                    }
                    .await;
                    match r {
                        Ok(()) => acked.push(v),
                        Err(e) => errors.push(e),
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (acked, errors)
            }));
        }
        let reader = {
            let db = db.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match db.execute_unprepared("SELECT count(*) FROM t").await {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.to_string()),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (ok, failed)
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(chattr("+i", &files));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(chattr("-i", &files));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        let mut errors = BTreeMap::new();
        for t in tasks {
            let (a, e) = t.await.unwrap();
            acked.extend(a);
            for e in e {
                assert!(is_unavailable(&e), "{e:?}");
                *errors.entry(e.to_string()).or_insert(0) += 1;
            }
        }
        let (reads, read_failures) = reader.await.unwrap();
        assert!(read_failures.is_empty(), "reads failed: {read_failures:?}");
        let written_after = begin_write(&db).await.unwrap();
        written_after
            .execute_unprepared("INSERT INTO t VALUES (-1)")
            .await
            .unwrap();
        written_after.commit().await.unwrap();
        db.close().await.unwrap();
        assert!(
            !errors.is_empty(),
            "no commit failed: the file was not immutable"
        );
        let db = connect(&url).await.unwrap();
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                DbBackend::Sqlite,
                "SELECT x FROM t",
            ))
            .await
            .unwrap();
        let stored: HashSet<i64> = rows
            .iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect();
        let lost: Vec<_> = acked.iter().filter(|v| !stored.contains(v)).collect();
        println!(
            "{} acknowledged, {reads} reads, failures {errors:?}",
            acked.len()
        );
        assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    }
}
