//! Group commit of write units (`WriteUnit::begin_grouped`) on SQLite and PostgreSQL: units
//! queued behind an open one share its commit, a unit that fails takes only its own writes and
//! event back (revisions stay gap-free), and no unit is acknowledged before the commit that makes
//! its writes durable — when that commit fails, every unit of the group fails with it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use orgplane_platform::ApiResult;
use orgplane_platform::events::migration::CreateOutbox;
use orgplane_platform::events::{Outbox, WriteUnit};
use orgplane_platform::testkit::TestDb;
use orgplane_proto::events::v1::{MemberAdded, Producer, event};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

struct Migrator;
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOutbox)]
    }
}

async fn exec(db: &impl ConnectionTrait, sql: &str) {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
}

async fn outbox(test: &TestDb) -> (Outbox, DatabaseConnection) {
    let db = orgplane_platform::db::open::<Migrator>(&test.url)
        .await
        .unwrap();
    exec(&db, "CREATE TABLE parent (id BIGINT PRIMARY KEY)").await;
    // The reference is checked at COMMIT: a way to make a group's commit fail.
    exec(
        &db,
        "CREATE TABLE t (name TEXT PRIMARY KEY, parent BIGINT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
    )
    .await;
    // Grouped on both backends here, whatever the defaults (off on PostgreSQL): the mechanism
    // must hold wherever it is switched on.
    (
        Outbox::new(db.clone(), Producer::Organization).with_group_commit(true),
        db,
    )
}

/// A unit that inserts `name` (referencing `parent`) and appends an event; `fail` drops it
/// uncommitted, as a mutation returning an error does.
async fn unit(
    outbox: Outbox,
    name: &'static str,
    parent: Option<i64>,
    fail: bool,
) -> ApiResult<i64> {
    let mut u = WriteUnit::begin_grouped_for(&outbox, name).await?;
    let parent = parent.map_or("NULL".to_owned(), |p| p.to_string());
    exec(
        &*u,
        &format!("INSERT INTO t (name, parent) VALUES ('{name}', {parent})"),
    )
    .await;
    u.append(event::Payload::MemberAdded(MemberAdded {
        organization_id: "org_1".into(),
        user_id: name.into(),
        role: 5,
    }))
    .await?;
    if fail {
        return Err(orgplane_platform::error::ApiError::internal(
            "the mutation failed",
        ));
    }
    Ok(u.commit().await?.unwrap())
}

async fn strings(db: &impl ConnectionTrait, sql: &str) -> Vec<String> {
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect()
}

async fn revisions(db: &impl ConnectionTrait) -> Vec<i64> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT revision FROM outbox_events ORDER BY revision",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect()
}

/// Waits until `n` units wait for their turn in `outbox`'s group.
async fn queued(outbox: &Outbox, n: usize) {
    let stats = outbox.group_stats();
    for _ in 0..5000 {
        if stats.queued.load(Ordering::Relaxed) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{n} units never queued");
}

async fn units_queued_behind_an_open_one_share_its_commit(test: TestDb) {
    let (outbox, db) = outbox(&test).await;
    let stats = outbox.group_stats();
    let mut a = WriteUnit::begin_grouped_for(&outbox, "a").await.unwrap();
    exec(&*a, "INSERT INTO t (name) VALUES ('a')").await;
    let ra = a
        .append(event::Payload::MemberAdded(MemberAdded::default()))
        .await
        .unwrap();
    let b = tokio::spawn(unit(outbox.clone(), "b", None, false));
    let c = tokio::spawn(unit(outbox.clone(), "c", None, true));
    let d = tokio::spawn(unit(outbox.clone(), "d", None, false));
    queued(&outbox, 3).await;
    // Nothing is visible before the group commits.
    assert!(strings(&db, "SELECT name FROM t").await.is_empty());
    assert_eq!(a.commit().await.unwrap(), Some(ra));
    let rb = b.await.unwrap().unwrap();
    assert!(c.await.unwrap().is_err());
    let rd = d.await.unwrap().unwrap();
    assert_eq!(
        stats.commits.load(Ordering::Relaxed),
        1,
        "one commit for a, b, d"
    );
    assert_eq!(stats.units.load(Ordering::Relaxed), 3);
    assert_eq!(
        strings(&db, "SELECT name FROM t ORDER BY name").await,
        ["a", "b", "d"],
        "c's row went back with its savepoint"
    );
    let mut answered = vec![ra, rb, rd];
    answered.sort_unstable();
    assert_eq!(
        revisions(&db).await,
        [1, 2, 3],
        "gap-free: c's revision was reissued"
    );
    assert_eq!(answered, [1, 2, 3]);
    assert_eq!(
        *outbox.subscribe().borrow(),
        3,
        "watchers woken at the group's last revision"
    );
}

async fn a_failed_group_commit_fails_every_unit_of_the_group(test: TestDb) {
    let (outbox, db) = outbox(&test).await;
    // b references a parent that does not exist: its own statements succeed, the COMMIT fails.
    let mut b = WriteUnit::begin_grouped_for(&outbox, "b").await.unwrap();
    exec(&*b, "INSERT INTO t (name, parent) VALUES ('b', 999)").await;
    b.append(event::Payload::MemberAdded(MemberAdded::default()))
        .await
        .unwrap();
    let a = tokio::spawn(unit(outbox.clone(), "a", None, false));
    queued(&outbox, 1).await;
    let b = b.commit().await;
    let a = a.await.unwrap();
    assert!(b.is_err(), "the unit whose write broke the commit fails");
    assert!(
        a.is_err(),
        "a unit of the same group is not acknowledged: nothing of it was kept"
    );
    assert!(strings(&db, "SELECT name FROM t").await.is_empty());
    assert!(revisions(&db).await.is_empty());
    // Control: alone in their groups, the good unit commits and only the bad one fails.
    let bad = WriteUnit::begin_grouped_for(&outbox, "bad").await.unwrap();
    exec(&*bad, "INSERT INTO t (name, parent) VALUES ('b', 999)").await;
    assert!(bad.commit().await.is_err());
    assert!(unit(outbox.clone(), "a", None, false).await.is_ok());
    assert_eq!(strings(&db, "SELECT name FROM t").await, ["a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_grouped_units_share_one_commit_and_stay_gap_free_sqlite() {
    units_queued_behind_an_open_one_share_its_commit(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_grouped_units_share_one_commit_and_stay_gap_free_postgres() {
    let Some(test) = TestDb::postgres().await else {
        println!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    units_queued_behind_an_open_one_share_its_commit(test).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_failed_group_commit_acknowledges_no_unit_of_it_sqlite() {
    a_failed_group_commit_fails_every_unit_of_the_group(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_failed_group_commit_acknowledges_no_unit_of_it_postgres() {
    let Some(test) = TestDb::postgres().await else {
        println!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    a_failed_group_commit_fails_every_unit_of_the_group(test).await;
}
