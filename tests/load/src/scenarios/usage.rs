//! Scenario 6: usage ingestion through batched RecordUsage, and the reports over 10M records.
//!
//! 1. Ingestion: RecordUsage in batches of 1,000, 4 batches in flight, for the run's duration,
//!    over gRPC. Usage times are within the last minute before the call: a product backend
//!    reports usage as it happens, so realistic batches fall into few minutes (per-minute rollup
//!    rows of a batch are summed in memory and upserted once). A shorter second run spreads
//!    the usage times over 30 days (every record its own minute) and is reported beside it.
//! 2. Seeding ([`seed`], bench only): the organization's records are topped up to
//!    `plan.usage_records` (10M) set-wise by SQL on the billing database, with their rollups;
//!    the seeded rows are real records a report could be computed from, and the daily tiers of
//!    one sampled day are asserted equal to its records' sums.
//! 3. Reports, `plan.report_samples` calls each over 30 daily buckets: GetUsageReport grouped by
//!    workspace, GetUsageReport grouped by model, GetCostReport grouped by workspace and line
//!    item. The records they cover are the sum of the returned record counts. For comparison,
//!    the same usage report summed from the per-minute rollups (what every report read before
//!    the hourly and daily tiers) is timed over a few calls, in-process.

use super::*;

mod seed;

use orgplane_billing_access::domain::reports::Dim;
use orgplane_billing_access::store::rollups::{Rollups, Tier};

const MODELS: [&str; 3] = ["orgmodel-small-1", "orgmodel-medium-1", "orgmodel-large-2"];
const DAY_S: i64 = 86_400;

/// Runs RecordUsage for `duration` (4 batches of 1,000 in flight); usage times within `spread`
/// seconds before now. Returns records accepted per second and the batch p50 (ms).
async fn ingest(
    world: &World,
    duration: Duration,
    spread: i64,
    tag: &str,
) -> anyhow::Result<(f64, u64, u64)> {
    let rig = &world.rig;
    let service = Arc::new(rig.service_token()?);
    let org = Arc::new(world.org.clone());
    let workspaces = Arc::new(world.workspaces.clone());
    let channels = Arc::new(rig.channels.clone());
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = accepted.clone();
    let tag = Arc::new(tag.to_owned());
    let warned = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stats = load::run(4, Duration::from_millis(0), duration, move |task, k| {
        let mut rng = Rng::new((task as u64) << 32 | k);
        let now = chrono::Utc::now().timestamp();
        let records: Vec<bill_api::UsageRecord> = (0..1000)
            .map(|i| bill_api::UsageRecord {
                organization_id: org.to_string(),
                workspace_id: workspaces[rng.below(workspaces.len() as u64) as usize].clone(),
                api_key_id: String::new(),
                user_id: String::new(),
                model: MODELS[rng.below(3) as usize].into(),
                input_tokens: 1 + rng.below(4000) as i64,
                output_tokens: 1 + rng.below(1000) as i64,
                usage_time: Some(prost_types::Timestamp {
                    seconds: now - 1 - rng.below(spread as u64) as i64,
                    nanos: 0,
                }),
                idempotency_key: format!("b{tag}-{task}-{k}-{i}"),
                account_id: String::new(),
            })
            .collect();
        let mut c = bill_api::billing_access_service_client::BillingAccessServiceClient::new(
            channels[task % channels.len()].clone(),
        );
        let token = service.clone();
        let counted = counted.clone();
        let warned = warned.clone();
        async move {
            match c
                .record_usage(bearer(bill_api::RecordUsageRequest { records }, &token))
                .await
            {
                Ok(r) => {
                    let ok = r
                        .get_ref()
                        .results
                        .iter()
                        .filter(|x| x.status == bill_api::UsageRecordStatus::Accepted as i32)
                        .count();
                    counted.fetch_add(ok as u64, std::sync::atomic::Ordering::Relaxed);
                    ok > 0
                }
                Err(s) => {
                    if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        eprintln!("  usage: a RecordUsage batch failed: {s}");
                    }
                    false
                }
            }
        }
    })
    .await;
    if stats.errors > 0 {
        return Err(anyhow!(
            "{} RecordUsage batches failed (the first is printed above)",
            stats.errors
        ));
    }
    let accepted = accepted.load(std::sync::atomic::Ordering::Relaxed);
    Ok((
        accepted as f64 / stats.elapsed.as_secs_f64().max(1e-9),
        accepted,
        stats.quantile_us(0.5) / 1000,
    ))
}

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// One GetUsageReport over `range` (seconds) in daily buckets grouped by `dim`; returns the
/// records it covers.
async fn usage_call(
    mut c: bill_api::billing_access_service_client::BillingAccessServiceClient<Channel>,
    token: &str,
    org: &str,
    (start, end): (i64, i64),
    dim: bill_api::UsageDimension,
) -> anyhow::Result<i64> {
    let r = c
        .get_usage_report(bearer(
            bill_api::GetUsageReportRequest {
                organization_id: org.to_owned(),
                page_size: 1000,
                start_time: at(start),
                end_time: at(end),
                bucket_width: bill_api::BucketWidth::OneDay as i32,
                group_by: vec![dim as i32],
                ..Default::default()
            },
            token,
        ))
        .await
        .map_err(|s| anyhow!("GetUsageReport: {s}"))?
        .into_inner();
    if !r.next_page_token.is_empty() {
        return Err(anyhow!("expected one page"));
    }
    Ok(r.buckets
        .iter()
        .flat_map(|b| &b.rows)
        .map(|row| row.record_count)
        .sum())
}

/// Times `samples` calls of `call`; returns the stats and the last call's covered records.
async fn timed<F, Fut>(samples: usize, mut call: F) -> anyhow::Result<(Stats, i64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i64>>,
{
    let mut lat = Vec::new();
    let t = Instant::now();
    let mut covered = 0;
    for _ in 0..samples {
        let t0 = Instant::now();
        covered = call().await?;
        lat.push(t0.elapsed().as_micros() as u64);
    }
    Ok((load::stats_of(lat, t.elapsed(), 0), covered))
}

/// Scenario 6 (see the module docs).
pub async fn usage_ingest_and_report(world: &World, plan: &Plan) -> anyhow::Result<Row> {
    let rig = &world.rig;
    rig.wait_billing_applied(world.org_revision).await?;
    let (rate, ingested, batch_p50) = ingest(world, plan.duration, 60, "n").await?;
    let spread_time = plan.duration / 3;
    let (spread_rate, spread_n, _) = ingest(world, spread_time, 30 * DAY_S - 3600, "s").await?;

    let now = chrono::Utc::now().timestamp();
    let start_day = (now - 30 * DAY_S).div_euclid(DAY_S) * DAY_S;
    let end_day = (now.div_euclid(DAY_S) + 1) * DAY_S;
    let billing = rig
        .opened()?
        .billing_access
        .as_ref()
        .ok_or_else(|| anyhow!("no billing-access service"))?;
    let db = billing.db();
    let target = plan.usage_records as u64;
    let to_seed = target.saturating_sub(ingested + spread_n);
    let seed_start = Instant::now();
    let seeder = seed::Seed {
        org: &world.org,
        workspaces: &world.workspaces,
        models: &MODELS,
        n: to_seed,
        start_ms: (now - 30 * DAY_S) * 1000,
        span_ms: (30 * DAY_S - 3600) * 1000,
        now_ms: now * 1000,
    };
    if to_seed > 0 {
        seeder
            .run(db, |done| {
                if done % 2_000_000 == 0 || done == to_seed {
                    eprintln!(
                        "  usage: seeded {done} of {to_seed} records ({:.0}s)",
                        seed_start.elapsed().as_secs_f64()
                    );
                }
            })
            .await?;
    }
    let seed_s = seed_start.elapsed().as_secs_f64();
    let sample_day = (now - 15 * DAY_S).div_euclid(DAY_S) * DAY_S * 1000;
    let sample = seed::check_sample(db, &world.org, sample_day).await?;

    let token = rig.user_token(&world.owner)?;
    let client =
        bill_api::billing_access_service_client::BillingAccessServiceClient::new(rig.channel(0));
    let samples = plan.report_samples;
    let range = (start_day, end_day);
    let (by_ws, covered) = timed(samples, || {
        let c = client.clone();
        usage_call(
            c,
            &token,
            &world.org,
            range,
            bill_api::UsageDimension::Workspace,
        )
    })
    .await?;
    let (by_model, covered_model) = timed(samples, || {
        let c = client.clone();
        usage_call(
            c,
            &token,
            &world.org,
            range,
            bill_api::UsageDimension::Model,
        )
    })
    .await?;
    if covered != covered_model {
        return Err(anyhow!(
            "the reports cover {covered} and {covered_model} records"
        ));
    }
    let (cost, _) = timed(samples, || {
        let mut c = client.clone();
        let token = token.clone();
        let org = world.org.clone();
        async move {
            let r = c
                .get_cost_report(bearer(
                    bill_api::GetCostReportRequest {
                        organization_id: org,
                        page_size: 1000,
                        start_time: at(start_day),
                        end_time: at(end_day),
                        group_by: vec![
                            bill_api::CostDimension::Workspace as i32,
                            bill_api::CostDimension::Description as i32,
                        ],
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .map_err(|s| anyhow!("GetCostReport: {s}"))?;
            Ok(r.get_ref().buckets.len() as i64)
        }
    })
    .await?;
    // The same usage report from the per-minute rollups (the tier every report read before).
    let dims = [Dim::Workspace];
    let minute = Rollups {
        organization_id: &world.org,
        width: DAY_S * 1000,
        dims: &dims,
        filters: &[],
        accounts: &[],
    };
    let (from, to) = (start_day * 1000, end_day * 1000);
    let (minute_stats, minute_covered) = timed(if plan.assert_goals { 3 } else { 1 }, || async {
        let (rows, _) = minute
            .page_from(db, from, to, 31, Some(Tier::Minute))
            .await?;
        Ok(rows.iter().map(|r| r.count).sum::<i64>())
    })
    .await?;
    if minute_covered != covered {
        return Err(anyhow!(
            "the per-minute rollups cover {minute_covered} records, the daily tier {covered}"
        ));
    }

    let p99s = [
        by_ws.quantile_us(0.99),
        by_model.quantile_us(0.99),
        cost.quantile_us(0.99),
    ];
    let worst = p99s.iter().copied().max().unwrap_or(0);
    let full = covered as u64 >= 10_000_000;
    let met = rate >= 50_000.0 && worst <= 100_000;
    Ok(Row {
        scenario: "usage_ingest_and_report".into(),
        value: rate,
        unit: "records/s".into(),
        baseline: 50_000.0,
        ratio: rate / 50_000.0,
        p50_us: by_ws.quantile_us(0.5),
        p99_us: worst,
        goal: "ingest >= 50,000 records/s; report p99 <= 100 ms each (workspace, model, cost)"
            .into(),
        met: Some(met),
        note: format!(
            "ingested {ingested} records in {:.1}s (batches of 1,000, 4 in flight, usage times in the last minute; batch p50 {batch_p50} ms); usage times over 30 days: {spread_rate:.0} records/s ({spread_n} in {:.1}s); report p99 by workspace {} ms, by model {} ms, cost {} ms over {covered} records{} (30 daily buckets); the same report from the per-minute rollups: p50 {} ms; seeded {to_seed} records set-wise in {seed_s:.1}s (daily tiers = records on a sampled day of {sample})",
            plan.duration.as_secs_f64(),
            spread_time.as_secs_f64(),
            p99s[0] / 1000,
            p99s[1] / 1000,
            p99s[2] / 1000,
            if full {
                String::new()
            } else {
                format!(
                    " (SCALED DOWN from 10M: --scale {:.3})",
                    covered as f64 / 1e7
                )
            },
            minute_stats.quantile_us(0.5) / 1000,
        ),
        spread: None,
    })
}
