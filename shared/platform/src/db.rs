//! Database bootstrap: one sea-orm connection from a URL, SQLite (the embedded default, one file
//! per service under `./data/`, WAL mode) or PostgreSQL (production), and migrations run at
//! start-up or by `orgplane migrate`.

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};
use sea_orm_migration::MigratorTrait;

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
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        options
            .max_connections(if in_memory { 1 } else { 8 })
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
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
    Database::connect(options).await
}

/// Begins a transaction that will write. On SQLite it starts as `BEGIN IMMEDIATE`, taking the
/// write lock up front: a deferred transaction that reads and then writes fails at once with
/// SQLITE_BUSY when another connection committed in between, while an immediate one waits its
/// turn (busy timeout). On PostgreSQL it is an ordinary transaction. Use it for every mutation.
pub async fn begin_write<C>(db: &C) -> Result<C::Transaction, DbErr>
where
    C: sea_orm::TransactionTrait + ConnectionTrait,
{
    let mode = match db.get_database_backend() {
        DbBackend::Sqlite => Some(sea_orm::SqliteTransactionMode::Immediate),
        _ => None,
    };
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: mode,
        ..Default::default()
    })
    .await
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

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

fn sqlite_path(url: &str) -> Option<&str> {
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
