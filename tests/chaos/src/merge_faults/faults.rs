//! The faults: the merge runs while the workspace and billing-access processes are killed with
//! SIGKILL and restarted, and the consumers' cursors are read (and sometimes rewound) while
//! they are dead; then everything is left to settle.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use orgplane_proto::organization::v1 as org_api;
use rand::Rng;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, Statement, TransactionTrait,
};
use tonic::transport::Channel;

use super::MergeSize;
use super::seed::Seeded;
use crate::harness::{Harness, bearer_with_id, transient};

/// The consumers killed.
pub const CONSUMERS: [&str; 2] = ["workspace", "billing-access"];

/// What the faults did.
#[derive(Debug, Clone, Default)]
pub struct Chaos {
    /// Consumers killed before they had applied the merge event (cursor below its revision).
    pub before_apply: u64,
    /// Consumers killed after they had applied it.
    pub after_apply: u64,
    /// Of `before_apply`, consumers killed in the middle of applying it: their transaction had
    /// begun moving the candidate's data and was waiting for a table lock the scenario held
    /// (PostgreSQL only, where the wait can be seen in `pg_locks`).
    pub mid_apply: u64,
    /// Times a dead consumer's cursor was moved back before the merge event, so that the event
    /// was delivered to it again.
    pub redelivered: u64,
    /// MergeOrganizations calls (with one request id) until one was answered.
    pub merge_calls: u64,
    /// Cursors of consumers killed before the merge was answered, until it is.
    unclassified: Vec<i64>,
    /// The merge's answer.
    pub merged: org_api::MergeOrganizationsResponse,
    /// From the merge's answer to every consumer caught up.
    pub settle: Duration,
}

/// Calls MergeOrganizations with one request id until it is answered (a workspace service that
/// is down makes it UNAVAILABLE: it is called again); answers the response and the calls made.
async fn merge(
    channel: Channel,
    token: String,
    prime: String,
    candidate: String,
) -> anyhow::Result<(org_api::MergeOrganizationsResponse, u64)> {
    let mut client = org_api::organization_service_client::OrganizationServiceClient::new(channel);
    let request_id = uuid::Uuid::new_v4().to_string();
    let start = Instant::now();
    let mut calls = 0;
    loop {
        calls += 1;
        let req = bearer_with_id(
            org_api::MergeOrganizationsRequest {
                prime_organization_id: prime.clone(),
                candidate_organization_id: candidate.clone(),
                validate_only: false,
                request_id: request_id.clone(),
            },
            &token,
            &request_id,
        );
        match client.merge_organizations(req).await {
            Ok(r) => return Ok((r.into_inner(), calls)),
            Err(s) if transient(&s) && start.elapsed() < Duration::from_secs(90) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => bail!("MergeOrganizations: {s:?}"),
        }
    }
}

async fn scalar(conn: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await?
        .ok_or_else(|| anyhow!("no row: {sql}"))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// `name`'s cursor on `producer`'s events (0 when it has none yet).
async fn cursor_of(conn: &DatabaseConnection, producer: &str) -> anyhow::Result<i64> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT revision FROM consumer_cursors WHERE producer = '{producer}'"),
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}

/// Kills `name`, and classifies the moment by its cursor against the merge event's revision
/// `rev` (0: not answered yet, the cursor is kept in `unclassified` until it is). When it had
/// applied the event, with probability `rewind`, moves its cursor back to just before the
/// event, so that the event is delivered again (events before it are not replayed: a durable
/// cursor committed with what it applied never goes back further).
async fn kill(
    h: &mut Harness,
    name: &'static str,
    rev: i64,
    rewind: f64,
    c: &mut Chaos,
) -> anyhow::Result<()> {
    h.kill9(name).await?;
    let conn = h.database(name).await?;
    let cursor = cursor_of(&conn, "organization").await?;
    if rev == 0 {
        c.unclassified.push(cursor);
    } else if cursor < rev {
        c.before_apply += 1;
    } else {
        c.after_apply += 1;
        if rand::rng().random_bool(rewind) {
            // Just before the event: only the merge (and what followed it) is delivered again.
            let to = rev - 1;
            conn.execute_raw(Statement::from_string(
                conn.get_database_backend(),
                format!(
                    "UPDATE consumer_cursors SET revision = {to} WHERE producer = 'organization'"
                ),
            ))
            .await?;
            c.redelivered += 1;
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// A transaction holding `table` of `name`'s PostgreSQL database in EXCLUSIVE mode: reads go
/// on, writes wait until it ends. `None` on SQLite.
async fn hold(
    h: &Harness,
    name: &str,
    table: &str,
) -> anyhow::Result<Option<(DatabaseConnection, DatabaseTransaction)>> {
    if h.pg.is_none() {
        return Ok(None);
    }
    let conn = h.database(name).await?;
    let txn = conn.begin().await?;
    txn.execute_unprepared(&format!("LOCK TABLE {table} IN EXCLUSIVE MODE"))
        .await?;
    Ok(Some((conn, txn)))
}

/// Waits (up to 20 s) until a transaction of `name`'s database waits for the lock on `table`
/// that [`hold`] holds; answers whether one did.
async fn blocked(h: &Harness, name: &str, table: &str) -> anyhow::Result<bool> {
    let conn = h.database(name).await?;
    let sql = format!(
        "SELECT COUNT(*)::bigint FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = '{table}' AND NOT l.granted \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    );
    let start = Instant::now();
    let mut waiting = false;
    while start.elapsed() < Duration::from_secs(20) {
        if scalar(&conn, &sql).await? > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = conn.close().await;
    Ok(waiting)
}

/// On PostgreSQL, with `held` (see [`hold`]) on `table`: kills `name` once its transaction
/// applying the merge waits for that lock, then lets the lock go. Answers whether the consumer
/// was caught mid-apply (an error when it was not, or had applied the event all the same).
async fn kill_mid_apply(
    h: &mut Harness,
    name: &'static str,
    table: &str,
    held: Option<(DatabaseConnection, DatabaseTransaction)>,
    rev: i64,
    c: &mut Chaos,
) -> anyhow::Result<()> {
    let Some((conn, txn)) = held else {
        return Ok(());
    };
    let waiting = blocked(h, name, table).await?;
    let before = c.before_apply;
    kill(h, name, rev, 0.0, c).await?;
    txn.rollback().await?;
    let _ = conn.close().await;
    if !waiting {
        bail!("{name} never waited for the lock on {table} while applying the merge");
    }
    if c.before_apply == before {
        bail!("{name} had applied the merge although {table} was locked");
    }
    c.mid_apply += 1;
    Ok(())
}

fn ms(range: (u64, u64)) -> Duration {
    Duration::from_millis(rand::rng().random_range(range.0..=range.1))
}

/// Runs the merge under the faults (module documentation), then waits until every consumer of
/// the organization's and workspace's events caught up.
pub async fn run(h: &mut Harness, s: &Seeded, size: &MergeSize) -> anyhow::Result<Chaos> {
    let mut c = Chaos::default();
    // On PostgreSQL both consumers are alive when the merge commits, and their moves wait for
    // the scenario's locks on their tables: each is killed in the middle of applying the merge.
    // (Not on SQLite, where a held write lock would also keep a restarted service from serving.)
    let held = match hold(h, "workspace", "workspaces").await? {
        Some(ws) => hold(h, "billing-access", "usage_records")
            .await?
            .map(|bill| (ws, bill)),
        None => None,
    };
    if held.is_none() {
        // Billing-access is dead when the merge commits: it applies the event after its
        // restart.
        kill(h, "billing-access", 0, 0.0, &mut c).await?;
    }
    let task = tokio::spawn(merge(
        h.channel("organization"),
        h.user_token(&s.owner)?,
        s.prime.clone(),
        s.candidate.clone(),
    ));
    if held.is_none() {
        // The workspace service is killed at a random moment around the merge's start (the
        // merge may then find it down and is called again).
        tokio::time::sleep(ms((0, size.jitter_ms))).await;
        kill(h, "workspace", 0, 0.0, &mut c).await?;
        tokio::time::sleep(ms((0, size.jitter_ms))).await;
        h.spawn("workspace").await?;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while !task.is_finished() {
        if Instant::now() > deadline {
            task.abort();
            bail!("MergeOrganizations did not finish in 90 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (merged, calls) = task.await.map_err(|e| anyhow!("merge task: {e}"))??;
    let acked = Instant::now();
    let rev = merged.revision;
    if !merged.merged || rev <= 0 {
        bail!("MergeOrganizations answered without merging: {merged:?}");
    }
    c.merge_calls = calls;
    for cursor in std::mem::take(&mut c.unclassified) {
        if cursor < rev {
            c.before_apply += 1;
        } else {
            c.after_apply += 1;
        }
    }
    c.merged = merged;
    match held {
        // Each killed once it waits for the lock in the middle of applying the event.
        Some((ws, bill)) => {
            kill_mid_apply(h, "workspace", "workspaces", Some(ws), rev, &mut c).await?;
            kill_mid_apply(
                h,
                "billing-access",
                "usage_records",
                Some(bill),
                rev,
                &mut c,
            )
            .await?;
        }
        // At once: the workspace service is killed while it receives or applies the event.
        None => kill(h, "workspace", rev, 0.0, &mut c).await?,
    }
    // Each consumer restarted and killed again a random moment later, while it catches up.
    for name in CONSUMERS {
        tokio::time::sleep(ms((0, size.jitter_ms))).await;
        h.spawn(name).await?;
        tokio::time::sleep(ms((0, size.jitter_ms / 2))).await;
        kill(h, name, rev, 0.0, &mut c).await?;
        h.spawn(name).await?;
    }
    // Then random kills of one or both, some after the event was applied with the cursor moved
    // back before it.
    for _ in 0..size.kill_cycles {
        tokio::time::sleep(ms((0, size.jitter_ms))).await;
        let victims: &[&'static str] = match rand::rng().random_range(0..3) {
            0 => &CONSUMERS[..1],
            1 => &CONSUMERS[1..],
            _ => &CONSUMERS,
        };
        for name in victims {
            kill(h, name, rev, 0.6, &mut c).await?;
        }
        tokio::time::sleep(ms((0, size.jitter_ms / 2))).await;
        for name in victims {
            h.spawn(name).await?;
        }
    }
    // Last, each consumer once it applied the event, with its cursor moved back before it: the
    // event is delivered to each at least once more.
    for name in CONSUMERS {
        applied(h, name, rev).await?;
        kill(h, name, rev, 1.0, &mut c).await?;
        h.spawn(name).await?;
    }
    settle(h, Duration::from_secs(60)).await?;
    c.settle = acked.elapsed();
    Ok(c)
}

/// Waits (up to 30 s) until `name`'s cursor reached `rev`.
async fn applied(h: &Harness, name: &str, rev: i64) -> anyhow::Result<()> {
    let conn = h.database(name).await?;
    let start = Instant::now();
    let result = loop {
        if cursor_of(&conn, "organization").await? >= rev {
            break Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            break Err(anyhow!("{name} did not apply the merge within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = conn.close().await;
    result
}

/// Waits until every consumer's cursor reached its producer's head: workspace, billing-access
/// and identity on the organization's events, billing-access and organization on the
/// workspace's.
pub async fn settle(h: &Harness, within: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let org = h.database("organization").await?;
    let ws = h.database("workspace").await?;
    let bill = h.database("billing-access").await?;
    let result = loop {
        let org_head = scalar(&org, "SELECT revision FROM outbox_head").await?;
        let ws_head = scalar(&ws, "SELECT revision FROM outbox_head").await?;
        let behind = [
            ("workspace", cursor_of(&ws, "organization").await?, org_head),
            (
                "billing-access",
                cursor_of(&bill, "organization").await?,
                org_head,
            ),
            (
                "identity",
                cursor_of(h.identity_db()?, "organization").await?,
                org_head,
            ),
            (
                "billing-access",
                cursor_of(&bill, "workspace").await?,
                ws_head,
            ),
            ("organization", cursor_of(&org, "workspace").await?, ws_head),
        ]
        .into_iter()
        .filter(|(_, cursor, head)| cursor < head)
        .map(|(name, cursor, head)| format!("{name} at {cursor} of {head}"))
        .collect::<Vec<_>>();
        if behind.is_empty() {
            break Ok(());
        }
        if start.elapsed() > within {
            break Err(anyhow!(
                "consumers not caught up after {within:?}: {}",
                behind.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for conn in [org, ws, bill] {
        let _ = conn.close().await;
    }
    result.context("settling")
}
