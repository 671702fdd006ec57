//! BILL-4 and BILL-3 over the hourly and daily rollup tiers: usage and cost reports read the
//! coarsest tier that fits their buckets, and answer exactly what the raw records sum to, and
//! what the per-minute rollups sum to. Records sit on the boundaries (the first and last
//! millisecond of hours and days) and some are sent twice (a retried batch is counted once).
//! Control arms: summing the records with a boundary one millisecond off, or reading the daily
//! tier for hourly buckets, gives another answer, so a tier that put a boundary record in the
//! wrong bucket would be caught.

use std::collections::BTreeMap;

use orgplane_billing_access::domain::reports::Dim;
use orgplane_billing_access::store::rollups::{Rollups, Tier};
use orgplane_proto::billing::v1::*;
use sea_orm::{ConnectionTrait, Statement};

use crate::support::{Backend, Rig, days_ago, ts, usage};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
const MODELS: [&str; 3] = ["orgmodel-small-1", "orgmodel-medium-1", "orgmodel-large-2"];

/// Sums per (bucket start, grouped value): input, output, records.
type Sums = BTreeMap<(i64, String), (i64, i64, i64)>;

/// The usage times: every boundary millisecond of three days and some of their hours, plus
/// times inside them.
fn times(d0: i64) -> Vec<i64> {
    let mut out = Vec::new();
    for day in 0..3 {
        let d = d0 + day * DAY;
        for edge in [
            d,
            d + DAY - 1,
            d + HOUR - 1,
            d + HOUR,
            d + 13 * HOUR + 59_999,
        ] {
            out.push(edge);
        }
        for k in 0..20 {
            out.push(d + (k * 4_321_987) % DAY);
        }
    }
    out
}

async fn seed(rig: &Rig, org: &str, d0: i64) {
    rig.create_org(
        org,
        &[("user_o", orgplane_proto::organization::v1::OrgRole::Owner)],
    )
    .await;
    rig.create_workspace(org, "ws_1", "One").await;
    rig.create_workspace(org, "ws_2", "Two").await;
    let records: Vec<UsageRecord> = times(d0)
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let i64i = i as i64;
            usage(
                org,
                &format!("k{i}"),
                [
                    ["", "ws_1", "ws_2"][i % 3],
                    "",
                    ["", "u1"][i % 2],
                    MODELS[(i / 3) % 3],
                ],
                (1 + i64i * 7919 % 100_000, 1 + i64i * 104_729 % 10_000),
                t,
            )
        })
        .collect();
    let accepted = |r: &[UsageRecordResult]| {
        r.iter()
            .filter(|x| x.status == UsageRecordStatus::Accepted as i32)
            .count()
    };
    let (first, second) = records.split_at(records.len() / 2);
    assert_eq!(accepted(&rig.record(first.to_vec()).await), first.len());
    // The retry of the whole batch counts only the second half.
    assert_eq!(accepted(&rig.record(records.clone()).await), second.len());
}

/// The raw records of `org` summed per bucket of `width` (shifted by `skew` ms: the control)
/// and by `column`.
async fn raw(rig: &Rig, org: &str, width: i64, column: &str, skew: i64) -> Sums {
    let db = rig.db();
    let sql = format!(
        "SELECT ((usage_time_ms - {skew}) / {width}) * {width}, {column}, \
         CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), COUNT(*) \
         FROM usage_records WHERE organization_id = '{org}' GROUP BY 1, 2"
    );
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                (
                    r.try_get_by_index::<i64>(0).unwrap(),
                    r.try_get_by_index::<String>(1).unwrap(),
                ),
                (
                    r.try_get_by_index(2).unwrap(),
                    r.try_get_by_index(3).unwrap(),
                    r.try_get_by_index(4).unwrap(),
                ),
            )
        })
        .collect()
}

/// The rollups of `org` over `[from, to)` in buckets of `width` by `dim`, from `tier`.
async fn rollups(
    rig: &Rig,
    org: &str,
    width: i64,
    range: (i64, i64),
    dim: Dim,
    tier: Tier,
) -> Sums {
    let dims = [dim];
    let r = Rollups {
        organization_id: org,
        width,
        dims: &dims,
        filters: &[],
        accounts: &[],
    };
    let buckets = ((range.1 - range.0) / width) as u64;
    let (rows, to) = r
        .page_from(rig.db(), range.0, range.1, buckets, Some(tier))
        .await
        .unwrap();
    assert_eq!(to, range.1);
    rows.into_iter()
        .map(|a| {
            (
                (a.bucket, a.values[0].clone()),
                (a.input, a.output, a.count),
            )
        })
        .collect()
}

/// GetUsageReport over `[from, to)` grouped by `dim`, as the service answers it.
async fn report(
    rig: &Rig,
    org: &str,
    width: BucketWidth,
    range: (i64, i64),
    dim: UsageDimension,
) -> Sums {
    let res = rig
        .client()
        .get_usage_report(rig.as_user(
            "user_o",
            GetUsageReportRequest {
                organization_id: org.into(),
                start_time: Some(ts(range.0)),
                end_time: Some(ts(range.1)),
                bucket_width: width as i32,
                group_by: vec![dim as i32],
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(res.next_page_token.is_empty());
    let mut out = Sums::new();
    for b in res.buckets {
        let start = b.start_time.unwrap();
        let start = start.seconds * 1000 + i64::from(start.nanos) / 1_000_000;
        for row in b.rows {
            let value = if dim == UsageDimension::Model {
                row.model
            } else {
                row.workspace_id
            };
            out.insert(
                (start, value),
                (row.input_tokens, row.output_tokens, row.record_count),
            );
        }
    }
    out
}

/// Cost report amounts per (day, workspace, model, token type), as strings.
async fn costs(
    rig: &Rig,
    org: &str,
    range: (i64, i64),
) -> BTreeMap<(i64, String, String, i32), (i64, String)> {
    let res = rig
        .client()
        .get_cost_report(rig.as_user(
            "user_o",
            GetCostReportRequest {
                organization_id: org.into(),
                start_time: Some(ts(range.0)),
                end_time: Some(ts(range.1)),
                group_by: vec![
                    CostDimension::Workspace as i32,
                    CostDimension::Description as i32,
                ],
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut out = BTreeMap::new();
    for b in res.buckets {
        let start = b.start_time.unwrap().seconds * 1000;
        for row in b.rows {
            out.insert(
                (start, row.workspace_id, row.model, row.token_type),
                (row.token_count, row.amount),
            );
        }
    }
    out
}

async fn tiers_answer_as_the_records(rig: &Rig) {
    let org = "org_t";
    let d0 = days_ago(5);
    seed(rig, org, d0).await;
    let range = (d0 - DAY, d0 + 4 * DAY);
    assert_eq!(Tier::for_range(DAY, range.0, range.1), Tier::Day);
    assert_eq!(Tier::for_range(HOUR, range.0, range.1), Tier::Hour);
    assert_eq!(Tier::for_range(DAY, range.0 + HOUR, range.1), Tier::Hour);
    assert_eq!(Tier::for_range(60_000, range.0, range.1), Tier::Minute);

    for (width, w) in [(BucketWidth::OneDay, DAY), (BucketWidth::OneHour, HOUR)] {
        for (dim, udim, column) in [
            (Dim::Workspace, UsageDimension::Workspace, "workspace_id"),
            (Dim::Model, UsageDimension::Model, "model"),
        ] {
            let records = raw(rig, org, w, column, 0).await;
            assert!(records.len() >= 9, "{records:?}");
            let served = report(rig, org, width, range, udim).await;
            assert_eq!(
                served, records,
                "width {w} by {column}: the report = the records"
            );
            for tier in [Tier::Minute, Tier::Hour] {
                assert_eq!(
                    rollups(rig, org, w, range, dim, tier).await,
                    records,
                    "width {w} by {column} from {tier:?}"
                );
            }
            if w == DAY {
                assert_eq!(rollups(rig, org, w, range, dim, Tier::Day).await, records);
            }
            // Control: a boundary one millisecond off moves the boundary records.
            assert_ne!(
                raw(rig, org, w, column, 1).await,
                served,
                "control, width {w}"
            );
            assert_ne!(
                raw(rig, org, w, column, -1).await,
                served,
                "control, width {w}"
            );
        }
    }
    // Control: the daily tier read for hourly buckets puts a day's usage in its first hour.
    assert_ne!(
        rollups(rig, org, HOUR, range, Dim::Model, Tier::Day).await,
        raw(rig, org, HOUR, "model", 0).await
    );

    // The cost report (daily tier) prices the tokens every tier and the records sum to.
    let daily = costs(rig, org, range).await;
    assert!(!daily.is_empty());
    let totals: i64 = daily.values().map(|(n, _)| n).sum();
    let records = raw(rig, org, DAY, "workspace_id", 0).await;
    let expected: i64 = records.values().map(|(i, o, _)| i + o).sum();
    assert_eq!(totals, expected, "cost report token counts = the records'");
    for tier in [Tier::Minute, Tier::Hour, Tier::Day] {
        let by_model = rollups(rig, org, DAY, range, Dim::Model, tier).await;
        for ((day, model), (input, output, _)) in by_model {
            let of = |kind: TokenType| {
                daily
                    .iter()
                    .filter(|((d, _, m, k), _)| *d == day && *m == model && *k == kind as i32)
                    .map(|(_, (n, _))| n)
                    .sum::<i64>()
            };
            assert_eq!(
                (of(TokenType::Input), of(TokenType::Output)),
                (input, output)
            );
        }
    }
}

#[tokio::test]
async fn bill_4_every_tier_answers_as_the_raw_records() {
    tiers_answer_as_the_records(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn bill_4_every_tier_answers_as_the_raw_records_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres, Default::default()).await else {
        return;
    };
    tiers_answer_as_the_records(&rig).await;
}

/// The tiers are filled from the per-minute rows that exist when the migration runs, and the
/// previous release's upsert into `usage_rollups` afterwards reaches them (the triggers).
async fn migration_fills_the_tiers(db: orgplane_platform::testkit::TestDb) {
    use orgplane_billing_access::migration::Migrator;
    use sea_orm::Database;
    use sea_orm_migration::MigratorTrait;
    let conn = Database::connect(db.url.as_str()).await.unwrap();
    let steps = Migrator::migrations().len() as u32;
    Migrator::up(&conn, Some(steps - 1)).await.unwrap();
    let backend = conn.get_database_backend();
    let exec = |sql: String| {
        let conn = &conn;
        async move {
            conn.execute_raw(Statement::from_string(backend, sql))
                .await
                .unwrap();
        }
    };
    // Two minutes of one hour, one minute of the next day; the control minute is the last of
    // the first day.
    for (minute, input) in [
        (DAY, 5),
        (DAY + 60_000, 7),
        (DAY + DAY - 60_000, 11),
        (2 * DAY, 13),
    ] {
        exec(format!(
            "INSERT INTO usage_rollups VALUES ('org_m', {minute}, 'ws', '', 'm', '', {input}, 1, 1)"
        ))
        .await;
        exec(format!(
            "INSERT INTO usage_account_rollups VALUES ('org_m', {minute}, 'ws', '', 'm', '', '', '', {input}, 1, 1)"
        ))
        .await;
    }
    Migrator::up(&conn, None).await.unwrap();
    let read = |table: &'static str| {
        let conn = &conn;
        async move {
            let rows = conn
                .query_all_raw(Statement::from_string(
                    backend,
                    format!(
                        "SELECT start_ms, input_tokens, record_count FROM {table} ORDER BY start_ms"
                    ),
                ))
                .await
                .unwrap();
            rows.iter()
                .map(|r| {
                    (
                        r.try_get_by_index::<i64>(0).unwrap(),
                        r.try_get_by_index::<i64>(1).unwrap(),
                        r.try_get_by_index::<i64>(2).unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    for table in ["usage_rollups_day", "usage_account_rollups_day"] {
        assert_eq!(
            read(table).await,
            vec![(DAY, 23, 3), (2 * DAY, 13, 1)],
            "{table}"
        );
    }
    for table in ["usage_rollups_hour", "usage_account_rollups_hour"] {
        assert_eq!(
            read(table).await,
            vec![(DAY, 12, 2), (2 * DAY - HOUR, 11, 1), (2 * DAY, 13, 1)],
            "{table}"
        );
    }
    // The previous release's upsert (insert, then add on conflict) reaches the tiers.
    for input in [100, 1000] {
        exec(format!(
            "INSERT INTO usage_rollups VALUES ('org_m', {DAY}, 'ws', '', 'm', '', {input}, 1, 1) \
             ON CONFLICT (organization_id, minute_ms, workspace_id, api_key_id, model, user_id) \
             DO UPDATE SET input_tokens = usage_rollups.input_tokens + excluded.input_tokens, \
             output_tokens = usage_rollups.output_tokens + excluded.output_tokens, \
             record_count = usage_rollups.record_count + excluded.record_count"
        ))
        .await;
    }
    assert_eq!(
        read("usage_rollups_day").await,
        vec![(DAY, 1123, 5), (2 * DAY, 13, 1)]
    );
    // Control: the per-account tiers did not hear of it (that table was not written).
    assert_eq!(
        read("usage_account_rollups_day").await,
        vec![(DAY, 23, 3), (2 * DAY, 13, 1)]
    );
}

#[tokio::test]
async fn bill_4_the_migration_fills_the_tiers_and_the_triggers_keep_them() {
    migration_fills_the_tiers(orgplane_platform::testkit::TestDb::sqlite()).await;
}

#[tokio::test]
async fn bill_4_the_migration_fills_the_tiers_and_the_triggers_keep_them_postgres() {
    let Some(db) = orgplane_platform::testkit::TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    migration_fills_the_tiers(db).await;
}
