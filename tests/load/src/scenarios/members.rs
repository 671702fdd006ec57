//! Scenario 4: ListMembers pages at scale, first page against last.

use super::*;

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
pub(super) async fn page_latencies(
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
    rig.seed_users(&small_users).await?;
    rig.seed_members(&small, &small_users, org_api::OrgRole::User)
        .await?;
    let (big, _) = rig.create_org(&world.owner, "Big").await?;
    let t = Instant::now();
    let big_users: Vec<String> = (0..plan.big_members.saturating_sub(1))
        .map(|i| user_id("b", i))
        .collect();
    rig.seed_users(&big_users).await?;
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
