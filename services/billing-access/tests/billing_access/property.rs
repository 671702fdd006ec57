//! The property of BILL-3 and BILL-4: for random usage records with repeated idempotency keys,
//! every usage report (each bucket width, each grouping) sums exactly the distinct ingested
//! records, and every cost report equals the hand-computed exact decimal. A seeded loop, so a
//! failure names its seed.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use orgplane_billing_access::Config;
use orgplane_proto::billing::v1::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

use crate::support::{Backend, Rig, days_ago, ts, usage};

const DAY: i64 = 86_400_000;
const MODELS: [(&str, &str, &str); 3] = [
    ("m0", "0.1", "0.4"),
    ("m1", "2.5", "12.75"),
    ("m2", "0.000003", "7.123456789"),
];

fn config() -> Config {
    let models: Vec<String> = MODELS
        .iter()
        .map(|(m, i, o)| {
            format!(r#""{m}":{{"input_per_million":"{i}","output_per_million":"{o}"}}"#)
        })
        .collect();
    Config {
        price_table: Some(format!(
            r#"{{"currency_code":"USD","models":{{{}}}}}"#,
            models.join(",")
        )),
    }
}

fn price(model: &str) -> (Decimal, Decimal) {
    let (_, i, o) = MODELS.iter().find(|(m, _, _)| *m == model).unwrap();
    (Decimal::from_str(i).unwrap(), Decimal::from_str(o).unwrap())
}

/// Dimension values of a record: workspace, api key, model, user.
type Dims = [String; 4];

#[derive(Clone)]
struct Rec {
    dims: Dims,
    input: i64,
    output: i64,
    time: i64,
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

async fn property(rig: &Rig, seed: u64, records: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    rig.create_org("org_p", &[]).await;
    rig.create_workspace("org_p", "ws_1", "One").await;
    rig.create_workspace("org_p", "ws_2", "Two").await;
    let base = days_ago(2);

    // Send records in random batches; a key may come back with other contents: the first wins.
    let mut sent: Vec<(String, Rec)> = Vec::new();
    for _ in 0..records {
        let key = format!("k{}", rng.random_range(0..(records as u64 * 3 / 4)));
        let rec = Rec {
            dims: [
                pick(&mut rng, &["", "ws_1", "ws_2"]).to_owned(),
                pick(&mut rng, &["", "key_1", "key_2"]).to_owned(),
                pick(&mut rng, &["m0", "m1", "m2"]).to_owned(),
                pick(&mut rng, &["", "u1", "u2", "u3"]).to_owned(),
            ],
            input: rng.random_range(0..10_000_000),
            output: rng.random_range(0..1_000_000),
            time: base + rng.random_range(0..2 * DAY),
        };
        sent.push((key, rec));
    }
    let mut distinct: HashMap<String, Rec> = HashMap::new();
    for (k, r) in &sent {
        distinct.entry(k.clone()).or_insert_with(|| r.clone());
    }
    let mut i = 0;
    let mut accepted = 0;
    while i < sent.len() {
        let n = rng.random_range(1..=120).min(sent.len() - i);
        let batch = sent[i..i + n]
            .iter()
            .map(|(k, r)| {
                usage(
                    "org_p",
                    k,
                    [&r.dims[0], &r.dims[1], &r.dims[3], &r.dims[2]],
                    (r.input, r.output),
                    r.time,
                )
            })
            .collect();
        for res in rig.record(batch).await {
            assert_ne!(res.status, UsageRecordStatus::Refused as i32, "{res:?}");
            if res.status == UsageRecordStatus::Accepted as i32 {
                accepted += 1;
            }
        }
        i += n;
    }
    assert_eq!(
        accepted,
        distinct.len(),
        "seed {seed}: each key accepted once"
    );

    let mut c = rig.client();
    let dims_of = [
        UsageDimension::Workspace,
        UsageDimension::ApiKey,
        UsageDimension::Model,
        UsageDimension::User,
    ];
    for width in [
        BucketWidth::OneMinute,
        BucketWidth::OneHour,
        BucketWidth::OneDay,
    ] {
        let w = match width {
            BucketWidth::OneMinute => 60_000,
            BucketWidth::OneHour => 3_600_000,
            _ => DAY,
        };
        for mask in 0u32..16 {
            let chosen: Vec<usize> = (0..4).filter(|d| mask & (1 << d) != 0).collect();
            // Expected sums per (bucket, grouped values).
            let mut expected: BTreeMap<(i64, Vec<String>), (i64, i64, i64)> = BTreeMap::new();
            for r in distinct.values() {
                let key = (
                    r.time - r.time % w,
                    chosen.iter().map(|d| r.dims[*d].clone()).collect(),
                );
                let e = expected.entry(key).or_default();
                e.0 += r.input;
                e.1 += r.output;
                e.2 += 1;
            }
            let mut got: BTreeMap<(i64, Vec<String>), (i64, i64, i64)> = BTreeMap::new();
            let mut req = GetUsageReportRequest {
                organization_id: "org_p".into(),
                page_size: 1000,
                start_time: Some(ts(base)),
                end_time: Some(ts(base + 2 * DAY)),
                bucket_width: width as i32,
                group_by: chosen.iter().map(|d| dims_of[*d] as i32).collect(),
                ..Default::default()
            };
            let mut buckets = 0;
            let mut next_start = base;
            loop {
                let page = c
                    .get_usage_report(rig.as_user("org_p_owner", req.clone()))
                    .await
                    .unwrap()
                    .into_inner();
                for b in page.buckets {
                    let start = b.start_time.unwrap();
                    let start = start.seconds * 1000 + i64::from(start.nanos) / 1_000_000;
                    assert_eq!(start, next_start, "seed {seed}: buckets are consecutive");
                    next_start += w;
                    buckets += 1;
                    for r in b.rows {
                        let values = chosen
                            .iter()
                            .map(|d| match d {
                                0 => r.workspace_id.clone(),
                                1 => r.api_key_id.clone(),
                                2 => r.model.clone(),
                                _ => r.user_id.clone(),
                            })
                            .collect();
                        let prev = got.insert(
                            (start, values),
                            (r.input_tokens, r.output_tokens, r.record_count),
                        );
                        assert!(prev.is_none(), "seed {seed}: a row appears twice");
                    }
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                req.page_token = page.next_page_token;
            }
            assert_eq!(
                buckets,
                2 * DAY / w,
                "seed {seed}: every bucket, empty ones too"
            );
            assert_eq!(
                got, expected,
                "seed {seed}: width {width:?}, grouping {chosen:?}"
            );
        }
    }

    // Cost: every grouping against the hand-computed exact decimals.
    for (by_ws, by_desc) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut expected: BTreeMap<(i64, String, String), Decimal> = BTreeMap::new();
        for r in distinct.values() {
            let (pi, po) = price(&r.dims[2]);
            let day = r.time - r.time % DAY;
            let ws = if by_ws {
                r.dims[0].clone()
            } else {
                String::new()
            };
            let million = Decimal::from(1_000_000);
            let lines = [
                (
                    "input tokens",
                    Decimal::from(r.input) * pi / million,
                    r.input,
                ),
                (
                    "output tokens",
                    Decimal::from(r.output) * po / million,
                    r.output,
                ),
            ];
            for (what, amount, tokens) in lines {
                let desc = if by_desc {
                    if tokens == 0 {
                        continue;
                    }
                    format!("{}, {what}", r.dims[2])
                } else {
                    String::new()
                };
                *expected.entry((day, ws.clone(), desc)).or_default() += amount;
            }
        }
        let mut group_by = Vec::new();
        if by_ws {
            group_by.push(CostDimension::Workspace as i32);
        }
        if by_desc {
            group_by.push(CostDimension::Description as i32);
        }
        let report = c
            .get_cost_report(rig.as_user(
                "org_p_owner",
                GetCostReportRequest {
                    organization_id: "org_p".into(),
                    start_time: Some(ts(base)),
                    end_time: Some(ts(base + 2 * DAY)),
                    group_by,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let mut got: BTreeMap<(i64, String, String), Decimal> = BTreeMap::new();
        let mut grand = Decimal::ZERO;
        for b in report.buckets {
            let start = b.start_time.unwrap().seconds * 1000;
            let mut total = Decimal::ZERO;
            for r in b.rows {
                assert!(
                    !r.amount.contains('e') && !r.amount.contains('E'),
                    "no exponent: {}",
                    r.amount
                );
                let amount = Decimal::from_str_exact(&r.amount).unwrap();
                total += amount;
                got.insert((start, r.workspace_id, r.description), amount);
            }
            assert_eq!(Decimal::from_str_exact(&b.total_amount).unwrap(), total);
            grand += total;
        }
        assert_eq!(
            got, expected,
            "seed {seed}: cost by_ws={by_ws} by_desc={by_desc}"
        );
        let hand: Decimal = distinct
            .values()
            .map(|r| {
                let (pi, po) = price(&r.dims[2]);
                (Decimal::from(r.input) * pi + Decimal::from(r.output) * po)
                    / Decimal::from(1_000_000)
            })
            .sum();
        assert_eq!(grand, hand, "seed {seed}: the grand total");
    }
}

#[tokio::test]
async fn bill_3_bill_4_property_reports_equal_the_distinct_records_and_exact_costs() {
    for seed in [1, 2, 3] {
        let rig = Rig::new(Backend::Sqlite, config()).await.unwrap();
        property(&rig, seed, 600).await;
    }
}

#[tokio::test]
async fn bill_3_bill_4_property_reports_equal_the_distinct_records_and_exact_costs_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres, config()).await else {
        return;
    };
    property(&rig, 7, 400).await;
}
