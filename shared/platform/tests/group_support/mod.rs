//! What the group commit tests share: a producer database with a table `t` whose rows units
//! write, and readers of what was kept.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use orgplane_platform::ApiResult;
use orgplane_platform::audit::{AddAuditActorOrganization, CreateAuditLog};
use orgplane_platform::events::migration::{CreateOutbox, CreateWriteGuards};
use orgplane_platform::events::{Outbox, WriteUnit};
use orgplane_platform::testkit::TestDb;
use orgplane_proto::events::v1::{MemberAdded, Producer, event};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOutbox), Box::new(CreateWriteGuards)]
    }
}

/// The outbox and the audit log.
pub struct WithAudit;
impl MigratorTrait for WithAudit {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateWriteGuards),
            Box::new(CreateAuditLog),
            Box::new(AddAuditActorOrganization),
        ]
    }
}

pub async fn exec(db: &impl ConnectionTrait, sql: &str) {
    try_exec(db, sql).await.unwrap();
}

/// Runs `sql` in `db`, its error as the API answers it.
pub async fn try_exec(db: &impl ConnectionTrait, sql: &str) -> ApiResult<()> {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    Ok(())
}

pub async fn outbox(test: &TestDb) -> (Outbox, DatabaseConnection) {
    outbox_with::<Migrator>(test).await
}

pub async fn outbox_with<M: MigratorTrait>(test: &TestDb) -> (Outbox, DatabaseConnection) {
    let db = orgplane_platform::db::open::<M>(&test.url).await.unwrap();
    exec(&db, "CREATE TABLE parent (id BIGINT PRIMARY KEY)").await;
    // The reference is checked at COMMIT: a way to make a group's commit fail.
    exec(
        &db,
        "CREATE TABLE t (name TEXT PRIMARY KEY, parent BIGINT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
    )
    .await;
    // Grouped whatever a service's setting: the mechanism must hold wherever it is switched on.
    (
        Outbox::new(db.clone(), Producer::Organization).with_group_commit(true),
        db,
    )
}

/// A unit that inserts `name` (referencing `parent`) and appends an event; `fail` drops it
/// uncommitted, as a mutation returning an error does.
pub async fn unit(
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

pub async fn strings(db: &impl ConnectionTrait, sql: &str) -> Vec<String> {
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect()
}

pub async fn revisions(db: &impl ConnectionTrait) -> Vec<i64> {
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
pub async fn queued(outbox: &Outbox, n: usize) {
    let stats = outbox.group_stats();
    for _ in 0..5000 {
        if stats.queued.load(Ordering::Relaxed) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{n} units never queued");
}

/// A grouped unit, in its turn, that inserted `name` and appended an event (its revision).
pub async fn opened(outbox: &Outbox, name: &'static str) -> (WriteUnit, i64) {
    let mut u = WriteUnit::begin_grouped_for(outbox, name).await.unwrap();
    exec(&*u, &format!("INSERT INTO t (name) VALUES ('{name}')")).await;
    let revision = u
        .append(event::Payload::MemberAdded(MemberAdded::default()))
        .await
        .unwrap();
    (u, revision)
}
