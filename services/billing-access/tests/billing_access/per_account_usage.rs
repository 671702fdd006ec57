//! BILL-6 usage: records naming accounts are checked one by one (unknown, another
//! organization's, closed), idempotency keys still count once, and usage and cost reports group
//! and filter by account — a subaccount's usage rolls up to its parent — with exact totals.

use std::str::FromStr;

use orgplane_billing_access::Config;
use orgplane_proto::billing::v1::*;
use rust_decimal::Decimal;

use crate::support::{Backend, Rig, account_changed, days_ago, on_account, ts, usage};

const M: &str = "orgmodel-large-2";
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn outcome(r: &UsageRecordResult) -> (UsageRecordStatus, &str, bool) {
    (
        UsageRecordStatus::try_from(r.status).unwrap(),
        r.reason.as_str(),
        r.retryable,
    )
}

/// Input tokens per (account, subaccount) of `org`'s usage in `[from, to)`, in one total.
async fn input_by_account(rig: &Rig, org: &str, from: i64, to: i64) -> Vec<(String, String, i64)> {
    let report = rig
        .client()
        .get_usage_report(rig.as_user(
            &format!("{org}_owner"),
            GetUsageReportRequest {
                organization_id: org.into(),
                start_time: Some(ts(from)),
                end_time: Some(ts(to)),
                group_by: vec![
                    UsageDimension::Account as i32,
                    UsageDimension::Subaccount as i32,
                ],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut rows: Vec<(String, String, i64)> = Vec::new();
    for r in report.buckets.iter().flat_map(|b| b.rows.iter()) {
        let key = (r.account_id.clone(), r.subaccount_id.clone());
        match rows.iter_mut().find(|(a, s, _)| (a, s) == (&key.0, &key.1)) {
            Some(row) => row.2 += r.input_tokens,
            None => rows.push((key.0, key.1, r.input_tokens)),
        }
    }
    rows.sort();
    rows
}

#[tokio::test]
async fn bill_6_usage_naming_accounts_is_checked_record_by_record_and_counted_once() {
    checked_record_by_record(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn bill_6_usage_naming_accounts_is_checked_record_by_record_and_counted_once_postgres() {
    if let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await {
        checked_record_by_record(&rig).await;
    }
}

async fn checked_record_by_record(rig: &Rig) {
    rig.create_org("org_a", &[]).await;
    rig.create_org("org_b", &[]).await;
    let t = days_ago(1) + HOUR;
    let closed_at = t + 10 * 60_000;
    rig.org_applied(vec![
        account_changed("acct_1", "org_a", "", None, ""),
        account_changed("acct_1s", "org_a", "acct_1", None, ""),
        account_changed("acct_c", "org_a", "", Some(closed_at), ""),
        account_changed("acct_b", "org_b", "", None, ""),
    ])
    .await;
    let rec = |org: &str, key: &str, account: &str, input: i64, at: i64| {
        on_account(usage(org, key, ["", "", "", M], (input, 1), at), account)
    };
    let results = rig
        .record(vec![
            rec("org_a", "k_top", "acct_1", 1, t),
            rec("org_a", "k_sub", "acct_1s", 10, t),
            rec("org_a", "k_unknown", "acct_zz", 100, t),
            rec("org_a", "k_foreign", "acct_b", 1000, t),
            rec("org_b", "k_foreign_control", "acct_b", 10_000, t),
            rec("org_a", "k_closed", "acct_c", 100_000, closed_at),
            rec(
                "org_a",
                "k_before_close",
                "acct_c",
                1_000_000,
                closed_at - 1,
            ),
            rec("org_a", "k_none", "", 10_000_000, t),
            rec("org_a", "k_bad", "acct 1", 1, t),
            // The same key twice in one batch, naming different accounts: counted once.
            rec("org_a", "k_twice", "acct_1", 20, t),
            rec("org_a", "k_twice", "acct_1s", 20, t),
        ])
        .await;
    use UsageRecordStatus::{Accepted, Duplicate, Refused};
    let got: Vec<_> = results.iter().map(outcome).collect();
    assert_eq!(
        got,
        [
            (Accepted, "", false),
            (Accepted, "", false),
            (Refused, "ACCOUNT_NOT_FOUND", true),
            (Refused, "ACCOUNT_NOT_FOUND", false),
            (Accepted, "", false),
            (Refused, "ACCOUNT_CLOSED", false),
            (Accepted, "", false),
            (Accepted, "", false),
            (Refused, "INVALID_FIELD", false),
            (Accepted, "", false),
            (Duplicate, "", false),
        ]
    );
    assert!(results[2].message.contains("acct_zz"));

    // Resending a recorded key under another account changes nothing.
    let again = rig
        .record(vec![
            rec("org_a", "k_top", "acct_1s", 1, t),
            rec("org_a", "k_sub", "", 10, t),
        ])
        .await;
    assert!(again.iter().all(|r| r.status == Duplicate as i32));
    let (from, to) = (t - HOUR, t + HOUR);
    let expected = vec![
        (String::new(), String::new(), 10_000_000),
        ("acct_1".into(), String::new(), 21),
        ("acct_1".into(), "acct_1s".into(), 10),
        ("acct_c".into(), String::new(), 1_000_000),
    ];
    assert_eq!(input_by_account(rig, "org_a", from, to).await, expected);
    assert_eq!(
        input_by_account(rig, "org_b", from, to).await,
        [("acct_b".into(), String::new(), 10_000)]
    );

    // The unknown account was retryable: once the service learns it, the record is accepted.
    rig.org_applied(vec![account_changed("acct_zz", "org_a", "", None, "")])
        .await;
    let later = rig
        .record(vec![rec("org_a", "k_unknown", "acct_zz", 100, t)])
        .await;
    assert_eq!(outcome(&later[0]), (Accepted, "", false));
}

fn prices() -> Config {
    Config {
        price_table: Some(
            r#"{"currency_code":"EUR","models":{
                "m-small":{"input_per_million":"0.15","output_per_million":"0.6"},
                "m-large":{"input_per_million":"12.3456789","output_per_million":"0.000001"}}}"#
                .into(),
        ),
    }
}

async fn seed(rig: &Rig, day: i64) {
    rig.create_org("org_r", &[]).await;
    rig.org_applied(vec![
        account_changed("acct_p", "org_r", "", None, ""),
        account_changed("acct_ps", "org_r", "acct_p", None, ""),
        account_changed("acct_q", "org_r", "", None, ""),
    ])
    .await;
    let rec = |key: &str, account: &str, model: &str, tokens: (i64, i64), at: i64| {
        on_account(
            usage("org_r", key, ["", "", "", model], tokens, at),
            account,
        )
    };
    let results = rig
        .record(vec![
            rec("r1", "", "m-small", (1000, 10), day + 5 * 60_000),
            rec("r2", "acct_p", "m-large", (1_000_000, 3), day + HOUR),
            rec("r3", "acct_ps", "m-small", (2000, 20), day + 2 * HOUR),
            rec("r4", "acct_ps", "m-large", (7, 7), day + DAY + 10),
            rec("r5", "acct_q", "m-small", (300, 30), day + 3 * HOUR),
            rec("r6", "acct_p", "m-small", (1, 1), day + DAY + 20),
        ])
        .await;
    assert!(
        results
            .iter()
            .all(|r| r.status == UsageRecordStatus::Accepted as i32),
        "{results:?}"
    );
}

/// `(account, subaccount, input, output, records)` of each row of each bucket.
type Rows = Vec<Vec<(String, String, i64, i64, i64)>>;

async fn usage_rows(rig: &Rig, day: i64, group_by: &[UsageDimension], accounts: &[&str]) -> Rows {
    let report = rig
        .client()
        .get_usage_report(rig.as_user(
            "org_r_owner",
            GetUsageReportRequest {
                organization_id: "org_r".into(),
                start_time: Some(ts(day)),
                end_time: Some(ts(day + 2 * DAY)),
                group_by: group_by.iter().map(|d| *d as i32).collect(),
                account_ids: accounts.iter().map(|a| (*a).to_owned()).collect(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let rows: Rows = report
        .buckets
        .iter()
        .map(|b| {
            b.rows
                .iter()
                .map(|r| {
                    let account = (r.account_id.clone(), r.subaccount_id.clone());
                    (
                        account.0,
                        account.1,
                        r.input_tokens,
                        r.output_tokens,
                        r.record_count,
                    )
                })
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 2);
    rows
}

fn sums(bucket: &[(String, String, i64, i64, i64)]) -> (i64, i64, i64) {
    bucket
        .iter()
        .fold((0, 0, 0), |a, r| (a.0 + r.2, a.1 + r.3, a.2 + r.4))
}

async fn cost(
    rig: &Rig,
    day: i64,
    group_by: &[CostDimension],
    accounts: &[&str],
) -> GetCostReportResponse {
    rig.client()
        .get_cost_report(rig.as_user(
            "org_r_owner",
            GetCostReportRequest {
                organization_id: "org_r".into(),
                start_time: Some(ts(day)),
                end_time: Some(ts(day + 2 * DAY)),
                group_by: group_by.iter().map(|d| *d as i32).collect(),
                account_ids: accounts.iter().map(|a| (*a).to_owned()).collect(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

async fn reports_by_account(rig: &Rig) {
    let day = days_ago(3);
    seed(rig, day).await;
    use UsageDimension as U;
    let s = String::new;
    let total = usage_rows(rig, day, &[], &[]).await;
    let by_account = usage_rows(rig, day, &[U::Account], &[]).await;
    // A subaccount's usage rolls up to its parent; usage naming no account is the empty id.
    assert_eq!(
        by_account[0],
        [
            (s(), s(), 1000, 10, 1),
            ("acct_p".into(), s(), 1_002_000, 23, 2),
            ("acct_q".into(), s(), 300, 30, 1),
        ]
    );
    assert_eq!(by_account[1], [("acct_p".into(), s(), 8, 8, 2)]);
    for (grouped, whole) in by_account.iter().zip(&total) {
        assert_eq!(sums(grouped), sums(whole));
    }
    let by_sub = usage_rows(rig, day, &[U::Account, U::Subaccount], &[]).await;
    assert_eq!(
        by_sub[0][1..3],
        [
            ("acct_p".into(), s(), 1_000_000, 3, 1),
            ("acct_p".into(), "acct_ps".into(), 2000, 20, 1),
        ]
    );
    assert_eq!(sums(&by_sub[1]), sums(&total[1]));

    // Filters: a parent selects its subaccounts too; a subaccount only itself; "" no account.
    for (filter, day0, day1) in [
        (vec!["acct_p"], 1_002_000, 8),
        (vec!["acct_ps"], 2000, 7),
        (vec![""], 1000, 0),
        (vec!["acct_q", ""], 1300, 0),
        (vec!["acct_unknown"], 0, 0),
    ] {
        let rows = usage_rows(rig, day, &[], &filter).await;
        assert_eq!(
            (sums(&rows[0]).0, sums(&rows[1]).0),
            (day0, day1),
            "{filter:?}"
        );
    }

    use CostDimension as C;
    let whole = cost(rig, day, &[], &[]).await;
    let per_account = cost(rig, day, &[C::Account], &[]).await;
    let per_line = cost(rig, day, &[C::Account, C::Subaccount, C::Description], &[]).await;
    for ((w, a), l) in whole
        .buckets
        .iter()
        .zip(&per_account.buckets)
        .zip(&per_line.buckets)
    {
        // Exact decimals: the rows of every grouping add up to the same total, to the digit.
        let added = |b: &CostBucket| b.rows.iter().map(|r| dec(&r.amount)).sum::<Decimal>();
        assert_eq!(a.total_amount, w.total_amount);
        assert_eq!(l.total_amount, w.total_amount);
        assert_eq!(added(a), dec(&w.total_amount));
        assert_eq!(added(l), dec(&w.total_amount));
    }
    // acct_q: 300 × 0.15/10⁶ + 30 × 0.6/10⁶.
    let q = per_account.buckets[0]
        .rows
        .iter()
        .find(|r| r.account_id == "acct_q")
        .unwrap();
    assert_eq!(q.amount, "0.000063");
    // acct_p on day 1: 1_000_000 × 12.3456789/10⁶ + 3 × 0.000001/10⁶ (its own) and
    // 2000 × 0.15/10⁶ + 20 × 0.6/10⁶ (its subaccount's).
    let p = &per_account.buckets[0].rows[1];
    assert_eq!(
        (p.account_id.as_str(), p.amount.as_str()),
        ("acct_p", "12.345990900003")
    );
    let only_p = cost(rig, day, &[], &["acct_p"]).await;
    assert_eq!(only_p.buckets[0].total_amount, p.amount);
    let sub_lines = &per_line.buckets[0].rows;
    assert!(sub_lines.iter().any(|r| r.subaccount_id == "acct_ps"
        && r.account_id == "acct_p"
        && r.model == "m-small"
        && r.token_count == 2000));
}

#[tokio::test]
async fn bill_6_reports_group_by_account_with_exact_totals() {
    let rig = Rig::new(Backend::Sqlite, prices()).await.unwrap();
    reports_by_account(&rig).await;
}

#[tokio::test]
async fn bill_6_reports_group_by_account_with_exact_totals_postgres() {
    if let Some(rig) = Rig::new(Backend::Postgres, prices()).await {
        reports_by_account(&rig).await;
    }
}
