//! One service principal replaying a large backlog must not starve everyone else: `streams`
//! Watch streams (on 10 connections, one service token) each replay the organization's outbox
//! from revision 0 — a backlog of `backlog` role changes, in batches of [`BATCH`] — while four
//! ordinary callers keep reading members (`GetMember`, `ListMembers`) with a user's token.
//!
//! Checked: every stream reads the whole backlog, gap-free and in order, and ends caught up
//! (zero failed streams); zero failed ordinary calls; the ordinary calls' p99 during the replay
//! is within 2× of their p99 measured idle just before (a goal at full size only: see
//! [`Size::latency_goals`]); the organization process's resident
//! memory grows by less than [`MAX_GROWTH_KIB`] at its peak. The replay is repeated (every
//! stream from 0 again) until at least [`MIN_CALLS`] ordinary calls were measured during it, so
//! the p99 always stands on enough samples whatever the machine's speed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use orgplane_proto::events::v1::event_service_client::EventServiceClient;
use orgplane_proto::events::v1::{Producer, WatchRequest};
use orgplane_proto::organization::v1::{self as org_api, OrgRole};
use tonic::transport::{Channel, Endpoint};

use crate::harness::{Harness, bearer};
use crate::protocol::rss_kib;
use crate::{Figures, Size};

/// Events per Watch message the replaying streams ask for (the server's default).
const BATCH: i32 = 100;
/// Ordinary calls measured during the replay, at least.
const MIN_CALLS: usize = 400;
/// Ordinary calls measured idle.
const IDLE_CALLS: usize = 800;
/// Concurrent ordinary callers.
const CALLERS: usize = 4;
/// Connections the streams share.
const CONNECTIONS: usize = 10;
/// Largest growth of organization's resident memory while the streams replay.
const MAX_GROWTH_KIB: u64 = 192 * 1024;
/// Replays at most, should the machine be so fast that one replay measures too few calls.
const MAX_ROUNDS: usize = 20;

/// Runs the scenario on a fresh setup.
pub async fn run(bin: &Path, postgres: Option<&str>, size: Size) -> anyhow::Result<Vec<Figures>> {
    let db = crate::db_label(postgres);
    let mut h = Harness::start(bin, postgres).await?;
    let result = async {
        let seeded = seed(&h, size).await?;
        let bounded = measure(&h, &seeded, db, size, false).await?;
        // Control: the same replay with the bound on backlog reads and the pace lifted
        // (`--watch-backlog-reads 0 --watch-replay-rate 0`).
        h.set_env(Some("organization"), "ORGPLANE_WATCH_BACKLOG_READS", "0");
        h.set_env(Some("organization"), "ORGPLANE_WATCH_REPLAY_RATE", "0");
        h.restart("organization").await?;
        let control = measure(&h, &seeded, db, size, true).await?;
        Ok(vec![bounded, control])
    }
    .await;
    h.stop().await?;
    result
}

/// The organization whose outbox holds the backlog, and who reads it.
struct Seeded {
    org: String,
    owner: String,
    token: String,
    /// Role changes made (failures are listed).
    made: usize,
    failures: Vec<String>,
}

async fn seed(h: &Harness, size: Size) -> anyhow::Result<Seeded> {
    let owner = "user_wb_owner".to_owned();
    let (org, _ws) = h.seed_org(&owner).await?;
    let token = h.user_token(&owner)?;
    let members: Vec<String> = (0..32).map(|i| format!("user_wb_{i:02}")).collect();
    for m in &members {
        h.add_member(&owner, &org, m, OrgRole::User).await?;
    }
    let (made, failed) =
        crate::protocol::produce(h, &org, &token, &members, size.watch_backlog).await;
    let mut failures = Vec::new();
    if failed > 0 {
        failures.push(format!("{failed} of the backlog's role changes failed"));
    }
    Ok(Seeded {
        org,
        owner,
        token,
        made,
        failures,
    })
}

/// The value at quantile `q` of `samples` (sorted here), in milliseconds.
fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i].as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// One measurement: idle calls, then the replay with calls beside it. `control`: the process
/// runs without the bound on backlog reads and without the replay pace; what would be violations is reported, and at full size the
/// control must show the harm (else the scenario could not tell).
async fn measure(
    h: &Harness,
    seeded: &Seeded,
    db: &str,
    size: Size,
    control: bool,
) -> anyhow::Result<Figures> {
    let name = if control {
        "watch-backlog-control"
    } else {
        "watch-backlog"
    };
    let mut f = Figures::new(name, db);
    let (org, owner, token, made) = (
        &seeded.org,
        seeded.owner.as_str(),
        &seeded.token,
        seeded.made,
    );
    f.failures.extend(seeded.failures.iter().cloned());
    let service = h.service_token("workspace")?;
    let channels = (0..CONNECTIONS)
        .map(|_| {
            Ok(
                Endpoint::from_shared(format!("http://{}", h.addr("organization")))?
                    .tcp_nodelay(true)
                    .connect_lazy(),
            )
        })
        .collect::<anyhow::Result<Vec<Channel>>>()?;
    // The head every replay must reach: one stream's replay, alone.
    let head = replay(channels[0].clone(), service.clone(), 0)
        .await
        .map_err(|e| anyhow!("a lone replay: {e}"))?;
    if head < made as i64 {
        f.failures.push(format!(
            "the outbox's head {head} is below the {made} role changes made"
        ));
    }

    let pid = h.pid("organization");
    let idle = callers(h, org, owner, token, Measure::Count(IDLE_CALLS)).await;
    let rss_start = rss_kib(pid);

    // The callers run on their own thread and runtime, so that the client side of the replay
    // (decoding millions of events here) does not delay them; what they measure is the server.
    let replaying = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(AtomicU64::new(0));
    let loaded = {
        let (h_orgs, org, owner, token) = (h.orgs(), org.clone(), owner.to_owned(), token.clone());
        let (replaying, stop, counted) = (replaying.clone(), stop.clone(), counted.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            rt.block_on(run_callers(
                h_orgs,
                org,
                owner,
                token,
                Measure::While {
                    replaying,
                    stop,
                    counted,
                },
            ))
        })
    };
    let peak = Arc::new(AtomicU64::new(rss_start));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let (mut rounds, mut stream_failures, mut replay_time) = (0, Vec::new(), Duration::ZERO);
    // The control shows its harm in the first replay; it is not repeated for long.
    let max_rounds = if control { 3 } else { MAX_ROUNDS };
    while rounds < max_rounds
        && (rounds == 0 || (counted.load(Ordering::Relaxed) as usize) < MIN_CALLS)
    {
        rounds += 1;
        replaying.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let all = (0..size.watch_streams).map(|i| {
            let channel = channels[i % CONNECTIONS].clone();
            let service = service.clone();
            tokio::spawn(async move { replay(channel, service, head).await })
        });
        let results = futures::future::join_all(all).await;
        replaying.store(false, Ordering::Relaxed);
        replay_time += started.elapsed();
        for r in results {
            match r {
                Ok(Ok(_)) => f.delivered += head as u64,
                Ok(Err(e)) => stream_failures.push(e),
                Err(e) => stream_failures.push(format!("stream task: {e}")),
            }
        }
        f.operations += size.watch_streams as u64;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let mut during = loaded
        .join()
        .map_err(|_| anyhow!("the callers' thread panicked"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib(pid);
    let rss_peak = peak.load(Ordering::Relaxed);

    // What the bound prevents: a violation normally, the expected outcome of the control.
    let mut harms = Vec::new();
    if !stream_failures.is_empty() {
        harms.push(format!(
            "{} of {} streams failed, e.g. {}",
            stream_failures.len(),
            rounds * size.watch_streams,
            stream_failures[0]
        ));
    }
    let mut idle_ok = idle.latencies;
    f.operations += (idle_ok.len() + idle.failed.len()) as u64;
    f.operations += (during.latencies.len() + during.failed.len()) as u64;
    if !idle.failed.is_empty() {
        f.failures.push(format!(
            "{} ordinary calls failed idle, e.g. {}",
            idle.failed.len(),
            idle.failed[0]
        ));
    }
    if !during.failed.is_empty() {
        harms.push(format!(
            "{} ordinary calls failed during the replay, e.g. {}",
            during.failed.len(),
            during.failed[0]
        ));
    }
    let calls = during.latencies.len();
    if calls < MIN_CALLS && !control {
        f.failures.push(format!(
            "only {calls} ordinary calls measured during {rounds} replays (want {MIN_CALLS})"
        ));
    }
    let (idle_p50, idle_p99) = (
        quantile_ms(&mut idle_ok, 0.5),
        quantile_ms(&mut idle_ok, 0.99),
    );
    let (load_p50, load_p99) = (
        quantile_ms(&mut during.latencies, 0.5),
        quantile_ms(&mut during.latencies, 0.99),
    );
    if size.latency_goals && load_p99 > 2.0 * idle_p99 {
        harms.push(format!(
            "ordinary p99 {load_p99:.1} ms during the replay is above 2× the idle p99 {idle_p99:.1} ms"
        ));
    }
    let growth = rss_peak.saturating_sub(rss_start);
    if growth > MAX_GROWTH_KIB {
        harms.push(format!(
            "organization's RSS grew by {} (limit {})",
            mib(growth),
            mib(MAX_GROWTH_KIB)
        ));
    }
    f.notes = format!(
        "{} streams × {head} events × {rounds} replays in {:.1} s; {calls} calls during: p50/p99 {load_p50:.1}/{load_p99:.1} ms vs idle {idle_p50:.1}/{idle_p99:.1} ms; RSS {} → peak {} → {}",
        size.watch_streams,
        replay_time.as_secs_f64(),
        mib(rss_start),
        mib(rss_peak),
        mib(rss_after),
    );
    if !control {
        f.lost += stream_failures.len() as u64;
        f.failures.extend(harms);
    } else if harms.is_empty() {
        if size.latency_goals {
            f.failures.push(
                "control: without the bound nothing went wrong, so the scenario cannot tell".into(),
            );
        }
    } else {
        f.notes
            .push_str(&format!("; without the bound: {}", harms.join("; ")));
    }
    Ok(f)
}

/// Replays the organization's events from revision 0 until caught up at `head` or beyond;
/// returns the last revision read. Every revision must follow the one before.
async fn replay(channel: Channel, service: String, head: i64) -> Result<i64, String> {
    let mut client = EventServiceClient::new(channel);
    let mut req = bearer(
        WatchRequest {
            producer: Producer::Organization as i32,
            after_revision: 0,
            max_batch_size: BATCH,
        },
        &service,
    );
    req.metadata_mut().remove("grpc-timeout");
    let mut stream = client
        .watch(req)
        .await
        .map_err(|s| format!("{:?} {}", s.code(), s.message()))?
        .into_inner();
    let mut last = 0;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(120), stream.message())
            .await
            .map_err(|_| format!("no message for 120 s after revision {last}"))?
            .map_err(|s| format!("{:?} {}", s.code(), s.message()))?
            .ok_or_else(|| format!("the stream ended after revision {last}"))?;
        for e in &message.events {
            if e.revision != last + 1 {
                return Err(format!("revision {} after {last}", e.revision));
            }
            last = e.revision;
        }
        if message.caught_up && last >= head {
            return Ok(last);
        }
    }
}

/// How long the callers run.
enum Measure {
    /// Until this many calls were made.
    Count(usize),
    /// Until `stop`; only calls started while `replaying` are kept (and counted in `counted`).
    While {
        replaying: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
        counted: Arc<AtomicU64>,
    },
}

/// What the callers measured.
struct Calls {
    latencies: Vec<Duration>,
    failed: Vec<String>,
}

async fn callers(h: &Harness, org: &str, owner: &str, token: &str, measure: Measure) -> Calls {
    run_callers(h.orgs(), org.into(), owner.into(), token.into(), measure).await
}

/// [`CALLERS`] concurrent callers alternating `GetMember` and `ListMembers`.
async fn run_callers(
    orgs: org_api::organization_service_client::OrganizationServiceClient<Channel>,
    org: String,
    owner: String,
    token: String,
    measure: Measure,
) -> Calls {
    let measure = Arc::new(measure);
    let made = Arc::new(AtomicU64::new(0));
    let tasks = (0..CALLERS).map(|c| {
        let (mut orgs, org, owner, token) =
            (orgs.clone(), org.clone(), owner.clone(), token.clone());
        let (measure, made) = (measure.clone(), made.clone());
        async move {
            let mut out = Calls {
                latencies: Vec::new(),
                failed: Vec::new(),
            };
            for i in 0.. {
                let keep = match &*measure {
                    Measure::Count(n) => {
                        if made.fetch_add(1, Ordering::Relaxed) as usize >= *n {
                            break;
                        }
                        true
                    }
                    Measure::While {
                        replaying, stop, ..
                    } => {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        replaying.load(Ordering::Relaxed)
                    }
                };
                let started = Instant::now();
                let r = if (i + c) % 2 == 0 {
                    orgs.get_member(bearer(
                        org_api::GetMemberRequest {
                            organization_id: org.clone(),
                            user_id: owner.clone(),
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ())
                } else {
                    orgs.list_members(bearer(
                        org_api::ListMembersRequest {
                            organization_id: org.clone(),
                            page_size: 20,
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ())
                };
                let took = started.elapsed();
                if !keep {
                    // Between replays: keep the load steady without measuring it.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                if let Measure::While { counted, .. } = &*measure {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                match r {
                    Ok(()) => out.latencies.push(took),
                    Err(s) => out.failed.push(format!("{:?} {}", s.code(), s.message())),
                }
            }
            out
        }
    });
    let all = futures::future::join_all(tasks).await;
    let mut calls = Calls {
        latencies: Vec::new(),
        failed: Vec::new(),
    };
    for c in all {
        calls.latencies.extend(c.latencies);
        calls.failed.extend(c.failed);
    }
    calls
}
