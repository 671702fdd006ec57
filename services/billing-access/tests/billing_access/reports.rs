//! BILL-3 usage reports (buckets, grouping, filters, pages with empty buckets, workspace labels)
//! and BILL-4 cost reports (configured prices, exact decimals).

use orgplane_billing_access::Config;
use orgplane_proto::billing::v1::*;
use tonic::Code;

use crate::support::{Backend, Rig, days_ago, ts, usage};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

async fn seed(rig: &Rig, day: i64) {
    rig.create_org("org_r", &[]).await;
    rig.create_workspace("org_r", "ws_a", "Alpha").await;
    rig.record(vec![
        usage(
            "org_r",
            "r1",
            ["ws_a", "key_1", "u1", "m-small"],
            (1000, 10),
            day + 5 * 60_000,
        ),
        usage(
            "org_r",
            "r2",
            ["ws_a", "key_2", "u1", "m-small"],
            (2000, 20),
            day + 7 * 60_000,
        ),
        usage(
            "org_r",
            "r3",
            ["", "", "u2", "m-large"],
            (300, 30),
            day + HOUR + 1,
        ),
        usage(
            "org_r",
            "r4",
            ["ws_a", "key_1", "", "m-large"],
            (1_000_000, 3),
            day + 3 * HOUR,
        ),
        usage(
            "org_r",
            "r5",
            ["ws_a", "key_1", "u1", "m-small"],
            (7, 0),
            day + DAY + 10,
        ),
    ])
    .await
    .iter()
    .for_each(|r| assert_eq!(r.status, UsageRecordStatus::Accepted as i32, "{r:?}"));
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

fn totals(b: &UsageBucket) -> (i64, i64, i64) {
    b.rows.iter().fold((0, 0, 0), |a, r| {
        (
            a.0 + r.input_tokens,
            a.1 + r.output_tokens,
            a.2 + r.record_count,
        )
    })
}

async fn usage_reports(rig: &Rig) {
    let day = days_ago(3);
    seed(rig, day).await;
    let mut c = rig.client();
    let base = GetUsageReportRequest {
        organization_id: "org_r".into(),
        start_time: Some(ts(day + 17)),
        end_time: Some(ts(day + 5 * HOUR - 1)),
        bucket_width: BucketWidth::OneHour as i32,
        page_size: 2,
        ..Default::default()
    };
    // Hourly, ungrouped, 5 buckets in pages of 2, empty buckets present.
    let mut buckets = Vec::new();
    let mut req = base.clone();
    let mut pages = 0;
    loop {
        let page = c
            .get_usage_report(rig.as_user("org_r_owner", req.clone()))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.buckets.len() <= 2);
        buckets.extend(page.buckets);
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(buckets.len(), 5, "start rounded down, end rounded up");
    assert_eq!(buckets[0].start_time, Some(ts(day)));
    assert_eq!(buckets[4].end_time, Some(ts(day + 5 * HOUR)));
    let sums: Vec<_> = buckets.iter().map(totals).collect();
    assert_eq!(
        sums,
        vec![
            (3000, 30, 2),
            (300, 30, 1),
            (0, 0, 0),
            (1_000_000, 3, 1),
            (0, 0, 0)
        ]
    );
    assert!(buckets[2].rows.is_empty());

    // Grouped by workspace and model, daily: labels from workspace events.
    let grouped = c
        .get_usage_report(rig.as_user(
            "org_r_owner",
            GetUsageReportRequest {
                organization_id: "org_r".into(),
                start_time: Some(ts(day)),
                end_time: Some(ts(day + 2 * DAY)),
                group_by: vec![
                    UsageDimension::Workspace as i32,
                    UsageDimension::Model as i32,
                ],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<_> = grouped.buckets[0]
        .rows
        .iter()
        .map(|r| {
            (
                r.workspace_id.as_str(),
                r.workspace_name.as_str(),
                r.model.as_str(),
                r.input_tokens,
                r.api_key_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("", "", "m-large", 300, ""),
            ("ws_a", "Alpha", "m-large", 1_000_000, ""),
            ("ws_a", "Alpha", "m-small", 3000, ""),
        ]
    );
    assert_eq!(grouped.buckets[1].rows.len(), 1);

    // Filters on every dimension; the empty workspace id selects the Default Workspace.
    let filtered = c
        .get_usage_report(rig.as_user(
            "org_r_owner",
            GetUsageReportRequest {
                organization_id: "org_r".into(),
                start_time: Some(ts(day)),
                end_time: Some(ts(day + 2 * DAY)),
                bucket_width: BucketWidth::OneMinute as i32,
                page_size: 1000,
                group_by: vec![UsageDimension::User as i32],
                api_key_ids: vec!["key_1".into()],
                user_ids: vec!["u1".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.buckets.len(), 1000);
    let non_empty: Vec<_> = filtered
        .buckets
        .iter()
        .filter(|b| !b.rows.is_empty())
        .collect();
    assert_eq!(non_empty.len(), 1);
    assert_eq!(non_empty[0].rows[0].input_tokens, 1000);
    assert_eq!(non_empty[0].start_time, Some(ts(day + 5 * 60_000)));
    let default_ws = c
        .get_usage_report(rig.as_user(
            "org_r_owner",
            GetUsageReportRequest {
                organization_id: "org_r".into(),
                start_time: Some(ts(day)),
                end_time: Some(ts(day + DAY)),
                workspace_ids: vec![String::new()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(totals(&default_ws.buckets[0]), (300, 30, 1));

    // Bad requests.
    for bad in [
        GetUsageReportRequest {
            start_time: None,
            ..base.clone()
        },
        GetUsageReportRequest {
            end_time: Some(ts(day)),
            ..base.clone()
        },
        GetUsageReportRequest {
            group_by: vec![1, 1],
            ..base.clone()
        },
        GetUsageReportRequest {
            group_by: vec![0],
            ..base.clone()
        },
        GetUsageReportRequest {
            page_size: -1,
            ..base.clone()
        },
        GetUsageReportRequest {
            page_token: "garbage".into(),
            ..base.clone()
        },
    ] {
        let err = c
            .get_usage_report(rig.as_user("org_r_owner", bad))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    // A page token is bound to its request.
    let first = c
        .get_usage_report(rig.as_user("org_r_owner", base.clone()))
        .await
        .unwrap()
        .into_inner();
    let err = c
        .get_usage_report(rig.as_user(
            "org_r_owner",
            GetUsageReportRequest {
                page_token: first.next_page_token,
                models: vec!["m-small".into()],
                ..base.clone()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

async fn cost_reports(rig: &Rig) {
    let day = days_ago(3);
    seed(rig, day).await;
    let mut c = rig.client();
    let req = |group_by: Vec<CostDimension>| GetCostReportRequest {
        organization_id: "org_r".into(),
        start_time: Some(ts(day + 1)),
        end_time: Some(ts(day + 3 * DAY)),
        group_by: group_by.into_iter().map(|d| d as i32).collect(),
        ..Default::default()
    };
    let ungrouped = c
        .get_cost_report(rig.as_user("org_r_owner", req(vec![])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ungrouped.currency_code, "EUR");
    assert_eq!(ungrouped.buckets.len(), 3);
    // Day 1: m-small 3000 in × 0.15/M + 30 out × 0.6/M = 0.00045 + 0.000018
    //        m-large 1_000_300 in × 12.3456789/M + 33 out × 0.000001/M
    //              = 12.34938260367 + 0.000000000033
    let day1 = "12.349850603703";
    assert_eq!(ungrouped.buckets[0].total_amount, day1);
    assert_eq!(ungrouped.buckets[0].rows[0].amount, day1);
    // Day 2: 7 × 0.15 / 10⁶.
    assert_eq!(ungrouped.buckets[1].total_amount, "0.00000105");
    assert_eq!(ungrouped.buckets[2].total_amount, "0");
    assert!(ungrouped.buckets[2].rows.is_empty());

    let lines = c
        .get_cost_report(rig.as_user(
            "org_r_owner",
            req(vec![CostDimension::Workspace, CostDimension::Description]),
        ))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<_> = lines.buckets[0]
        .rows
        .iter()
        .map(|r| {
            (
                r.workspace_id.as_str(),
                r.workspace_name.as_str(),
                r.description.as_str(),
                r.token_count,
                r.amount.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("", "", "m-large, input tokens", 300, "0.00370370367"),
            ("", "", "m-large, output tokens", 30, "0.00000000003"),
            (
                "ws_a",
                "Alpha",
                "m-large, input tokens",
                1_000_000,
                "12.3456789"
            ),
            (
                "ws_a",
                "Alpha",
                "m-large, output tokens",
                3,
                "0.000000000003"
            ),
            ("ws_a", "Alpha", "m-small, input tokens", 3000, "0.00045"),
            ("ws_a", "Alpha", "m-small, output tokens", 30, "0.000018"),
        ]
    );
    assert_eq!(lines.buckets[0].total_amount, day1);
    let by_ws = c
        .get_cost_report(rig.as_user("org_r_owner", req(vec![CostDimension::Workspace])))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<_> = by_ws.buckets[0]
        .rows
        .iter()
        .map(|r| (r.workspace_id.as_str(), r.amount.as_str(), r.token_count))
        .collect();
    assert_eq!(
        got,
        vec![("", "0.0037037037", 0), ("ws_a", "12.346146900003", 0)]
    );
    let err = c
        .get_cost_report(rig.as_user(
            "org_r_owner",
            req(vec![CostDimension::Workspace, CostDimension::Workspace]),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn bill_3_usage_report_buckets_groups_filters_and_pages() {
    let rig = Rig::new(Backend::Sqlite, prices()).await.unwrap();
    usage_reports(&rig).await;
}

#[tokio::test]
async fn bill_3_usage_report_buckets_groups_filters_and_pages_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres, prices()).await else {
        return;
    };
    usage_reports(&rig).await;
}

#[tokio::test]
async fn bill_4_cost_report_prices_usage_in_exact_decimals() {
    let rig = Rig::new(Backend::Sqlite, prices()).await.unwrap();
    cost_reports(&rig).await;
}

#[tokio::test]
async fn bill_4_cost_report_prices_usage_in_exact_decimals_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres, prices()).await else {
        return;
    };
    cost_reports(&rig).await;
}
