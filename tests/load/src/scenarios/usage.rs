//! Scenario 6: usage ingestion through batched RecordUsage, and the reports over it.

use super::*;

/// Scenario 6: RecordUsage in batches of 1,000 for the run's duration, then GetUsageReport over
/// 30 daily buckets grouped by workspace, over everything ingested.
pub async fn usage_ingest_and_report(world: &World, plan: &Plan) -> anyhow::Result<Row> {
    let rig = &world.rig;
    rig.wait_billing_applied(world.org_revision).await?;
    let service = Arc::new(rig.service_token()?);
    let now = chrono::Utc::now().timestamp();
    let span = 30 * 86_400 - 3600;
    let org = Arc::new(world.org.clone());
    let workspaces = Arc::new(world.workspaces.clone());
    let channels = Arc::new(rig.channels.clone());
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = accepted.clone();
    let ingest = load::run(
        2,
        Duration::from_millis(0),
        plan.duration,
        move |task, k| {
            let mut rng = Rng::new((task as u64) << 32 | k);
            let records: Vec<bill_api::UsageRecord> = (0..1000)
                .map(|i| bill_api::UsageRecord {
                    organization_id: org.to_string(),
                    workspace_id: workspaces[rng.below(workspaces.len() as u64) as usize].clone(),
                    api_key_id: String::new(),
                    user_id: String::new(),
                    model: ["orgmodel-small-1", "orgmodel-medium-1", "orgmodel-large-2"]
                        [rng.below(3) as usize]
                        .into(),
                    input_tokens: 1 + rng.below(4000) as i64,
                    output_tokens: 1 + rng.below(1000) as i64,
                    usage_time: Some(prost_types::Timestamp {
                        seconds: now - 60 - rng.below(span as u64) as i64,
                        nanos: 0,
                    }),
                    idempotency_key: format!("b-{task}-{k}-{i}"),
                    account_id: String::new(),
                })
                .collect();
            let mut c = bill_api::billing_access_service_client::BillingAccessServiceClient::new(
                channels[task % channels.len()].clone(),
            );
            let token = service.clone();
            let counted = counted.clone();
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
                    Err(_) => false,
                }
            }
        },
    )
    .await;
    let accepted = accepted.load(std::sync::atomic::Ordering::Relaxed);
    let rate = accepted as f64 / ingest.elapsed.as_secs_f64().max(1e-9);
    let token = rig.user_token(&world.owner)?;
    let mut c =
        bill_api::billing_access_service_client::BillingAccessServiceClient::new(rig.channel(0));
    let mut lat = Vec::new();
    let t = Instant::now();
    let mut buckets = 0;
    for _ in 0..plan.report_samples {
        let t0 = Instant::now();
        let r = c
            .get_usage_report(bearer(
                bill_api::GetUsageReportRequest {
                    organization_id: world.org.clone(),
                    page_size: 1000,
                    start_time: Some(prost_types::Timestamp {
                        seconds: (now - 30 * 86_400).div_euclid(86_400) * 86_400,
                        nanos: 0,
                    }),
                    end_time: Some(prost_types::Timestamp {
                        seconds: (now.div_euclid(86_400) + 1) * 86_400,
                        nanos: 0,
                    }),
                    bucket_width: bill_api::BucketWidth::Unspecified as i32,
                    group_by: vec![bill_api::UsageDimension::Workspace as i32],
                    ..Default::default()
                },
                &token,
            ))
            .await
            .map_err(|s| anyhow!("GetUsageReport: {s}"))?;
        buckets = r.get_ref().buckets.len();
        lat.push(t0.elapsed().as_micros() as u64);
    }
    let report = load::stats_of(lat, t.elapsed(), 0);
    let p99 = report.quantile_us(0.99);
    Ok(Row {
        scenario: "usage_ingest_and_report".into(),
        value: rate,
        unit: "records/s".into(),
        baseline: 0.0,
        ratio: p99 as f64 / 250_000.0,
        p50_us: report.quantile_us(0.5),
        p99_us: p99,
        goal: "report p99 <= 250 ms (ratio = p99 / 250 ms)".into(),
        met: Some(p99 <= 250_000),
        note: format!(
            "ingested {accepted} records in {:.1}s (2 batches of 1,000 in flight); report over {accepted} records (SCALED DOWN from 10M: what {:.0}s of ingestion writes), 30 daily buckets x workspace = {buckets} rows; ingest p50 {}ms",
            ingest.elapsed.as_secs_f64(),
            plan.duration.as_secs_f64(),
            ingest.quantile_us(0.5) / 1000
        ),
        spread: None,
    })
}
