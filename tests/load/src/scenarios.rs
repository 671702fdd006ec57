//! The scenarios of issue 9. Each returns one [`Row`]; throughput figures are ratios to a
//! baseline measured in the same run, right before, at the same concurrency.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use futures::StreamExt;
use orgplane_platform::auth::{
    AuthLayer, Authenticator, Principal, ServicePrincipal, TokenVerifier,
};
use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::identity::v1 as id_api;
use orgplane_proto::organization::v1 as org_api;
use orgplane_proto::workspace::v1 as ws_api;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Server};

use crate::load::{self, Rng, Stats};
use crate::rig::{Rig, bearer, connect};

/// One line of the report.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// The measured figure.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The baseline figure it is compared with (0 when none).
    pub baseline: f64,
    /// value ÷ baseline (or the ratio the goal is stated in).
    pub ratio: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// The goal, in words.
    pub goal: String,
    /// Whether the goal is met (`None`: no goal, or not asserted).
    pub met: Option<bool>,
    /// What else the figures say.
    pub note: String,
    /// For a ratio measured in alternating pairs: the lowest and highest per-pair ratio (the
    /// `ratio` is their median) and the number of pairs.
    pub spread: Option<(f64, f64, usize)>,
}

/// Sizes and times of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Measured time of each throughput run.
    pub duration: Duration,
    /// Warm-up before each.
    pub warmup: Duration,
    /// Alternating baseline/scenario pairs a ratio is measured in (each slice is
    /// `duration / pairs`).
    pub pairs: usize,
    /// Calls in flight.
    pub concurrency: usize,
    /// HTTP/2 connections the load is spread over.
    pub connections: usize,
    /// Users (org members with a workspace role) for check_access.
    pub users: usize,
    /// Workspaces they are spread over.
    pub workspaces: usize,
    /// Distinct user tokens the load cycles through.
    pub tokens: usize,
    /// Members of the large organization in list_members_scale.
    pub big_members: usize,
    /// Role changes at 50/s in role_propagation.
    pub role_changes: usize,
    /// Role changes in the burst.
    pub burst: usize,
    /// Logins in flight.
    pub login_concurrency: usize,
    /// Calls per page position in list_members_scale.
    pub page_samples: usize,
    /// Report calls in usage_ingest_and_report.
    pub report_samples: usize,
    /// Whether goals are asserted (false in smoke runs).
    pub assert_goals: bool,
}

/// The state scenarios share: the rig, and what check_access seeded.
pub struct World {
    /// The running Orgplane.
    pub rig: Rig,
    /// The owner of every seeded organization.
    pub owner: String,
    /// The organization with `plan.users` members.
    pub org: String,
    /// Its workspaces.
    pub workspaces: Vec<String>,
    /// Its members (in seed order).
    pub users: Vec<String>,
    /// The highest organization revision seeded.
    pub org_revision: i64,
}

fn user_id(prefix: &str, i: usize) -> String {
    format!("user_{prefix}{i:06}")
}

/// Seeds the shared world: an owner, one organization with `plan.users` USER members (through
/// the store), `plan.workspaces` workspaces (RPC) and one direct workspace role per user (RPC).
pub async fn seed_world(rig: Rig, plan: &Plan) -> anyhow::Result<World> {
    let t = Instant::now();
    let owner = "user_benchowner".to_owned();
    rig.seed_user(&owner, "benchowner@bench.test", "").await?;
    let (org, _) = rig.create_org(&owner, "Bench").await?;
    let users: Vec<String> = (0..plan.users).map(|i| user_id("w", i)).collect();
    let org_revision = rig
        .seed_members(&org, &users, org_api::OrgRole::User)
        .await?;
    rig.wait_workspace_applied(org_revision).await?;
    let mut workspaces = Vec::new();
    for w in 0..plan.workspaces {
        let (id, _) = rig
            .create_workspace(&owner, &org, &format!("ws-{w:03}"))
            .await?;
        workspaces.push(id);
    }
    // One direct role per user, 16 calls in flight.
    let token = rig.user_token(&owner)?;
    let jobs: Vec<(String, String, Channel)> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            (
                workspaces[i % workspaces.len()].clone(),
                u.clone(),
                rig.channel(i),
            )
        })
        .collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(jobs)
        .map(|(ws, user, ch)| {
            let token = token.clone();
            async move {
                ws_api::workspace_service_client::WorkspaceServiceClient::new(ch)
                    .add_workspace_member(bearer(
                        ws_api::AddWorkspaceMemberRequest {
                            workspace_id: ws,
                            user_id: user,
                            role: ws_api::WorkspaceRole::User as i32,
                            request_id: String::new(),
                        },
                        &token,
                    ))
                    .await
                    .map(|_| ())
                    .map_err(|s| anyhow!("AddWorkspaceMember: {s}"))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    eprintln!(
        "seeded {} members, {} workspaces, {} workspace roles in {:.1}s",
        users.len(),
        workspaces.len(),
        users.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(World {
        rig,
        owner,
        org,
        workspaces,
        users,
        org_revision,
    })
}

/// The echo baseline: a bare tonic server answering `grpc.health.v1.Health/Check` (stopped with
/// `stop`), and connections to it, as many as Orgplane's load uses.
pub async fn echo_baseline(
    plan: &Plan,
    stop: CancellationToken,
) -> anyhow::Result<Arc<Vec<Channel>>> {
    let addr = crate::baseline::start(stop).await?;
    Ok(Arc::new(
        connect(&format!("http://{addr}"), plan.connections).await?,
    ))
}

/// A row for a ratio measured in alternating pairs: the median ratio, with its spread.
fn paired_row(scenario: &str, p: &load::Paired, goal: &str, met: bool) -> Row {
    let mut row = throughput_row(scenario, &p.scenario, &p.baseline, goal, met);
    row.ratio = p.median();
    let (lo, hi) = p.spread();
    row.spread = Some((lo, hi, p.ratios.len()));
    row
}

fn throughput_row(scenario: &str, s: &Stats, base: &Stats, goal: &str, met: bool) -> Row {
    Row {
        scenario: scenario.into(),
        value: s.rate(),
        unit: "req/s".into(),
        baseline: base.rate(),
        ratio: s.rate() / base.rate().max(1e-9),
        p50_us: s.quantile_us(0.5),
        p99_us: s.quantile_us(0.99),
        goal: goal.into(),
        met: Some(met),
        note: format!(
            "echo p50 {}us p99 {}us; {} errors",
            base.quantile_us(0.5),
            base.quantile_us(0.99),
            s.errors
        ),
        spread: None,
    }
}

fn check_request(org: &str, ws: &str, user: &str) -> ws_api::CheckAccessRequest {
    ws_api::CheckAccessRequest {
        organization_id: org.into(),
        workspace_id: ws.into(),
        subject: Some(ws_api::check_access_request::Subject::UserId(user.into())),
        permission: ws_api::Permission::Read as i32,
        min_organization_revision: 0,
        min_workspace_revision: 0,
    }
}

/// Scenario 1: CheckAccess with valid user JWTs, at `plan.concurrency`.
pub async fn check_access(world: &World, plan: &Plan) -> anyhow::Result<Row> {
    let n = plan.tokens.min(world.users.len()).max(1);
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        let user = world.users[i].clone();
        let ws = world.workspaces[i % world.workspaces.len()].clone();
        let token: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", world.rig.user_token(&user)?).parse()?;
        calls.push((check_request(&world.org, &ws, &user), token));
    }
    // Sanity: the answer is "allowed".
    let mut probe =
        ws_api::workspace_service_client::WorkspaceServiceClient::new(world.rig.channel(0));
    let mut req = tonic::Request::new(calls[0].0.clone());
    req.metadata_mut()
        .insert("authorization", calls[0].1.clone());
    let answer = probe.check_access(req).await?.into_inner();
    if !answer.allowed {
        return Err(anyhow!(
            "check_access: seeded user is not allowed: {answer:?}"
        ));
    }
    let stop = CancellationToken::new();
    let echo_channels = echo_baseline(plan, stop.clone()).await?;
    // Built like the CheckAccess call below (no boxing), so that both sides pay the same.
    let echo = move |task: usize, _| {
        let mut c = tonic_health::pb::health_client::HealthClient::new(
            echo_channels[task % echo_channels.len()].clone(),
        );
        async move {
            c.check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
        }
    };
    let calls = Arc::new(calls);
    let channels = Arc::new(world.rig.channels.clone());
    let check = move |task: usize, k: u64| {
        let (msg, token) = calls[(task * 7919 + k as usize) % calls.len()].clone();
        let mut c = ws_api::workspace_service_client::WorkspaceServiceClient::new(
            channels[task % channels.len()].clone(),
        );
        async move {
            let mut req = tonic::Request::new(msg);
            req.metadata_mut().insert("authorization", token);
            matches!(c.check_access(req).await, Ok(r) if r.get_ref().allowed)
        }
    };
    let p = load::paired(
        plan.pairs,
        plan.concurrency,
        plan.warmup,
        plan.duration / plan.pairs.max(1) as u32,
        echo,
        check,
    )
    .await;
    stop.cancel();
    let (s, base) = (&p.scenario, &p.baseline);
    let p99_ok = s.quantile_us(0.99) <= 2 * base.quantile_us(0.99).max(1);
    let mut row = paired_row(
        "check_access",
        &p,
        "ratio >= 0.60 and p99 <= 2x echo p99",
        p.median() >= 0.60 && p99_ok && s.errors == 0,
    );
    row.note = format!(
        "{}; {} users in {} workspaces, {} distinct tokens, {} in flight",
        row.note,
        world.users.len(),
        world.workspaces.len(),
        n,
        plan.concurrency
    );
    Ok(row)
}

/// A layer that makes every request come from one service principal, without looking at any
/// credential: the "no auth layer" side of auth_overhead.
#[derive(Clone)]
struct FixedPrincipal;

impl<S> tower::Layer<S> for FixedPrincipal {
    type Service = FixedPrincipalService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FixedPrincipalService(inner)
    }
}

#[derive(Clone)]
struct FixedPrincipalService<S>(S);

impl<S, B> tower::Service<http::Request<B>> for FixedPrincipalService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        req.extensions_mut()
            .insert(Principal::Service(ServicePrincipal {
                name: "orgplane".into(),
                capabilities: orgplane_platform::auth::Capabilities::all(),
            }));
        self.0.call(req)
    }
}

async fn serve_workspace(
    world: &World,
    with_auth: bool,
    stop: CancellationToken,
) -> anyhow::Result<String> {
    use orgplane_platform::context::RpcLayer;
    use ws_api::workspace_service_server::WorkspaceServiceServer;
    let opened = world.rig.opened()?;
    let ws = opened
        .workspace
        .as_ref()
        .ok_or_else(|| anyhow!("no workspace service"))?;
    let service = WorkspaceServiceServer::new(ws.api());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    let config = orgplane_platform::server::ServerConfig::default();
    let builder = Server::builder()
        .timeout(config.default_timeout)
        .http2_keepalive_interval(Some(config.keepalive_interval))
        .max_concurrent_streams(config.max_concurrent_streams);
    if with_auth {
        let identity = world.rig.channel(0);
        let verifier = TokenVerifier::new(
            "https://identity.orgplane.local",
            Arc::new(orgplane_platform::clients::RemoteKeys::new(identity)),
        );
        let auth = Authenticator::new(Arc::new(verifier), None);
        let mut b = builder.layer(RpcLayer).layer(AuthLayer::new(auth));
        let router = b.add_service(service);
        tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()));
    } else {
        let mut b = builder.layer(RpcLayer).layer(FixedPrincipal);
        let router = b.add_service(service);
        tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()));
    }
    Ok(format!("http://{addr}"))
}

/// Scenario 2: the same CheckAccess read through the auth layer (user JWTs) and through a layer
/// that sets a principal without checking anything.
pub async fn auth_overhead(world: &World, plan: &Plan) -> anyhow::Result<Row> {
    let stop = CancellationToken::new();
    let with = serve_workspace(world, true, stop.clone()).await?;
    let without = serve_workspace(world, false, stop.clone()).await?;
    let n = plan.tokens.min(world.users.len()).max(1);
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        let user = world.users[i].clone();
        let ws = world.workspaces[i % world.workspaces.len()].clone();
        let token: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", world.rig.user_token(&user)?).parse()?;
        calls.push((check_request(&world.org, &ws, &user), token));
    }
    let calls = Arc::new(calls);
    let mut sides = Vec::new();
    for (url, send_token) in [(without, false), (with, true)] {
        let channels = Arc::new(connect(&url, plan.connections).await?);
        let calls = calls.clone();
        sides.push(move |task: usize, k: u64| {
            let (msg, token) = calls[(task * 7919 + k as usize) % calls.len()].clone();
            let mut c = ws_api::workspace_service_client::WorkspaceServiceClient::new(
                channels[task % channels.len()].clone(),
            );
            async move {
                let mut req = tonic::Request::new(msg);
                if send_token {
                    req.metadata_mut().insert("authorization", token);
                }
                matches!(c.check_access(req).await, Ok(r) if r.get_ref().allowed)
            }
        });
    }
    let with_auth = sides.pop().ok_or_else(|| anyhow!("two sides"))?;
    let without_auth = sides.pop().ok_or_else(|| anyhow!("two sides"))?;
    let p = load::paired(
        plan.pairs,
        plan.concurrency,
        plan.warmup,
        plan.duration / plan.pairs.max(1) as u32,
        without_auth,
        with_auth,
    )
    .await;
    stop.cancel();
    let (s, base) = (&p.scenario, &p.baseline);
    let mut row = paired_row(
        "auth_overhead",
        &p,
        "ratio >= 0.85",
        p.median() >= 0.85 && s.errors == 0,
    );
    row.note = format!(
        "baseline = same CheckAccess without the auth layer (p50 {}us p99 {}us); {} errors",
        base.quantile_us(0.5),
        base.quantile_us(0.99),
        s.errors
    );
    Ok(row)
}

async fn update_role(
    c: &mut org_api::organization_service_client::OrganizationServiceClient<Channel>,
    token: &str,
    org: &str,
    user: &str,
    role: org_api::OrgRole,
) -> anyhow::Result<i64> {
    Ok(c.update_member_role(bearer(
        org_api::UpdateMemberRoleRequest {
            organization_id: org.into(),
            user_id: user.into(),
            role: role as i32,
            etag: String::new(),
        },
        token,
    ))
    .await
    .map_err(|s| anyhow!("UpdateMemberRole: {s}"))?
    .into_inner()
    .revision)
}

/// Scenario 3: UpdateMemberRole → visible in the workspace service (a CheckAccess that waits for
/// the update's revision), at 50 changes/s; then a burst applied as fast as it is sent.
pub async fn role_propagation(world: &World, plan: &Plan, label: &str) -> anyhow::Result<Row> {
    let owner = world.rig.user_token(&world.owner)?;
    let service = world.rig.service_token()?;
    let mut org =
        org_api::organization_service_client::OrganizationServiceClient::new(world.rig.channel(0));
    let mut ws =
        ws_api::workspace_service_client::WorkspaceServiceClient::new(world.rig.channel(1));
    let mut latencies = Vec::with_capacity(plan.role_changes);
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    for i in 0..plan.role_changes {
        interval.tick().await;
        let user = &world.users[i % world.users.len()];
        let ws_id = &world.workspaces[i % world.users.len() % world.workspaces.len()];
        let role = if (i / world.users.len()).is_multiple_of(2) {
            org_api::OrgRole::Developer
        } else {
            org_api::OrgRole::User
        };
        let t0 = Instant::now();
        let revision = update_role(&mut org, &owner, &world.org, user, role).await?;
        let mut req = check_request(&world.org, ws_id, user);
        req.min_organization_revision = revision;
        let answer = ws
            .check_access(bearer(req, &service))
            .await
            .map_err(|s| anyhow!("CheckAccess(min revision): {s}"))?
            .into_inner();
        if answer.org_role != role as i32 {
            return Err(anyhow!(
                "role_propagation: saw {:?} after setting {role:?}",
                answer.org_role
            ));
        }
        latencies.push(t0.elapsed().as_micros() as u64);
    }
    let steady = load::stats_of(latencies, started.elapsed(), 0);
    // The burst: `plan.burst` changes, 16 in flight, then wait for the last revision.
    let t0 = Instant::now();
    let jobs: Vec<(usize, Channel)> = (0..plan.burst).map(|i| (i, world.rig.channel(i))).collect();
    let revisions: Vec<anyhow::Result<i64>> = futures::stream::iter(jobs)
        .map(|(i, ch)| {
            let owner = owner.clone();
            let org_id = world.org.clone();
            let user = world.users[i % world.users.len()].clone();
            async move {
                let mut c =
                    org_api::organization_service_client::OrganizationServiceClient::new(ch);
                let role = if i.is_multiple_of(2) {
                    org_api::OrgRole::Billing
                } else {
                    org_api::OrgRole::Developer
                };
                update_role(&mut c, &owner, &org_id, &user, role).await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let sent = t0.elapsed();
    let mut max_rev = 0;
    for r in revisions {
        max_rev = max_rev.max(r?);
    }
    world.rig.wait_workspace_applied(max_rev).await?;
    let applied = t0.elapsed();
    let p99 = steady.quantile_us(0.99);
    Ok(Row {
        scenario: format!("role_propagation{label}"),
        value: p99 as f64 / 1000.0,
        unit: "ms p99".into(),
        baseline: 50.0,
        ratio: p99 as f64 / 1000.0 / 50.0,
        p50_us: steady.quantile_us(0.5),
        p99_us: p99,
        goal: "p99 <= 50 ms (update sent -> visible in CheckAccess)".into(),
        met: Some(p99 <= 50_000),
        note: format!(
            "{} changes at 50/s; burst of {} changes: sent in {:.2}s, all applied in the workspace replica after {:.2}s ({:.0} changes/s)",
            plan.role_changes,
            plan.burst,
            sent.as_secs_f64(),
            applied.as_secs_f64(),
            plan.burst as f64 / applied.as_secs_f64().max(1e-9)
        ),
        spread: None,
    })
}

async fn list_page(
    c: &mut org_api::organization_service_client::OrganizationServiceClient<Channel>,
    token: &str,
    org: &str,
    page_token: &str,
) -> anyhow::Result<org_api::ListMembersResponse> {
    Ok(c.list_members(bearer(
        org_api::ListMembersRequest {
            organization_id: org.into(),
            page_size: 100,
            page_token: page_token.into(),
            role: 0,
        },
        token,
    ))
    .await
    .map_err(|s| anyhow!("ListMembers: {s}"))?
    .into_inner())
}

/// p50 of the first, middle and last page of `org`'s members.
async fn page_latencies(
    rig: &Rig,
    token: &str,
    org: &str,
    samples: usize,
) -> anyhow::Result<[Stats; 3]> {
    let mut c =
        org_api::organization_service_client::OrganizationServiceClient::new(rig.channel(0));
    let mut tokens = vec![String::new()];
    loop {
        let last = tokens.last().cloned().unwrap_or_default();
        let page = list_page(&mut c, token, org, &last).await?;
        if page.next_page_token.is_empty() {
            break;
        }
        tokens.push(page.next_page_token);
    }
    let picks = [
        tokens[0].clone(),
        tokens[tokens.len() / 2].clone(),
        tokens[tokens.len() - 1].clone(),
    ];
    let mut out: Vec<Stats> = Vec::new();
    for pick in picks {
        let mut lat = Vec::with_capacity(samples);
        let t = Instant::now();
        for _ in 0..samples {
            let t0 = Instant::now();
            list_page(&mut c, token, org, &pick).await?;
            lat.push(t0.elapsed().as_micros() as u64);
        }
        out.push(load::stats_of(lat, t.elapsed(), 0));
    }
    let [a, b, c] = <[Stats; 3]>::try_from(out).map_err(|_| anyhow!("three pages"))?;
    Ok([a, b, c])
}

/// Scenario 4: ListMembers pages of 100 at `plan.big_members` members vs at 100 members.
pub async fn list_members_scale(world: &World, plan: &Plan) -> anyhow::Result<Row> {
    let rig = &world.rig;
    let token = rig.user_token(&world.owner)?;
    let (small, _) = rig.create_org(&world.owner, "Small").await?;
    let small_users: Vec<String> = (0..99).map(|i| user_id("s", i)).collect();
    rig.seed_members(&small, &small_users, org_api::OrgRole::User)
        .await?;
    let (big, _) = rig.create_org(&world.owner, "Big").await?;
    let t = Instant::now();
    let big_users: Vec<String> = (0..plan.big_members.saturating_sub(1))
        .map(|i| user_id("b", i))
        .collect();
    let rev = rig
        .seed_members(&big, &big_users, org_api::OrgRole::User)
        .await?;
    rig.wait_workspace_applied(rev).await?;
    eprintln!(
        "seeded {} members in {:.1}s",
        plan.big_members,
        t.elapsed().as_secs_f64()
    );
    let s = page_latencies(rig, &token, &small, plan.page_samples).await?;
    let b = page_latencies(rig, &token, &big, plan.page_samples).await?;
    let ratios: Vec<f64> = (0..3)
        .map(|i| b[i].quantile_us(0.5) as f64 / s[i].quantile_us(0.5).max(1) as f64)
        .collect();
    let worst = (0..3)
        .max_by(|x, y| ratios[*x].total_cmp(&ratios[*y]))
        .unwrap_or(0);
    Ok(Row {
        scenario: "list_members_scale".into(),
        value: b[worst].quantile_us(0.5) as f64,
        unit: "us p50".into(),
        baseline: s[worst].quantile_us(0.5) as f64,
        ratio: ratios[worst],
        p50_us: b[worst].quantile_us(0.5),
        p99_us: b[worst].quantile_us(0.99),
        goal: "latency ratio <= 2 (first, middle, last page)".into(),
        met: Some(ratios.iter().all(|r| *r <= 2.0)),
        note: format!(
            "{} vs 100 members; p50 first/middle/last {}/{}/{}us vs {}/{}/{}us (ratios {:.2}/{:.2}/{:.2})",
            plan.big_members,
            b[0].quantile_us(0.5),
            b[1].quantile_us(0.5),
            b[2].quantile_us(0.5),
            s[0].quantile_us(0.5),
            s[1].quantile_us(0.5),
            s[2].quantile_us(0.5),
            ratios[0],
            ratios[1],
            ratios[2]
        ),
        spread: None,
    })
}

/// The process's resident set size, in KiB.
pub fn rss_kib(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Scenario 5: Login throughput vs identity's argon2id hasher alone, same parameters, same
/// number in flight.
pub async fn login(world: &World, plan: &Plan) -> anyhow::Result<Row> {
    use orgplane_identity::crypto::{OWASP_ITERATIONS, OWASP_MEMORY_KIB, PasswordHasherPool};
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let pool = PasswordHasherPool::new(OWASP_MEMORY_KIB, OWASP_ITERATIONS, parallel)?;
    let password = "correct horse battery staple";
    let hash = pool.hash(password).await?;
    let users: Vec<String> = (0..16).map(|i| format!("login{i:02}@bench.test")).collect();
    for (i, email) in users.iter().enumerate() {
        world
            .rig
            .seed_user(&format!("user_login{i:02}"), email, &hash)
            .await?;
    }
    let raw = {
        let pool = pool.clone();
        let hash = Arc::new(hash.clone());
        load::run(
            plan.login_concurrency,
            plan.warmup,
            plan.duration,
            move |_, _| {
                let pool = pool.clone();
                let hash = hash.clone();
                async move { matches!(pool.verify(password, &hash).await, Ok(true)) }
            },
        )
        .await
    };
    let rss_before = rss_kib(None);
    let channels = Arc::new(world.rig.channels.clone());
    let users = Arc::new(users);
    let s = load::run(
        plan.login_concurrency,
        plan.warmup,
        plan.duration,
        move |task, k| {
            let mut c = id_api::identity_service_client::IdentityServiceClient::new(
                channels[task % channels.len()].clone(),
            );
            let email = users[(task + k as usize) % users.len()].clone();
            async move {
                c.login(id_api::LoginRequest {
                    email,
                    password: password.into(),
                })
                .await
                .is_ok()
            }
        },
    )
    .await;
    let rss_after = rss_kib(None);
    // A burst of 64 sign-ins at once (the spray that used to leave hundreds of MiB behind):
    // the hasher's memory is taken once, so the process does not grow with the burst.
    let burst = (0..64).map(|i| {
        let mut c = id_api::identity_service_client::IdentityServiceClient::new(
            world.rig.channels[i % world.rig.channels.len()].clone(),
        );
        let email = format!("login{:02}@bench.test", i % 16);
        async move {
            c.login(id_api::LoginRequest {
                email,
                password: password.into(),
            })
            .await
            .map_or_else(|s| format!("{:?}", s.code()), |_| "Ok".to_owned())
        }
    });
    // Sign-ins beyond identity's bound on queued hashes are refused at once, by design.
    let mut burst_codes = std::collections::BTreeMap::<String, usize>::new();
    for code in futures::future::join_all(burst).await {
        *burst_codes.entry(code).or_default() += 1;
    }
    let rss_burst = rss_kib(None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_settled = rss_kib(None);
    let growth_mib = rss_burst.max(rss_settled).saturating_sub(rss_after) / 1024;
    let ratio = s.rate() / raw.rate().max(1e-9);
    Ok(Row {
        scenario: "login".into(),
        value: s.rate(),
        unit: "logins/s".into(),
        baseline: raw.rate(),
        ratio,
        p50_us: s.quantile_us(0.5),
        p99_us: s.quantile_us(0.99),
        goal: "ratio >= 0.9 vs raw argon2id verify; a burst of 64 grows RSS by <= 16 MiB".into(),
        met: Some(ratio >= 0.9 && s.errors == 0 && growth_mib <= 16),
        note: format!(
            "argon2id m={OWASP_MEMORY_KIB}KiB t={OWASP_ITERATIONS}, {} in flight, hasher pool of {parallel}; process RSS {} -> {} MiB, burst of 64: {} MiB, 1 s later {} MiB (answers {burst_codes:?}); {} errors",
            plan.login_concurrency,
            rss_before / 1024,
            rss_after / 1024,
            rss_burst / 1024,
            rss_settled / 1024,
            s.errors
        ),
        spread: None,
    })
}

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

/// Runs the `orgplane all` code (this binary's `exec-orgplane`) as a child process on `args`,
/// and returns (exec → SERVING, RSS after `settle`) and the child.
pub async fn exec_orgplane(args: &[String], settle: Duration) -> anyhow::Result<(Duration, u64)> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let exe = std::env::current_exe()?;
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(exe)
        .arg("exec-orgplane")
        .args(&args[1..])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning orgplane")?;
    let url = format!("http://127.0.0.1:{port}");
    let channel = loop {
        if let Ok(ch) = connect(&url, 1).await {
            break ch.into_iter().next().ok_or_else(|| anyhow!("no channel"))?;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            return Err(anyhow!("orgplane did not listen"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    crate::rig::wait_serving(channel, Duration::from_secs(300)).await?;
    let startup = t0.elapsed();
    tokio::time::sleep(settle).await;
    let rss = rss_kib(child.id());
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok((startup, rss))
}
