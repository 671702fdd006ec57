//! One enforcing holder per domain (rule ORG-14): several organizations may register a domain
//! and hold it VERIFIED with NONE or BLOCKED, but only one with RESTRICTED or AUTO_ENROLL —
//! guaranteed by the database's partial unique index, including under concurrent verification.
//! The control arm drops the index and shows the same race then ends with several holders.

use orgplane_organization::store::domain;
use orgplane_organization::store::domains::ENFORCING_INDEX;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::*;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tonic::Code;

use crate::common::*;
use crate::harness::Backend;

async fn one_enforcing_holder(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let a = create_org(&env, "user_a", "A").await;
    let b = create_org(&env, "user_b", "B").await;
    let da = verified(
        &env,
        "user_a",
        &a.id,
        "shared.test",
        DomainPolicy::Restricted,
    )
    .await;
    let db = create_domain(
        &env,
        "user_b",
        &b.id,
        "shared.test",
        DomainPolicy::AutoEnroll,
    )
    .await;
    publish(
        &env,
        &db,
        &[da.challenge.as_ref().unwrap().record_value.as_str()],
    )
    .await;
    let err = expect_err(
        env.client()
            .verify_domain(env.as_user(
                "user_b",
                VerifyDomainRequest {
                    domain_id: db.id.clone(),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "DOMAIN_CLAIMED",
    );
    let details = crate::harness::details(&err);
    assert_eq!(
        details.metadata.get("domain_name").map(String::as_str),
        Some("shared.test")
    );
    // With NONE the second organization may verify it too.
    let none = update_policy(&env, "user_b", &db, DomainPolicy::None)
        .await
        .unwrap();
    assert_eq!(none.revision, 0, "not VERIFIED: no event");
    let ok = verify(&env, "user_b", &db.id)
        .await
        .unwrap()
        .domain
        .unwrap();
    assert_eq!(ok.state(), DomainState::Verified);
    // But not switch to an enforcing policy while A holds it so.
    expect_err(
        update_policy(&env, "user_b", &ok, DomainPolicy::Restricted).await,
        Code::FailedPrecondition,
        "DOMAIN_CLAIMED",
    );
    // BLOCKED is not enforcing.
    let start = env.org.outbox().head().await.unwrap().revision;
    let blocked = update_policy(&env, "user_b", &ok, DomainPolicy::Blocked)
        .await
        .unwrap();
    assert!(
        blocked.revision > start,
        "a VERIFIED domain's policy change is an event"
    );
    // Once A removes its domain, B may enforce.
    let a_now = env
        .client()
        .get_domain(env.as_user(
            "user_a",
            GetDomainRequest {
                domain_id: da.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    let gone = env
        .client()
        .delete_domain(env.as_user(
            "user_a",
            DeleteDomainRequest {
                domain_id: da.id.clone(),
                etag: a_now.etag.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let enforced = update_policy(&env, "user_b", &ok, DomainPolicy::AutoEnroll)
        .await
        .unwrap();
    assert!(enforced.revision > gone.revision);
    let events: Vec<Payload> = env
        .events_after(start, 0)
        .await
        .into_iter()
        .filter_map(|e| e.payload)
        .collect();
    assert!(
        matches!(&events[0], Payload::DomainChanged(c) if c.domain_id == db.id && c.policy == DomainPolicy::Blocked as i32 && c.state == DomainState::Verified as i32)
    );
    assert!(
        matches!(&events[1], Payload::DomainDeleted(d) if d.domain_id == da.id && d.organization_id == a.id && d.domain_name == "shared.test")
    );
    assert!(
        matches!(&events[2], Payload::DomainChanged(c) if c.domain_id == db.id && c.policy == DomainPolicy::AutoEnroll as i32)
    );
    // The audit log has the policy change with before and after.
    let records = env.audit_log("user_b", &b.id).await;
    let update = records
        .iter()
        .find(|e| {
            e.action == "domain.update"
                && field(&e.after, "policy").as_deref() == Some("DOMAIN_POLICY_AUTO_ENROLL")
        })
        .unwrap();
    assert_eq!(
        field(&update.before, "policy").as_deref(),
        Some("DOMAIN_POLICY_BLOCKED")
    );
    assert!(
        records
            .iter()
            .any(|e| e.action == "domain.verify" && e.error_reason == "DOMAIN_CLAIMED")
    );
}

#[tokio::test]
async fn org_14_a_second_organization_cannot_enforce_a_domain_another_holds_sqlite() {
    one_enforcing_holder(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_14_a_second_organization_cannot_enforce_a_domain_another_holds_postgres() {
    one_enforcing_holder(Backend::Postgres).await;
}

/// `n` organizations register `name` RESTRICTED, every token is published, and all verify at
/// once. Returns how many calls succeeded and how many rows hold the domain enforcing.
async fn race(env: &Env, name: &str, n: usize) -> (usize, u64) {
    let mut domains = Vec::new();
    for i in 0..n {
        let owner = format!("user_{name}_{i}");
        let org = create_org(env, &owner, &format!("Org {i}")).await;
        domains.push((
            owner.clone(),
            create_domain(env, &owner, &org.id, name, DomainPolicy::Restricted).await,
        ));
    }
    let values: Vec<&str> = domains
        .iter()
        .map(|(_, d)| d.challenge.as_ref().unwrap().record_value.as_str())
        .collect();
    env.dns
        .set_txt(
            &domains[0].1.challenge.as_ref().unwrap().record_name,
            &values,
        )
        .await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for (owner, d) in &domains {
        let (mut c, req) = (
            env.client(),
            env.as_user(
                owner,
                VerifyDomainRequest {
                    domain_id: d.id.clone(),
                },
            ),
        );
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.verify_domain(req).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert_eq!(
                    r.into_inner().domain.unwrap().state(),
                    DomainState::Verified
                );
                wins += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
                assert_eq!(
                    orgplane_platform::error::reason_of(&e).as_deref(),
                    Some("DOMAIN_CLAIMED")
                );
            }
        }
    }
    let holders = domain::Entity::find()
        .filter(domain::Column::DomainName.eq(name))
        .filter(domain::Column::State.eq(DomainState::Verified as i32))
        .filter(domain::Column::Policy.is_in([
            DomainPolicy::Restricted as i32,
            DomainPolicy::AutoEnroll as i32,
        ]))
        .count(env.org.db())
        .await
        .unwrap();
    (wins, holders)
}

async fn concurrent_race(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    for round in 0..3 {
        let (wins, holders) = race(&env, &format!("race{round}.test"), 6).await;
        assert_eq!((wins, holders), (1, 1), "round {round}: exactly one winner");
    }
    // Control arm: without the index the same race ends with several enforcing holders, so
    // the assertion above can fail and the guarantee is the index's.
    env.org
        .db()
        .execute_unprepared(&format!("DROP INDEX {ENFORCING_INDEX}"))
        .await
        .unwrap();
    let (wins, holders) = race(&env, "unguarded.test", 6).await;
    eprintln!(
        "control arm without {ENFORCING_INDEX}: {wins} of 6 calls won, {holders} enforcing holders"
    );
    assert!(
        holders >= 2 && wins as u64 == holders,
        "without the index: {wins} wins, {holders} holders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn org_14_concurrent_verifications_of_one_domain_have_one_winner_sqlite() {
    concurrent_race(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn org_14_concurrent_verifications_of_one_domain_have_one_winner_postgres() {
    concurrent_race(Backend::Postgres).await;
}

/// The limit of 100 domains per organization holds under concurrent registrations: the count
/// and the insert happen under the organization's row lock.
async fn limit_under_concurrency(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let org = create_org(&env, "user_a", "A").await;
    for i in 0..95 {
        create_domain(
            &env,
            "user_a",
            &org.id,
            &format!("d{i}.test"),
            DomainPolicy::None,
        )
        .await;
    }
    let attempts = (0..12).map(|i| {
        let (mut c, req) = (
            env.client(),
            env.as_user(
                "user_a",
                create_req(&org.id, &format!("late{i}.test"), DomainPolicy::None),
            ),
        );
        tokio::spawn(async move { c.create_domain(req).await })
    });
    let mut created = 0;
    for a in futures::future::join_all(attempts).await {
        match a.unwrap() {
            Ok(_) => created += 1,
            Err(e) => {
                expect_err(Err::<(), _>(e), Code::ResourceExhausted, "DOMAIN_LIMIT");
            }
        }
    }
    assert_eq!(created, 5);
    let total = domain::Entity::find()
        .filter(domain::Column::OrganizationId.eq(org.id.clone()))
        .count(env.org.db())
        .await
        .unwrap();
    assert_eq!(total, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn org_14_the_domain_limit_holds_under_concurrent_registrations_sqlite() {
    limit_under_concurrency(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn org_14_the_domain_limit_holds_under_concurrent_registrations_postgres() {
    limit_under_concurrency(Backend::Postgres).await;
}
