//! Scenario 3: role changes and their propagation to the workspace replica.

use std::sync::atomic::Ordering;

use super::*;

/// UpdateMemberRole of `user` to `role`; the revision to wait for.
pub(super) async fn update_role(
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

/// The clients a propagation probe uses: the organization service and the workspace service.
struct Probe {
    org: org_api::organization_service_client::OrganizationServiceClient<Channel>,
    ws: ws_api::workspace_service_client::WorkspaceServiceClient<Channel>,
    owner: String,
    service: String,
}

impl Probe {
    fn new(world: &World, owner: String, service: String) -> Self {
        Self {
            org: org_api::organization_service_client::OrganizationServiceClient::new(
                world.rig.channel(0),
            ),
            ws: ws_api::workspace_service_client::WorkspaceServiceClient::new(world.rig.channel(1)),
            owner,
            service,
        }
    }

    /// Sets `user`'s role, then asks CheckAccess at the update's revision and checks it sees the
    /// new role; returns the microseconds from the update sent to the answer.
    async fn change(
        &mut self,
        org_id: &str,
        ws_id: &str,
        user: &str,
        role: org_api::OrgRole,
        what: &str,
    ) -> anyhow::Result<u64> {
        let t0 = Instant::now();
        let revision = update_role(&mut self.org, &self.owner, org_id, user, role).await?;
        let mut req = check_request(org_id, ws_id, user);
        req.min_organization_revision = revision;
        let answer = self
            .ws
            .check_access(bearer(req, &self.service))
            .await
            .map_err(|s| anyhow!("CheckAccess(min revision): {s}"))?
            .into_inner();
        if answer.org_role != role as i32 {
            return Err(anyhow!(
                "{what}: saw {:?} after setting {role:?}",
                answer.org_role
            ));
        }
        Ok(t0.elapsed().as_micros() as u64)
    }
}

/// Scenario 3: UpdateMemberRole → visible in the workspace service (a CheckAccess that waits for
/// the update's revision), at 50 changes/s; then a burst applied as fast as it is sent.
pub async fn role_propagation(world: &World, plan: &Plan, label: &str) -> anyhow::Result<Row> {
    let mut probe = Probe::new(
        world,
        world.rig.user_token(&world.owner)?,
        world.rig.service_token()?,
    );
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
        latencies.push(
            probe
                .change(&world.org, ws_id, user, role, "role_propagation")
                .await?,
        );
    }
    let steady = load::stats_of(latencies, started.elapsed(), 0);
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
            "{} changes at 50/s (the burst is role_burst)",
            plan.role_changes
        ),
        spread: None,
    })
}

/// Members the burst leaves alone: the probe changes their roles while the burst runs.
const PROBES: usize = 4;

/// The burst of issue 23: `plan.burst` UpdateMemberRole calls, 16 in flight, applied in the
/// workspace replica at the rate asked (3,000 changes/s on SQLite, 1,500 on PostgreSQL), while a
/// probe measures propagation *during* the burst: every 20 ms an UpdateMemberRole of a member
/// the burst leaves alone, then a CheckAccess that waits for its revision (p99 <= 20 ms).
pub async fn role_burst(world: &World, plan: &Plan, postgres: bool) -> anyhow::Result<Row> {
    let owner = world.rig.user_token(&world.owner)?;
    let service = world.rig.service_token()?;
    let users = &world.users;
    if users.len() <= PROBES {
        return Err(anyhow!("role_burst needs more than {PROBES} members"));
    }
    let done = CancellationToken::new();
    let probe = {
        let done = done.clone();
        let mut probe = Probe::new(world, owner.clone(), service.clone());
        let (org_id, ws_id) = (world.org.clone(), world.workspaces[0].clone());
        let probes: Vec<String> = users[..PROBES].to_vec();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut interval = tokio::time::interval(Duration::from_millis(20));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = 0usize;
            while !done.is_cancelled() {
                interval.tick().await;
                let user = &probes[i % PROBES];
                // ADMIN and back to USER: every probe is a change, whatever role_propagation left.
                let role = if (i / PROBES).is_multiple_of(2) {
                    org_api::OrgRole::Admin
                } else {
                    org_api::OrgRole::User
                };
                i += 1;
                latencies.push(
                    probe
                        .change(&org_id, &ws_id, user, role, "role_burst probe")
                        .await?,
                );
            }
            anyhow::Ok(latencies)
        })
    };
    let groups = world
        .rig
        .opened()?
        .organization
        .as_ref()
        .ok_or_else(|| anyhow!("no organization service"))?
        .outbox()
        .group_stats();
    let (units0, commits0) = (
        groups.units.load(Ordering::Relaxed),
        groups.commits.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    let cpu0 = super::process::cpu_seconds();
    let others = users.len() - PROBES;
    let jobs: Vec<(usize, Channel)> = (0..plan.burst).map(|i| (i, world.rig.channel(i))).collect();
    let revisions: Vec<anyhow::Result<i64>> = futures::stream::iter(jobs)
        .map(|(i, ch)| {
            let owner = owner.clone();
            let org_id = world.org.clone();
            let user = users[PROBES + i % others].clone();
            async move {
                let mut c =
                    org_api::organization_service_client::OrganizationServiceClient::new(ch);
                // Roles no earlier scenario sets (so every call is a change); each pass over the
                // members flips every role again.
                let role = if (i + i / others).is_multiple_of(2) {
                    org_api::OrgRole::Billing
                } else {
                    org_api::OrgRole::Admin
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
    let cpu = super::process::cpu_seconds() - cpu0;
    let units = groups.units.load(Ordering::Relaxed) - units0;
    let commits = (groups.commits.load(Ordering::Relaxed) - commits0).max(1);
    done.cancel();
    let probe = load::stats_of(probe.await??, applied, 0);
    let rate = plan.burst as f64 / applied.as_secs_f64().max(1e-9);
    let goal = if postgres { 1_500.0 } else { 3_000.0 };
    let p99 = probe.quantile_us(0.99);
    Ok(Row {
        scenario: "role_burst".into(),
        value: rate,
        unit: "changes/s".into(),
        baseline: goal,
        ratio: rate / goal,
        p50_us: probe.quantile_us(0.5),
        p99_us: p99,
        goal: format!(
            "burst of {} applied in the workspace replica at >= {goal:.0} changes/s, propagation p99 <= 20 ms during it",
            plan.burst
        ),
        met: Some(rate >= goal && p99 <= 20_000),
        note: format!(
            "16 in flight: sent in {:.2}s, all applied after {:.2}s, {:.2} ms of this process's CPU per change, {:.1} changes per organization commit; {} probes (update -> CheckAccess at its revision) during the burst: p50 {:.1} ms, p99 {:.1} ms",
            sent.as_secs_f64(),
            applied.as_secs_f64(),
            cpu * 1000.0 / plan.burst as f64,
            units as f64 / commits as f64,
            probe.calls,
            probe.quantile_us(0.5) as f64 / 1000.0,
            p99 as f64 / 1000.0
        ),
        spread: None,
    })
}
