//! Disconnect and resume: while concurrent clients change members' roles, the Watch streams that
//! follow the organization service are cut at random moments (every 50-500 ms) by TCP proxies:
//! one in front of the organization service for the workspace and billing-access processes, one
//! for an in-process observer, the shared `orgplane_platform::events` consumer over a
//! [`RoleReplica`], which records every revision it applies.
//!
//! Then compaction: with both proxies down, more roles change, the organization's outbox is
//! compacted (the product's own [`Outbox::compact`], with a cutoff in the future so that all but
//! the newest event go), and the proxies come back. Every consumer resumes from a compacted
//! revision: it must get `REVISION_COMPACTED` once, re-sync from `ListRoleAssignments` (list, then
//! watch from the snapshot's revision) and never loop on the same revision. Two rounds.
//!
//! Checked: the observer's applied sequence is ordered, unique and gap-free (a re-sync restarts
//! it at the snapshot's revision, never backwards); each consumer got at most one
//! `REVISION_COMPACTED` per compaction and re-synced each time; at the end every consumer's
//! cursor is the organization's head and its replica equals the organization's roles.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use futures::future::BoxFuture;
use orgplane_platform::clients::StaticServiceToken;
use orgplane_platform::error::ApiResult;
use orgplane_platform::events::consumer::ConsumerConfig;
use orgplane_platform::events::{Consumer, EventHandler, Outbox};
use orgplane_platform::replica::RoleReplica;
use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::events::v1::{Event, Producer};
use orgplane_proto::organization::v1::{self as org_api, OrgRole};
use orgplane_proto::workspace::v1 as ws_api;
use rand::Rng;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, Statement};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::harness::{Harness, bearer_with_id, retry};
use crate::proxy::Proxy;
use crate::{Figures, Size};

/// Compaction rounds of the scenario.
const COMPACTIONS: u64 = 2;
/// Role changes made while the consumers are disconnected, before each compaction.
const BEHIND: usize = 30;

const ROLES: [OrgRole; 4] = [
    OrgRole::Admin,
    OrgRole::Billing,
    OrgRole::Developer,
    OrgRole::User,
];

/// Runs the scenario on a fresh setup.
pub async fn run(bin: &Path, postgres: Option<&str>, size: Size) -> anyhow::Result<Vec<Figures>> {
    let db = crate::db_label(postgres);
    let mut h = Harness::start(bin, postgres).await?;
    let result = scenario(&mut h, db, size).await;
    h.stop().await?;
    result
}

/// One step of the observer's applied sequence.
#[derive(Debug, Clone, Copy)]
enum Step {
    Applied(i64),
    Resynced(i64),
}

/// The observer's handler: a role replica that records what it applies.
struct Recorder {
    replica: RoleReplica,
    steps: Mutex<Vec<Step>>,
    snapshot: Mutex<Option<i64>>,
    compacted: AtomicU64,
}

impl EventHandler for Recorder {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(self.replica.apply(txn, event))
    }

    fn resync<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move {
            // The consumer re-syncs exactly when Watch answered REVISION_COMPACTED.
            self.compacted.fetch_add(1, Ordering::Relaxed);
            let revision = self.replica.resync(txn).await?;
            *lock(&self.snapshot) = Some(revision);
            Ok(revision)
        })
    }

    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.replica.committed(events, resynced).await;
            let mut steps = lock(&self.steps);
            if resynced && let Some(r) = lock(&self.snapshot).take() {
                steps.push(Step::Resynced(r));
            }
            steps.extend(events.iter().map(|e| Step::Applied(e.revision)));
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the observer's sequence shows.
#[derive(Debug, Default, PartialEq, Eq)]
struct SequenceCheck {
    applied: u64,
    resyncs: u64,
    /// Revisions applied again or out of order.
    repeated: u64,
    /// Revisions skipped.
    gaps: u64,
    /// Re-syncs to a snapshot older than what was already applied.
    backwards: u64,
}

/// Checks that `steps`, starting after revision `start`, are ordered, unique and gap-free.
fn check_sequence(start: i64, steps: &[Step]) -> SequenceCheck {
    let mut c = SequenceCheck::default();
    let mut next = start + 1;
    let mut seen = HashSet::new();
    for step in steps {
        match *step {
            Step::Applied(r) => {
                c.applied += 1;
                if !seen.insert(r) || r < next {
                    c.repeated += 1;
                } else if r > next {
                    c.gaps += (r - next) as u64;
                }
                next = next.max(r + 1);
            }
            Step::Resynced(r) => {
                c.resyncs += 1;
                if r + 1 < next {
                    c.backwards += 1;
                }
                // Revisions up to the snapshot are in it: they are neither gaps nor to be
                // applied again.
                next = next.max(r + 1);
            }
        }
    }
    c
}

async fn scenario(h: &mut Harness, db: &str, size: Size) -> anyhow::Result<Vec<Figures>> {
    let owner = "user_watch_owner";
    let (org, ws) = h.seed_org(owner).await?;
    let mut members = Vec::new();
    for i in 0..size.members {
        let u = format!("user_watch_{i:03}");
        h.add_member(owner, &org, &u, OrgRole::User).await?;
        members.push(u);
    }
    let token = h.user_token(owner)?;

    // The workspace and billing-access processes reach the organization through one proxy.
    let consumers_proxy = Proxy::start(h.addr("organization")).await?;
    let via = format!("http://{}", consumers_proxy.addr());
    for name in ["workspace", "billing-access"] {
        h.set_env(Some(name), "ORGPLANE_ORGANIZATION_URL", &via);
        h.set_env(
            Some(name),
            "RUST_LOG",
            "warn,orgplane_platform::events::consumer=info",
        );
        h.restart(name).await?;
    }

    // The in-process observer, through its own proxy.
    let observer_proxy = Proxy::start(h.addr("organization")).await?;
    let observer_db_url =
        orgplane_platform::db::default_sqlite_url(&h.dir.path().join("observer"), "observer");
    let observer_db = orgplane_platform::db::connect(&observer_db_url).await?;
    create_observer_tables(&observer_db).await?;
    let channel = lazy_channel(&format!("http://{}", observer_proxy.addr()))?;
    let service_token = h.service_token("workspace")?;
    let tokens = Arc::new(StaticServiceToken(service_token));
    let replica = RoleReplica::load(observer_db.clone(), channel.clone(), tokens.clone()).await?;
    let recorder = Arc::new(Recorder {
        replica: replica.clone(),
        steps: Mutex::new(Vec::new()),
        snapshot: Mutex::new(None),
        compacted: AtomicU64::new(0),
    });
    let mut config = ConsumerConfig::new(Producer::Organization, channel, tokens)
        .with_consumer("chaos-observer");
    config.max_backoff = Duration::from_millis(500);
    let (consumer, observer) = Consumer::new(observer_db.clone(), config, recorder.clone()).await?;
    let stop_observer = CancellationToken::new();
    let observer_task = tokio::spawn(consumer.run(stop_observer.clone()));

    // Load, with the streams cut at random moments.
    let started = Instant::now();
    let remaining = Arc::new(AtomicUsize::new(size.role_changes));
    let mut tasks = Vec::new();
    for mine in crate::harness::slices(&members, size.clients) {
        tasks.push(tokio::spawn(role_changes(
            h.channel("organization"),
            token.clone(),
            org.clone(),
            mine,
            remaining.clone(),
        )));
    }
    let mut cuts = 0u64;
    let mut rng = rand::rng();
    while !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..=500))).await;
        match rng.random_range(0..3) {
            0 => consumers_proxy.cut(),
            1 => observer_proxy.cut(),
            _ => {
                consumers_proxy.cut();
                observer_proxy.cut();
            }
        }
        cuts += 1;
    }
    let mut operations = 0u64;
    let mut failed = 0u64;
    for t in tasks {
        let (ok, bad) = t.await.map_err(|e| anyhow!("client task: {e}"))??;
        operations += ok;
        failed += bad;
    }
    let load_time = started.elapsed();

    // Compaction rounds: consumers fall behind while disconnected, the outbox is compacted
    // past their cursors, then they resume.
    let mut compacted_through = Vec::new();
    for round in 0..COMPACTIONS {
        consumers_proxy.set_down(true);
        observer_proxy.set_down(true);
        let remaining = Arc::new(AtomicUsize::new(BEHIND));
        let (ok, bad) = role_changes(
            h.channel("organization"),
            token.clone(),
            org.clone(),
            members.clone(),
            remaining,
        )
        .await?;
        operations += ok;
        failed += bad;
        let conn = h.database("organization").await?;
        let through = Outbox::new(conn.clone(), Producer::Organization)
            .compact(chrono::Utc::now() + chrono::Duration::minutes(1))
            .await
            .with_context(|| format!("compaction round {round}"))?;
        let _ = conn.close().await;
        compacted_through.push(through);
        consumers_proxy.set_down(false);
        observer_proxy.set_down(false);
        // Let the consumers resume (and re-sync) before the next round.
        let head = org_head(h).await?;
        wait_consumers(h, &org, &ws, &members[0], head).await?;
        observer
            .wait_for(head, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow!("observer at round {round}: {e}"))?;
    }
    // Events after the last re-sync are watched again.
    let (ok, bad) = role_changes(
        h.channel("organization"),
        token.clone(),
        org.clone(),
        members.clone(),
        Arc::new(AtomicUsize::new(BEHIND)),
    )
    .await?;
    operations += ok;
    failed += bad;

    let head = org_head(h).await?;
    wait_consumers(h, &org, &ws, &members[0], head).await?;
    let observer_reached = observer.wait_for(head, Duration::from_secs(30)).await;
    stop_observer.cancel();
    let _ = observer_task.await;

    // The observer's sequence and replica.
    let steps = lock(&recorder.steps).clone();
    let seq = check_sequence(0, &steps);
    let stats = observer.stats();
    let mut f = Figures::new("watch-cut-resume", db);
    f.operations = operations;
    f.crashes = cuts;
    f.delivered = stats.delivered.load(Ordering::Relaxed);
    f.duplicated = stats.duplicates.load(Ordering::Relaxed);
    f.lost = seq.gaps;
    f.applied_twice = seq.repeated;
    if seq.backwards > 0 {
        f.failures
            .push(format!("{} re-syncs went backwards", seq.backwards));
    }
    if let Err(e) = observer_reached {
        f.failures
            .push(format!("the observer did not reach the head {head}: {e}"));
    }
    if failed > 0 {
        f.failures
            .push(format!("{failed} role changes failed after retries"));
    }
    if consumers_proxy.severed() == 0 || observer_proxy.severed() == 0 {
        f.failures
            .push("no open stream was cut: the scenario did not exercise resumption".into());
    }
    let source = org_roles(h, &org).await?;
    let observed = replica_roles(&observer_db, &org).await?;
    let (missing, differ) = compare(&source, &observed);
    f.lost += missing;
    f.applied_twice += differ;
    let replicas = verify_replicas(h, &org, head, &source).await?;
    f.lost += replicas.lost;
    f.applied_twice += replicas.differ;
    f.notes = format!(
        "{cuts} cuts ({} + {} streams severed), observer: {} applied / {} connects, head {head}; {}; load {:.1}s",
        consumers_proxy.severed(),
        observer_proxy.severed(),
        seq.applied,
        stats.connects.load(Ordering::Relaxed),
        replicas.notes,
        load_time.as_secs_f64()
    );

    // Compaction: each consumer answered REVISION_COMPACTED at most once per compaction and
    // re-synced each time.
    let mut c = Figures::new("watch-compaction-resync", db);
    c.operations = COMPACTIONS * BEHIND as u64;
    c.crashes = COMPACTIONS;
    let observer_compacted = recorder.compacted.load(Ordering::Relaxed);
    let observer_resyncs = stats.resyncs.load(Ordering::Relaxed);
    let mut notes = vec![format!(
        "compacted through {compacted_through:?}; observer: {observer_compacted} REVISION_COMPACTED, {observer_resyncs} re-syncs ({} in its sequence)",
        seq.resyncs
    )];
    check_resyncs(
        &mut c,
        "observer",
        observer_compacted,
        observer_resyncs.max(seq.resyncs),
    );
    for name in ["workspace", "billing-access"] {
        let log =
            std::fs::read_to_string(h.dir.path().join(name).join("stdout.log")).unwrap_or_default();
        let resyncs = log.matches("re-synced from a snapshot").count() as u64;
        let failed = log.matches("re-sync failed").count() as u64;
        check_resyncs(&mut c, name, resyncs + failed, resyncs);
        notes.push(format!(
            "{name}: {} REVISION_COMPACTED, {resyncs} re-syncs",
            resyncs + failed
        ));
    }
    c.notes = notes.join("; ");
    Ok(vec![f, c])
}

/// Compaction figures of one consumer: at most one `REVISION_COMPACTED` per compaction (no
/// loop on the same revision), and a re-sync for each compaction (the path was exercised).
fn check_resyncs(f: &mut Figures, who: &str, compacted: u64, resyncs: u64) {
    if compacted > COMPACTIONS {
        f.failures.push(format!(
            "{who}: {compacted} REVISION_COMPACTED answers for {COMPACTIONS} compactions (looping)"
        ));
    }
    if resyncs < COMPACTIONS {
        f.failures.push(format!(
            "{who}: {resyncs} re-syncs for {COMPACTIONS} compactions past its cursor"
        ));
    }
}

async fn create_observer_tables(db: &DatabaseConnection) -> anyhow::Result<()> {
    for sql in [
        "CREATE TABLE IF NOT EXISTS consumer_cursors (producer TEXT NOT NULL PRIMARY KEY, \
         revision BIGINT NOT NULL, update_time_ms BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS replica_organizations (organization_id TEXT NOT NULL \
         PRIMARY KEY, name TEXT NOT NULL, primary_email TEXT NOT NULL, owner_user_id TEXT NOT \
         NULL, state INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS replica_members (organization_id TEXT NOT NULL, user_id \
         TEXT NOT NULL, role INTEGER NOT NULL, PRIMARY KEY (organization_id, user_id))",
        "CREATE TABLE IF NOT EXISTS replica_security_policies (organization_id TEXT NOT NULL \
         PRIMARY KEY, mfa_requirement INTEGER NOT NULL, reauth_max_age_secs BIGINT NOT NULL, \
         sign_in_methods INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS replica_verified_domains (domain_id TEXT NOT NULL PRIMARY \
         KEY, organization_id TEXT NOT NULL, domain_name TEXT NOT NULL, policy INTEGER NOT NULL)",
    ] {
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
            .await?;
    }
    Ok(())
}

fn lazy_channel(url: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy())
}

/// Changes the roles of `members` (each to a role other than its current one) until
/// `remaining` runs out; returns (acknowledged, failed after retries).
pub(crate) async fn role_changes(
    channel: Channel,
    token: String,
    org: String,
    members: Vec<String>,
    remaining: Arc<AtomicUsize>,
) -> anyhow::Result<(u64, u64)> {
    let orgs = org_api::organization_service_client::OrganizationServiceClient::new(channel);
    let mut known: HashMap<String, i32> = HashMap::new();
    let (mut ok, mut failed) = (0, 0);
    while remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        let (user, role) = {
            let mut rng = rand::rng();
            let user = members[rng.random_range(0..members.len())].clone();
            let current = known.get(&user).copied().unwrap_or(OrgRole::User as i32);
            let choices: Vec<i32> = ROLES
                .iter()
                .map(|r| *r as i32)
                .filter(|r| *r != current)
                .collect();
            (user, choices[rng.random_range(0..choices.len())])
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let result = retry(|| {
            let req = bearer_with_id(
                org_api::UpdateMemberRoleRequest {
                    organization_id: org.clone(),
                    user_id: user.clone(),
                    role,
                    etag: String::new(),
                },
                &token,
                &request_id,
            );
            let mut orgs = orgs.clone();
            async move { orgs.update_member_role(req).await }
        })
        .await;
        match result {
            Ok(_) => {
                known.insert(user, role);
                ok += 1;
            }
            Err(_) => failed += 1,
        }
    }
    Ok((ok, failed))
}

pub(crate) async fn scalar(conn: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await?
        .ok_or_else(|| anyhow!("no row for {sql}"))?;
    Ok(row.try_get_by_index(0)?)
}

/// The organization service's outbox head.
pub(crate) async fn org_head(h: &Harness) -> anyhow::Result<i64> {
    let conn = h.database("organization").await?;
    let head = scalar(&conn, "SELECT revision FROM outbox_head").await;
    let _ = conn.close().await;
    head
}

/// Waits (retrying) until billing-access and workspace have applied `head` of `org`.
pub(crate) async fn wait_consumers(
    h: &Harness,
    org: &str,
    ws: &str,
    user: &str,
    head: i64,
) -> anyhow::Result<()> {
    let product = h.product_token()?;
    retry(|| async {
        h.billing()
            .check_billing_access(crate::harness::bearer(
                bill_api::CheckBillingAccessRequest {
                    organization_id: org.into(),
                    subject: Some(bill_api::check_billing_access_request::Subject::UserId(
                        user.into(),
                    )),
                    min_organization_revision: head,
                },
                &product,
            ))
            .await
    })
    .await
    .context("billing-access catching up")?;
    retry(|| async {
        h.workspaces()
            .check_access(crate::harness::bearer(
                ws_api::CheckAccessRequest {
                    organization_id: org.into(),
                    workspace_id: ws.into(),
                    subject: Some(ws_api::check_access_request::Subject::UserId(user.into())),
                    permission: ws_api::Permission::Read as i32,
                    min_organization_revision: head,
                    min_workspace_revision: 0,
                },
                &product,
            ))
            .await
    })
    .await
    .context("workspace catching up")?;
    Ok(())
}

async fn roles_of(
    conn: &DatabaseConnection,
    table: &str,
    org: &str,
) -> anyhow::Result<HashMap<String, i32>> {
    let mut out = HashMap::new();
    for row in conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT user_id, role FROM {table} WHERE organization_id = '{org}'"),
        ))
        .await?
    {
        out.insert(row.try_get_by_index(0)?, row.try_get_by_index(1)?);
    }
    Ok(out)
}

/// The organization's members and their roles, read from the organization database.
pub(crate) async fn org_roles(h: &Harness, org: &str) -> anyhow::Result<HashMap<String, i32>> {
    let conn = h.database("organization").await?;
    let roles = roles_of(&conn, "members", org).await;
    let _ = conn.close().await;
    roles
}

async fn replica_roles(
    conn: &DatabaseConnection,
    org: &str,
) -> anyhow::Result<HashMap<String, i32>> {
    roles_of(conn, "replica_members", org).await
}

/// (rows missing from `replica`, rows that differ or should not be there).
fn compare(source: &HashMap<String, i32>, replica: &HashMap<String, i32>) -> (u64, u64) {
    let missing = source.keys().filter(|u| !replica.contains_key(*u)).count();
    let differ = source
        .iter()
        .filter(|(u, r)| replica.get(*u).is_some_and(|x| x != *r))
        .count();
    let extra = replica.keys().filter(|u| !source.contains_key(*u)).count();
    (missing as u64, (differ + extra) as u64)
}

/// How far the workspace and billing-access replicas are from the organization's roles.
#[derive(Debug, Default)]
pub(crate) struct ReplicaCheck {
    /// Events behind the head plus members missing from a replica.
    pub lost: u64,
    /// Replica rows that differ from the organization's or should not exist.
    pub differ: u64,
    /// Per consumer: cursor/head, rows.
    pub notes: String,
}

/// Compares both consumers' cursors with `head` and their replicas with `source`.
pub(crate) async fn verify_replicas(
    h: &Harness,
    org: &str,
    head: i64,
    source: &HashMap<String, i32>,
) -> anyhow::Result<ReplicaCheck> {
    let mut out = ReplicaCheck::default();
    let mut notes = Vec::new();
    for name in ["workspace", "billing-access"] {
        let conn = h.database(name).await?;
        let cursor = scalar(
            &conn,
            "SELECT revision FROM consumer_cursors WHERE producer = 'organization'",
        )
        .await?;
        let replica = replica_roles(&conn, org).await?;
        let _ = conn.close().await;
        let (missing, differ) = compare(source, &replica);
        out.lost += (head - cursor).max(0) as u64 + missing;
        out.differ += differ;
        notes.push(format!(
            "{name}: cursor {cursor}/{head}, {} rows = {} members",
            replica.len(),
            source.len()
        ));
    }
    out.notes = notes.join(", ");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_check_finds_repeats_gaps_and_backward_resyncs() {
        use Step::*;
        assert_eq!(
            check_sequence(0, &[Applied(1), Applied(2), Resynced(10), Applied(11)]),
            SequenceCheck {
                applied: 3,
                resyncs: 1,
                ..Default::default()
            }
        );
        let c = check_sequence(0, &[Applied(1), Applied(3), Applied(3), Applied(2)]);
        assert_eq!((c.gaps, c.repeated), (1, 2));
        let c = check_sequence(5, &[Applied(6), Applied(7), Resynced(4), Applied(8)]);
        assert_eq!((c.backwards, c.gaps, c.repeated), (1, 0, 0));
    }
}
