//! Rolling restart: under steady load from concurrent clients — role changes, invites and
//! workspace creates (with request ids), CheckAccess and CheckBillingAccess with the revision of
//! the client's last role change — every service is restarted in turn with SIGTERM (graceful
//! drain) and started again: organization, workspace, billing-access, then identity
//! (in-process, stopped and started on the same address with the same data). Clients retry
//! UNAVAILABLE as a real client would ([`retry`]; creates keep their request id across retries).
//!
//! Checked: no acknowledged request is lost (every acknowledged role is the member's role, every
//! acknowledged invite and workspace exists), every request ends in success (retried through the
//! restarts), every check with the revision answers by the acknowledged role, and the consumers
//! have no gap (their cursors reach organization's head and their replicas equal its roles).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::organization::v1::{self as org_api, OrgRole};
use orgplane_proto::workspace::v1 as ws_api;
use rand::Rng;
use sea_orm::DatabaseConnection;

use crate::harness::{Harness, bearer, retry};
use crate::watch::{org_head, org_roles, scalar, verify_replicas, wait_consumers};
use crate::{Figures, Size};

/// The services restarted, in order.
pub const ORDER: [&str; 4] = ["organization", "workspace", "billing-access", "identity"];

const ROLES: [OrgRole; 4] = [
    OrgRole::Admin,
    OrgRole::Billing,
    OrgRole::Developer,
    OrgRole::User,
];

/// Runs the scenario on a fresh setup.
pub async fn run(bin: &Path, postgres: Option<&str>, size: Size) -> anyhow::Result<Vec<Figures>> {
    run_with(bin, postgres, size, false).await
}

/// The same with TLS (`tls`) on every listener and every internal call and event stream: the
/// restarts must lose nothing over TLS either (reported as `rolling-restart-tls`).
pub async fn run_with(
    bin: &Path,
    postgres: Option<&str>,
    size: Size,
    tls: bool,
) -> anyhow::Result<Vec<Figures>> {
    let db = crate::db_label(postgres);
    let mut h = Harness::start_with(bin, postgres, tls).await?;
    let result = scenario(&mut h, db, size).await;
    h.stop().await?;
    result
}

/// What one client had acknowledged, and what went wrong.
#[derive(Debug, Default)]
struct Acked {
    roles: HashMap<String, i32>,
    invites: Vec<String>,
    workspaces: Vec<String>,
    operations: u64,
    /// Attempts beyond the first (retried through a restart).
    retries: u64,
    /// Requests that failed for good, by code and reason.
    failed: HashMap<String, u64>,
    /// Checks with the revision that did not answer by the acknowledged role.
    stale: u64,
}

struct Shared {
    org: String,
    ws: String,
    token: String,
    product: String,
    stop: AtomicBool,
}

/// What CheckAccess DEVELOP must answer for organization role `role`, where the rules fix it
/// (ADMIN inherits workspace ADMIN; a USER without a direct role has no DEVELOP).
fn develop_allowed(role: i32) -> Option<bool> {
    match OrgRole::try_from(role) {
        Ok(OrgRole::Admin) => Some(true),
        Ok(OrgRole::User) => Some(false),
        _ => None,
    }
}

fn billing_allowed(role: i32) -> bool {
    role == OrgRole::Admin as i32 || role == OrgRole::Billing as i32
}

async fn client(
    h: Arc<HarnessView>,
    s: Arc<Shared>,
    c: usize,
    members: Vec<String>,
) -> anyhow::Result<Acked> {
    let mut acked = Acked::default();
    let mut last_revision: HashMap<String, i64> = HashMap::new();
    let mut n = 0usize;
    let mut active: Vec<String> = Vec::new();
    while !s.stop.load(Ordering::Relaxed) {
        n += 1;
        let user = {
            let mut rng = rand::rng();
            members[rng.random_range(0..members.len())].clone()
        };
        let attempts = AtomicU64::new(0);
        let result: Result<(), tonic::Status> = match n % 4 {
            0 => {
                let current = acked
                    .roles
                    .get(&user)
                    .copied()
                    .unwrap_or(OrgRole::User as i32);
                let role = {
                    let choices: Vec<i32> = ROLES
                        .iter()
                        .map(|r| *r as i32)
                        .filter(|r| *r != current)
                        .collect();
                    choices[rand::rng().random_range(0..choices.len())]
                };
                retry(|| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let mut orgs = h.orgs.clone();
                    let req = bearer(
                        org_api::UpdateMemberRoleRequest {
                            organization_id: s.org.clone(),
                            user_id: user.clone(),
                            role,
                            etag: String::new(),
                        },
                        &s.token,
                    );
                    async move { orgs.update_member_role(req).await }
                })
                .await
                .map(|r| {
                    acked.roles.insert(user.clone(), role);
                    last_revision.insert(user.clone(), r.revision);
                })
            }
            1 => {
                let rid = uuid::Uuid::new_v4().to_string();
                let email = format!("restart-{c}-{n}@chaos.test");
                retry(|| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let mut orgs = h.orgs.clone();
                    let req = bearer(
                        org_api::CreateInviteRequest {
                            organization_id: s.org.clone(),
                            invite: Some(org_api::Invite {
                                email: email.clone(),
                                role: OrgRole::User as i32,
                                ..Default::default()
                            }),
                            request_id: rid.clone(),
                        },
                        &s.token,
                    );
                    async move { orgs.create_invite(req).await }
                })
                .await
                .map(|r| acked.invites.push(r.invite.unwrap_or_default().id))
            }
            // An organization has at most 100 active workspaces: past a few, archive the oldest.
            2 if active.len() >= 3 => {
                let id = active.remove(0);
                retry(|| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let mut ws = h.workspaces.clone();
                    let req = bearer(
                        ws_api::ArchiveWorkspaceRequest {
                            workspace_id: id.clone(),
                            etag: String::new(),
                        },
                        &s.token,
                    );
                    async move { ws.archive_workspace(req).await }
                })
                .await
                .map(|_| ())
            }
            2 => {
                let rid = uuid::Uuid::new_v4().to_string();
                let name = format!("restart-{c}-{n}");
                retry(|| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let mut ws = h.workspaces.clone();
                    let req = bearer(
                        ws_api::CreateWorkspaceRequest {
                            organization_id: s.org.clone(),
                            workspace: Some(ws_api::Workspace {
                                name: name.clone(),
                                ..Default::default()
                            }),
                            request_id: rid.clone(),
                        },
                        &s.token,
                    );
                    async move { ws.create_workspace(req).await }
                })
                .await
                .map(|r| {
                    let id = r.workspace.unwrap_or_default().id;
                    active.push(id.clone());
                    acked.workspaces.push(id);
                })
            }
            _ if (n / 4).is_multiple_of(2) => {
                let revision = last_revision.get(&user).copied().unwrap_or(0);
                let role = acked.roles.get(&user).copied();
                retry(|| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let mut ws = h.workspaces.clone();
                    let req = bearer(
                        ws_api::CheckAccessRequest {
                            organization_id: s.org.clone(),
                            workspace_id: s.ws.clone(),
                            subject: Some(ws_api::check_access_request::Subject::UserId(
                                user.clone(),
                            )),
                            permission: ws_api::Permission::Develop as i32,
                            min_organization_revision: revision,
                            min_workspace_revision: 0,
                        },
                        &s.product,
                    );
                    async move { ws.check_access(req).await }
                })
                .await
                .map(|r| {
                    if let Some(want) = role.and_then(develop_allowed)
                        && r.allowed != want
                    {
                        acked.stale += 1;
                    }
                })
            }
            _ => {
                let revision = last_revision.get(&user).copied().unwrap_or(0);
                let role = acked.roles.get(&user).copied();
                retry(|| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let mut bill = h.billing.clone();
                    let req = bearer(
                        bill_api::CheckBillingAccessRequest {
                            organization_id: s.org.clone(),
                            subject: Some(bill_api::check_billing_access_request::Subject::UserId(
                                user.clone(),
                            )),
                            min_organization_revision: revision,
                        },
                        &s.product,
                    );
                    async move { bill.check_billing_access(req).await }
                })
                .await
                .map(|r| {
                    if let Some(role) = role
                        && r.allowed != billing_allowed(role)
                    {
                        acked.stale += 1;
                    }
                })
            }
        };
        acked.operations += 1;
        acked.retries += attempts.load(Ordering::Relaxed).saturating_sub(1);
        if let Err(status) = result {
            let reason = orgplane_platform::error::reason_of(&status)
                .unwrap_or_else(|| status.message().chars().take(120).collect());
            *acked
                .failed
                .entry(format!("{:?} {reason}", status.code()))
                .or_default() += 1;
        }
    }
    Ok(acked)
}

/// The clients the load tasks use (the harness itself is being restarted meanwhile).
struct HarnessView {
    orgs:
        org_api::organization_service_client::OrganizationServiceClient<tonic::transport::Channel>,
    workspaces: ws_api::workspace_service_client::WorkspaceServiceClient<tonic::transport::Channel>,
    billing: bill_api::billing_access_service_client::BillingAccessServiceClient<
        tonic::transport::Channel,
    >,
}

async fn count(conn: &DatabaseConnection, table: &str, ids: &[String]) -> anyhow::Result<u64> {
    let mut found = 0;
    for chunk in ids.chunks(200) {
        let list = chunk
            .iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(",");
        found += scalar(
            conn,
            &format!("SELECT COUNT(*) FROM {table} WHERE id IN ({list})"),
        )
        .await? as u64;
    }
    Ok(found)
}

async fn scenario(h: &mut Harness, db: &str, size: Size) -> anyhow::Result<Vec<Figures>> {
    let owner = "user_restart_owner";
    let (org, ws) = h.seed_org(owner).await?;
    let mut members = Vec::new();
    for i in 0..size.members {
        let u = format!("user_restart_{i:03}");
        h.add_member(owner, &org, &u, OrgRole::User).await?;
        members.push(u);
    }
    let shared = Arc::new(Shared {
        org: org.clone(),
        ws: ws.clone(),
        token: h.user_token(owner)?,
        product: h.product_token()?,
        stop: AtomicBool::new(false),
    });
    let view = Arc::new(HarnessView {
        orgs: h.orgs(),
        workspaces: h.workspaces(),
        billing: h.billing(),
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, mine) in crate::harness::slices(&members, size.clients)
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(client(view.clone(), shared.clone(), c, mine)));
    }

    // The rolling restart, with steady load before, between and after.
    let pause = Duration::from_millis(size.org_kill_ms.1.clamp(1000, 2000));
    let mut restarts = 0u64;
    let mut restart_time = Duration::ZERO;
    for name in ORDER {
        tokio::time::sleep(pause).await;
        let t = Instant::now();
        if name == "identity" {
            h.stop_identity().await?;
            h.start_identity().await?;
        } else {
            h.restart(name).await?;
        }
        restart_time += t.elapsed();
        restarts += 1;
    }
    tokio::time::sleep(pause).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut all = Acked::default();
    for t in tasks {
        let a = t.await.map_err(|e| anyhow!("client task: {e}"))??;
        all.roles.extend(a.roles);
        all.invites.extend(a.invites);
        all.workspaces.extend(a.workspaces);
        all.operations += a.operations;
        all.retries += a.retries;
        all.stale += a.stale;
        for (k, v) in a.failed {
            *all.failed.entry(k).or_default() += v;
        }
    }
    let load_time = started.elapsed();

    let name = if h.scheme() == "https" {
        "rolling-restart-tls"
    } else {
        "rolling-restart"
    };
    let mut f = Figures::new(name, db);
    f.operations = all.operations;
    f.crashes = restarts;
    f.stale_allows = all.stale;

    // Every acknowledged request is present.
    let source = org_roles(h, &org).await?;
    let wrong_roles = all
        .roles
        .iter()
        .filter(|(u, r)| source.get(*u) != Some(*r))
        .count() as u64;
    let org_db = h.database("organization").await?;
    let invites = count(&org_db, "invites", &all.invites).await?;
    let _ = org_db.close().await;
    let ws_db = h.database("workspace").await?;
    let workspaces = count(&ws_db, "workspaces", &all.workspaces).await?;
    let _ = ws_db.close().await;
    f.lost = wrong_roles
        + (all.invites.len() as u64 - invites)
        + (all.workspaces.len() as u64 - workspaces);
    let failed: u64 = all.failed.values().sum();
    if failed > 0 {
        f.failures.push(format!(
            "{failed} requests failed for good through the restarts: {:?}",
            all.failed
        ));
    }

    // No consumer gap.
    let head = org_head(h).await?;
    wait_consumers(h, &org, &ws, &members[0], head).await?;
    let replicas = verify_replicas(h, &org, head, &source).await?;
    f.lost += replicas.lost;
    f.applied_twice = replicas.differ;
    // Both consumers applied every event up to the head.
    f.delivered = head as u64 * 2;
    f.notes = format!(
        "{restarts} graceful restarts ({}) in {:.1}s, {} retries; acked: {} roles, {} invites, {} workspaces; {}; load {:.1}s",
        ORDER.join(", "),
        restart_time.as_secs_f64(),
        all.retries,
        all.roles.len(),
        all.invites.len(),
        all.workspaces.len(),
        replicas.notes,
        load_time.as_secs_f64()
    );
    Ok(vec![f])
}
