//! Online copies of a SQLite database: `VACUUM INTO` on a connection of its own to the live file
//! (which it only reads). It reads in one transaction, so the copy is the database as of one instant; in WAL
//! mode it runs beside the services' writers without blocking them. Which databases to copy, in
//! which order, and how copies taken one after another are made restorable together is the
//! `orgplane backup` command's business (with [`crate::events::restore`]).

use std::path::Path;
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};

/// Copies the live SQLite database of `url` into the new file `to`, and checks the copy
/// (`PRAGMA quick_check`). Fails for a URL that is not a SQLite file, a file that does not exist,
/// or a `to` that exists.
pub async fn copy_sqlite(url: &str, to: &Path) -> Result<(), DbErr> {
    let from = crate::db::sqlite_path(url)
        .filter(|_| crate::db::is_sqlite(url))
        .ok_or_else(|| DbErr::Custom(format!("{} is not a SQLite file", crate::db::redact(url))))?;
    if !Path::new(from).is_file() {
        return Err(DbErr::Custom(format!("there is no database at {from}")));
    }
    if to.exists() {
        return Err(DbErr::Custom(format!("{} exists already", to.display())));
    }
    let to_str = to
        .to_str()
        .ok_or_else(|| DbErr::Custom(format!("{} is not a UTF-8 path", to.display())))?;
    let source = open_file(from, "rw").await?;
    let copied = source
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "VACUUM INTO ?",
            [to_str.into()],
        ))
        .await;
    source.close().await?;
    copied?;
    let copy = open_file(to_str, "rw").await?;
    let checked = quick_check(&copy).await;
    copy.close().await?;
    checked
}

/// A one-connection pool on the SQLite file `path` opened with `mode` (`ro`, `rw`): for tools
/// working on a database beside (or instead of) the services.
pub async fn open_file(path: &str, mode: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(format!("sqlite://{path}?mode={mode}"));
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(30))
        .map_sqlx_sqlite_opts(|o| o.busy_timeout(Duration::from_secs(30)));
    Database::connect(options).await
}

async fn quick_check(db: &DatabaseConnection) -> Result<(), DbErr> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA quick_check",
        ))
        .await?;
    let verdict: String = match row {
        Some(r) => r.try_get_by_index(0)?,
        None => String::new(),
    };
    if verdict == "ok" {
        Ok(())
    } else {
        Err(DbErr::Custom(format!(
            "the copy fails its check: {verdict}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copy_taken_beside_writers_is_one_instant_of_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::default_sqlite_url(dir.path(), "svc");
        let db = crate::db::connect(&url).await.unwrap();
        db.execute_unprepared("CREATE TABLE t (x INTEGER PRIMARY KEY, y INTEGER NOT NULL)")
            .await
            .unwrap();
        // Every transaction writes two rows with the same y: a copy of one instant has pairs only.
        let writer = {
            let db = db.clone();
            tokio::spawn(async move {
                for i in 0..400i64 {
                    let txn = crate::db::begin_write(&db).await.unwrap();
                    for _ in 0..2 {
                        txn.execute_unprepared(&format!("INSERT INTO t (y) VALUES ({i})"))
                            .await
                            .unwrap();
                    }
                    txn.commit().await.unwrap();
                }
            })
        };
        let mut copies = Vec::new();
        for n in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let to = dir.path().join(format!("copy{n}.db"));
            copy_sqlite(&url, &to).await.unwrap();
            copies.push(to);
        }
        writer.await.unwrap();
        for to in &copies {
            let copy = open_file(to.to_str().unwrap(), "rw").await.unwrap();
            let row = copy
                .query_one_raw(sea_orm::Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT count(*), count(DISTINCT y) FROM t",
                ))
                .await
                .unwrap()
                .unwrap();
            let (rows, distinct): (i64, i64) = (
                row.try_get_by_index(0).unwrap(),
                row.try_get_by_index(1).unwrap(),
            );
            assert_eq!(rows, 2 * distinct, "{}", to.display());
        }
        assert!(
            copy_sqlite(&url, &copies[0]).await.is_err(),
            "an existing file is kept"
        );
        let missing = crate::db::default_sqlite_url(dir.path(), "missing");
        let err = copy_sqlite(&missing, &dir.path().join("m.db"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no database"), "{err}");
        let err = copy_sqlite("postgres://u@h/db", &dir.path().join("p.db"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a SQLite file"), "{err}");
    }
}
