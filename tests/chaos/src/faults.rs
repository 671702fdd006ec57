//! Database faults: the database of a running service becomes unreachable, then comes back,
//! while clients keep changing members' roles and reading them.
//!
//! - PostgreSQL: organization and workspace reach their databases through a [`Proxy`], which is
//!   put down for a few seconds (every open connection cut, new ones closed at once); then every
//!   backend of both databases is killed with `pg_terminate_backend`.
//! - SQLite: organization's database file and its WAL are made immutable (`chattr +i`). The
//!   suites run as root, for whom `chmod` changes nothing; the immutable flag refuses every write
//!   even through file descriptors opened before it was set (ext4 checks it on each write; a
//!   write to the WAL fails with SQLITE_IOERR_WRITE), while reads keep working. Connections
//!   opened while the flag is set fall back to read-only and answer SQLITE_READONLY. The shared
//!   memory index (`-shm`) is left alone: it is mmap-ed, and refusing a page fault would kill
//!   the process with SIGBUS rather than test its error handling.
//!
//! Checked: every failed call answers UNAVAILABLE with an `ErrorInfo` reason; no process exits
//! or panics; nothing is half-written (read back from the database with every process stopped:
//! each acknowledged change has exactly one event and one audit record, each failed one either
//! nothing or both — a failed COMMIT's outcome is unknown to the client); the first write
//! succeeds within 5 s of the database coming back (the recovery time is a figure); and
//! workspace's replica catches up with organization afterwards.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use orgplane_proto::events::v1::{Event, event};
use orgplane_proto::organization::v1::{self as org_api, OrgRole};
use orgplane_proto::workspace::v1 as ws_api;
use prost::Message;
use rand::Rng;
use sea_orm::{ConnectionTrait, Database, Statement};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::Figures;
use crate::harness::{Harness, bearer, bearer_with_id, retry};
use crate::proxy::Proxy;

const ROLES: [OrgRole; 4] = [
    OrgRole::Admin,
    OrgRole::Billing,
    OrgRole::Developer,
    OrgRole::User,
];

/// Longest time from the database coming back to the first successful write.
const RECOVERY_LIMIT: Duration = Duration::from_secs(5);

/// One call of the load as the client saw it.
#[derive(Debug, Clone)]
struct Call {
    write: bool,
    request_id: String,
    user: String,
    role: i32,
    /// When the call started.
    at: Instant,
    took: Duration,
    /// The acknowledged revision (writes) or 0 (reads); the code and reason on failure.
    result: Result<i64, (Code, Option<String>, String)>,
}

/// Runs the scenario on a fresh setup: `db-faults` on SQLite or PostgreSQL, each outage lasting
/// `outage`.
pub async fn run(bin: &Path, postgres: Option<&str>, outage: Duration) -> anyhow::Result<Figures> {
    let mut h = Harness::start(bin, postgres).await?;
    let result = match postgres {
        Some(admin) => on_postgres(&mut h, admin, outage).await,
        None => on_sqlite(&mut h, outage).await,
    };
    h.stop().await?;
    result
}

struct Setup {
    org: String,
    ws: String,
    token: String,
    members: Vec<String>,
    probe: String,
}

async fn setup(h: &Harness, prefix: &str, members: usize) -> anyhow::Result<Setup> {
    let owner = format!("user_{prefix}_owner");
    let (org, ws) = h.seed_org(&owner).await?;
    let mut all = Vec::new();
    for i in 0..=members {
        let u = format!("user_{prefix}_{i:02}");
        h.add_member(&owner, &org, &u, OrgRole::User).await?;
        all.push(u);
    }
    let probe = all.pop().ok_or_else(|| anyhow!("no members"))?;
    Ok(Setup {
        org,
        ws,
        token: h.user_token(&owner)?,
        members: all,
        probe,
    })
}

/// The load: `clients` tasks, each changing the roles of its own members and reading them.
struct Load {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<Vec<Call>>>,
}

impl Load {
    fn start(h: &Harness, s: &Setup, clients: usize) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let mine: Vec<String> = s.members.iter().skip(c).step_by(clients).cloned().collect();
            tasks.push(tokio::spawn(client(
                h.orgs(),
                s.token.clone(),
                s.org.clone(),
                mine,
                stop.clone(),
            )));
        }
        Load { stop, tasks }
    }

    async fn finish(self) -> anyhow::Result<Vec<Call>> {
        self.stop.cancel();
        let mut calls = Vec::new();
        for t in self.tasks {
            calls.extend(t.await.map_err(|e| anyhow!("load task: {e}"))?);
        }
        Ok(calls)
    }
}

type Orgs =
    org_api::organization_service_client::OrganizationServiceClient<tonic::transport::Channel>;

fn failure(s: &tonic::Status) -> (Code, Option<String>, String) {
    (
        s.code(),
        orgplane_platform::error::reason_of(s),
        s.message().to_owned(),
    )
}

async fn client(
    mut orgs: Orgs,
    token: String,
    org: String,
    members: Vec<String>,
    stop: CancellationToken,
) -> Vec<Call> {
    // A member whose last change failed has an unknown role until it is read back.
    let mut known: HashMap<String, Option<i32>> = members
        .iter()
        .map(|m| (m.clone(), Some(OrgRole::User as i32)))
        .collect();
    let mut calls = Vec::new();
    while !stop.is_cancelled() && !members.is_empty() {
        let user = members[rand::rng().random_range(0..members.len())].clone();
        let current = match known.get(&user).copied().flatten() {
            Some(r) => r,
            None => {
                let started = Instant::now();
                let mut req = bearer(
                    org_api::GetMemberRequest {
                        organization_id: org.clone(),
                        user_id: user.clone(),
                    },
                    &token,
                );
                req.set_timeout(Duration::from_secs(10));
                let r = orgs.get_member(req).await;
                let result = match &r {
                    Ok(m) => {
                        let role = m.get_ref().member.as_ref().map(|m| m.role);
                        known.insert(user.clone(), role);
                        Ok(0)
                    }
                    Err(s) => Err(failure(s)),
                };
                calls.push(Call {
                    write: false,
                    request_id: String::new(),
                    user: user.clone(),
                    role: 0,
                    at: started,
                    took: started.elapsed(),
                    result,
                });
                if r.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            }
        };
        let choices: Vec<i32> = ROLES
            .iter()
            .map(|r| *r as i32)
            .filter(|r| *r != current)
            .collect();
        let role = choices[rand::rng().random_range(0..choices.len())];
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut req = bearer_with_id(
            org_api::UpdateMemberRoleRequest {
                organization_id: org.clone(),
                user_id: user.clone(),
                role,
                etag: String::new(),
            },
            &token,
            &request_id,
        );
        req.set_timeout(Duration::from_secs(10));
        let started = Instant::now();
        let r = orgs.update_member_role(req).await;
        let result = match &r {
            Ok(resp) => {
                known.insert(user.clone(), Some(role));
                Ok(resp.get_ref().revision)
            }
            Err(s) => {
                known.insert(user.clone(), None);
                Err(failure(s))
            }
        };
        calls.push(Call {
            write: true,
            request_id,
            user,
            role,
            at: started,
            took: started.elapsed(),
            result,
        });
        if r.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    calls
}

/// Changes the probe member's role until a change succeeds; returns the time it took and the
/// failed attempts.
async fn first_write(h: &Harness, s: &Setup, since: Instant) -> (Duration, Vec<Call>) {
    let mut failed = Vec::new();
    let mut orgs = h.orgs();
    let mut i = 0usize;
    loop {
        // Alternate between two roles; a failed change's outcome is unknown, so a no-op (the
        // role it already has) is possible and answers OK as well: the service is back either way.
        let role = if i.is_multiple_of(2) {
            OrgRole::Developer
        } else {
            OrgRole::Billing
        } as i32;
        i += 1;
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut req = bearer_with_id(
            org_api::UpdateMemberRoleRequest {
                organization_id: s.org.clone(),
                user_id: s.probe.clone(),
                role,
                etag: String::new(),
            },
            &s.token,
            &request_id,
        );
        req.set_timeout(Duration::from_secs(2));
        let started = Instant::now();
        match orgs.update_member_role(req).await {
            Ok(_) => return (since.elapsed(), failed),
            Err(st) => failed.push(Call {
                write: true,
                request_id,
                user: s.probe.clone(),
                role,
                at: started,
                took: started.elapsed(),
                result: Err(failure(&st)),
            }),
        }
        if since.elapsed() > Duration::from_secs(60) {
            return (since.elapsed(), failed);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Records the failed calls that did not answer UNAVAILABLE with a reason.
fn check_codes(f: &mut Figures, calls: &[Call]) -> (usize, Duration) {
    let mut wrong = Vec::new();
    let mut failed = 0;
    let mut slowest = Duration::ZERO;
    for c in calls {
        if let Err((code, reason, message)) = &c.result {
            failed += 1;
            slowest = slowest.max(c.took);
            if *code != Code::Unavailable || reason.is_none() {
                wrong.push(format!(
                    "{} → {code:?} reason {reason:?}: {message}",
                    if c.write {
                        "UpdateMemberRole"
                    } else {
                        "GetMember"
                    }
                ));
            }
        }
    }
    if !wrong.is_empty() {
        let mut kinds: Vec<String> = wrong
            .iter()
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        kinds.sort();
        kinds.truncate(5);
        f.failures.push(format!(
            "{} failed calls did not answer UNAVAILABLE with a reason, e.g. {}",
            wrong.len(),
            kinds.join("; ")
        ));
    }
    (failed, slowest)
}

fn check_recovery(f: &mut Figures, what: &str, took: Duration) {
    if took > RECOVERY_LIMIT {
        f.failures.push(format!(
            "first write {} ms after {what} (limit {} ms)",
            took.as_millis(),
            RECOVERY_LIMIT.as_millis()
        ));
    }
}

/// The process is still the one started (no exit, no panic) and SERVING.
async fn alive(h: &Harness, f: &mut Figures, name: &str, pid: Option<u32>) {
    let now = h.pid(name);
    let state = pid
        .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("State:"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if pid.is_none() || now != pid || state.contains("zombie") || state.is_empty() {
        f.failures.push(format!("{name} exited ({state})"));
    }
    let log =
        std::fs::read_to_string(h.dir.path().join(name).join("stderr.log")).unwrap_or_default();
    if log.contains("panicked") {
        f.failures
            .push(format!("{name} panicked (see its stderr.log)"));
    }
    if let Err(e) = h.wait_serving(name, Duration::from_secs(5)).await {
        f.failures
            .push(format!("{name} not SERVING after the faults: {e}"));
    }
}

/// Waits until workspace has applied organization's head; returns how long it took.
async fn workspace_caught_up(h: &Harness, s: &Setup, head: i64) -> anyhow::Result<Duration> {
    let product = h.product_token()?;
    let started = Instant::now();
    retry(|| async {
        h.workspaces()
            .check_access(bearer(
                ws_api::CheckAccessRequest {
                    organization_id: s.org.clone(),
                    workspace_id: s.ws.clone(),
                    subject: Some(ws_api::check_access_request::Subject::UserId(
                        s.probe.clone(),
                    )),
                    permission: ws_api::Permission::Read as i32,
                    min_organization_revision: head,
                    min_workspace_revision: 0,
                },
                &product,
            ))
            .await
    })
    .await
    .context("workspace catching up after the faults")?;
    Ok(started.elapsed())
}

async fn head_revision(h: &Harness) -> anyhow::Result<i64> {
    let conn = h.database("organization").await?;
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT revision FROM outbox_head",
        ))
        .await?
        .ok_or_else(|| anyhow!("no outbox head"))?;
    let _ = conn.close().await;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// Reads organization's database (every process stopped) and checks that nothing is
/// half-written; returns (acknowledged, failed-but-applied) counts.
async fn verify(
    h: &Harness,
    org: &str,
    calls: &[Call],
    f: &mut Figures,
) -> anyhow::Result<(u64, u64)> {
    let conn = h.database("organization").await?;
    let backend = conn.get_database_backend();
    let mut events: HashMap<String, Vec<(i64, i32, String)>> = HashMap::new();
    let mut by_rev: HashMap<i64, String> = HashMap::new();
    for row in conn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT revision, payload FROM outbox_events ORDER BY revision",
        ))
        .await?
    {
        let revision: i64 = row.try_get_by_index(0)?;
        let payload: Vec<u8> = row.try_get_by_index(1)?;
        let e = Event::decode(payload.as_slice())?;
        by_rev.insert(revision, e.request_id.clone());
        if let Some(event::Payload::MemberRoleChanged(c)) = e.payload
            && c.organization_id == org
        {
            events
                .entry(e.request_id.clone())
                .or_default()
                .push((revision, c.new_role, c.user_id));
        }
    }
    let mut audits: HashMap<String, usize> = HashMap::new();
    for row in conn
        .query_all_raw(Statement::from_string(
            backend,
            format!(
                "SELECT request_id FROM audit_log WHERE action = 'member.update_role' AND outcome = 1 AND organization_id = '{org}'"
            ),
        ))
        .await?
    {
        *audits.entry(row.try_get_by_index::<String>(0)?).or_default() += 1;
    }
    let _ = conn.close().await;
    let (mut acked, mut ambiguous, mut lost, mut half) = (0u64, 0u64, 0u64, 0u64);
    for c in calls.iter().filter(|c| c.write) {
        let evs = events.get(&c.request_id).map(Vec::as_slice).unwrap_or(&[]);
        let audit = audits.get(&c.request_id).copied().unwrap_or(0);
        match &c.result {
            Ok(rev) => {
                acked += 1;
                let ok = evs.len() == 1
                    && audit == 1
                    && evs[0].0 == *rev
                    && evs[0].1 == c.role
                    && evs[0].2 == c.user;
                if !ok {
                    lost += 1;
                    if lost <= 3 {
                        f.failures.push(format!(
                            "acknowledged change {} of {} to {} at revision {rev}: events {evs:?}, {audit} audit records; started {:?} ago, took {:?}; at that revision: {:?}",
                            c.request_id, c.user, c.role, c.at.elapsed(), c.took, by_rev.get(rev)
                        ));
                    }
                }
            }
            Err(_) => {
                if evs.len() != audit || evs.len() > 1 {
                    half += 1;
                } else if !evs.is_empty() {
                    ambiguous += 1;
                }
            }
        }
    }
    f.lost += lost;
    if half > 0 {
        f.failures.push(format!(
            "{half} failed changes half-written (events and audit records differ)"
        ));
    }
    Ok((acked, ambiguous))
}

/// `url` with its host and port replaced by `addr`.
fn via(url: &str, addr: std::net::SocketAddr) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (userinfo, hostpath) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let path = hostpath.find(['/', '?']).map_or("", |i| &hostpath[i..]);
    match userinfo {
        Some(u) => format!("{scheme}://{u}@{addr}{path}"),
        None => format!("{scheme}://{addr}{path}"),
    }
}

async fn target_of(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostpath = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostpath.split(['/', '?']).next().unwrap_or_default();
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    tokio::net::lookup_host(&hostport)
        .await?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {hostport}"))
}

async fn on_postgres(h: &mut Harness, admin: &str, outage: Duration) -> anyhow::Result<Figures> {
    let mut f = Figures::new("db-faults", "postgres");
    let proxy = Proxy::start(target_of(admin).await?).await?;
    for name in ["organization", "workspace"] {
        let url = via(&h.database_url(name), proxy.addr());
        h.override_database_url(name, url);
        h.terminate(name).await?;
        h.spawn(name).await?;
    }
    let pids: Vec<_> = ["organization", "workspace"].map(|n| h.pid(n)).to_vec();
    let s = setup(h, "pgfault", 16).await?;
    let load = Load::start(h, &s, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. The server unreachable.
    proxy.set_down(true);
    tokio::time::sleep(outage).await;
    proxy.set_down(false);
    let (down_recovery, mut probes) = first_write(h, &s, Instant::now()).await;
    check_recovery(&mut f, "the proxy came back", down_recovery);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2. Every backend of both databases killed.
    let names: Vec<String> = ["organization", "workspace"]
        .iter()
        .filter_map(|n| {
            h.database_url(n)
                .rsplit('/')
                .next()
                .map(|d| d.split('?').next().unwrap_or(d).to_owned())
        })
        .collect();
    let killer = Database::connect(admin).await?;
    let row = killer
        .query_one_raw(Statement::from_string(
            killer.get_database_backend(),
            format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname IN ('{}') AND pid <> pg_backend_pid()",
                names.join("','")
            ),
        ))
        .await?;
    let killed: i64 = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0);
    let _ = killer.close().await;
    let (kill_recovery, more) = first_write(h, &s, Instant::now()).await;
    probes.extend(more);
    check_recovery(&mut f, "the backends were killed", kill_recovery);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut calls = load.finish().await?;
    calls.extend(probes);
    let (failed, slowest) = check_codes(&mut f, &calls);
    let head = head_revision(h).await?;
    let caught_up = workspace_caught_up(h, &s, head).await?;
    for (name, pid) in ["organization", "workspace"].iter().zip(pids) {
        alive(h, &mut f, name, pid).await;
    }
    for name in ["organization", "workspace", "billing-access"] {
        h.terminate(name).await?;
    }
    let (acked, ambiguous) = verify(h, &s.org, &calls, &mut f).await?;
    f.operations = calls.len() as u64;
    f.crashes = proxy.severed() + killed as u64;
    f.notes = format!(
        "{acked} acked, {failed} failed (UNAVAILABLE, slowest {} ms), {ambiguous} failed-but-committed; first write {} ms after the proxy came back, {} ms after {killed} backends were killed; workspace caught up {} ms later",
        slowest.as_millis(),
        down_recovery.as_millis(),
        kill_recovery.as_millis(),
        caught_up.as_millis()
    );
    if failed == 0 {
        f.failures
            .push("no call failed: the outage was not exercised".into());
    }
    Ok(f)
}

/// Sets or clears the immutable flag of `files` (those that exist).
fn immutable(files: &[PathBuf], on: bool) -> anyhow::Result<()> {
    let flag = if on { "+i" } else { "-i" };
    for file in files.iter().filter(|p| p.exists()) {
        let status = std::process::Command::new("chattr")
            .arg(flag)
            .arg(file)
            .status()
            .context("running chattr")?;
        if !status.success() {
            anyhow::bail!("chattr {flag} {} failed", file.display());
        }
    }
    Ok(())
}

/// Clears the immutable flag when dropped, so that the data directory can always be removed.
struct Mutable(Vec<PathBuf>);

impl Drop for Mutable {
    fn drop(&mut self) {
        let _ = immutable(&self.0, false);
    }
}

async fn on_sqlite(h: &mut Harness, outage: Duration) -> anyhow::Result<Figures> {
    let mut f = Figures::new("db-faults", "sqlite");
    let pid = h.pid("organization");
    let s = setup(h, "litefault", 16).await?;
    let url = h.database_url("organization");
    let file = url
        .strip_prefix("sqlite://")
        .and_then(|r| r.split('?').next())
        .ok_or_else(|| anyhow!("not a SQLite URL: {url}"))?
        .to_owned();
    let files = vec![PathBuf::from(&file), PathBuf::from(format!("{file}-wal"))];
    let guard = Mutable(files.clone());
    let load = Load::start(h, &s, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;

    immutable(&files, true)?;
    let read_only_since = Instant::now();
    // Reads during the outage.
    let mut reads_ok = 0u64;
    let mut reads = 0u64;
    while read_only_since.elapsed() < outage {
        reads += 1;
        let r = h
            .orgs()
            .get_member(bearer(
                org_api::GetMemberRequest {
                    organization_id: s.org.clone(),
                    user_id: s.probe.clone(),
                },
                &s.token,
            ))
            .await;
        if r.is_ok() {
            reads_ok += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let writable_since = Instant::now();
    immutable(&files, false)?;
    let (recovery, probes) = first_write(h, &s, Instant::now()).await;
    check_recovery(&mut f, "the file became writable", recovery);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut calls = load.finish().await?;
    drop(guard);
    calls.extend(probes);
    let writes_during: usize = calls
        .iter()
        .filter(|c| c.write && c.result.is_err())
        .count();
    let (failed, slowest) = check_codes(&mut f, &calls);
    // A write acknowledged while the file was immutable means the fault did not hold.
    let acked_during = calls
        .iter()
        .filter(|c| {
            c.write
                && c.result.is_ok()
                && c.at >= read_only_since
                && c.at + c.took <= writable_since
        })
        .count();
    if acked_during > 0 {
        f.failures.push(format!(
            "{acked_during} writes acknowledged while the file was immutable"
        ));
    }
    let head = head_revision(h).await?;
    let caught_up = workspace_caught_up(h, &s, head).await?;
    alive(h, &mut f, "organization", pid).await;
    for name in ["organization", "workspace", "billing-access"] {
        h.terminate(name).await?;
    }
    let (acked, ambiguous) = verify(h, &s.org, &calls, &mut f).await?;
    f.operations = calls.len() as u64 + reads;
    f.notes = format!(
        "{acked} acked, {failed} failed ({writes_during} writes; UNAVAILABLE, slowest {} ms), {ambiguous} failed-but-committed; reads while read-only {reads_ok}/{reads} OK; first write {} ms after the file became writable; workspace caught up {} ms later",
        slowest.as_millis(),
        recovery.as_millis(),
        caught_up.as_millis()
    );
    if writes_during == 0 {
        f.failures
            .push("no write failed: the read-only file was not exercised".into());
    }
    Ok(f)
}
