//! Issue 23, item 5: role changes per second with 1,000 open `EventService.Watch` streams of the
//! organization service, against the rate with none, in alternating slices (none first). The
//! watchers really read: each counts the events it receives and checks they follow each other,
//! and after every slice each must have received every change of the slice.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use orgplane_platform::auth::{Capabilities, Capability};
use orgplane_proto::events::v1 as ev_api;

use super::*;

/// Role changes in flight.
const IN_FLIGHT: usize = 16;
/// HTTP/2 connections the watchers are spread over (streams per connection stay below the
/// server's limit of concurrent streams).
const WATCH_CONNECTIONS: usize = 10;

/// One open Watch stream's count.
struct Watcher {
    /// Events received.
    events: AtomicU64,
    /// Revision of the last event received.
    last: AtomicI64,
}

/// 1,000 watchers reading the organization's events from `after`, on their own connections.
struct Watchers {
    counts: Vec<Arc<Watcher>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Watchers {
    async fn open(world: &World, n: usize, after: i64) -> anyhow::Result<Self> {
        let started = world
            .rig
            .started
            .as_ref()
            .ok_or_else(|| anyhow!("stopped"))?;
        let channels = connect(&format!("http://{}", started.addr), WATCH_CONNECTIONS).await?;
        let token = world
            .rig
            .service_token_with(Capabilities::of(&[Capability::WatchOrganization]))?;
        let ready = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let mut counts = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let count = Arc::new(Watcher {
                events: AtomicU64::new(0),
                last: AtomicI64::new(after),
            });
            counts.push(count.clone());
            let (ch, token, ready, stop) = (
                channels[i % channels.len()].clone(),
                token.clone(),
                ready.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut client = ev_api::event_service_client::EventServiceClient::new(ch);
                let request = bearer(
                    ev_api::WatchRequest {
                        producer: ev_api::Producer::Organization as i32,
                        after_revision: after,
                        max_batch_size: 0,
                    },
                    &token,
                );
                let mut stream = client
                    .watch(request)
                    .await
                    .map_err(|s| anyhow!("Watch: {s}"))?
                    .into_inner();
                let mut first = true;
                loop {
                    let message = tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        m = stream.message() => m.map_err(|s| anyhow!("Watch stream: {s}"))?,
                    };
                    let Some(message) = message else {
                        return Err(anyhow!("Watch stream ended by the server"));
                    };
                    for e in &message.events {
                        let last = count.last.load(Ordering::Relaxed);
                        if e.revision != last + 1 {
                            return Err(anyhow!(
                                "watcher got revision {} after {last}",
                                e.revision
                            ));
                        }
                        count.last.store(e.revision, Ordering::Relaxed);
                        count.events.fetch_add(1, Ordering::Relaxed);
                    }
                    if first {
                        first = false;
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while ready.load(Ordering::Relaxed) < n {
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "{} of {n} watchers answered within 60 s",
                    ready.load(Ordering::Relaxed)
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Self {
            counts,
            stop,
            tasks,
        })
    }

    /// Waits until every watcher received every event through `revision`, closes the streams,
    /// and returns the fewest and most events a watcher received.
    async fn close_at(self, revision: i64) -> anyhow::Result<(u64, u64)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .counts
            .iter()
            .any(|c| c.last.load(Ordering::Relaxed) < revision)
        {
            if Instant::now() > deadline || self.tasks.iter().any(|t| t.is_finished()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop.cancel();
        for t in self.tasks {
            t.await??;
        }
        let behind = self
            .counts
            .iter()
            .filter(|c| c.last.load(Ordering::Relaxed) < revision)
            .count();
        if behind > 0 {
            return Err(anyhow!(
                "{behind} watchers had not received revision {revision} after 60 s"
            ));
        }
        let received: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.events.load(Ordering::Relaxed))
            .collect();
        Ok((
            received.iter().copied().min().unwrap_or(0),
            received.iter().copied().max().unwrap_or(0),
        ))
    }
}

/// Issue 23: UpdateMemberRole calls per second (16 in flight, each a change) with 1,000 open
/// Watch streams of the organization, as a ratio to the rate with none (goal >= 0.9), in
/// alternating slices; every watcher must receive every change.
pub async fn watch_fanout(world: &World, plan: &Plan) -> anyhow::Result<Row> {
    let n_watchers = if plan.assert_goals { 1000 } else { 20 };
    let owner = world.rig.user_token(&world.owner)?;
    // The members the load changes, IN_FLIGHT-aligned so that no two calls in flight touch the
    // same member (task t changes members t, t + 16, t + 32, …); all set to USER first, then
    // each call flips one between DEVELOPER and USER.
    let m = (world.users.len().min(1000) / IN_FLIGHT).max(1) * IN_FLIGHT;
    let users: Arc<Vec<String>> = Arc::new(world.users[..m.min(world.users.len())].to_vec());
    let head = Arc::new(AtomicI64::new(0));
    for (i, u) in users.iter().enumerate() {
        let mut c = org_api::organization_service_client::OrganizationServiceClient::new(
            world.rig.channel(i),
        );
        let rev = super::roles::update_role(&mut c, &owner, &world.org, u, org_api::OrgRole::User)
            .await?;
        head.fetch_max(rev, Ordering::Relaxed);
    }
    let flips: Arc<Vec<AtomicU64>> =
        Arc::new((0..users.len()).map(|_| AtomicU64::new(0)).collect());
    let call = {
        let (owner, org, users, head, flips) = (
            owner.clone(),
            world.org.clone(),
            users.clone(),
            head.clone(),
            flips.clone(),
        );
        let channels: Vec<Channel> = (0..IN_FLIGHT).map(|i| world.rig.channel(i)).collect();
        move |task: usize, n: u64| {
            let idx = (task + IN_FLIGHT * n as usize) % users.len();
            let user = users[idx].clone();
            let flip = flips[idx].fetch_add(1, Ordering::Relaxed);
            let role = if flip.is_multiple_of(2) {
                org_api::OrgRole::Developer
            } else {
                org_api::OrgRole::User
            };
            let (owner, org, head) = (owner.clone(), org.clone(), head.clone());
            let ch = channels[task % channels.len()].clone();
            async move {
                let mut c =
                    org_api::organization_service_client::OrganizationServiceClient::new(ch);
                match super::roles::update_role(&mut c, &owner, &org, &user, role).await {
                    Ok(rev) => {
                        head.fetch_max(rev, Ordering::Relaxed);
                        true
                    }
                    Err(_) => false,
                }
            }
        }
    };
    let slice = plan.duration / plan.pairs.max(1) as u32;
    let mut ratios = Vec::new();
    let (mut base_all, mut with_all) = (Vec::new(), Vec::new());
    let (mut errors, mut received) = (0u64, (u64::MAX, 0u64));
    let mut elapsed = (Duration::ZERO, Duration::ZERO);
    for pair in 0..plan.pairs.max(1) {
        let warm = if pair == 0 { plan.warmup } else { slice / 10 };
        let without = load::run(IN_FLIGHT, warm, slice, call.clone()).await;
        let from = head.load(Ordering::Relaxed);
        let watchers = Watchers::open(world, n_watchers, from).await?;
        let with = load::run(IN_FLIGHT, warm, slice, call.clone()).await;
        let (lo, hi) = watchers.close_at(head.load(Ordering::Relaxed)).await?;
        let expected = (head.load(Ordering::Relaxed) - from) as u64;
        if lo < expected {
            return Err(anyhow!(
                "watchers received {lo}..{hi} events, expected at least {expected} each"
            ));
        }
        received = (received.0.min(lo), received.1.max(hi));
        ratios.push(with.rate() / without.rate().max(1e-9));
        errors += without.errors + with.errors;
        elapsed.0 += without.elapsed;
        elapsed.1 += with.elapsed;
        base_all.extend(without.latencies_us);
        with_all.extend(with.latencies_us);
    }
    let p = load::Paired {
        baseline: load::stats_of(base_all, elapsed.0, 0),
        scenario: load::stats_of(with_all, elapsed.1, errors),
        ratios,
    };
    let mut row = paired_row(
        "watch_fanout",
        &p,
        &format!("role changes/s with {n_watchers} Watch streams >= 0.9 x with none"),
        p.median() >= 0.9 && errors == 0,
    );
    row.unit = "changes/s".into();
    row.note = format!(
        "without watchers {:.0} changes/s (p99 {}us); {IN_FLIGHT} in flight over {} members; each watcher received {}..{} events per slice (all of them); {errors} errors",
        p.baseline.rate(),
        p.baseline.quantile_us(0.99),
        users.len(),
        received.0,
        received.1
    );
    Ok(row)
}
