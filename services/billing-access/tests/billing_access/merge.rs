//! ORG-15 / BILL-6: a merge re-attributes the candidate's billing data to the prime without
//! changing any amount. Two organizations with usage under the same idempotency keys, naming
//! accounts, subaccounts and workspaces of both; after a real `OrganizationsMerged` event the
//! prime's reports are the union of the two organizations' reports before, to the last decimal,
//! and the candidate is gone from billing. Exactly once: the event applied again (re-published,
//! or called outside the cursor) changes nothing, and a control arm shows that the comparison
//! catches a double application.

use orgplane_billing_access::app::merge::apply_organizations_merged;
use orgplane_billing_access::store::merge as merge_store;
use orgplane_platform::audit::{self, AuditLogWriter};
use orgplane_proto::billing::v1::*;
use orgplane_proto::events::v1::event::Payload;
use sea_orm::PaginatorTrait;
use sea_orm::entity::prelude::*;
use tonic::Code;

use crate::merge_reports::{
    CANDIDATE, HOUR, PRIME, assert_same, merge_event, prices, record_keys, seed, snapshot,
    usage_map,
};
use crate::support::{Backend, Rig, days_ago, on_account, usage};

/// Merge-audit records of `org`.
async fn merge_audits(rig: &Rig, org: &str) -> u64 {
    audit::row::Entity::find()
        .filter(audit::row::Column::OrganizationId.eq(org))
        .filter(audit::row::Column::Action.eq("billing_account.merge"))
        .count(rig.db())
        .await
        .unwrap()
}

async fn not_found(rig: &Rig, user: &str, org: &str) {
    let mut client = rig.client();
    let account = client
        .get_billing_account(rig.as_user(
            user,
            GetBillingAccountRequest {
                organization_id: org.into(),
            },
        ))
        .await
        .unwrap_err();
    let usage = client
        .get_usage_report(rig.as_user(
            user,
            GetUsageReportRequest {
                organization_id: org.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    let cost = client
        .get_cost_report(rig.as_user(
            user,
            GetCostReportRequest {
                organization_id: org.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    let accounts = client
        .list_billing_accounts(rig.as_user(
            user,
            ListBillingAccountsRequest {
                organization_id: org.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    for status in [account, usage, cost, accounts] {
        assert_eq!(status.code(), Code::NotFound, "{user}: {status:?}");
    }
}

async fn reattributes(rig: &Rig) {
    let day = days_ago(3);
    seed(rig, day).await;
    let before_p = snapshot(rig, PRIME, "org_p_owner", day).await;
    let before_c = snapshot(rig, CANDIDATE, "org_c_owner", day).await;
    let expected = before_p.union(&before_c);
    assert_ne!(expected, before_p, "the candidate has usage");
    let account = |user: &str| {
        let mut client = rig.client();
        let req = rig.as_user(
            user,
            GetBillingAccountRequest {
                organization_id: PRIME.into(),
            },
        );
        async move {
            client
                .get_billing_account(req)
                .await
                .unwrap()
                .into_inner()
                .billing_account
                .unwrap()
        }
    };
    let prime_account = account("org_p_owner").await;

    rig.org_applied(vec![merge_event()]).await;

    // The prime's reports are the union, to the last decimal (Decimal equality is exact, and
    // the totals as sent are the exact sums written in their shortest form).
    let after = snapshot(rig, PRIME, "org_p_owner", day).await;
    assert_same(&after, &expected);
    for (key, total) in &expected.cost_total {
        assert_eq!(
            after.cost_total[key].to_string(),
            total.normalize().to_string()
        );
    }
    // The shared key k1, in the same minute with the same dimensions: one row, both records.
    let k1_row = (
        day,
        ["|", "", "m-large", "", "", ""].map(str::to_owned).to_vec(),
    );
    assert_eq!(
        after.usage_by_everything[&k1_row],
        (1_000_000 + 999_999, 3 + 5, 2)
    );
    // The prime's own billing account is unchanged; the candidate's is gone.
    assert_eq!(account("org_p_owner").await, prime_account);
    for table in [
        "billing_accounts",
        "usage_records",
        "usage_rollups",
        "usage_account_rollups",
        "billing_workspaces",
        "billing_managed_accounts",
    ] {
        assert_eq!(rig.count(table, CANDIDATE).await, 0, "{table}");
    }
    // The candidate's records under their moved keys, next to the prime's own.
    assert_eq!(
        record_keys(rig, PRIME).await,
        [
            "k1",
            "k2",
            "k3",
            "k_p",
            "org_c k1",
            "org_c k2",
            "org_c k3",
            "org_c k_c",
            "org_c k_c2"
        ]
    );
    assert_eq!(rig.count("billing_managed_accounts", PRIME).await, 3);
    assert_eq!(
        rig.count("billing_merged_organizations", CANDIDATE).await,
        1
    );
    let listed = rig
        .client()
        .list_billing_accounts(rig.as_user(
            "p_billing",
            ListBillingAccountsRequest {
                organization_id: PRIME.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed
        .billing_accounts
        .iter()
        .map(|b| b.account_id.as_str())
        .collect();
    assert_eq!(ids, ["acct_c", "acct_p"]);
    assert_eq!(
        (
            merge_audits(rig, PRIME).await,
            merge_audits(rig, CANDIDATE).await
        ),
        (1, 1)
    );

    // The candidate is gone from billing, even to its former OWNER and BILLING member.
    for user in ["org_c_owner", "c_billing", "org_p_owner"] {
        not_found(rig, user, CANDIDATE).await;
    }

    // Exactly once: the event published again goes through the handler (the consumer applied
    // its revision) and changes nothing; the handler called outside the cursor neither.
    rig.org_applied(vec![merge_event()]).await;
    let Payload::OrganizationsMerged(event) = merge_event() else {
        unreachable!()
    };
    let txn = orgplane_platform::db::begin_write(rig.db()).await.unwrap();
    let again = apply_organizations_merged(
        &txn,
        &AuditLogWriter::new("billing-access"),
        &event,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(again, None);
    assert_same(&snapshot(rig, PRIME, "org_p_owner", day).await, &expected);
    assert_eq!(rig.count("usage_records", PRIME).await, 9);
    assert_eq!(
        (
            merge_audits(rig, PRIME).await,
            merge_audits(rig, CANDIDATE).await
        ),
        (1, 1)
    );

    // Usage naming the candidate is refused for good; the prime's keys are its own (k1 is the
    // prime's, k_c was only the candidate's); the moved account and workspace bill in the prime.
    let t = day + 2 * HOUR;
    let results = rig
        .record(vec![
            usage(CANDIDATE, "k_new", ["", "", "", "m-small"], (1, 1), t),
            on_account(
                usage(CANDIDATE, "k_new2", ["", "", "", "m-small"], (1, 1), t),
                "acct_c",
            ),
            usage(PRIME, "k1", ["", "", "", "m-small"], (1, 1), t),
            on_account(
                usage(PRIME, "k_c", ["ws_c1", "", "", "m-small"], (5, 0), t),
                "acct_cs",
            ),
        ])
        .await;
    use UsageRecordStatus::{Accepted, Duplicate, Refused};
    let got: Vec<_> = results
        .iter()
        .map(|r| {
            (
                UsageRecordStatus::try_from(r.status).unwrap(),
                r.reason.as_str(),
                r.retryable,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Refused, "ORGANIZATION_NOT_FOUND", false),
            (Refused, "ORGANIZATION_NOT_FOUND", false),
            (Duplicate, "", false),
            (Accepted, "", false),
        ]
    );
    let by_workspace =
        usage_map(rig, PRIME, "org_p_owner", day, &[UsageDimension::Workspace]).await;
    let ws_c1 = (day, vec!["ws_c1|Candidate one".to_owned()]);
    assert_eq!(by_workspace[&ws_c1], (3000 + 5, 30, 2));
}

#[tokio::test]
async fn org_15_merge_reattributes_billing_without_changing_any_amount() {
    reattributes(&Rig::new(Backend::Sqlite, prices()).await.unwrap()).await;
}

#[tokio::test]
async fn org_15_merge_reattributes_billing_without_changing_any_amount_postgres() {
    if let Some(rig) = Rig::new(Backend::Postgres, prices()).await {
        reattributes(&rig).await;
    }
}

/// The control arm: the check above would catch a double application. The re-attribution's
/// summing step run twice outside the cursor and the merge guard (as a handler without them
/// would on a redelivery) leaves the prime with the candidate's usage counted twice, and the
/// same comparison fails.
async fn double_application_is_caught(rig: &Rig) {
    let day = days_ago(3);
    seed(rig, day).await;
    let before_p = snapshot(rig, PRIME, "org_p_owner", day).await;
    let before_c = snapshot(rig, CANDIDATE, "org_c_owner", day).await;
    let expected = before_p.union(&before_c);
    let txn = orgplane_platform::db::begin_write(rig.db()).await.unwrap();
    for _ in 0..2 {
        merge_store::add_rollups_into(&txn, CANDIDATE, PRIME)
            .await
            .unwrap();
    }
    merge_store::delete_rollups(&txn, CANDIDATE).await.unwrap();
    merge_store::move_workspaces(&txn, CANDIDATE, PRIME)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let doubled = snapshot(rig, PRIME, "org_p_owner", day).await;
    assert_ne!(doubled, expected, "the comparison catches the double count");
    assert_same(&doubled, &expected.union(&before_c));
    assert_ne!(doubled.cost_total, expected.cost_total);
}

#[tokio::test]
async fn org_15_control_a_double_application_would_be_caught() {
    double_application_is_caught(&Rig::new(Backend::Sqlite, prices()).await.unwrap()).await;
}

#[tokio::test]
async fn org_15_control_a_double_application_would_be_caught_postgres() {
    if let Some(rig) = Rig::new(Backend::Postgres, prices()).await {
        double_application_is_caught(&rig).await;
    }
}
