//! Group commit of write units (`WriteUnit::begin_grouped`) on SQLite and PostgreSQL: units
//! queued behind an open one share its commit, a unit that fails takes only its own writes and
//! event back (revisions stay gap-free), and no unit is acknowledged before the commit that makes
//! its writes durable — when that commit fails, every unit of the group fails with it. A unit
//! writes its event rows and audit records at commit, numbers its events after its first (or after
//! its group's last), and the counter row ends at the last revision handed out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;

use orgplane_platform::audit::{AuditLogWriter, Entry};
use orgplane_platform::call::Call;
use orgplane_platform::convert::etag_mismatch;
use orgplane_platform::events::{Outbox, WriteUnit};
use orgplane_platform::testkit::TestDb;
use orgplane_proto::events::v1::{MemberAdded, event};
use sea_orm::ConnectionTrait;

mod group_support;

use group_support::*;

async fn units_queued_behind_an_open_one_share_its_commit(test: TestDb) {
    let (outbox, db) = outbox(&test).await;
    let stats = outbox.group_stats();
    let (a, ra) = opened(&outbox, "a").await;
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

fn added(user_id: &str) -> event::Payload {
    event::Payload::MemberAdded(MemberAdded {
        organization_id: "org_1".into(),
        user_id: user_id.into(),
        role: 5,
    })
}

fn audited(action: &str) -> Entry {
    Entry::new("org_1", action, "member", "user_1")
}

async fn head(outbox: &Outbox) -> i64 {
    outbox.head().await.unwrap().revision
}

async fn units_write_their_rows_at_commit_and_the_counter_ends_at_the_last(test: TestDb) {
    let (outbox, db) = outbox_with::<WithAudit>(&test).await;
    let log = AuditLogWriter::new("organization");
    let call = Call::system();
    // Alone: the first event takes a revision from the counter, the next two follow it.
    let mut u = WriteUnit::begin_for(&outbox, "alone").await.unwrap();
    for name in ["x", "y", "z"] {
        u.append(added(name)).await.unwrap();
    }
    log.write_in(&mut u, &call, audited("member.add"));
    assert_eq!(u.revision(), Some(3));
    assert!(revisions(&db).await.is_empty());
    assert_eq!(u.commit().await.unwrap(), Some(3));
    assert_eq!(revisions(&db).await, [1, 2, 3]);
    assert_eq!(head(&outbox).await, 3, "the counter stored the last number");
    assert_eq!(
        strings(&db, "SELECT action FROM audit_log").await,
        ["member.add"]
    );
    // ORG-10: the deferred record is the call's, committed with the mutation.
    assert_eq!(
        strings(&db, "SELECT request_id FROM audit_log").await,
        [call.request_id.as_str()]
    );
    // Dropped uncommitted: none of its rows, and the counter is where it was.
    let mut dropped = WriteUnit::begin_for(&outbox, "dropped").await.unwrap();
    dropped.append(added("w")).await.unwrap();
    dropped.append(added("v")).await.unwrap();
    log.write_in(&mut dropped, &call, audited("member.remove"));
    drop(dropped);
    assert_eq!(head(&outbox).await, 3);
    // A group: the first unit takes 4 from the counter, the units behind it number theirs after
    // the group's last, and the committer stores the last one.
    let mut a = WriteUnit::begin_grouped_for(&outbox, "a").await.unwrap();
    assert_eq!(a.append(added("a")).await.unwrap(), 4);
    log.write_in(&mut a, &call, audited("member.update_role"));
    let b = {
        let (outbox, log) = (outbox.clone(), log.clone());
        tokio::spawn(async move {
            let mut b = WriteUnit::begin_grouped_for(&outbox, "b").await?;
            b.append(added("b1")).await?;
            b.append(added("b2")).await?;
            log.write_in(&mut b, &Call::system(), audited("member.update_role"));
            b.commit().await
        })
    };
    queued(&outbox, 1).await;
    assert_eq!(a.commit().await.unwrap(), Some(4));
    assert_eq!(b.await.unwrap().unwrap(), Some(6));
    assert_eq!(revisions(&db).await, [1, 2, 3, 4, 5, 6]);
    assert_eq!(head(&outbox).await, 6, "the group stored its last revision");
    // After the group, a unit of its own continues from the stored counter.
    let mut after = WriteUnit::begin_for(&outbox, "after").await.unwrap();
    assert_eq!(after.append(added("after")).await.unwrap(), 7);
    assert_eq!(after.commit().await.unwrap(), Some(7));
    assert_eq!(
        strings(&db, "SELECT action FROM audit_log ORDER BY action").await,
        ["member.add", "member.update_role", "member.update_role"]
    );
    let events = outbox.read(0, 100).await.unwrap();
    let numbered: Vec<i64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(
        numbered,
        [1, 2, 3, 4, 5, 6, 7],
        "each event carries the revision of its row"
    );
}

async fn a_deferred_row_that_fails_fails_its_unit_alone(test: TestDb) {
    // No audit table: every audit record written with a unit fails at its commit.
    let (outbox, db) = outbox(&test).await;
    let log = AuditLogWriter::new("organization");
    let mut alone = WriteUnit::begin_for(&outbox, "alone").await.unwrap();
    exec(&*alone, "INSERT INTO t (name) VALUES ('alone')").await;
    alone.append(added("alone")).await.unwrap();
    log.write_in(&mut alone, &Call::system(), audited("member.add"));
    assert!(alone.commit().await.is_err());
    assert!(strings(&db, "SELECT name FROM t").await.is_empty());
    assert!(revisions(&db).await.is_empty());
    assert_eq!(head(&outbox).await, 0);
    // In a group: b's savepoint goes back with its rows; a and c keep theirs, gap-free.
    let mut a = WriteUnit::begin_grouped_for(&outbox, "a").await.unwrap();
    exec(&*a, "INSERT INTO t (name) VALUES ('a')").await;
    let ra = a.append(added("a")).await.unwrap();
    let b = {
        let (outbox, log) = (outbox.clone(), log.clone());
        tokio::spawn(async move {
            let mut b = WriteUnit::begin_grouped_for(&outbox, "b").await?;
            exec(&*b, "INSERT INTO t (name) VALUES ('b')").await;
            b.append(added("b")).await?;
            log.write_in(&mut b, &Call::system(), audited("member.add"));
            b.commit().await
        })
    };
    queued(&outbox, 1).await;
    let c = tokio::spawn(unit(outbox.clone(), "c", None, false));
    queued(&outbox, 2).await;
    assert_eq!(a.commit().await.unwrap(), Some(ra));
    assert!(b.await.unwrap().is_err());
    let rc = c.await.unwrap().unwrap();
    assert_eq!((ra, rc), (1, 2), "b's revision was reissued to c");
    assert_eq!(
        strings(&db, "SELECT name FROM t ORDER BY name").await,
        ["a", "c"]
    );
    assert_eq!(revisions(&db).await, [1, 2]);
    assert_eq!(head(&outbox).await, 2);
}

/// `v`'s row 1 from `version` to the next, checked at `u`'s commit against `rows` rows.
fn bump(u: &mut WriteUnit, version: i64, rows: u64) {
    let sql = format!(
        "UPDATE v SET version = {} WHERE id = 1 AND version = {version}",
        version + 1
    );
    u.change_at_commit(
        sea_orm::Statement::from_string(u.get_database_backend(), sql),
        rows,
        etag_mismatch("v"),
    );
}

/// ORG-3 (a stale etag gives ABORTED) where the version is checked at commit: a change checked
/// with `change_at_commit` that finds its row changed since it was read fails its unit with the
/// unit's ABORTED error and keeps nothing of it, alone or in a group whose other units commit,
/// gap-free.
async fn a_checked_change_that_finds_its_row_changed_fails_its_unit_alone(test: TestDb) {
    let (outbox, db) = outbox(&test).await;
    exec(
        &db,
        "CREATE TABLE v (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)",
    )
    .await;
    exec(&db, "INSERT INTO v (id, version) VALUES (1, 1)").await;
    let version = || strings(&db, "SELECT CAST(version AS TEXT) FROM v");
    let mut first = WriteUnit::begin_for(&outbox, "first").await.unwrap();
    bump(&mut first, 1, 1);
    first.append(added("first")).await.unwrap();
    assert_eq!(first.commit().await.unwrap(), Some(1));
    assert_eq!(version().await, ["2"]);
    // Read at version 1, written after: nothing kept, the counter where it was.
    let mut stale = WriteUnit::begin_for(&outbox, "stale").await.unwrap();
    bump(&mut stale, 1, 1);
    stale.append(added("stale")).await.unwrap();
    let err = stale.commit().await.unwrap_err();
    assert_eq!(err.reason(), "ETAG_MISMATCH", "{err:?}");
    assert_eq!(revisions(&db).await, [1]);
    assert_eq!(head(&outbox).await, 1);
    // Control: the same stale change checked against the rows it really touches (none) commits,
    // and its event would claim a change that did not happen: the check is what refuses it.
    let mut unchecked = WriteUnit::begin_for(&outbox, "unchecked").await.unwrap();
    bump(&mut unchecked, 1, 0);
    unchecked.append(added("unchecked")).await.unwrap();
    assert_eq!(unchecked.commit().await.unwrap(), Some(2));
    assert_eq!(version().await, ["2"]);
    // In a group: a changes version 2; b, which read version 2 too, finds it changed by a
    // (earlier in the same transaction) and goes back alone; c commits after a.
    let mut a = WriteUnit::begin_grouped_for(&outbox, "a").await.unwrap();
    bump(&mut a, 2, 1);
    let ra = a.append(added("a")).await.unwrap();
    let b = {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            let mut b = WriteUnit::begin_grouped_for(&outbox, "b").await?;
            bump(&mut b, 2, 1);
            b.append(added("b")).await?;
            b.commit().await
        })
    };
    queued(&outbox, 1).await;
    let c = tokio::spawn(unit(outbox.clone(), "c", None, false));
    queued(&outbox, 2).await;
    assert_eq!(a.commit().await.unwrap(), Some(ra));
    let err = b.await.unwrap().unwrap_err();
    assert_eq!(err.reason(), "ETAG_MISMATCH", "{err:?}");
    let rc = c.await.unwrap().unwrap();
    assert_eq!((ra, rc), (3, 4), "b's revision was reissued to c");
    assert_eq!(revisions(&db).await, [1, 2, 3, 4]);
    assert_eq!(head(&outbox).await, 4);
    assert_eq!(version().await, ["3"]);
    assert_eq!(strings(&db, "SELECT name FROM t").await, ["c"]);
    assert!(
        strings(&db, "SELECT CAST(seen AS TEXT) FROM write_guards")
            .await
            .is_empty(),
        "the guard keeps no row"
    );
}

/// PostgreSQL only (SQLite has one write lock, no row locks): a group holds the counter's row lock
/// from its first event to its commit, so a unit of its own that locked a row first and then waits
/// for the counter, while a grouped unit waits for that row, is a deadlock. PostgreSQL breaks it;
/// the unit it rolls back answers ABORTED `CONCURRENT_RETRY` (nothing kept, retry), and the
/// others commit, gap-free.
async fn a_deadlock_between_a_group_and_a_unit_of_its_own_aborts_one_with_a_retry(test: TestDb) {
    let (outbox, db) = outbox(&test).await;
    exec(&db, "INSERT INTO t (name) VALUES ('x')").await;
    // The group takes the counter.
    let mut a = WriteUnit::begin_grouped_for(&outbox, "a").await.unwrap();
    a.append(added("a")).await.unwrap();
    // A unit of its own locks row x, then waits for the counter.
    let mut own = WriteUnit::begin_for(&outbox, "own").await.unwrap();
    exec(&*own, "UPDATE t SET parent = NULL WHERE name = 'x'").await;
    let own = tokio::spawn(async move {
        own.append(added("own")).await?;
        own.commit().await
    });
    // A grouped unit behind a waits for row x.
    let grouped = {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            let mut u = WriteUnit::begin_grouped_for(&outbox, "grouped").await?;
            try_exec(&*u, "UPDATE t SET name = 'y' WHERE name = 'x'").await?;
            u.append(added("grouped")).await?;
            u.commit().await
        })
    };
    queued(&outbox, 1).await;
    assert_eq!(a.commit().await.unwrap(), Some(1));
    let outcomes = [own.await.unwrap(), grouped.await.unwrap()];
    let aborted: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(
        aborted.len(),
        1,
        "one of the two is rolled back: {outcomes:?}"
    );
    assert_eq!(aborted[0].code(), tonic::Code::Aborted);
    assert_eq!(aborted[0].reason(), "CONCURRENT_RETRY");
    assert_eq!(revisions(&db).await, [1, 2], "gap-free");
    assert_eq!(head(&outbox).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_deadlock_between_a_group_and_a_unit_of_its_own_aborts_one_with_a_retry_postgres()
{
    let Some(test) = TestDb::postgres().await else {
        println!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    a_deadlock_between_a_group_and_a_unit_of_its_own_aborts_one_with_a_retry(test).await;
}

/// A unit publishing more events than one statement can carry parameters for on PostgreSQL
/// (65,535; four per event row).
async fn a_unit_of_many_events_writes_them_all(test: TestDb) {
    const EVENTS: i64 = 17_000;
    let (outbox, db) = outbox(&test).await;
    let mut u = WriteUnit::begin_for(&outbox, "many").await.unwrap();
    for i in 0..EVENTS {
        u.append(added(&format!("user_{i}"))).await.unwrap();
    }
    assert_eq!(u.commit().await.unwrap(), Some(EVENTS));
    let stored = revisions(&db).await;
    assert_eq!(stored.len() as i64, EVENTS);
    assert_eq!(stored.last(), Some(&EVENTS));
    assert_eq!(head(&outbox).await, EVENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_unit_of_many_events_writes_them_all_sqlite() {
    a_unit_of_many_events_writes_them_all(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_unit_of_many_events_writes_them_all_postgres() {
    let Some(test) = TestDb::postgres().await else {
        println!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    a_unit_of_many_events_writes_them_all(test).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_units_write_their_rows_at_commit_and_store_the_last_revision_sqlite() {
    units_write_their_rows_at_commit_and_the_counter_ends_at_the_last(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_units_write_their_rows_at_commit_and_store_the_last_revision_postgres() {
    let Some(test) = TestDb::postgres().await else {
        println!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    units_write_their_rows_at_commit_and_the_counter_ends_at_the_last(test).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_deferred_row_that_fails_fails_its_unit_alone_sqlite() {
    a_deferred_row_that_fails_fails_its_unit_alone(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_deferred_row_that_fails_fails_its_unit_alone_postgres() {
    let Some(test) = TestDb::postgres().await else {
        println!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    a_deferred_row_that_fails_fails_its_unit_alone(test).await;
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

/// 100 units queued behind an open one: without a bound they would all share its commit (one
/// transaction with 101 subtransactions on PostgreSQL); a group takes at most 64.
async fn a_group_takes_at_most_64_units(test: TestDb) {
    let (outbox, db) = outbox(&test).await;
    let stats = outbox.group_stats();
    let (a, _) = opened(&outbox, "a").await;
    let units: Vec<_> = (0..100)
        .map(|i| {
            let name: &'static str = Box::leak(format!("u{i:03}").into_boxed_str());
            tokio::spawn(unit(outbox.clone(), name, None, false))
        })
        .collect();
    queued(&outbox, 100).await;
    a.commit().await.unwrap();
    for u in units {
        u.await.unwrap().unwrap();
    }
    assert_eq!(revisions(&db).await, (1..=101).collect::<Vec<i64>>());
    assert_eq!(strings(&db, "SELECT name FROM t").await.len(), 101);
    assert_eq!(stats.units.load(Ordering::Relaxed), 101);
    let commits = stats.commits.load(Ordering::Relaxed);
    assert!(
        commits >= 2,
        "101 units shared {commits} commit(s): a group takes at most 64"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_group_takes_at_most_64_units_sqlite() {
    a_group_takes_at_most_64_units(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_group_takes_at_most_64_units_postgres() {
    let Some(test) = TestDb::postgres().await else {
        println!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    a_group_takes_at_most_64_units(test).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_3_a_checked_change_that_finds_its_row_changed_fails_its_unit_alone_sqlite() {
    a_checked_change_that_finds_its_row_changed_fails_its_unit_alone(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_3_a_checked_change_that_finds_its_row_changed_fails_its_unit_alone_postgres() {
    let Some(test) = TestDb::postgres().await else {
        println!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    a_checked_change_that_finds_its_row_changed_fails_its_unit_alone(test).await;
}
