//! BILL-2: a billing account exists from OrganizationCreated on; updates take a mask and an etag;
//! every mutation is audited.

use orgplane_billing_access::Config;
use orgplane_proto::billing::v1::*;
use orgplane_proto::events::v1::OrganizationUpdated;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::OrgRole;
use prost_types::FieldMask;
use tonic::Code;

use crate::support::{Backend, Rig};

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

async fn account_lifecycle(rig: &Rig) {
    rig.create_org(
        "org_a",
        &[("u_billing", OrgRole::Billing), ("u_admin", OrgRole::Admin)],
    )
    .await;
    let mut c = rig.client();
    let get = || GetBillingAccountRequest {
        organization_id: "org_a".into(),
    };
    let account = c
        .get_billing_account(rig.as_user("u_billing", get()))
        .await
        .unwrap()
        .into_inner()
        .billing_account
        .unwrap();
    assert_eq!(account.plan, BillingPlan::Free as i32);
    assert_eq!(account.billing_email, "billing@org_a.example");
    assert_eq!(account.seats, 1);
    assert!(!account.etag.is_empty());

    // The org's primary email changing later does not touch the billing email.
    let rev = rig
        .org_events(vec![Payload::OrganizationUpdated(OrganizationUpdated {
            organization_id: "org_a".into(),
            name: "Renamed".into(),
            primary_email: "new@org_a.example".into(),
        })])
        .await;
    rig.org_synced(rev).await;
    let again = c
        .get_billing_account(rig.as_user("u_billing", get()))
        .await
        .unwrap()
        .into_inner()
        .billing_account
        .unwrap();
    assert_eq!(again, account);

    let update = |plan: BillingPlan, email: &str, seats: i32, paths: &[&str], etag: &str| {
        UpdateBillingAccountRequest {
            billing_account: Some(BillingAccount {
                organization_id: "org_a".into(),
                plan: plan as i32,
                billing_email: email.into(),
                seats,
                ..Default::default()
            }),
            update_mask: mask(paths),
            etag: etag.into(),
        }
    };
    let updated = c
        .update_billing_account(rig.as_user(
            "u_billing",
            update(
                BillingPlan::Team,
                "invoices@org_a.example",
                12,
                &["plan", "billing_email", "seats"],
                &account.etag,
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .billing_account
        .unwrap();
    assert_eq!(updated.plan, BillingPlan::Team as i32);
    assert_eq!(updated.billing_email, "invoices@org_a.example");
    assert_eq!(updated.seats, 12);
    assert_ne!(updated.etag, account.etag);

    // Only the masked field changes.
    let seats_only = c
        .update_billing_account(rig.as_user(
            "u_admin",
            update(BillingPlan::Enterprise, "x@y.example", 20, &["seats"], ""),
        ))
        .await
        .unwrap()
        .into_inner()
        .billing_account
        .unwrap();
    assert_eq!(seats_only.plan, BillingPlan::Team as i32);
    assert_eq!(seats_only.seats, 20);

    // A stale etag is ABORTED and changes nothing.
    let err = c
        .update_billing_account(rig.as_user(
            "u_billing",
            update(BillingPlan::Free, "", 1, &["plan"], &account.etag),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);

    // Bad input: every problem is a field violation.
    for (req, field) in [
        (update(BillingPlan::Team, "", 1, &[], ""), "update_mask"),
        (
            update(BillingPlan::Team, "", 1, &["organization_id"], ""),
            "update_mask",
        ),
        (
            update(BillingPlan::Unspecified, "", 1, &["plan"], ""),
            "billing_account.plan",
        ),
        (
            update(BillingPlan::Team, "not-an-email", 1, &["billing_email"], ""),
            "billing_account.billing_email",
        ),
        (
            update(BillingPlan::Team, "", 0, &["seats"], ""),
            "billing_account.seats",
        ),
    ] {
        use tonic_types::StatusExt;
        let err = c
            .update_billing_account(rig.as_user("u_billing", req))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        let bad = err.get_error_details().bad_request().cloned().unwrap();
        assert_eq!(bad.field_violations[0].field, field);
    }

    // Audited: the creation by the system, the two updates by their users and the stale one
    // (as a failure; the malformed ones are not recorded), newest first.
    let events = c
        .list_audit_events(rig.as_user(
            "u_admin",
            ListAuditEventsRequest {
                organization_id: "org_a".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let actions: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.actor_id.as_str(),
                e.status_code.as_str(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("billing_account.update", "u_billing", "ABORTED"),
            ("billing_account.update", "u_admin", ""),
            ("billing_account.update", "u_billing", ""),
            ("billing_account.create", "", ""),
        ]
    );
    assert!(events[2].before.is_some() && events[2].after.is_some());
    // BILLING members manage billing but do not read the audit log.
    let err = c
        .list_audit_events(rig.as_user(
            "u_billing",
            ListAuditEventsRequest {
                organization_id: "org_a".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn bill_2_account_created_with_the_organization_and_updated_with_mask_and_etag() {
    account_lifecycle(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn bill_2_account_created_with_the_organization_and_updated_with_mask_and_etag_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await else {
        return;
    };
    account_lifecycle(&rig).await;
}

#[tokio::test]
async fn org_10_refused_billing_updates_are_audited_as_failures_in_the_target_org() {
    use orgplane_proto::audit::v1::{ActorKind, AuditEventFilter, Outcome};
    let rig = Rig::sqlite().await;
    rig.create_org(
        "org_b",
        &[("u_dev", OrgRole::Developer), ("u_admin", OrgRole::Admin)],
    )
    .await;
    rig.create_org("org_c", &[]).await;
    let mut c = rig.client();
    let upgrade = |org: &str, who: &str, request_id: &str| {
        let mut r = rig.as_user(
            who,
            UpdateBillingAccountRequest {
                billing_account: Some(BillingAccount {
                    organization_id: org.into(),
                    plan: BillingPlan::Enterprise as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["plan"]),
                etag: String::new(),
            },
        );
        r.metadata_mut()
            .insert("x-request-id", request_id.parse().unwrap());
        r
    };
    // A developer may not manage billing.
    let denied = c
        .update_billing_account(upgrade("org_b", "u_dev", "req-dev"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    // Another organization's owner: NOT_FOUND, not recorded (outsiders cannot write to the log).
    let outsider = c
        .update_billing_account(upgrade("org_b", "org_c_owner", "req-outsider"))
        .await
        .unwrap_err();
    assert_eq!(outsider.code(), Code::NotFound);
    // Not recorded: an unknown organization, a malformed request.
    let unknown = c
        .update_billing_account(upgrade("org_nope", "org_c_owner", "req-unknown"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let mut malformed = upgrade("org_b", "u_admin", "req-malformed");
    malformed.get_mut().update_mask = None;
    assert_eq!(
        c.update_billing_account(malformed)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let list = |org: &str, who: &str, outcome: Outcome| {
        rig.as_user(
            who,
            ListAuditEventsRequest {
                organization_id: org.into(),
                filter: Some(AuditEventFilter {
                    outcome: outcome as i32,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    };
    let failures = c
        .list_audit_events(list("org_b", "u_admin", Outcome::Failure))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let summary: Vec<_> = failures
        .iter()
        .map(|e| {
            (
                e.actor_id.as_str(),
                e.request_id.as_str(),
                e.status_code.as_str(),
                e.error_reason.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(
            "u_dev",
            "req-dev",
            "PERMISSION_DENIED",
            crate::support::reason(&denied)
        ),]
    );
    let dev = &failures[0];
    assert_eq!(dev.action, "billing_account.update");
    assert_eq!(dev.resource_type, "billing_account");
    assert_eq!(dev.resource_id, "org_b");
    assert_eq!(dev.actor_kind, ActorKind::User as i32);
    assert_eq!(dev.outcome, Outcome::Failure as i32);
    assert_eq!(dev.service, "billing-access");
    assert!(dev.before.is_none() && dev.after.is_none());
    let successes: Vec<String> = c
        .list_audit_events(list("org_b", "org_b_owner", Outcome::Success))
        .await
        .unwrap()
        .into_inner()
        .audit_events
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(successes, ["billing_account.create"]);
    let theirs = c
        .list_audit_events(list("org_c", "org_c_owner", Outcome::Failure))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert!(theirs.is_empty(), "{theirs:?}");
    assert_eq!(
        c.list_audit_events(list("org_b", "org_c_owner", Outcome::Failure))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

/// The string at `key` of an audit image, if it is one.
fn image_str<'a>(image: &'a prost_types::Struct, key: &str) -> Option<&'a str> {
    match image.fields.get(key)?.kind.as_ref()? {
        prost_types::value::Kind::StringValue(s) => Some(s),
        _ => None,
    }
}

#[tokio::test]
async fn org_10_billing_audit_images_are_proto_json() {
    use orgplane_proto::audit::v1::AuditEventFilter;
    let rig = Rig::sqlite().await;
    rig.create_org("org_j", &[]).await;
    let mut c = rig.client();
    c.update_billing_account(rig.as_user(
        "org_j_owner",
        UpdateBillingAccountRequest {
            billing_account: Some(BillingAccount {
                organization_id: "org_j".into(),
                plan: BillingPlan::Team as i32,
                billing_email: "invoices@org_j.example".into(),
                seats: 3,
                ..Default::default()
            }),
            update_mask: mask(&["plan", "billing_email", "seats"]),
            etag: String::new(),
        },
    ))
    .await
    .unwrap();
    rig.record(vec![crate::support::usage(
        "org_j",
        "k1",
        ["", "", "", "orgmodel-small-1"],
        (10, 2),
        crate::support::days_ago(1),
    )])
    .await;
    let events = |action: &str| {
        rig.as_user(
            "org_j_owner",
            ListAuditEventsRequest {
                organization_id: "org_j".into(),
                filter: Some(AuditEventFilter {
                    action: action.into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    };
    let mut c2 = rig.client();
    let update = c2
        .list_audit_events(events("billing_account.update"))
        .await
        .unwrap()
        .into_inner()
        .audit_events
        .remove(0);
    let (before, after) = (update.before.unwrap(), update.after.unwrap());
    // Canonical proto3 JSON: lowerCamelCase names, enum value names, RFC 3339 times.
    assert_eq!(image_str(&before, "plan"), Some("BILLING_PLAN_FREE"));
    assert_eq!(image_str(&after, "plan"), Some("BILLING_PLAN_TEAM"));
    assert_eq!(
        image_str(&after, "billingEmail"),
        Some("invoices@org_j.example")
    );
    assert_eq!(image_str(&after, "organizationId"), Some("org_j"));
    assert!(image_str(&after, "updateTime").is_some_and(|t| t.ends_with('Z')));
    for image in [&before, &after] {
        assert!(
            image.fields.keys().all(|k| !k.contains('_')),
            "snake_case key in {image:?}"
        );
    }
    let create = c2
        .list_audit_events(events("billing_account.create"))
        .await
        .unwrap()
        .into_inner()
        .audit_events
        .remove(0);
    let created = create.after.unwrap();
    assert_eq!(image_str(&created, "plan"), Some("BILLING_PLAN_FREE"));
    assert_eq!(
        image_str(&created, "billingEmail"),
        Some("billing@org_j.example")
    );
    // A usage batch is a summary with lowerCamelCase keys.
    let batch = c2
        .list_audit_events(events("usage.record"))
        .await
        .unwrap()
        .into_inner()
        .audit_events
        .remove(0);
    let summary = batch.after.unwrap();
    let number = |key: &str| match summary.fields.get(key).and_then(|v| v.kind.as_ref()) {
        Some(prost_types::value::Kind::NumberValue(n)) => Some(*n),
        _ => None,
    };
    assert_eq!(number("acceptedRecords"), Some(1.0));
    assert_eq!(number("inputTokens"), Some(10.0));
    assert_eq!(number("outputTokens"), Some(2.0));
    assert!(summary.fields.keys().all(|k| !k.contains('_')));
}

async fn racing_updates(rig: &Rig) {
    rig.create_org("org_race", &[]).await;
    let mut c = rig.client();
    let account = c
        .get_billing_account(rig.as_user(
            "org_race_owner",
            GetBillingAccountRequest {
                organization_id: "org_race".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .billing_account
        .unwrap();
    assert_eq!(account.etag, "v1");
    let mut tasks = Vec::new();
    for seats in 2..10 {
        let mut c = rig.client();
        let req = rig.as_user(
            "org_race_owner",
            UpdateBillingAccountRequest {
                billing_account: Some(BillingAccount {
                    organization_id: "org_race".into(),
                    seats,
                    ..Default::default()
                }),
                update_mask: mask(&["seats"]),
                etag: account.etag.clone(),
            },
        );
        tasks.push(tokio::spawn(
            async move { c.update_billing_account(req).await },
        ));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(r) => winners.push(r.into_inner().billing_account.unwrap()),
            Err(status) => {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                assert_eq!(crate::support::reason(&status), "ETAG_MISMATCH");
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of the racing updates wins");
    assert_eq!(winners[0].etag, "v2");
}

#[tokio::test]
async fn bill_2_racing_updates_with_one_etag_have_exactly_one_winner() {
    racing_updates(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn bill_2_racing_updates_with_one_etag_have_exactly_one_winner_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await else {
        return;
    };
    racing_updates(&rig).await;
}
