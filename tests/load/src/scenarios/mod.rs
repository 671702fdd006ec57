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

mod access;
mod login;
mod members;
mod process;
mod roles;
mod usage;
mod volume;
mod watchers;

pub use access::{auth_overhead, check_access};
pub use login::login;
pub use members::list_members_scale;
pub use process::{Unloaded, exec_orgplane, rss_kib, startup_loaded};
pub use roles::{role_burst, role_propagation};
pub use usage::usage_ingest_and_report;
pub use volume::{Volume, seed_volume};
pub use watchers::watch_fanout;

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
    /// Usage records the reports of usage_ingest_and_report cover (ingested, the rest seeded).
    pub usage_records: usize,
    /// Whether goals are asserted (false in smoke runs).
    pub assert_goals: bool,
    /// The membership volume startup_and_memory loads (issue 23: 1M members, 10k
    /// organizations, 100k workspace memberships, one organization of 100k).
    pub volume: Volume,
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

/// Seeds the shared world: an owner, `plan.users` users and one organization with them as USER
/// members (both through the stores), `plan.workspaces` workspaces (RPC) and one direct workspace role per user (RPC).
pub async fn seed_world(rig: Rig, plan: &Plan) -> anyhow::Result<World> {
    let t = Instant::now();
    let owner = "user_benchowner".to_owned();
    rig.seed_user(&owner, "benchowner@bench.test", "").await?;
    let (org, _) = rig.create_org(&owner, "Bench").await?;
    let users: Vec<String> = (0..plan.users).map(|i| user_id("w", i)).collect();
    rig.seed_users(&users).await?;
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

/// A CheckAccess request for `user` on `ws` (permission READ, no revision wait).
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
