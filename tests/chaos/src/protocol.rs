//! Protocol-level limits of a serving process (organization): a request whose bytes nest groups
//! thousands deep, 1,000 concurrent Watch streams, 1,000 concurrent unary calls on one and on
//! several connections, and a Watch client that never reads while thousands of events are
//! produced. Each case asserts the exact answer (or a clean refusal with details), that the
//! process stays healthy, and prints its resident memory (VmRSS) before and after.

use std::path::Path;
use std::time::{Duration, Instant};

use orgplane_proto::events::v1::event_service_client::EventServiceClient;
use orgplane_proto::events::v1::{Producer, WatchRequest};
use orgplane_proto::organization::v1::{self as org_api, OrgRole};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::Figures;
use crate::harness::{Harness, bearer};
use crate::security::RawCodec;

/// Concurrent Watch streams and concurrent unary calls.
pub const CONCURRENT: usize = 1000;

/// Largest RSS growth of organization while a Watch client never reads.
const MAX_GROWTH_KIB: u64 = 64 * 1024;

/// Runs the scenario on a fresh setup: `protocol-limits` with `events` role changes produced
/// while a Watch client never reads.
pub async fn run(bin: &Path, postgres: Option<&str>, events: usize) -> anyhow::Result<Figures> {
    let db = crate::db_label(postgres);
    let h = Harness::start(bin, postgres).await?;
    let result = scenario(&h, db, events).await;
    h.stop().await?;
    result
}

fn case(f: &mut Figures, name: &str, got: Result<(), &Status>, want: &[Code]) {
    f.operations += 1;
    let code = got.err().map_or(Code::Ok, Status::code);
    if want.contains(&code) {
        f.attacks_passed += 1;
    } else {
        f.attacks_failed += 1;
        let msg = got
            .err()
            .map(|s| s.message().to_owned())
            .unwrap_or_default();
        f.failures
            .push(format!("{name}: {code:?} {msg} (expected one of {want:?})"));
    }
}

async fn healthy(h: &Harness, f: &mut Figures, after: &str) {
    f.operations += 1;
    match h.wait_serving("organization", Duration::from_secs(5)).await {
        Ok(()) => f.attacks_passed += 1,
        Err(e) => {
            f.attacks_failed += 1;
            f.failures
                .push(format!("organization not SERVING after {after}: {e}"));
        }
    }
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: Option<u32>) -> u64 {
    pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The open file descriptors (sockets, database files) of process `pid`.
fn fds(pid: Option<u32>) -> usize {
    pid.and_then(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .map_or(0, Iterator::count)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A new connection to organization (not shared with the harness's channels).
fn connection(h: &Harness, window: Option<u32>) -> anyhow::Result<Channel> {
    let e = Endpoint::from_shared(format!("http://{}", h.addr("organization")))?
        .tcp_nodelay(true)
        .initial_stream_window_size(window)
        .initial_connection_window_size(window);
    Ok(e.connect_lazy())
}

fn watch_request(token: &str, after: i64) -> tonic::Request<WatchRequest> {
    let mut req = bearer(
        WatchRequest {
            producer: Producer::Organization as i32,
            after_revision: after,
            max_batch_size: 1000,
        },
        token,
    );
    // A stream has no deadline.
    req.metadata_mut().remove("grpc-timeout");
    req
}

/// A refusal is clean when it says why, in code and details.
fn clean_refusal(s: &Status) -> bool {
    matches!(s.code(), Code::ResourceExhausted | Code::Unavailable)
        && orgplane_platform::error::reason_of(s).is_some()
}

async fn scenario(h: &Harness, db: &str, events: usize) -> anyhow::Result<Figures> {
    let mut f = Figures::new("protocol-limits", db);
    let owner = "user_plim_owner";
    let (org, _ws) = h.seed_org(owner).await?;
    let token = h.user_token(owner)?;
    let service = h.product_token()?;
    let pid = h.pid("organization");
    let mut notes = Vec::new();
    notes.push(format!("RSS at start {}", mib(rss_kib(pid))));

    let before_members = seed_members(h, owner, &org, "before", 8).await?;
    let during_members = seed_members(h, owner, &org, "during", 8).await?;
    let after_members = seed_members(h, owner, &org, "after", 8).await?;
    let (rate_before, failed) = rate(h, &org, &token, &before_members).await;
    if failed > 0 {
        f.failures
            .push(format!("{failed} role changes failed at the start"));
    }

    // 1. Groups nested 10,000 deep (prost stops at 100), and length-delimited unknown fields
    //    nested 5,000 deep (skipped without recursion).
    let path = "/orgplane.organization.v1.OrganizationService/CreateOrganization";
    let mut groups = vec![0x7b_u8; 10_000];
    groups.extend(std::iter::repeat_n(0x7c_u8, 10_000));
    let r = raw(h, path, groups, &token).await;
    case(
        &mut f,
        "groups nested 10,000 deep",
        r.as_ref().map(|_| ()),
        &[Code::InvalidArgument],
    );
    let mut nested: Vec<u8> = Vec::new();
    for _ in 0..5000 {
        let mut outer = vec![0x7a_u8];
        prost::encoding::encode_varint(nested.len() as u64, &mut outer);
        outer.extend_from_slice(&nested);
        nested = outer;
    }
    let r = raw(h, path, nested, &token).await;
    // Decodes (unknown fields are skipped) to a request without an organization.
    case(
        &mut f,
        "length-delimited unknown fields nested 5,000 deep",
        r.as_ref().map(|_| ()),
        &[Code::InvalidArgument],
    );
    healthy(h, &mut f, "deep nesting").await;

    // 2. 1,000 concurrent unary calls, on one connection and on ten.
    for connections in [1usize, 10] {
        let before = rss_kib(pid);
        let channels = (0..connections)
            .map(|_| connection(h, None))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let started = Instant::now();
        let calls = (0..CONCURRENT).map(|i| {
            let mut client = org_api::organization_service_client::OrganizationServiceClient::new(
                channels[i % connections].clone(),
            );
            let req = bearer(
                org_api::GetMemberRequest {
                    organization_id: org.clone(),
                    user_id: owner.into(),
                },
                &token,
            );
            async move { client.get_member(req).await.map(|_| ()) }
        });
        let results = futures::future::join_all(calls).await;
        let took = started.elapsed();
        let (ok, refused, other) = tally(&results);
        f.operations += results.len() as u64;
        f.attacks_passed += (ok + refused) as u64;
        f.attacks_failed += other.len() as u64;
        if !other.is_empty() {
            f.failures.push(format!(
                "{CONCURRENT} concurrent calls on {connections} connection(s): {} answered otherwise, e.g. {}",
                other.len(),
                other[0]
            ));
        }
        notes.push(format!(
            "{CONCURRENT} calls/{connections} conn: {ok} ok, {refused} refused in {} ms, RSS {} → {}",
            took.as_millis(),
            mib(before),
            mib(rss_kib(pid))
        ));
        healthy(h, &mut f, "1,000 concurrent calls").await;
    }

    // 3. 1,000 concurrent Watch streams on one connection, each reading its first message.
    let before = rss_kib(pid);
    let channel = connection(h, None)?;
    let started = Instant::now();
    let opens = (0..CONCURRENT).map(|_| {
        let mut client = EventServiceClient::new(channel.clone());
        let req = watch_request(&service, 0);
        async move {
            let mut stream = client.watch(req).await?.into_inner();
            match tokio::time::timeout(Duration::from_secs(20), stream.message()).await {
                Ok(Ok(Some(_))) => Ok(stream),
                Ok(Ok(None)) => Err(Status::unavailable("stream ended at once")),
                Ok(Err(s)) => Err(s),
                Err(_) => Err(Status::deadline_exceeded("no first message in 20 s")),
            }
        }
    });
    let streams = futures::future::join_all(opens).await;
    let took = started.elapsed();
    let during = rss_kib(pid);
    let results: Vec<Result<(), Status>> = streams
        .iter()
        .map(|r| r.as_ref().map(|_| ()).map_err(Clone::clone))
        .collect();
    let (ok, refused, other) = tally(&results);
    f.operations += results.len() as u64;
    f.attacks_passed += (ok + refused) as u64;
    f.attacks_failed += other.len() as u64;
    if !other.is_empty() {
        f.failures.push(format!(
            "{CONCURRENT} concurrent Watch streams: {} answered otherwise, e.g. {}",
            other.len(),
            other[0]
        ));
    }
    // Other clients are served while the streams are open.
    let served = Instant::now();
    let r = h
        .orgs()
        .get_member(bearer(
            org_api::GetMemberRequest {
                organization_id: org.clone(),
                user_id: owner.into(),
            },
            &token,
        ))
        .await;
    case(
        &mut f,
        "a call while 1,000 streams are open",
        r.as_ref().map(|_| ()),
        &[Code::Ok],
    );
    let served = served.elapsed();
    let (rate_during, failed) = rate(h, &org, &token, &during_members).await;
    if failed > 0 {
        f.failures.push(format!(
            "{failed} role changes failed while 1,000 streams were open"
        ));
    }
    drop(streams);
    drop(channel);
    tokio::time::sleep(Duration::from_secs(1)).await;
    healthy(h, &mut f, "1,000 Watch streams").await;
    notes.push(format!(
        "{CONCURRENT} Watch streams: {ok} open, {refused} refused in {} ms, a call meanwhile {} ms, RSS {} → {} → {}",
        took.as_millis(),
        served.as_millis(),
        mib(before),
        mib(during),
        mib(rss_kib(pid))
    ));

    // 4. A Watch client that never reads (64 KiB windows) while `events` role changes are made.
    let members = seed_members(h, owner, &org, "lazy", 16).await?;
    let (rate_after, failed) = rate(h, &org, &token, &after_members).await;
    if failed > 0 {
        f.failures.push(format!(
            "{failed} role changes failed after the 1,000 streams"
        ));
    }
    notes.push(format!(
        "role changes {rate_before:.0}/s before the streams, {rate_during:.0}/s with 1,000 open, {rate_after:.0}/s after"
    ));
    let fds_before = fds(pid);
    let base = rss_kib(pid);
    let lazy = connection(h, Some(65_535))?;
    let mut lazy_client = EventServiceClient::new(lazy.clone());
    let never_read = lazy_client.watch(watch_request(&service, 0)).await;
    case(
        &mut f,
        "a Watch that will never be read (opened)",
        never_read.as_ref().map(|_| ()),
        &[Code::Ok],
    );
    let mut peak = base;
    let started = Instant::now();
    let load = produce(h, &org, &token, &members, events);
    tokio::pin!(load);
    let produced = loop {
        tokio::select! {
            r = &mut load => break r,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                peak = peak.max(rss_kib(pid));
            }
        }
    };
    let produced_in = started.elapsed();
    peak = peak.max(rss_kib(pid));
    let (acked, failed_changes) = produced;
    if failed_changes > 0 {
        f.failures.push(format!(
            "{failed_changes} role changes failed while a Watch client never read"
        ));
    }
    f.operations += acked as u64;
    let growth = peak.saturating_sub(base);
    if growth > MAX_GROWTH_KIB {
        f.failures.push(format!(
            "organization's RSS grew by {} while a Watch client never read (limit {})",
            mib(growth),
            mib(MAX_GROWTH_KIB)
        ));
    }
    drop(never_read);
    drop(lazy_client);
    drop(lazy);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fds_after = fds(pid);
    if fds_after > fds_before + 2 {
        f.failures.push(format!(
            "the dropped Watch client was not released: {fds_before} → {fds_after} open files"
        ));
    }
    // A new Watch from the start reads every event: the producer still streams.
    let start = Instant::now();
    let mut fresh = EventServiceClient::new(connection(h, None)?);
    let mut seen = 0usize;
    let mut last_err = None;
    match fresh.watch(watch_request(&service, 0)).await {
        Ok(resp) => {
            let mut stream = resp.into_inner();
            while start.elapsed() < Duration::from_secs(20) {
                match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                    Ok(Ok(Some(m))) => {
                        seen += m.events.len();
                        if m.caught_up {
                            break;
                        }
                    }
                    Ok(Err(s)) => {
                        last_err = Some(s);
                        break;
                    }
                    _ => break,
                }
            }
        }
        Err(s) => last_err = Some(s),
    }
    case(
        &mut f,
        "a new Watch after the lazy client left",
        last_err.as_ref().map_or(Ok(()), Err),
        &[Code::Ok],
    );
    if seen < acked {
        f.failures.push(format!(
            "a new Watch read {seen} events, fewer than the {acked} role changes"
        ));
    }
    healthy(h, &mut f, "a Watch client that never read").await;
    notes.push(format!(
        "never-read Watch: {acked} role changes in {} ms, RSS {} → peak {} (+{}), open files {fds_before} → {fds_after} after the drop",
        produced_in.as_millis(),
        mib(base),
        mib(peak),
        mib(growth)
    ));
    f.notes = notes.join("; ");
    Ok(f)
}

/// (OK, cleanly refused, other answers described).
fn tally(results: &[Result<(), Status>]) -> (usize, usize, Vec<String>) {
    let mut ok = 0;
    let mut refused = 0;
    let mut other = Vec::new();
    for r in results {
        match r {
            Ok(()) => ok += 1,
            Err(s) if clean_refusal(s) => refused += 1,
            Err(s) => other.push(format!("{:?} {}", s.code(), s.message())),
        }
    }
    (ok, refused, other)
}

async fn raw(h: &Harness, path: &str, body: Vec<u8>, token: &str) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(h.channel("organization"));
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path =
        http::uri::PathAndQuery::try_from(path).map_err(|e| Status::internal(e.to_string()))?;
    grpc.unary(bearer(body, token), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Seeds `n` members with role USER.
async fn seed_members(
    h: &Harness,
    owner: &str,
    org: &str,
    set: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let members: Vec<String> = (0..n).map(|i| format!("user_plim_{set}_{i:02}")).collect();
    for m in &members {
        h.add_member(owner, org, m, OrgRole::User).await?;
    }
    Ok(members)
}

/// Role changes per second over 200 changes of `members`, and how many failed.
async fn rate(h: &Harness, org: &str, token: &str, members: &[String]) -> (f64, usize) {
    let started = Instant::now();
    let (ok, failed) = produce(h, org, token, members, 200).await;
    (ok as f64 / started.elapsed().as_secs_f64(), failed)
}

/// Makes `n` role changes with 8 concurrent clients; returns (acknowledged, failed).
pub async fn produce(
    h: &Harness,
    org: &str,
    token: &str,
    members: &[String],
    n: usize,
) -> (usize, usize) {
    let clients = 8;
    let per = n.div_ceil(clients);
    let tasks = (0..clients).map(|c| {
        let mut orgs = h.orgs();
        let mine: Vec<String> = members.iter().skip(c).step_by(clients).cloned().collect();
        let org = org.to_owned();
        let token = token.to_owned();
        async move {
            let (mut ok, mut failed) = (0, 0);
            for i in 0..per {
                let Some(user) = mine.get(i % mine.len().max(1)) else {
                    break;
                };
                // Each member alternates between two roles, so every change is a real one.
                let round = i / mine.len().max(1);
                let role = if round.is_multiple_of(2) {
                    OrgRole::Developer
                } else {
                    OrgRole::User
                };
                let r = orgs
                    .update_member_role(bearer(
                        org_api::UpdateMemberRoleRequest {
                            organization_id: org.clone(),
                            user_id: user.clone(),
                            role: role as i32,
                            etag: String::new(),
                        },
                        &token,
                    ))
                    .await;
                if r.is_ok() {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}
