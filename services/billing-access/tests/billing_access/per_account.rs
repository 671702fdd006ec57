//! BILL-6: a billing account per managed top-level account (none for subaccounts), learnt from
//! the organization service's `AccountChanged` events (published here through the fake
//! organization producer's outbox and delivered over the real event stream); cross-tenant
//! NOT_FOUND; accounts that move to another organization.

use orgplane_billing_access::Config;
use orgplane_proto::billing::v1::*;
use orgplane_proto::events::v1::OrganizationPurged;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::{AccountState, OrgRole};
use prost_types::FieldMask;
use tonic::Code;

use crate::support::{Backend, Rig, account_changed, days_ago, on_account, reason, usage};

const M: &str = "orgmodel-large-2";

fn list(org: &str, show_closed: bool) -> ListBillingAccountsRequest {
    ListBillingAccountsRequest {
        organization_id: org.into(),
        show_closed,
        ..Default::default()
    }
}

/// An update of `account`'s billing account in `org`: plan and seats.
fn update(org: &str, account: &str, plan: BillingPlan, seats: i32) -> UpdateBillingAccountRequest {
    UpdateBillingAccountRequest {
        billing_account: Some(BillingAccount {
            organization_id: org.into(),
            account_id: account.into(),
            plan: plan as i32,
            seats,
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["plan".into(), "seats".into()],
        }),
        etag: String::new(),
    }
}

async fn listed(rig: &Rig, user: &str, org: &str, show_closed: bool) -> Vec<BillingAccount> {
    rig.client()
        .list_billing_accounts(rig.as_user(user, list(org, show_closed)))
        .await
        .unwrap()
        .into_inner()
        .billing_accounts
}

/// The billing accounts of managed accounts in the service's database, of every organization.
async fn billing_accounts_stored(rig: &Rig) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = rig.db();
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT COUNT(*) FROM billing_account_settings",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index::<i64>(0)
    .unwrap()
}

async fn billing_account_per_top_level_account(rig: &Rig) {
    rig.create_org(
        "org_a",
        &[
            ("a_billing", OrgRole::Billing),
            ("a_dev", OrgRole::Developer),
        ],
    )
    .await;
    // No accounts yet: the organization's own billing account only (GetBillingAccount).
    assert!(listed(rig, "a_billing", "org_a", true).await.is_empty());
    let events = vec![
        account_changed("acct_1", "org_a", "", None, ""),
        account_changed("acct_1s", "org_a", "acct_1", None, ""),
        account_changed("acct_2", "org_a", "", None, ""),
    ];
    rig.org_applied(events.clone()).await;
    let accounts = listed(rig, "a_billing", "org_a", false).await;
    let ids: Vec<&str> = accounts.iter().map(|a| a.account_id.as_str()).collect();
    // The subaccount has none: it is billed to its parent.
    assert_eq!(ids, ["acct_1", "acct_2"]);
    assert_eq!(billing_accounts_stored(rig).await, 2);
    for a in &accounts {
        assert_eq!(a.organization_id, "org_a");
        assert_eq!(a.plan, BillingPlan::Free as i32);
        assert_eq!(a.seats, 1);
        assert_eq!(a.billing_email, "billing@org_a.example");
        assert_eq!(a.account_state, AccountState::Active as i32);
        assert_eq!(a.account_display_name, format!("Account {}", a.account_id));
    }

    let mut c = rig.client();
    let updated = c
        .update_billing_account(
            rig.as_user("a_billing", update("org_a", "acct_1", BillingPlan::Team, 7)),
        )
        .await
        .unwrap()
        .into_inner()
        .billing_account
        .unwrap();
    assert_eq!((updated.plan, updated.seats), (BillingPlan::Team as i32, 7));
    assert_eq!(updated.account_id, "acct_1");
    // The organization's own billing account is another one, untouched.
    let own = c
        .get_billing_account(rig.as_user(
            "a_billing",
            GetBillingAccountRequest {
                organization_id: "org_a".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .billing_account
        .unwrap();
    assert_eq!((own.plan, own.seats, own.account_id.as_str()), (1, 1, ""));

    // Redelivered events change nothing (the etag stays).
    rig.org_applied(events).await;
    let again = listed(rig, "a_billing", "org_a", false).await;
    assert_eq!(again[0], updated);

    // A subaccount has no billing account to update.
    let err = c
        .update_billing_account(rig.as_user(
            "a_billing",
            update("org_a", "acct_1s", BillingPlan::Team, 2),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "ACCOUNT_IS_SUBACCOUNT");
    // Billing roles only.
    let err = c
        .list_billing_accounts(rig.as_user("a_dev", list("org_a", false)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Closing: the billing account stays readable (with show_closed) but no longer changes.
    rig.org_applied(vec![account_changed(
        "acct_2",
        "org_a",
        "",
        Some(days_ago(0)),
        "",
    )])
    .await;
    assert_eq!(listed(rig, "a_billing", "org_a", false).await.len(), 1);
    let all = listed(rig, "a_billing", "org_a", true).await;
    assert_eq!(all[1].account_state, AccountState::Closed as i32);
    let err = c
        .update_billing_account(
            rig.as_user("a_billing", update("org_a", "acct_2", BillingPlan::Team, 2)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "ACCOUNT_CLOSED");

    // Purging the organization removes its accounts (rule BILL-5).
    assert_eq!(rig.count("billing_managed_accounts", "org_a").await, 3);
    rig.org_applied(vec![Payload::OrganizationPurged(OrganizationPurged {
        organization_id: "org_a".into(),
    })])
    .await;
    assert_eq!(rig.count("billing_managed_accounts", "org_a").await, 0);
    assert_eq!(billing_accounts_stored(rig).await, 0);
}

#[tokio::test]
async fn bill_6_a_billing_account_per_managed_top_level_account() {
    billing_account_per_top_level_account(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn bill_6_a_billing_account_per_managed_top_level_account_postgres() {
    if let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await {
        billing_account_per_top_level_account(&rig).await;
    }
}

#[tokio::test]
async fn bill_6_another_organizations_account_billing_is_not_found() {
    let rig = Rig::sqlite().await;
    rig.create_org("org_a", &[("a_billing", OrgRole::Billing)])
        .await;
    rig.create_org("org_b", &[("b_billing", OrgRole::Billing)])
        .await;
    rig.org_applied(vec![
        account_changed("acct_a", "org_a", "", None, ""),
        account_changed("acct_b", "org_b", "", None, ""),
    ])
    .await;
    let mut c = rig.client();
    // Control: B's billing member changes B's account.
    c.update_billing_account(
        rig.as_user("b_billing", update("org_b", "acct_b", BillingPlan::Team, 3)),
    )
    .await
    .unwrap();
    // A's account through B, and an account that does not exist: the same NOT_FOUND.
    let foreign = c
        .update_billing_account(
            rig.as_user("b_billing", update("org_b", "acct_a", BillingPlan::Team, 3)),
        )
        .await
        .unwrap_err();
    let unknown = c
        .update_billing_account(rig.as_user(
            "b_billing",
            update("org_b", "acct_none", BillingPlan::Team, 3),
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    assert_eq!(
        (unknown.code(), reason(&unknown)),
        (foreign.code(), reason(&foreign))
    );
    // Through A, where B's member is no member: NOT_FOUND too.
    let outsider = c
        .update_billing_account(
            rig.as_user("b_billing", update("org_a", "acct_a", BillingPlan::Team, 3)),
        )
        .await
        .unwrap_err();
    assert_eq!(outsider.code(), Code::NotFound);
    // B lists its own account only; A's is unchanged.
    let b: Vec<String> = listed(&rig, "b_billing", "org_b", true)
        .await
        .into_iter()
        .map(|a| a.account_id)
        .collect();
    assert_eq!(b, ["acct_b"]);
    let a = listed(&rig, "a_billing", "org_a", true).await;
    assert_eq!((a[0].plan, a[0].seats), (BillingPlan::Free as i32, 1));
}

#[tokio::test]
async fn bill_6_a_moved_account_bills_to_its_new_organization() {
    moved_account(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn bill_6_a_moved_account_bills_to_its_new_organization_postgres() {
    if let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await {
        moved_account(&rig).await;
    }
}

async fn moved_account(rig: &Rig) {
    rig.create_org("org_a", &[("a_billing", OrgRole::Billing)])
        .await;
    rig.create_org("org_b", &[("b_billing", OrgRole::Billing)])
        .await;
    rig.org_applied(vec![
        account_changed("acct_m", "org_a", "", None, ""),
        account_changed("acct_ms", "org_a", "acct_m", None, ""),
    ])
    .await;
    let mut c = rig.client();
    c.update_billing_account(rig.as_user(
        "a_billing",
        update("org_a", "acct_m", BillingPlan::Enterprise, 9),
    ))
    .await
    .unwrap();
    let t = days_ago(1);
    let before = rig
        .record(vec![on_account(
            usage("org_a", "k_before", ["", "", "", M], (100, 1), t),
            "acct_ms",
        )])
        .await;
    assert_eq!(before[0].status, UsageRecordStatus::Accepted as i32);

    // The accepted MANAGED import moves the account and its subaccount to B.
    rig.org_applied(vec![
        account_changed("acct_m", "org_b", "", None, "org_a"),
        account_changed("acct_ms", "org_b", "acct_m", None, "org_a"),
    ])
    .await;
    let results = rig
        .record(vec![
            on_account(
                usage("org_a", "k_old_org", ["", "", "", M], (1, 1), t + 1),
                "acct_ms",
            ),
            on_account(
                usage("org_b", "k_after", ["", "", "", M], (20, 2), t + 2),
                "acct_ms",
            ),
        ])
        .await;
    assert_eq!(results[0].status, UsageRecordStatus::Refused as i32);
    assert_eq!(results[0].reason, "ACCOUNT_NOT_FOUND");
    assert!(!results[0].retryable);
    assert_eq!(results[1].status, UsageRecordStatus::Accepted as i32);

    // The billing account moved with the account, settings and all.
    assert!(listed(rig, "a_billing", "org_a", true).await.is_empty());
    let b = listed(rig, "b_billing", "org_b", true).await;
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].account_id.as_str(), b[0].organization_id.as_str()),
        ("acct_m", "org_b")
    );
    assert_eq!((b[0].plan, b[0].seats), (BillingPlan::Enterprise as i32, 9));
    let err = c
        .update_billing_account(
            rig.as_user("a_billing", update("org_a", "acct_m", BillingPlan::Team, 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Usage keeps the organization it was recorded in: A's report still holds the earlier
    // usage under the account, B's only the later one.
    let by_account = |org: &str| GetUsageReportRequest {
        organization_id: org.into(),
        start_time: Some(crate::support::ts(t - 86_400_000)),
        end_time: Some(crate::support::ts(t + 86_400_000)),
        group_by: vec![
            UsageDimension::Account as i32,
            UsageDimension::Subaccount as i32,
        ],
        ..Default::default()
    };
    for (user, org, input) in [("a_billing", "org_a", 100), ("b_billing", "org_b", 20)] {
        let report = c
            .get_usage_report(rig.as_user(user, by_account(org)))
            .await
            .unwrap()
            .into_inner();
        let rows: Vec<(String, String, i64)> = report
            .buckets
            .iter()
            .flat_map(|b| b.rows.iter())
            .map(|r| {
                (
                    r.account_id.clone(),
                    r.subaccount_id.clone(),
                    r.input_tokens,
                )
            })
            .collect();
        assert_eq!(rows, [("acct_m".into(), "acct_ms".into(), input)], "{org}");
    }
}
