#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use orgplane_platform::error::Code;
use orgplane_platform::testkit::TestDb;
use sea_orm::{DatabaseConnection, EntityTrait};

use super::*;
use crate::store::entity::{sign_in_address, sign_in_budget};
use crate::store::migration::Migrator;

const MINUTE_MS: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;

fn budgets(per_peer: u32, per_account: u32) -> SignInBudgets {
    SignInBudgets::new(SignInLimits {
        per_peer,
        per_account,
        window: Duration::from_secs(60),
    })
}

/// SQLite, and PostgreSQL when `ORGPLANE_TEST_POSTGRES_URL` is set.
async fn databases() -> Vec<(TestDb, DatabaseConnection)> {
    let mut all = Vec::new();
    let sqlite = TestDb::sqlite();
    let db = sqlite.open::<Migrator>().await;
    all.push((sqlite, db));
    match TestDb::postgres().await {
        Some(pg) => {
            let db = pg.open::<Migrator>().await;
            all.push((pg, db));
        }
        None => eprintln!("PostgreSQL skipped: ORGPLANE_TEST_POSTGRES_URL is not set"),
    }
    all
}

async fn failures(db: &DatabaseConnection, key: &str) -> Option<(i32, i64)> {
    sign_in_budget::Entity::find_by_id(key.to_owned())
        .one(db)
        .await
        .unwrap()
        .map(|r| (r.failures, r.window_start_ms))
}

async fn fail(b: &SignInBudgets, db: &DatabaseConnection, now: i64, peer: &str, account: &str) {
    b.begin(db, now, peer, account, ("", 0))
        .await
        .unwrap()
        .failed(db, now)
        .await
        .unwrap();
}

#[test]
fn id_3_window_arithmetic() {
    // A window counts until exactly `window` after it opened, then nothing.
    assert_eq!(live_failures(4, T0, T0, MINUTE_MS), 4);
    assert_eq!(live_failures(4, T0, T0 + MINUTE_MS - 1, MINUTE_MS), 4);
    assert_eq!(live_failures(4, T0, T0 + MINUTE_MS, MINUTE_MS), 0);
    assert_eq!(live_failures(-1, T0, T0, MINUTE_MS), 0, "never negative");
    // Retry when the window ends, never sooner than a second.
    assert_eq!(
        retry_after(T0, T0 + 15_000, MINUTE_MS),
        Duration::from_secs(45)
    );
    assert_eq!(
        retry_after(T0, T0 + MINUTE_MS - 10, MINUTE_MS),
        Duration::from_secs(1)
    );
    assert_eq!(
        retry_after(T0, T0 + 5 * MINUTE_MS, MINUTE_MS),
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn id_3_a_budget_refuses_at_its_limit_until_the_window_ends_then_restarts() {
    for (_keep, db) in databases().await {
        let b = budgets(100, 3);
        for i in 0..3 {
            fail(&b, &db, T0 + i * 1000, "10.0.0.1", "ada").await;
        }
        let key = b.account_key("ada");
        assert_eq!(failures(&db, &key).await, Some((3, T0)));
        let err = b
            .begin(&db, T0 + 20_000, "10.0.0.1", "ada", ("", 0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert_eq!(err.retry_delay(), Some(Duration::from_secs(40)));
        // Another account from the same peer is not affected.
        let other = b.begin(&db, T0 + 20_000, "10.0.0.1", "bob", ("", 0)).await;
        drop(other.unwrap());
        // When the window ended: allowed, and the next failure opens a new window.
        let later = T0 + MINUTE_MS;
        b.begin(&db, later, "10.0.0.1", "ada", ("", 0))
            .await
            .unwrap()
            .failed(&db, later)
            .await
            .unwrap();
        assert_eq!(failures(&db, &key).await, Some((1, later)));
        // The peer's window (opened at T0 too) ended as well: it restarted with this failure.
        assert_eq!(failures(&db, "peer 10.0.0.1").await, Some((1, later)));
        // A refused attempt counted nothing; a live window keeps counting.
        fail(&b, &db, later + 1000, "10.0.0.1", "ada").await;
        assert_eq!(failures(&db, &key).await, Some((2, later)));
        // A success clears the account's failures.
        b.begin(&db, later + 2000, "10.0.0.1", "ada", ("", 0))
            .await
            .unwrap()
            .succeeded(&db)
            .await
            .unwrap();
        assert_eq!(failures(&db, &key).await, None);
    }
}

#[tokio::test]
async fn id_3_concurrent_failures_on_two_replicas_are_all_counted() {
    for (_keep, db) in databases().await {
        let (a, b) = (budgets(1000, 1000), budgets(1000, 1000));
        let hits = (0..40).map(|i| {
            let (db, replica) = (&db, if i % 2 == 0 { &a } else { &b });
            async move { fail(replica, db, T0 + 5, "10.0.0.1", "ada").await }
        });
        futures::future::join_all(hits).await;
        assert_eq!(
            failures(&db, &a.account_key("ada")).await,
            Some((40, T0 + 5)),
            "no failure lost to a concurrent one"
        );
    }
}

#[tokio::test]
async fn id_3_attempts_in_flight_hold_their_place_until_their_outcome() {
    let (_keep, db) = databases().await.remove(0);
    let b = budgets(100, 2);
    let first = b.begin(&db, T0, "10.0.0.1", "ada", ("", 0)).await.unwrap();
    let second = b.begin(&db, T0, "10.0.0.2", "ada", ("", 0)).await.unwrap();
    let err = b
        .begin(&db, T0, "10.0.0.3", "ada", ("", 0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.retry_delay(), Some(Duration::from_secs(1)));
    // A right password waiting for its second factor gives its place back.
    drop(first);
    second.failed(&db, T0).await.unwrap();
    let third = b.begin(&db, T0, "10.0.0.3", "ada", ("", 0)).await.unwrap();
    third.failed(&db, T0).await.unwrap();
    assert!(b.begin(&db, T0, "10.0.0.4", "ada", ("", 0)).await.is_err());
    assert!(
        b.in_flight.lock().unwrap().is_empty(),
        "nothing left reserved"
    );
}

#[tokio::test]
async fn id_3_a_known_address_draws_on_a_budget_of_its_own() {
    for (_keep, db) in databases().await {
        let b = budgets(100, 2);
        sign_in_address::Entity::insert(sign_in_address::ActiveModel {
            user_id: Set("user_ada".into()),
            address: Set("198.51.100.7".into()),
            last_seen_ms: Set(T0 - 1000),
        })
        .exec(&db)
        .await
        .unwrap();
        let known = ("user_ada", T0 - MINUTE_MS);
        for i in 0..2 {
            let peer = format!("203.0.113.{i}");
            let attempt = b.begin(&db, T0, &peer, "ada", known).await.unwrap();
            attempt.failed(&db, T0).await.unwrap();
        }
        assert!(b.begin(&db, T0, "203.0.113.9", "ada", known).await.is_err());
        // The owner's address: its own budget, which a success clears without touching the
        // strangers' one.
        let own = b
            .begin(&db, T0, "198.51.100.7", "ada", known)
            .await
            .unwrap();
        own.failed(&db, T0).await.unwrap();
        let own = b
            .begin(&db, T0, "198.51.100.7", "ada", known)
            .await
            .unwrap();
        own.succeeded(&db).await.unwrap();
        assert_eq!(failures(&db, "account ada from 198.51.100.7").await, None);
        assert_eq!(failures(&db, "account ada").await, Some((2, T0)));
        // Remembered before `since`: a stranger's address again.
        let forgotten = ("user_ada", T0);
        assert!(
            b.begin(&db, T0, "198.51.100.7", "ada", forgotten)
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn id_3_the_sweep_deletes_ended_windows_only() {
    for (_keep, db) in databases().await {
        let b = budgets(100, 100);
        fail(&b, &db, T0, "10.0.0.1", "old").await;
        fail(&b, &db, T0 + 30_000, "10.0.0.2", "new").await;
        assert_eq!(b.sweep(&db, T0 + MINUTE_MS - 1).await.unwrap(), 0);
        assert_eq!(
            b.sweep(&db, T0 + MINUTE_MS).await.unwrap(),
            2,
            "old + its peer"
        );
        let left: Vec<String> = sign_in_budget::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&"account new".to_owned()) && left.contains(&"peer 10.0.0.2".into()));
    }
}

#[tokio::test]
async fn id_3_a_replica_isolated_for_the_control_arm_counts_alone() {
    let (_keep, db) = databases().await.remove(0);
    let (a, b) = (budgets(100, 2), budgets(100, 2));
    b.isolate_for_control_arm();
    fail(&a, &db, T0, "10.0.0.1", "ada").await;
    fail(&a, &db, T0, "10.0.0.1", "ada").await;
    assert!(a.begin(&db, T0, "10.0.0.1", "ada", ("", 0)).await.is_err());
    assert!(
        b.begin(&db, T0, "10.0.0.1", "ada", ("", 0)).await.is_ok(),
        "an isolated replica does not see the shared failures"
    );
}
