//! Scenario 3: role changes and their propagation to the workspace replica.

use super::*;

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
