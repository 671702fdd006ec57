//! The organization service re-syncs identity's and the workspace service's event streams after
//! they compacted events it had not applied (list-then-watch), instead of staying stuck.
//!
//! Each scenario stops the organization process, changes the producer's state meanwhile (a member
//! deletes their account and another verifies a new email; workspaces move between units and one
//! is archived), compacts the producer's outbox past organization's cursor with the product's own
//! [`Outbox::compact`] (a cutoff in the future: every event but the newest goes), and starts
//! organization again. Its consumer gets `REVISION_COMPACTED`, re-syncs once from the
//! producer's read RPCs (`BatchGetUsers`, `ListWorkspaces`), and its state then matches what
//! the lost events would have produced: the deleted user removed with one audit record and one
//! `MemberRemoved`, the new email known (ORG-6), the units holding exactly their workspaces
//! (ORG-9). The re-sync count comes from organization's log.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use orgplane_platform::events::Outbox;
use orgplane_platform::events::consumer::load_cursor;
use orgplane_proto::events::v1::Producer;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::identity::v1 as id_api;
use orgplane_proto::organization::v1 as org_api;
use orgplane_proto::workspace::v1 as ws_api;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::Figures;
use crate::harness::{Harness, bearer, mask, retry};

/// The consumer's log line for a finished re-sync.
const RESYNCED: &str = "re-synced from a snapshot";

/// Both scenarios, each on a fresh setup.
pub async fn run(bin: &Path, postgres: Option<&str>) -> anyhow::Result<Vec<Figures>> {
    Ok(vec![
        identity(bin, postgres).await?,
        workspace(bin, postgres).await?,
    ])
}

/// Identity's stream: users deleted and emails verified while organization was away.
pub async fn identity(bin: &Path, postgres: Option<&str>) -> anyhow::Result<Figures> {
    let mut h = Harness::start(bin, postgres).await?;
    let result = identity_scenario(&mut h, crate::db_label(postgres)).await;
    h.stop().await?;
    result
}

/// The workspace service's stream: workspaces moved and archived while organization was away.
pub async fn workspace(bin: &Path, postgres: Option<&str>) -> anyhow::Result<Figures> {
    let mut h = Harness::start(bin, postgres).await?;
    let result = workspace_scenario(&mut h, crate::db_label(postgres)).await;
    h.stop().await?;
    result
}

/// How many re-syncs of `producer` organization's log reports.
fn resyncs_logged(h: &Harness, producer: &str) -> usize {
    let dir = h.dir.path().join("organization");
    ["stdout.log", "stderr.log"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .map(|text| {
            text.lines()
                .filter(|l| l.contains(RESYNCED) && l.contains(&format!("\"{producer}\"")))
                .count()
        })
        .sum()
}

/// Stops organization, with its consumer's re-syncs logged from its next start on.
async fn stop_organization(h: &mut Harness) -> anyhow::Result<()> {
    h.terminate("organization").await?;
    h.set_env(
        Some("organization"),
        "RUST_LOG",
        "warn,orgplane_platform::events::consumer=info",
    );
    Ok(())
}

/// Compacts `outbox` past everything but its newest event and checks that organization's cursor
/// (stored in `org_db`) is now behind the compaction point. Returns (cursor, compacted through).
async fn compact_past_cursor(
    outbox: &Outbox,
    org_db: &DatabaseConnection,
) -> anyhow::Result<(i64, i64)> {
    let cursor = load_cursor(org_db, outbox.producer()).await?;
    let through = outbox
        .compact(chrono::Utc::now() + chrono::Duration::minutes(1))
        .await
        .context("compacting")?;
    if through <= cursor {
        bail!("compaction through {through} did not pass organization's cursor {cursor}");
    }
    Ok((cursor, through))
}

/// Waits until organization's cursor of `outbox`'s producer reaches the producer's head; returns
/// how long that took.
async fn wait_caught_up(outbox: &Outbox, org_db: &DatabaseConnection) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let head = outbox.head().await?.revision;
        let cursor = load_cursor(org_db, outbox.producer()).await?;
        if cursor >= head {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!(
                "organization's {:?} cursor stays at {cursor}, head {head}",
                outbox.producer()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records `ok` as a passed check, or `what` as a failure.
fn check(f: &mut Figures, ok: bool, what: String) {
    f.operations += 1;
    if !ok {
        f.failures.push(what);
    }
}

/// Checks that exactly one re-sync of `producer` happened, also a moment later (no loop).
async fn check_one_resync(h: &Harness, f: &mut Figures, producer: &str) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let n = resyncs_logged(h, producer);
    check(
        f,
        n == 1,
        format!("organization re-synced {producer}'s stream {n} times (expected once)"),
    );
    f.notes.push_str(&format!("; {n} re-sync"));
}

async fn identity_scenario(h: &mut Harness, db: &str) -> anyhow::Result<Figures> {
    let mut f = Figures::new("org-resync-identity", db);
    let owner = "user_rs_owner";
    let (org, _) = h.seed_org(owner).await?;
    let gone = "user_rs_gone";
    let stays = "user_rs_stays";
    let bystander = "user_rs_bystander";
    h.add_member(owner, &org, gone, org_api::OrgRole::Admin)
        .await?;
    h.add_member(owner, &org, stays, org_api::OrgRole::User)
        .await?;
    h.seed_user(bystander, "bystander@chaos.test").await?;

    stop_organization(h).await?;
    // Meanwhile: a member deletes their account, another verifies a new email, and an unrelated
    // account goes (the newest event, the one compaction keeps).
    h.identity_client()
        .delete_user(bearer(
            id_api::DeleteUserRequest {
                user_id: gone.into(),
            },
            &h.user_token(gone)?,
        ))
        .await
        .context("DeleteUser")?;
    let new_email = "stays.new@chaos.test";
    h.identity_client()
        .update_user(bearer(
            id_api::UpdateUserRequest {
                user: Some(id_api::User {
                    id: stays.into(),
                    email: new_email.into(),
                    display_name: "Stays Renamed".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["email", "display_name"]),
                etag: String::new(),
            },
            &h.user_token(stays)?,
        ))
        .await
        .context("UpdateUser")?;
    let token = h
        .mail_value(new_email, "verify-email?token=")
        .ok_or_else(|| anyhow!("no verification mail to {new_email}"))?;
    h.identity_client()
        .verify_email(id_api::VerifyEmailRequest { token })
        .await
        .context("VerifyEmail")?;
    h.identity_client()
        .delete_user(bearer(
            id_api::DeleteUserRequest {
                user_id: bystander.into(),
            },
            &h.user_token(bystander)?,
        ))
        .await
        .context("DeleteUser (bystander)")?;

    let org_db = h.database("organization").await?;
    let outbox = Outbox::new(h.identity_db()?.clone(), Producer::Identity);
    let (cursor, through) = compact_past_cursor(&outbox, &org_db).await?;
    h.spawn("organization").await?;
    let took = wait_caught_up(&outbox, &org_db).await?;
    f.notes = format!(
        "cursor {cursor} < compacted through {through}; caught up in {} ms",
        took.as_millis()
    );

    let owner_token = h.user_token(owner)?;
    let member = |user: &str| {
        let mut orgs = h.orgs();
        let req = bearer(
            org_api::GetMemberRequest {
                organization_id: org.clone(),
                user_id: user.into(),
            },
            &owner_token,
        );
        async move { orgs.get_member(req).await }
    };
    let r = member(gone).await;
    check(
        &mut f,
        r.as_ref().is_err_and(|s| s.code() == tonic::Code::NotFound),
        format!("the deleted user is still a member: {r:?}"),
    );
    let r = member(stays).await;
    check(
        &mut f,
        r.is_ok(),
        format!("the remaining member is gone: {r:?}"),
    );
    // Its UserProfileChanged was compacted away: the re-sync renewed the copy members are
    // named from (before, the member had been answered, and copied, with the old ones).
    let named = r
        .ok()
        .and_then(|r| r.into_inner().member)
        .map(|m| (m.display_name, m.email));
    check(
        &mut f,
        named
            .as_ref()
            .is_some_and(|(n, e)| n == "Stays Renamed" && e == new_email),
        format!("the remaining member's name and email after the re-sync: {named:?}"),
    );
    let r = member(owner).await;
    check(&mut f, r.is_ok(), format!("the owner is gone: {r:?}"));

    // As UserDeleted removes: one audit record and one MemberRemoved event.
    let audits = {
        use orgplane_platform::audit::row;
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        row::Entity::find()
            .filter(row::Column::OrganizationId.eq(org.clone()))
            .filter(row::Column::Action.eq("member.remove"))
            .filter(row::Column::ResourceId.eq(gone))
            .count(&org_db)
            .await
    };
    check(
        &mut f,
        matches!(audits, Ok(1)),
        format!("member.remove audit records of the deleted user: {audits:?} (expected 1)"),
    );
    let events = Outbox::new(org_db.clone(), Producer::Organization)
        .read(0, 100_000)
        .await?;
    let removed = events
        .iter()
        .filter(|e| {
            matches!(&e.payload, Some(Payload::MemberRemoved(m))
                if m.user_id == gone && m.organization_id == org
                    && m.old_role == org_api::OrgRole::Admin as i32)
        })
        .count();
    check(
        &mut f,
        removed == 1,
        format!("MemberRemoved events of the deleted user: {removed} (expected 1)"),
    );

    // The verified email is the member's now (ORG-6: no invite to a current member).
    let r = h
        .orgs()
        .create_invite(bearer(
            org_api::CreateInviteRequest {
                organization_id: org.clone(),
                invite: Some(org_api::Invite {
                    email: new_email.into(),
                    role: org_api::OrgRole::User as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &owner_token,
        ))
        .await;
    check(
        &mut f,
        r.as_ref().is_err_and(|s| {
            s.code() == tonic::Code::AlreadyExists
                && orgplane_platform::error::reason_of(s).as_deref() == Some("ALREADY_A_MEMBER")
        }),
        format!("an invite to the member's new verified email: {r:?} (expected ALREADY_A_MEMBER)"),
    );
    check_one_resync(h, &mut f, "identity").await;
    Ok(f)
}

/// Organization's unit placements of `org`'s workspaces, as stored in its database.
async fn placements(
    db: &DatabaseConnection,
    org: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT workspace_id, organization_id, unit_id FROM unit_workspaces",
        ))
        .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        if r.try_get::<String>("", "organization_id")? == org {
            out.insert(
                r.try_get::<String>("", "workspace_id")?,
                r.try_get::<String>("", "unit_id")?,
            );
        }
    }
    Ok(out)
}

async fn workspace_scenario(h: &mut Harness, db: &str) -> anyhow::Result<Figures> {
    let mut f = Figures::new("org-resync-workspace", db);
    let owner = "user_rw_owner";
    let (org, bump) = h.seed_org(owner).await?;
    let token = h.user_token(owner)?;
    let mut units = Vec::new();
    for i in 1..=4 {
        let unit = h
            .orgs()
            .create_unit(bearer(
                org_api::CreateUnitRequest {
                    organization_id: org.clone(),
                    unit: Some(org_api::Unit {
                        name: format!("Unit {i}"),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &token,
            ))
            .await
            .context("CreateUnit")?
            .into_inner()
            .unit
            .ok_or_else(|| anyhow!("no unit"))?;
        units.push(unit.id);
    }
    let create = |name: &'static str, unit: String| {
        let (org, token, client) = (org.clone(), token.clone(), h.workspaces());
        async move {
            retry(|| {
                let mut client = client.clone();
                let req = bearer(
                    ws_api::CreateWorkspaceRequest {
                        organization_id: org.clone(),
                        workspace: Some(ws_api::Workspace {
                            name: name.into(),
                            unit_id: unit.clone(),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                    &token,
                );
                async move { client.create_workspace(req).await }
            })
            .await
            .context("CreateWorkspace")?
            .workspace
            .ok_or_else(|| anyhow!("no workspace"))
        }
    };
    let ws_a = create("ws-moved", units[0].clone()).await?.id;
    let ws_b = create("ws-archived", units[2].clone()).await?.id;
    let ws_c = create("ws-placed", String::new()).await?.id;
    let ws_db = h.database("workspace").await?;
    let outbox = Outbox::new(ws_db.clone(), Producer::Workspace);
    let org_db = h.database("organization").await?;
    wait_caught_up(&outbox, &org_db).await?;

    // Organization keeps serving (ORG-9: a move into a unit asks it whether the unit is the
    // organization's) but is cut off from the workspace stream, so its cursor stays behind.
    stop_organization(h).await?;
    h.set_env(
        Some("organization"),
        "ORGPLANE_WORKSPACE_URL",
        "http://127.0.0.1:9",
    );
    h.spawn("organization").await?;
    // Meanwhile: A moves from unit 1 to unit 2, B (in unit 3) is archived, C moves into unit 4,
    // and the newest event (the one compaction keeps) renames an unrelated workspace.
    let update = |id: String, name: &'static str, unit: Option<String>| {
        let (token, mut client) = (token.clone(), h.workspaces());
        let paths: &[&str] = if unit.is_some() {
            &["unit_id"]
        } else {
            &["name"]
        };
        let req = bearer(
            ws_api::UpdateWorkspaceRequest {
                workspace: Some(ws_api::Workspace {
                    id,
                    name: name.into(),
                    unit_id: unit.unwrap_or_default(),
                    ..Default::default()
                }),
                update_mask: mask(paths),
                etag: String::new(),
            },
            &token,
        );
        async move {
            client
                .update_workspace(req)
                .await
                .context("UpdateWorkspace")
        }
    };
    update(ws_a.clone(), "", Some(units[1].clone())).await?;
    h.workspaces()
        .archive_workspace(bearer(
            ws_api::ArchiveWorkspaceRequest {
                workspace_id: ws_b.clone(),
                etag: String::new(),
            },
            &token,
        ))
        .await
        .context("ArchiveWorkspace")?;
    update(ws_c.clone(), "", Some(units[3].clone())).await?;
    update(bump, "ws-renamed", None).await?;
    h.terminate("organization").await?;
    h.unset_env(Some("organization"), "ORGPLANE_WORKSPACE_URL");

    let (cursor, through) = compact_past_cursor(&outbox, &org_db).await?;
    h.spawn("organization").await?;
    let took = wait_caught_up(&outbox, &org_db).await?;
    f.notes = format!(
        "cursor {cursor} < compacted through {through}; caught up in {} ms",
        took.as_millis()
    );

    let expected: BTreeMap<String, String> = [
        (ws_a, units[1].clone()),
        (ws_b, units[2].clone()),
        (ws_c, units[3].clone()),
    ]
    .into_iter()
    .collect();
    let stored = placements(&org_db, &org).await?;
    check(
        &mut f,
        stored == expected,
        format!("unit placements {stored:?}, expected {expected:?}"),
    );
    // ORG-9 as callers see it: units 2, 3 (an archived workspace still counts) and 4 hold a
    // workspace; unit 1, emptied meanwhile, can go.
    for (i, unit) in units.iter().enumerate().skip(1) {
        let r = h
            .orgs()
            .delete_unit(bearer(
                org_api::DeleteUnitRequest {
                    unit_id: unit.clone(),
                    etag: String::new(),
                },
                &token,
            ))
            .await;
        check(
            &mut f,
            r.as_ref().is_err_and(|s| {
                orgplane_platform::error::reason_of(s).as_deref() == Some("UNIT_HAS_WORKSPACES")
            }),
            format!("DeleteUnit of unit {} holding a workspace: {r:?}", i + 1),
        );
    }
    let r = h
        .orgs()
        .delete_unit(bearer(
            org_api::DeleteUnitRequest {
                unit_id: units[0].clone(),
                etag: String::new(),
            },
            &token,
        ))
        .await;
    check(
        &mut f,
        r.is_ok(),
        format!("DeleteUnit of unit 1, emptied meanwhile: {r:?}"),
    );
    check_one_resync(h, &mut f, "workspace").await;
    Ok(f)
}
