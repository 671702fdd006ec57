//! Read-your-writes, the "new enemy" test: a member is promoted to ADMIN, the promotion is seen,
//! then demoted to USER; CheckAccess (workspace, DEVELOP) and CheckBillingAccess right after the
//! demotion must not allow when the demotion's revision is passed. Without the revision the
//! consumers may not have applied the demotion yet, and the check may allow (a stale allow).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::organization::v1::{self as org_api, OrgRole};
use orgplane_proto::workspace::v1 as ws_api;

use crate::harness::{Harness, bearer, retry};
use crate::{Figures, Size};

/// Runs the unpinned then the pinned variant on one fresh setup.
pub async fn run(bin: &Path, postgres: Option<&str>, size: Size) -> anyhow::Result<Vec<Figures>> {
    let db = crate::db_label(postgres);
    let h = Harness::start(bin, postgres).await?;
    let result = scenario(&h, db, size).await;
    h.stop().await?;
    result
}

struct Setup {
    org: String,
    ws: String,
    owner_token: String,
    product: String,
    users: Vec<String>,
}

async fn scenario(h: &Harness, db: &str, size: Size) -> anyhow::Result<Vec<Figures>> {
    let (org, ws) = h.seed_org("user_ryw_owner").await?;
    let mut users = Vec::new();
    for i in 0..8 {
        let u = format!("user_ryw_{i}");
        h.add_member("user_ryw_owner", &org, &u, OrgRole::Admin)
            .await?;
        users.push(u);
    }
    let setup = Setup {
        org,
        ws,
        owner_token: h.user_token("user_ryw_owner")?,
        product: h.product_token()?,
        users,
    };
    let mut out = Vec::new();
    for (pinned, attempts) in [
        (false, size.ryw_unpinned_attempts),
        (true, size.ryw_attempts),
    ] {
        let name = if pinned {
            "ryw-with-revision"
        } else {
            "ryw-without-revision"
        };
        let mut f = Figures::new(name, db);
        f.stale_expected = !pinned;
        let started = Instant::now();
        let mut ws_stale = 0;
        let mut bill_stale = 0;
        for i in 0..attempts {
            let user = &setup.users[i % setup.users.len()];
            let r1 = set_role(h, &setup, user, OrgRole::Admin).await?;
            // The promotion is seen everywhere before the demotion.
            let (a, b) = checks(h, &setup, user, r1).await?;
            if !(a && b) {
                f.failures.push(format!(
                    "ADMIN not allowed after its revision {r1} ({a}, {b})"
                ));
                break;
            }
            let r2 = set_role(h, &setup, user, OrgRole::User).await?;
            let (a, b) = checks(h, &setup, user, if pinned { r2 } else { 0 }).await?;
            ws_stale += u64::from(a);
            bill_stale += u64::from(b);
            f.operations += 6;
        }
        f.stale_allows = ws_stale + bill_stale;
        f.notes = format!(
            "{attempts} demote-then-check attempts; stale: CheckAccess {ws_stale}, CheckBillingAccess {bill_stale}; {:.1}s",
            started.elapsed().as_secs_f64()
        );
        out.push(f);
    }
    Ok(out)
}

async fn set_role(h: &Harness, s: &Setup, user: &str, role: OrgRole) -> anyhow::Result<i64> {
    let resp = retry(|| async {
        h.orgs()
            .update_member_role(bearer(
                org_api::UpdateMemberRoleRequest {
                    organization_id: s.org.clone(),
                    user_id: user.into(),
                    role: role as i32,
                    etag: String::new(),
                },
                &s.owner_token,
            ))
            .await
    })
    .await
    .context("UpdateMemberRole")?;
    Ok(resp.revision)
}

/// (CheckAccess DEVELOP allowed, CheckBillingAccess allowed), both after `revision` (0: none),
/// asked concurrently right away.
async fn checks(h: &Harness, s: &Setup, user: &str, revision: i64) -> anyhow::Result<(bool, bool)> {
    let deadline = Duration::from_secs(10);
    let mut ws = h.workspaces();
    let mut bill = h.billing();
    let ws_call = ws.check_access(bearer(
        ws_api::CheckAccessRequest {
            organization_id: s.org.clone(),
            workspace_id: s.ws.clone(),
            subject: Some(ws_api::check_access_request::Subject::UserId(user.into())),
            permission: ws_api::Permission::Develop as i32,
            min_organization_revision: revision,
            min_workspace_revision: 0,
        },
        &s.product,
    ));
    let bill_call = bill.check_billing_access(bearer(
        bill_api::CheckBillingAccessRequest {
            organization_id: s.org.clone(),
            subject: Some(bill_api::check_billing_access_request::Subject::UserId(
                user.into(),
            )),
            min_organization_revision: revision,
        },
        &s.product,
    ));
    let (a, b) = tokio::time::timeout(deadline, futures::future::join(ws_call, bill_call))
        .await
        .map_err(|_| anyhow!("checks took more than {deadline:?}"))?;
    let a = a.context("CheckAccess")?.into_inner().allowed;
    let b = b.context("CheckBillingAccess")?.into_inner().allowed;
    Ok((a, b))
}
