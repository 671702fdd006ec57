//! Registration and DNS verification (rule ORG-14): what a check finds, the events and audit
//! records of a change of verification, expiry, etags, the rate limit, and the refusals of
//! domains no organization may register.

use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::*;
use tonic::Code;

use crate::common::*;
use crate::harness::Backend;

async fn verification_records_what_was_found(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let org = create_org(&env, "user_ada", "Acme").await;
    let d = create_domain(
        &env,
        "user_ada",
        &org.id,
        "Acme.TEST",
        DomainPolicy::Unspecified,
    )
    .await;
    assert_eq!(d.domain_name, "acme.test");
    assert_eq!(d.state(), DomainState::Pending);
    assert_eq!(d.policy(), DomainPolicy::None);
    assert!(d.id.starts_with("dom_"));
    assert!(d.last_check.is_none() && d.verify_time.is_none() && d.expire_time.is_some());
    let challenge = d.challenge.clone().unwrap();
    assert_eq!(challenge.record_name, "_orgplane-challenge.acme.test");
    assert_eq!(challenge.record_type, "TXT");
    let token = challenge
        .record_value
        .strip_prefix("orgplane-domain-verification=")
        .unwrap();
    assert_eq!(token.len(), 32, "128 bits in hex");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let start = env.org.outbox().head().await.unwrap().revision;

    // No record: FAILED, NOT_FOUND, nothing found, and a sentence naming the record.
    let r = verify(&env, "user_ada", &d.id).await.unwrap();
    let failed = r.domain.unwrap();
    assert_eq!(failed.state(), DomainState::Failed);
    assert_eq!(
        r.revision, 0,
        "never verified: no change of verification, no event"
    );
    let check = failed.last_check.clone().unwrap();
    assert_eq!(check.outcome(), DomainCheckOutcome::NotFound);
    assert!(check.found_values.is_empty());
    assert!(
        check.detail.contains("_orgplane-challenge.acme.test"),
        "{}",
        check.detail
    );

    // A wrong value: MISMATCH, listing what is there.
    env.dns
        .set_txt(
            &challenge.record_name,
            &["v=spf1 -all", "orgplane-domain-verification=nope"],
        )
        .await;
    let r = verify(&env, "user_ada", &d.id).await.unwrap();
    let check = r.domain.unwrap().last_check.unwrap();
    assert_eq!(check.outcome(), DomainCheckOutcome::Mismatch);
    let mut found = check.found_values.clone();
    found.sort();
    assert_eq!(
        found,
        vec!["orgplane-domain-verification=nope", "v=spf1 -all"]
    );

    // The record (next to another TXT value): VERIFIED, with an event.
    publish(&env, &d, &["v=spf1 -all"]).await;
    let r = verify(&env, "user_ada", &d.id).await.unwrap();
    let ok = r.domain.unwrap();
    assert_eq!(ok.state(), DomainState::Verified);
    assert_eq!(
        ok.last_check.as_ref().unwrap().outcome(),
        DomainCheckOutcome::Found
    );
    assert!(ok.verify_time.is_some() && ok.expire_time.is_none());
    assert!(r.revision > start);
    // Checked again with the record still there: no change of verification, no event.
    let again = verify(&env, "user_ada", &d.id).await.unwrap();
    assert_eq!(again.revision, 0);
    assert_eq!(again.domain.unwrap().state(), DomainState::Verified);

    // The record removed: the re-check fails, and the loss of verification is published.
    env.dns.remove_txt(&challenge.record_name).await;
    let lost = verify(&env, "user_ada", &d.id).await.unwrap();
    let lost_domain = lost.domain.unwrap();
    assert_eq!(lost_domain.state(), DomainState::Failed);
    assert_eq!(
        lost_domain.last_check.unwrap().outcome(),
        DomainCheckOutcome::NotFound
    );
    assert!(lost.revision > r.revision);
    assert!(
        lost_domain.verify_time.is_some(),
        "it was verified once: it does not expire"
    );

    let changes: Vec<(i64, i32)> = env
        .events_after(start, 0)
        .await
        .into_iter()
        .filter_map(|e| match e.payload {
            Some(Payload::DomainChanged(c)) => {
                assert_eq!(
                    (c.domain_id.as_str(), c.domain_name.as_str()),
                    (d.id.as_str(), "acme.test")
                );
                assert_eq!(c.organization_id, org.id);
                Some((e.revision, c.state))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (r.revision, DomainState::Verified as i32),
            (lost.revision, DomainState::Failed as i32)
        ]
    );

    // Etags: a stale one is refused, the current one accepted.
    let stale = env
        .client()
        .delete_domain(env.as_user(
            "user_ada",
            DeleteDomainRequest {
                domain_id: d.id.clone(),
                etag: d.etag.clone(),
            },
        ))
        .await;
    expect_err(stale, Code::Aborted, "ETAG_MISMATCH");

    // Every mutation is audited with before and after.
    let records = env.audit_log("user_ada", &org.id).await;
    let of = |action: &str| records.iter().filter(|e| e.action == action).count();
    assert_eq!(of("domain.create"), 1);
    assert_eq!(of("domain.verify"), 5);
    assert!(records.iter().any(|e| e.action == "domain.verify"
        && field(&e.before, "state").as_deref() == Some("DOMAIN_STATE_FAILED")
        && field(&e.after, "state").as_deref() == Some("DOMAIN_STATE_VERIFIED")));
    assert!(
        records
            .iter()
            .any(|e| e.action == "domain.delete" && e.error_reason == "ETAG_MISMATCH")
    );
}

#[tokio::test]
async fn org_14_verification_records_found_mismatch_and_loss_sqlite() {
    verification_records_what_was_found(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_14_verification_records_found_mismatch_and_loss_postgres() {
    verification_records_what_was_found(Backend::Postgres).await;
}

#[tokio::test]
async fn org_14_registration_refuses_www_public_suffixes_and_consumer_mail() {
    let env = env(Backend::Sqlite).await.unwrap();
    let org = create_org(&env, "user_ada", "Acme").await;
    let mut c = env.client();
    for (name, reason) in [
        ("gmail.com", "DOMAIN_CONSUMER_MAIL"),
        ("GMAIL.com", "DOMAIN_CONSUMER_MAIL"),
        (OPERATOR_CONSUMER_DOMAIN, "DOMAIN_CONSUMER_MAIL"),
        ("co.uk", "DOMAIN_PUBLIC_SUFFIX"),
        ("github.io", "DOMAIN_PUBLIC_SUFFIX"),
        ("www.x.com", "DOMAIN_WWW_LABEL"),
        ("not a domain", "DOMAIN_MALFORMED"),
        ("acme", "DOMAIN_MALFORMED"),
        ("\u{212A}elvin.test", "EMAIL_CONFUSABLE_CHARACTERS"),
        ("", "INVALID_ARGUMENT"),
    ] {
        let r = c
            .create_domain(env.as_user("user_ada", create_req(&org.id, name, DomainPolicy::None)))
            .await;
        let err = expect_err(r, Code::InvalidArgument, reason);
        let d = crate::harness::details(&err);
        assert_eq!(d.field_violations[0].0, "domain.domain_name", "{name}");
    }
    // IDNA: stored and compared in ASCII.
    let idn = create_domain(&env, "user_ada", &org.id, "Bücher.test", DomainPolicy::None).await;
    assert_eq!(idn.domain_name, "xn--bcher-kva.test");
    let again = c
        .create_domain(env.as_user(
            "user_ada",
            create_req(&org.id, "xn--bcher-kva.test", DomainPolicy::None),
        ))
        .await;
    expect_err(again, Code::AlreadyExists, "DOMAIN_ALREADY_REGISTERED");
    // A subdomain of a public suffix is a domain like any other.
    create_domain(&env, "user_ada", &org.id, "acme.co.uk", DomainPolicy::None).await;
    // The idempotency key returns the first answer.
    let mut req = create_req(&org.id, "retry.test", DomainPolicy::None);
    req.request_id = "7d0c6e62-55cb-4c5a-9a3c-0e1b8b3f0a11".into();
    let first = c
        .create_domain(env.as_user("user_ada", req.clone()))
        .await
        .unwrap()
        .into_inner();
    let second = c
        .create_domain(env.as_user("user_ada", req))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.domain.unwrap().id, second.domain.unwrap().id);
    // At most 100 per organization.
    for i in 3..100 {
        create_domain(
            &env,
            "user_ada",
            &org.id,
            &format!("d{i}.test"),
            DomainPolicy::None,
        )
        .await;
    }
    let over = c
        .create_domain(env.as_user(
            "user_ada",
            create_req(&org.id, "one-too-many.test", DomainPolicy::None),
        ))
        .await;
    expect_err(over, Code::ResourceExhausted, "DOMAIN_LIMIT");
    let listed = c
        .list_domains(env.as_user(
            "user_ada",
            ListDomainsRequest {
                organization_id: org.id.clone(),
                page_size: 60,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.domains.len(), 60);
    let names: Vec<&str> = listed
        .domains
        .iter()
        .map(|d| d.domain_name.as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "by name");
    let rest = c
        .list_domains(env.as_user(
            "user_ada",
            ListDomainsRequest {
                organization_id: org.id.clone(),
                page_size: 60,
                page_token: listed.next_page_token,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.domains.len(), 40);
    assert!(rest.next_page_token.is_empty());
}

#[tokio::test]
async fn org_14_a_pending_domain_expires_and_only_owners_and_admins_manage_domains() {
    let env = env(Backend::Sqlite).await.unwrap();
    let org = create_org(&env, "user_ada", "Acme").await;
    let d = create_domain(&env, "user_ada", &org.id, "late.test", DomainPolicy::None).await;
    let kept = verified(&env, "user_ada", &org.id, "kept.test", DomainPolicy::None).await;
    env.clock.advance(chrono::Duration::days(8));
    let got = env
        .client()
        .get_domain(env.as_user(
            "user_ada",
            GetDomainRequest {
                domain_id: d.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_eq!(got.state(), DomainState::Expired);
    publish(&env, &d, &[]).await;
    expect_err(
        env.client()
            .verify_domain(env.as_user(
                "user_ada",
                VerifyDomainRequest {
                    domain_id: d.id.clone(),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "DOMAIN_EXPIRED",
    );
    let list = |state: DomainState| ListDomainsRequest {
        organization_id: org.id.clone(),
        state: state as i32,
        ..Default::default()
    };
    let mut c = env.client();
    let expired = c
        .list_domains(env.as_user("user_ada", list(DomainState::Expired)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        expired
            .domains
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        vec![d.id.as_str()]
    );
    let good = c
        .list_domains(env.as_user("user_ada", list(DomainState::Verified)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        good.domains
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        vec![kept.id.as_str()]
    );
    let pending = c
        .list_domains(env.as_user("user_ada", list(DomainState::Pending)))
        .await
        .unwrap()
        .into_inner();
    assert!(pending.domains.is_empty());

    // A USER member may not; an outsider does not see the domain; an admin key may.
    add_user(&env, &org.id, "user_ada", "user_bob").await;
    expect_err(
        c.get_domain(env.as_user(
            "user_bob",
            GetDomainRequest {
                domain_id: kept.id.clone(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "INSUFFICIENT_ROLE",
    );
    expect_err(
        c.get_domain(env.as_user(
            "user_eve",
            GetDomainRequest {
                domain_id: kept.id.clone(),
            },
        ))
        .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let key = format!("opk_admin_{}", org.id);
    let by_key = c
        .create_domain(env.with_key(&key, create_req(&org.id, "bykey.test", DomainPolicy::None)))
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_eq!(by_key.state(), DomainState::Pending);
}

#[tokio::test]
async fn org_14_checks_are_rate_limited_per_domain() {
    let env = env_with(Backend::Sqlite, 60).await.unwrap();
    let org = create_org(&env, "user_ada", "Acme").await;
    let d = create_domain(&env, "user_ada", &org.id, "slow.test", DomainPolicy::None).await;
    verify(&env, "user_ada", &d.id).await.unwrap();
    let err = verify(&env, "user_ada", &d.id).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        orgplane_platform::error::reason_of(&err).as_deref(),
        Some("RATE_LIMITED")
    );
    use tonic_types::StatusExt;
    let retry = err.get_details_retry_info().expect("RetryInfo");
    let delay = retry.retry_delay.unwrap();
    assert!(
        delay > std::time::Duration::from_secs(50) && delay <= std::time::Duration::from_secs(60),
        "{delay:?}"
    );
    env.clock.advance(chrono::Duration::seconds(61));
    verify(&env, "user_ada", &d.id).await.unwrap();
}

#[tokio::test]
async fn org_14_a_resolver_that_does_not_answer_is_recorded_as_lookup_failed() {
    // A UDP socket that never answers (and no TCP listener on its port).
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let env = env_asking(Backend::Sqlite, 0, Some(silent.local_addr().unwrap()))
        .await
        .unwrap();
    let org = create_org(&env, "user_ada", "Acme").await;
    let d = create_domain(&env, "user_ada", &org.id, "quiet.test", DomainPolicy::None).await;
    let started = std::time::Instant::now();
    let r = verify(&env, "user_ada", &d.id).await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "bounded by the timeout"
    );
    let failed = r.domain.unwrap();
    assert_eq!(failed.state(), DomainState::Failed);
    let check = failed.last_check.unwrap();
    assert_eq!(check.outcome(), DomainCheckOutcome::LookupFailed);
    assert!(check.found_values.is_empty());
    assert!(check.detail.contains("try again later"), "{}", check.detail);
}

/// A resolver outage is no proof that the record is gone: a VERIFIED domain keeps its
/// verification (and its policy) through a check that got no answer, and no event is published.
#[tokio::test]
async fn org_14_a_verified_domain_survives_a_check_without_an_answer() {
    let env = env(Backend::Sqlite).await.unwrap();
    let org = create_org(&env, "user_ada", "Acme").await;
    let d = create_domain(&env, "user_ada", &org.id, "steady.test", DomainPolicy::None).await;
    publish(&env, &d, &[]).await;
    let verified = verify(&env, "user_ada", &d.id).await.unwrap();
    assert_eq!(verified.domain.unwrap().state(), DomainState::Verified);
    let _hold = env.dns.hold(&d.challenge.as_ref().unwrap().record_name);
    let r = verify(&env, "user_ada", &d.id).await.unwrap();
    let kept = r.domain.unwrap();
    assert_eq!(kept.state(), DomainState::Verified);
    assert_eq!(
        kept.last_check.unwrap().outcome(),
        DomainCheckOutcome::LookupFailed
    );
    assert_eq!(r.revision, 0, "no change of verification, no event");
    let changes = env
        .events_after(verified.revision, 0)
        .await
        .into_iter()
        .filter(|e| matches!(e.payload, Some(Payload::DomainChanged(_))))
        .count();
    assert_eq!(changes, 0);
}

async fn a_change_during_the_lookup_wins(backend: Backend) {
    let Some(env) = env(backend).await else {
        return;
    };
    let org = create_org(&env, "user_ada", "Acme").await;
    let d = create_domain(&env, "user_ada", &org.id, "busy.test", DomainPolicy::None).await;
    publish(&env, &d, &[]).await;
    let hold = env.dns.hold(&d.challenge.as_ref().unwrap().record_name);
    let check = {
        let (mut c, req) = (
            env.client(),
            env.as_user(
                "user_ada",
                VerifyDomainRequest {
                    domain_id: d.id.clone(),
                },
            ),
        );
        tokio::spawn(async move { c.verify_domain(req).await })
    };
    // The check waits for DNS, outside any transaction: a policy change goes through meanwhile.
    hold.arrived.notified().await;
    let changed = update_policy(&env, "user_ada", &d, DomainPolicy::Blocked)
        .await
        .unwrap();
    hold.release();
    let lost = check.await.unwrap();
    expect_err(lost, Code::Aborted, "ETAG_MISMATCH");
    let now = env
        .client()
        .get_domain(env.as_user(
            "user_ada",
            GetDomainRequest {
                domain_id: d.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_eq!(
        now.etag,
        changed.domain.unwrap().etag,
        "the change stands, untouched"
    );
    assert_eq!(
        (now.state(), now.policy()),
        (DomainState::Pending, DomainPolicy::Blocked)
    );
    assert!(now.last_check.is_none());
    // Checked again, it verifies.
    hold.release();
    assert_eq!(
        verify(&env, "user_ada", &d.id)
            .await
            .unwrap()
            .domain
            .unwrap()
            .state(),
        DomainState::Verified
    );
}

#[tokio::test]
async fn org_14_a_change_made_during_the_dns_lookup_wins_cleanly_sqlite() {
    a_change_during_the_lookup_wins(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_14_a_change_made_during_the_dns_lookup_wins_cleanly_postgres() {
    a_change_during_the_lookup_wins(Backend::Postgres).await;
}
