//! Crashes during role changes: concurrent clients change members' roles while the organization
//! process is killed with SIGKILL at random moments and the workspace and billing-access
//! processes every few seconds. After a killed consumer died, its durable cursor is rewound by a
//! few events (as if its last commits had been lost), so that those events are delivered and
//! applied again: the idempotency of the replicas is exercised, and counted.
//!
//! At the end, with every process stopped, the databases are read directly:
//! - every acknowledged change has exactly one `MemberRoleChanged` event (at the acknowledged
//!   revision, with the requested role) and exactly one audit record (same request id);
//! - every event has its audit record and every audit record its event (nothing half-applied,
//!   acknowledged or not), the outbox is gap-free, each member's role is its last event's;
//! - each consumer's cursor is at the organization's head and its replica equals the
//!   organization's members exactly.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::events::v1::{Event, event};
use orgplane_proto::organization::v1::{self as org_api, OrgRole};
use orgplane_proto::workspace::v1 as ws_api;
use prost::Message;
use rand::Rng;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tonic::transport::Channel;

use crate::harness::{Harness, bearer, bearer_with_id, retry};
use crate::{Figures, Size};

const ROLES: [OrgRole; 4] = [
    OrgRole::Admin,
    OrgRole::Billing,
    OrgRole::Developer,
    OrgRole::User,
];

/// One role change as the client saw it.
#[derive(Debug, Clone)]
struct Change {
    request_id: String,
    user: String,
    role: i32,
    /// The acknowledged revision; `None` when the call failed.
    acked: Option<i64>,
}

/// Runs the scenario on a fresh setup.
pub async fn run(bin: &Path, postgres: Option<&str>, size: Size) -> anyhow::Result<Vec<Figures>> {
    let db = crate::db_label(postgres);
    let mut h = Harness::start(bin, postgres).await?;
    let result = scenario(&mut h, db, size).await;
    h.stop().await?;
    result
}

async fn scenario(h: &mut Harness, db: &str, size: Size) -> anyhow::Result<Vec<Figures>> {
    let owner = "user_crash_owner";
    let (org, ws) = h.seed_org(owner).await?;
    let mut members = Vec::new();
    for i in 0..size.members {
        let u = format!("user_crash_{i:03}");
        h.add_member(owner, &org, &u, OrgRole::User).await?;
        members.push(u);
    }
    let token = h.user_token(owner)?;
    let started = Instant::now();

    // The load: `clients` tasks, each owning a slice of the members.
    let remaining = Arc::new(AtomicUsize::new(size.role_changes));
    let mut tasks = Vec::new();
    for mine in crate::harness::slices(&members, size.clients) {
        tasks.push(tokio::spawn(client(
            h.channel("organization"),
            token.clone(),
            org.clone(),
            mine,
            remaining.clone(),
        )));
    }

    // The chaos, until the load is done.
    let mut rng = rand::rng();
    let mut org_kills = 0u64;
    let mut consumer_kills = 0u64;
    let mut rewound = 0u64;
    let mut restart_time = Duration::ZERO;
    let mut next_org =
        Instant::now() + ms(rng.random_range(size.org_kill_ms.0..=size.org_kill_ms.1));
    let mut next_consumer =
        Instant::now() + ms(rng.random_range(size.consumer_kill_ms.0..=size.consumer_kill_ms.1));
    while remaining.load(Ordering::Relaxed) > 0 && !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = Instant::now();
        if now >= next_org {
            h.kill9("organization").await?;
            org_kills += 1;
            let t = Instant::now();
            h.spawn("organization").await?;
            restart_time += t.elapsed();
            next_org =
                Instant::now() + ms(rng.random_range(size.org_kill_ms.0..=size.org_kill_ms.1));
        }
        if now >= next_consumer {
            for name in ["workspace", "billing-access"] {
                h.kill9(name).await?;
                consumer_kills += 1;
                rewound += rewind_cursor(h, name, rng.random_range(1..=25)).await?;
                h.spawn(name).await?;
            }
            next_consumer = Instant::now()
                + ms(rng.random_range(size.consumer_kill_ms.0..=size.consumer_kill_ms.1));
        }
    }
    let mut changes = Vec::new();
    for t in tasks {
        changes.extend(t.await.map_err(|e| anyhow!("client task: {e}"))??);
    }
    let load_time = started.elapsed();

    // Wait until both consumers applied everything, then stop everything and read the databases.
    let head = {
        let conn = h.database("organization").await?;
        let head = scalar(&conn, "SELECT revision FROM outbox_head").await?;
        let _ = conn.close().await;
        head
    };
    let product = h.product_token()?;
    let some_user = members.first().cloned().unwrap_or_default();
    retry(|| async {
        h.billing()
            .check_billing_access(bearer(
                bill_api::CheckBillingAccessRequest {
                    organization_id: org.clone(),
                    subject: Some(bill_api::check_billing_access_request::Subject::UserId(
                        some_user.clone(),
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
            .check_access(bearer(
                ws_api::CheckAccessRequest {
                    organization_id: org.clone(),
                    workspace_id: ws.clone(),
                    subject: Some(ws_api::check_access_request::Subject::UserId(
                        some_user.clone(),
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
    .context("workspace catching up")?;
    for name in ["organization", "workspace", "billing-access"] {
        h.terminate(name).await?;
    }

    let mut producer = Figures::new("crash-organization", db);
    producer.crashes = org_kills;
    producer.operations = changes.len() as u64;
    verify_producer(h, &org, &changes, &mut producer).await?;
    producer.notes = format!(
        "{} acked, {} failed; load {:.1}s (restarts {:.1}s); {}",
        changes.iter().filter(|c| c.acked.is_some()).count(),
        changes.iter().filter(|c| c.acked.is_none()).count(),
        load_time.as_secs_f64(),
        restart_time.as_secs_f64(),
        producer.notes
    );

    let mut consumers = Figures::new("crash-consumers", db);
    consumers.crashes = consumer_kills;
    consumers.operations = changes.len() as u64;
    consumers.duplicated = rewound;
    verify_consumers(h, &org, head, &mut consumers).await?;
    if rewound == 0 && consumer_kills > 0 {
        consumers
            .failures
            .push("no event was delivered twice: idempotency not exercised".into());
    }
    Ok(vec![producer, consumers])
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn client(
    channel: Channel,
    token: String,
    org: String,
    members: Vec<String>,
    remaining: Arc<AtomicUsize>,
) -> anyhow::Result<Vec<Change>> {
    let mut orgs = org_api::organization_service_client::OrganizationServiceClient::new(channel);
    let mut known: HashMap<String, i32> = members
        .iter()
        .map(|m| (m.clone(), OrgRole::User as i32))
        .collect();
    let mut out = Vec::new();
    loop {
        let taken =
            remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if taken.is_err() {
            break;
        }
        let (user, role) = {
            let mut rng = rand::rng();
            let user = members[rng.random_range(0..members.len())].clone();
            let current = known.get(&user).copied().unwrap_or_default();
            let choices: Vec<i32> = ROLES
                .iter()
                .map(|r| *r as i32)
                .filter(|r| *r != current)
                .collect();
            (user, choices[rng.random_range(0..choices.len())])
        };
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
        req.set_timeout(Duration::from_secs(5));
        match orgs.update_member_role(req).await {
            Ok(resp) => {
                known.insert(user.clone(), role);
                out.push(Change {
                    request_id,
                    user,
                    role,
                    acked: Some(resp.into_inner().revision),
                });
            }
            Err(_) => {
                out.push(Change {
                    request_id,
                    user: user.clone(),
                    role,
                    acked: None,
                });
                // Learn the role the failed call left, so that the next change is a real change.
                let member = retry(|| {
                    let mut orgs = orgs.clone();
                    let req = bearer(
                        org_api::GetMemberRequest {
                            organization_id: org.clone(),
                            user_id: user.clone(),
                        },
                        &token,
                    );
                    async move { orgs.get_member(req).await }
                })
                .await
                .context("GetMember after a failed change")?;
                let role = member.member.map(|m| m.role).unwrap_or_default();
                known.insert(user, role);
            }
        }
    }
    Ok(out)
}

async fn scalar(conn: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await?
        .ok_or_else(|| anyhow!("no row: {sql}"))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// Lowers `name`'s durable cursor on the organization's events by up to `by` (the process is
/// dead); returns by how much.
async fn rewind_cursor(h: &Harness, name: &str, by: i64) -> anyhow::Result<u64> {
    let conn = h.database(name).await?;
    let backend = conn.get_database_backend();
    let cursor = conn
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT revision FROM consumer_cursors WHERE producer = 'organization'",
        ))
        .await?
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    let to = (cursor - by).max(0);
    conn.execute_raw(Statement::from_string(
        backend,
        format!("UPDATE consumer_cursors SET revision = {to} WHERE producer = 'organization'"),
    ))
    .await?;
    let _ = conn.close().await;
    Ok((cursor - to) as u64)
}

async fn verify_producer(
    h: &Harness,
    org: &str,
    changes: &[Change],
    f: &mut Figures,
) -> anyhow::Result<()> {
    let conn = h.database("organization").await?;
    let backend = conn.get_database_backend();
    // Role-change events by request id, and the gap-free check.
    let rows = conn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT revision, payload FROM outbox_events ORDER BY revision",
        ))
        .await?;
    let mut events: HashMap<String, Vec<(i64, i32, String)>> = HashMap::new();
    let mut last_role: HashMap<String, (i64, i32)> = HashMap::new();
    let mut previous: Option<i64> = None;
    let mut gaps = 0;
    for row in rows {
        let revision: i64 = row.try_get_by_index(0)?;
        let payload: Vec<u8> = row.try_get_by_index(1)?;
        if let Some(p) = previous
            && revision != p + 1
        {
            gaps += 1;
        }
        previous = Some(revision);
        let e = Event::decode(payload.as_slice())?;
        if let Some(event::Payload::MemberRoleChanged(c)) = e.payload
            && c.organization_id == org
        {
            events.entry(e.request_id.clone()).or_default().push((
                revision,
                c.new_role,
                c.user_id.clone(),
            ));
            last_role.insert(c.user_id, (revision, c.new_role));
        }
    }
    if gaps > 0 {
        f.failures.push(format!("{gaps} gaps in the outbox"));
    }
    let rows = conn
        .query_all_raw(Statement::from_string(
            backend,
            format!(
                "SELECT request_id FROM audit_log WHERE action = 'member.update_role' AND outcome = 1 AND organization_id = '{org}'"
            ),
        ))
        .await?;
    let mut audits: HashMap<String, usize> = HashMap::new();
    for row in rows {
        *audits
            .entry(row.try_get_by_index::<String>(0)?)
            .or_default() += 1;
    }
    let rows = conn
        .query_all_raw(Statement::from_string(
            backend,
            format!("SELECT user_id, role FROM members WHERE organization_id = '{org}'"),
        ))
        .await?;
    let mut roles: HashMap<String, i32> = HashMap::new();
    for row in rows {
        roles.insert(row.try_get_by_index(0)?, row.try_get_by_index(1)?);
    }
    let _ = conn.close().await;

    let mut acked_missing = 0u64;
    let mut unacked_applied = 0u64;
    for c in changes {
        let evs = events.get(&c.request_id).map(Vec::as_slice).unwrap_or(&[]);
        let audit = audits.get(&c.request_id).copied().unwrap_or(0);
        match c.acked {
            Some(rev) => {
                let ok = evs.len() == 1
                    && audit == 1
                    && evs[0].0 == rev
                    && evs[0].1 == c.role
                    && evs[0].2 == c.user;
                if !ok {
                    acked_missing += 1;
                }
            }
            None => {
                if evs.len() != audit || evs.len() > 1 {
                    f.failures.push(format!(
                        "unacknowledged change {} half-applied: {} events, {audit} audit records",
                        c.request_id,
                        evs.len()
                    ));
                } else if audit == 1 {
                    unacked_applied += 1;
                }
            }
        }
    }
    f.lost = acked_missing;
    // Every event has one audit record and every audit record its event.
    let orphan_events = events
        .iter()
        .filter(|(rid, evs)| audits.get(*rid).copied().unwrap_or(0) != evs.len())
        .count();
    let orphan_audits = audits
        .iter()
        .filter(|(rid, n)| events.get(*rid).map(Vec::len).unwrap_or(0) != **n)
        .count();
    if orphan_events + orphan_audits > 0 {
        f.failures.push(format!(
            "{orphan_events} events without their audit record, {orphan_audits} audit records without their event"
        ));
    }
    let wrong_roles = last_role
        .iter()
        .filter(|(u, (_, role))| roles.get(*u) != Some(role))
        .count();
    if wrong_roles > 0 {
        f.failures.push(format!(
            "{wrong_roles} members whose role is not their last event's"
        ));
    }
    f.notes = format!(
        "{} role-change events, {} audit records, {unacked_applied} unacked applied whole",
        events.values().map(Vec::len).sum::<usize>(),
        audits.values().sum::<usize>()
    );
    Ok(())
}

async fn verify_consumers(
    h: &Harness,
    org: &str,
    head: i64,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let conn = h.database("organization").await?;
    let backend = conn.get_database_backend();
    let mut source: HashMap<String, i32> = HashMap::new();
    for row in conn
        .query_all_raw(Statement::from_string(
            backend,
            format!("SELECT user_id, role FROM members WHERE organization_id = '{org}'"),
        ))
        .await?
    {
        source.insert(row.try_get_by_index(0)?, row.try_get_by_index(1)?);
    }
    let _ = conn.close().await;
    let mut notes = Vec::new();
    for name in ["workspace", "billing-access"] {
        let conn = h.database(name).await?;
        let backend = conn.get_database_backend();
        let cursor = scalar(
            &conn,
            "SELECT revision FROM consumer_cursors WHERE producer = 'organization'",
        )
        .await?;
        let mut replica: HashMap<String, i32> = HashMap::new();
        for row in conn
            .query_all_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT user_id, role FROM replica_members WHERE organization_id = '{org}'"
                ),
            ))
            .await?
        {
            replica.insert(row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        }
        let _ = conn.close().await;
        f.delivered += cursor.max(0) as u64;
        f.lost += (head - cursor).max(0) as u64;
        let missing = source.keys().filter(|u| !replica.contains_key(*u)).count();
        let differ = source
            .iter()
            .filter(|(u, r)| replica.get(*u).is_some_and(|x| x != *r))
            .count();
        let extra = replica.keys().filter(|u| !source.contains_key(*u)).count();
        f.lost += missing as u64;
        f.applied_twice += (differ + extra) as u64;
        notes.push(format!(
            "{name}: cursor {cursor}/{head}, {} replica rows = {} members",
            replica.len(),
            source.len()
        ));
    }
    f.delivered += f.duplicated;
    f.notes = notes.join("; ");
    Ok(())
}
