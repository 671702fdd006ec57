//! Idempotency and concurrency.
//!
//! - *The same `request_id` sent 100 times concurrently* to every Create RPC that takes one
//!   (CreateOrganization, CreateInvite, CreateUnit, CreateWorkspace, AddWorkspaceMember,
//!   CreateApiKey, SignUp) has exactly one effect: one row, one success audit record, the
//!   expected number of outbox events. AIP-155 (and the design's API rules: "a retried request
//!   with the same id returns the first result instead of creating twice") makes the answer to
//!   every duplicate the first call's result: all 100 return the same resource. A duplicate that
//!   arrives while the first is in flight may be told ABORTED (retry) — a client retries it, and
//!   that retry must then return the same resource; any other refusal (ALREADY_EXISTS "name
//!   taken" caused by the request's own first copy, …) is a violation.
//! - *Concurrent updates with the same etag* (UpdateOrganization, UpdateMemberRole, UpdateUnit,
//!   UpdateWorkspace, UpdateWorkspaceMember, UpdateBillingAccount, UpdateApiKey, UpdateUser):
//!   exactly one succeeds, every other is ABORTED, one success audit record is written and the
//!   resource ends with the winner's value.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::identity::v1 as id_api;
use orgplane_proto::organization::v1::{self as org_api, OrgRole};
use orgplane_proto::workspace::v1 as ws_api;
use sea_orm::DatabaseConnection;
use tonic::{Code, Status};

use crate::Figures;
use crate::harness::{Harness, bearer, mask, retry};
use crate::watch::scalar;

/// Copies of each create request.
pub const DUPLICATES: usize = 100;
/// Concurrent updates with the same etag.
pub const CONTENDERS: usize = 50;

type Outcome = Result<String, Status>;

/// Refusals that are correct answers to a duplicate: (RPC, ErrorInfo reason). CreateApiKey's
/// secret is shown once only, so a repeat gets ALREADY_EXISTS `SECRET_ALREADY_RETURNED` naming
/// the key it created (a clear, final answer that refers to the one effect); SignUp throttles
/// a burst from one source (`RATE_LIMITED`: nothing happens, the client retries later).
const CORRECT_REFUSALS: &[(&str, &str)] = &[
    ("CreateApiKey", "SECRET_ALREADY_RETURNED"),
    ("SignUp", "RATE_LIMITED"),
];

/// Runs both halves on a fresh setup.
pub async fn run(bin: &Path, postgres: Option<&str>) -> anyhow::Result<Vec<Figures>> {
    let db = crate::db_label(postgres);
    let h = Harness::start(bin, postgres).await?;
    let result = scenario(&h, db).await;
    h.stop().await?;
    result
}

/// Sends `n` calls at once (each on its own task) and collects their outcomes.
async fn burst<F, Fut>(n: usize, call: F) -> Vec<Outcome>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(call(i))).collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(
            t.await
                .unwrap_or_else(|e| Err(Status::internal(e.to_string()))),
        );
    }
    out
}

fn describe(s: &Status) -> String {
    let reason = orgplane_platform::error::reason_of(s).unwrap_or_default();
    format!("{:?} {reason}", s.code())
}

/// Tallies of one create burst.
struct Create<'a> {
    rpc: &'a str,
    /// Rows the burst created (must be 1).
    rows: i64,
    /// Success audit records it added (must be 1).
    audits: i64,
    /// Outbox events it added, and how many one create appends.
    events: (i64, i64),
}

/// Checks a create burst whose ABORTED answers were retried by `again` (as a client would).
async fn check_create<F, Fut>(
    f: &mut Figures,
    notes: &mut Vec<String>,
    outcomes: Vec<Outcome>,
    again: F,
    tally: Create<'_>,
) where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let rpc = tally.rpc;
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut refused: HashMap<String, usize> = HashMap::new();
    let mut answered: HashMap<String, usize> = HashMap::new();
    let mut retried = 0;
    for (i, o) in outcomes.into_iter().enumerate() {
        let mut o = o;
        let mut attempts = 0;
        while let Err(s) = &o
            && s.code() == Code::Aborted
            && attempts < 20
        {
            attempts += 1;
            retried += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            o = again(i).await;
        }
        match o {
            Ok(id) => *ids.entry(id).or_default() += 1,
            Err(s) => {
                let reason = orgplane_platform::error::reason_of(&s).unwrap_or_default();
                let table = if CORRECT_REFUSALS.contains(&(rpc, reason.as_str())) {
                    &mut answered
                } else {
                    &mut refused
                };
                *table.entry(describe(&s)).or_default() += 1;
            }
        }
    }
    f.operations += DUPLICATES as u64;
    if ids.len() > 1 {
        f.failures.push(format!(
            "{rpc}: {} different resources for one request_id",
            ids.len()
        ));
    }
    if !refused.is_empty() {
        f.failures.push(format!(
            "{rpc}: duplicates refused instead of answered with the first result: {refused:?}"
        ));
    }
    if tally.rows == 0 {
        f.lost += 1;
    }
    f.applied_twice += (tally.rows - 1).max(0) as u64;
    if tally.audits != 1 {
        f.failures
            .push(format!("{rpc}: {} success audit records", tally.audits));
    }
    let (events, per_create) = tally.events;
    if events != per_create {
        f.failures.push(format!(
            "{rpc}: {events} outbox events (one create appends {per_create})"
        ));
    }
    let mut extra = String::new();
    if retried > 0 {
        extra += &format!(" ({retried} ABORTED retried)");
    }
    if !answered.is_empty() {
        extra += &format!(" {answered:?}");
    }
    notes.push(format!(
        "{rpc}: {} ok/{} rows/{} audit/{events} ev{extra}",
        ids.values().sum::<usize>(),
        tally.rows,
        tally.audits,
    ));
}

/// Checks an etag race: one winner, the rest ABORTED, one audit record, the winner's value kept.
fn check_one_winner(
    f: &mut Figures,
    notes: &mut Vec<String>,
    rpc: &str,
    outcomes: &[Outcome],
    audits: i64,
    value: &str,
) {
    f.operations += outcomes.len() as u64;
    let winners: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let mut other: HashMap<String, usize> = HashMap::new();
    for s in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        if s.code() != Code::Aborted {
            *other.entry(describe(s)).or_default() += 1;
        }
    }
    if winners.len() != 1 {
        f.failures.push(format!(
            "{rpc}: {} winners with the same etag",
            winners.len()
        ));
        f.applied_twice += winners.len().saturating_sub(1) as u64;
    }
    if !other.is_empty() {
        f.failures
            .push(format!("{rpc}: losers not ABORTED: {other:?}"));
    }
    if audits != 1 {
        f.failures
            .push(format!("{rpc}: {audits} success audit records"));
    }
    if let [w] = winners.as_slice()
        && w.as_str() != value
    {
        f.failures.push(format!(
            "{rpc}: the winner set {w:?} but {value:?} is stored"
        ));
    }
    notes.push(format!(
        "{rpc}: {} won/{} ABORTED",
        winners.len(),
        outcomes.len() - winners.len() - other.values().sum::<usize>()
    ));
}

async fn count(conn: &DatabaseConnection, sql: String) -> anyhow::Result<i64> {
    scalar(conn, &sql).await
}

async fn audits(conn: &DatabaseConnection, action: &str) -> anyhow::Result<i64> {
    count(
        conn,
        format!("SELECT COUNT(*) FROM audit_log WHERE action = '{action}' AND outcome = 1"),
    )
    .await
}

async fn head(conn: &DatabaseConnection) -> anyhow::Result<i64> {
    count(conn, "SELECT revision FROM outbox_head".into()).await
}

fn with_min_revision<T>(mut req: tonic::Request<T>, revision: i64) -> tonic::Request<T> {
    req.metadata_mut()
        .insert("x-min-organization-revision", revision.into());
    req
}

async fn scenario(h: &Harness, db: &str) -> anyhow::Result<Vec<Figures>> {
    let owner = "user_conc_owner";
    let (org, ws) = h.seed_org(owner).await?;
    let member = "user_conc_member";
    let revision = h
        .add_member(owner, &org, member, OrgRole::Developer)
        .await?;
    let token = h.user_token(owner)?;
    let org_db = h.database("organization").await?;
    let ws_db = h.database("workspace").await?;
    let bill_db = h.database("billing-access").await?;
    let id_db = h.identity_db()?.clone();
    let started = Instant::now();

    let mut f = Figures::new("idempotent-create", db);
    let mut notes = Vec::new();

    // CreateOrganization.
    {
        let rid = uuid::Uuid::new_v4().to_string();
        let name = "Concurrent Org";
        let call = |_| {
            let (mut c, rid, token) = (h.orgs(), rid.clone(), token.clone());
            async move {
                c.create_organization(bearer(
                    org_api::CreateOrganizationRequest {
                        organization: Some(org_api::Organization {
                            name: name.into(),
                            r#type: org_api::OrganizationType::Company as i32,
                            ..Default::default()
                        }),
                        request_id: rid,
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().organization.unwrap_or_default().id)
            }
        };
        let (a0, e0) = (
            audits(&org_db, "organization.create").await?,
            head(&org_db).await?,
        );
        let outcomes = burst(DUPLICATES, call).await;
        let tally = Create {
            rpc: "CreateOrganization",
            rows: count(
                &org_db,
                format!("SELECT COUNT(*) FROM organizations WHERE name = '{name}'"),
            )
            .await?,
            audits: audits(&org_db, "organization.create").await? - a0,
            events: (head(&org_db).await? - e0, 2),
        };
        check_create(&mut f, &mut notes, outcomes, call, tally).await;
    }

    // CreateInvite.
    {
        let rid = uuid::Uuid::new_v4().to_string();
        let email = "invitee-conc@chaos.test";
        let call = |_| {
            let (mut c, rid, token, org) = (h.orgs(), rid.clone(), token.clone(), org.clone());
            async move {
                c.create_invite(bearer(
                    org_api::CreateInviteRequest {
                        organization_id: org,
                        invite: Some(org_api::Invite {
                            email: email.into(),
                            role: OrgRole::User as i32,
                            ..Default::default()
                        }),
                        request_id: rid,
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().invite.unwrap_or_default().id)
            }
        };
        let a0 = audits(&org_db, "invite.create").await?;
        let e0 = head(&org_db).await?;
        let outcomes = burst(DUPLICATES, call).await;
        let tally = Create {
            rpc: "CreateInvite",
            rows: count(
                &org_db,
                format!("SELECT COUNT(*) FROM invites WHERE email = '{email}'"),
            )
            .await?,
            audits: audits(&org_db, "invite.create").await? - a0,
            events: (head(&org_db).await? - e0, 0),
        };
        check_create(&mut f, &mut notes, outcomes, call, tally).await;
    }

    // CreateUnit.
    let unit_id;
    {
        let rid = uuid::Uuid::new_v4().to_string();
        let name = "Concurrent Unit";
        let call = |_| {
            let (mut c, rid, token, org) = (h.orgs(), rid.clone(), token.clone(), org.clone());
            async move {
                c.create_unit(bearer(
                    org_api::CreateUnitRequest {
                        organization_id: org,
                        unit: Some(org_api::Unit {
                            name: name.into(),
                            ..Default::default()
                        }),
                        request_id: rid,
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().unit.unwrap_or_default().id)
            }
        };
        let a0 = audits(&org_db, "unit.create").await?;
        let e0 = head(&org_db).await?;
        let outcomes = burst(DUPLICATES, call).await;
        unit_id = outcomes
            .iter()
            .find_map(|o| o.as_ref().ok().cloned())
            .unwrap_or_default();
        let tally = Create {
            rpc: "CreateUnit",
            rows: count(
                &org_db,
                format!("SELECT COUNT(*) FROM units WHERE name = '{name}'"),
            )
            .await?,
            audits: audits(&org_db, "unit.create").await? - a0,
            events: (head(&org_db).await? - e0, 0),
        };
        check_create(&mut f, &mut notes, outcomes, call, tally).await;
    }

    // CreateWorkspace.
    {
        let rid = uuid::Uuid::new_v4().to_string();
        let name = "concurrent-ws";
        let call = |_| {
            let (mut c, rid, token, org) =
                (h.workspaces(), rid.clone(), token.clone(), org.clone());
            async move {
                c.create_workspace(bearer(
                    ws_api::CreateWorkspaceRequest {
                        organization_id: org,
                        workspace: Some(ws_api::Workspace {
                            name: name.into(),
                            ..Default::default()
                        }),
                        request_id: rid,
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().workspace.unwrap_or_default().id)
            }
        };
        let a0 = audits(&ws_db, "workspace.create").await?;
        let e0 = head(&ws_db).await?;
        let outcomes = burst(DUPLICATES, call).await;
        let tally = Create {
            rpc: "CreateWorkspace",
            rows: count(
                &ws_db,
                format!("SELECT COUNT(*) FROM workspaces WHERE name = '{name}'"),
            )
            .await?,
            audits: audits(&ws_db, "workspace.create").await? - a0,
            events: (head(&ws_db).await? - e0, 1),
        };
        check_create(&mut f, &mut notes, outcomes, call, tally).await;
    }

    // AddWorkspaceMember (the member must be known to the workspace service first).
    {
        let rid = uuid::Uuid::new_v4().to_string();
        let call = |_| {
            let (mut c, rid, token, ws) = (h.workspaces(), rid.clone(), token.clone(), ws.clone());
            async move {
                c.add_workspace_member(with_min_revision(
                    bearer(
                        ws_api::AddWorkspaceMemberRequest {
                            workspace_id: ws,
                            user_id: member.into(),
                            role: ws_api::WorkspaceRole::Developer as i32,
                            request_id: rid,
                        },
                        &token,
                    ),
                    revision,
                ))
                .await
                .map(|r| {
                    let m = r.into_inner().workspace_member.unwrap_or_default();
                    format!("{}/{}", m.workspace_id, m.user_id)
                })
            }
        };
        let a0 = audits(&ws_db, "workspace_member.add").await?;
        let e0 = head(&ws_db).await?;
        let outcomes = burst(DUPLICATES, call).await;
        let tally = Create {
            rpc: "AddWorkspaceMember",
            rows: count(
                &ws_db,
                format!(
                    "SELECT COUNT(*) FROM workspace_members WHERE workspace_id = '{ws}' AND user_id = '{member}'"
                ),
            )
            .await?,
            audits: audits(&ws_db, "workspace_member.add").await? - a0,
            events: (head(&ws_db).await? - e0, 0),
        };
        check_create(&mut f, &mut notes, outcomes, call, tally).await;
    }

    // CreateApiKey (identity learns the organization from its events: wait for it first).
    let key_id;
    {
        let identity =
            || id_api::identity_service_client::IdentityServiceClient::new(h.identity_channel());
        let waited = Instant::now();
        loop {
            let r = identity()
                .list_api_keys(bearer(
                    id_api::ListApiKeysRequest {
                        organization_id: org.clone(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await;
            if r.is_ok() || waited.elapsed() > Duration::from_secs(15) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rid = uuid::Uuid::new_v4().to_string();
        let name = "concurrent key";
        let call = |_| {
            let (mut c, rid, token, org) = (identity(), rid.clone(), token.clone(), org.clone());
            async move {
                c.create_api_key(bearer(
                    id_api::CreateApiKeyRequest {
                        organization_id: org,
                        api_key: Some(id_api::ApiKey {
                            kind: id_api::ApiKeyKind::Admin as i32,
                            name: name.into(),
                            ..Default::default()
                        }),
                        request_id: rid,
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().api_key.unwrap_or_default().id)
            }
        };
        let a0 = audits(&id_db, "api_key.create").await?;
        let e0 = head(&id_db).await?;
        let outcomes = burst(DUPLICATES, call).await;
        key_id = outcomes
            .iter()
            .find_map(|o| o.as_ref().ok().cloned())
            .unwrap_or_default();
        let tally = Create {
            rpc: "CreateApiKey",
            rows: count(
                &id_db,
                format!("SELECT COUNT(*) FROM api_keys WHERE name = '{name}'"),
            )
            .await?,
            audits: audits(&id_db, "api_key.create").await? - a0,
            events: (head(&id_db).await? - e0, 1),
        };
        check_create(&mut f, &mut notes, outcomes, call, tally).await;
    }

    // SignUp.
    {
        let rid = uuid::Uuid::new_v4().to_string();
        let email = "signup-conc@chaos.test";
        let call = |_| {
            let (mut c, rid) = (
                id_api::identity_service_client::IdentityServiceClient::new(h.identity_channel()),
                rid.clone(),
            );
            async move {
                c.sign_up(tonic::Request::new(id_api::SignUpRequest {
                    email: email.into(),
                    password: "correct horse battery staple 42".into(),
                    display_name: "Conc".into(),
                    account_type: id_api::AccountType::Business as i32,
                    request_id: rid,
                }))
                .await
                .map(|r| r.into_inner().user.unwrap_or_default().id)
            }
        };
        let a0 = audits(&id_db, "user.create").await?;
        let e0 = head(&id_db).await?;
        let outcomes = burst(DUPLICATES, call).await;
        let tally = Create {
            rpc: "SignUp",
            rows: count(
                &id_db,
                format!("SELECT COUNT(*) FROM users WHERE email = '{email}'"),
            )
            .await?,
            audits: audits(&id_db, "user.create").await? - a0,
            // UserProfileChanged: the organization service names members from it.
            events: (head(&id_db).await? - e0, 1),
        };
        check_create(&mut f, &mut notes, outcomes, call, tally).await;
    }
    f.notes = format!(
        "{DUPLICATES} copies each; {}; {:.1}s",
        notes.join(", "),
        started.elapsed().as_secs_f64()
    );

    // ------------------------------------------------------------------ etags
    let started = Instant::now();
    let mut g = Figures::new("etag-one-winner", db);
    let mut notes = Vec::new();

    // UpdateOrganization.
    {
        let etag = h
            .orgs()
            .get_organization(bearer(
                org_api::GetOrganizationRequest {
                    organization_id: org.clone(),
                },
                &token,
            ))
            .await?
            .into_inner()
            .organization
            .unwrap_or_default()
            .etag;
        let a0 = audits(&org_db, "organization.update").await?;
        let outcomes = burst(CONTENDERS, |i| {
            let (mut c, token, org, etag) = (h.orgs(), token.clone(), org.clone(), etag.clone());
            async move {
                let name = format!("Renamed Org {i}");
                c.update_organization(bearer(
                    org_api::UpdateOrganizationRequest {
                        organization: Some(org_api::Organization {
                            id: org,
                            name: name.clone(),
                            ..Default::default()
                        }),
                        update_mask: mask(&["name"]),
                        etag,
                    },
                    &token,
                ))
                .await
                .map(|_| name)
            }
        })
        .await;
        let now = h
            .orgs()
            .get_organization(bearer(
                org_api::GetOrganizationRequest {
                    organization_id: org.clone(),
                },
                &token,
            ))
            .await?
            .into_inner()
            .organization
            .unwrap_or_default()
            .name;
        let audits = audits(&org_db, "organization.update").await? - a0;
        check_one_winner(
            &mut g,
            &mut notes,
            "UpdateOrganization",
            &outcomes,
            audits,
            &now,
        );
    }

    // UpdateMemberRole.
    {
        let get = || async {
            h.orgs()
                .get_member(bearer(
                    org_api::GetMemberRequest {
                        organization_id: org.clone(),
                        user_id: member.into(),
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().member.unwrap_or_default())
        };
        let etag = get().await?.etag;
        // Every contender demotes DEVELOPER to USER (a role equal to the current one would be a
        // no-op answered OK without a write; USER keeps every workspace role assignable).
        let roles = [OrgRole::User];
        let a0 = audits(&org_db, "member.update_role").await?;
        let outcomes = burst(CONTENDERS, |i| {
            let (mut c, token, org, etag) = (h.orgs(), token.clone(), org.clone(), etag.clone());
            let role = roles[i % roles.len()];
            async move {
                c.update_member_role(bearer(
                    org_api::UpdateMemberRoleRequest {
                        organization_id: org,
                        user_id: member.into(),
                        role: role as i32,
                        etag,
                    },
                    &token,
                ))
                .await
                .map(|_| format!("{role:?}"))
            }
        })
        .await;
        let now = format!(
            "{:?}",
            OrgRole::try_from(get().await?.role).unwrap_or_default()
        );
        let audits = audits(&org_db, "member.update_role").await? - a0;
        check_one_winner(
            &mut g,
            &mut notes,
            "UpdateMemberRole",
            &outcomes,
            audits,
            &now,
        );
    }

    // UpdateUnit.
    {
        let get = || async {
            h.orgs()
                .get_unit(bearer(
                    org_api::GetUnitRequest {
                        unit_id: unit_id.clone(),
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().unit.unwrap_or_default())
        };
        let etag = get().await?.etag;
        let a0 = audits(&org_db, "unit.update").await?;
        let outcomes = burst(CONTENDERS, |i| {
            let (mut c, token, unit, etag) =
                (h.orgs(), token.clone(), unit_id.clone(), etag.clone());
            async move {
                let name = format!("Unit {i}");
                c.update_unit(bearer(
                    org_api::UpdateUnitRequest {
                        unit: Some(org_api::Unit {
                            id: unit,
                            name: name.clone(),
                            ..Default::default()
                        }),
                        update_mask: mask(&["name"]),
                        etag,
                    },
                    &token,
                ))
                .await
                .map(|_| name)
            }
        })
        .await;
        let now = get().await?.name;
        let audits = audits(&org_db, "unit.update").await? - a0;
        check_one_winner(&mut g, &mut notes, "UpdateUnit", &outcomes, audits, &now);
    }

    // UpdateWorkspace.
    {
        let get = || async {
            h.workspaces()
                .get_workspace(bearer(
                    ws_api::GetWorkspaceRequest {
                        workspace_id: ws.clone(),
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().workspace.unwrap_or_default())
        };
        let etag = get().await?.etag;
        let a0 = audits(&ws_db, "workspace.update").await?;
        let outcomes = burst(CONTENDERS, |i| {
            let (mut c, token, ws, etag) =
                (h.workspaces(), token.clone(), ws.clone(), etag.clone());
            async move {
                let name = format!("ws-renamed-{i}");
                c.update_workspace(bearer(
                    ws_api::UpdateWorkspaceRequest {
                        workspace: Some(ws_api::Workspace {
                            id: ws,
                            name: name.clone(),
                            ..Default::default()
                        }),
                        update_mask: mask(&["name"]),
                        etag,
                    },
                    &token,
                ))
                .await
                .map(|_| name)
            }
        })
        .await;
        let now = get().await?.name;
        let audits = audits(&ws_db, "workspace.update").await? - a0;
        check_one_winner(
            &mut g,
            &mut notes,
            "UpdateWorkspace",
            &outcomes,
            audits,
            &now,
        );
    }

    // UpdateWorkspaceMember (the member added above; after UpdateMemberRole, wait for the
    // workspace service to see the member's current organization role).
    {
        let org_revision = count(&org_db, "SELECT revision FROM outbox_head".into()).await?;
        let get = || async {
            retry(|| async {
                h.workspaces()
                    .get_workspace_member(with_min_revision(
                        bearer(
                            ws_api::GetWorkspaceMemberRequest {
                                workspace_id: ws.clone(),
                                user_id: member.into(),
                            },
                            &token,
                        ),
                        org_revision,
                    ))
                    .await
            })
            .await
            .map(|r| r.workspace_member.unwrap_or_default())
        };
        let etag = get().await?.etag;
        let roles = [
            ws_api::WorkspaceRole::Admin,
            ws_api::WorkspaceRole::Developer,
            ws_api::WorkspaceRole::User,
        ];
        let a0 = audits(&ws_db, "workspace_member.update").await?;
        let outcomes = burst(CONTENDERS, |i| {
            let (mut c, token, ws, etag) =
                (h.workspaces(), token.clone(), ws.clone(), etag.clone());
            let role = roles[i % roles.len()];
            async move {
                c.update_workspace_member(bearer(
                    ws_api::UpdateWorkspaceMemberRequest {
                        workspace_member: Some(ws_api::WorkspaceMember {
                            workspace_id: ws,
                            user_id: member.into(),
                            role: role as i32,
                            ..Default::default()
                        }),
                        update_mask: mask(&["role"]),
                        etag,
                    },
                    &token,
                ))
                .await
                .map(|_| format!("{role:?}"))
            }
        })
        .await;
        let now = format!(
            "{:?}",
            ws_api::WorkspaceRole::try_from(get().await?.assigned_role).unwrap_or_default()
        );
        let audits = audits(&ws_db, "workspace_member.update").await? - a0;
        check_one_winner(
            &mut g,
            &mut notes,
            "UpdateWorkspaceMember",
            &outcomes,
            audits,
            &now,
        );
    }

    // UpdateBillingAccount.
    {
        let get = || async {
            retry(|| async {
                h.billing()
                    .get_billing_account(bearer(
                        bill_api::GetBillingAccountRequest {
                            organization_id: org.clone(),
                        },
                        &token,
                    ))
                    .await
            })
            .await
            .map(|r| r.billing_account.unwrap_or_default())
        };
        let etag = get().await?.etag;
        let a0 = audits(&bill_db, "billing_account.update").await?;
        let outcomes = burst(CONTENDERS, |i| {
            let (mut c, token, org, etag) = (h.billing(), token.clone(), org.clone(), etag.clone());
            async move {
                let seats = i as i32 + 2;
                c.update_billing_account(bearer(
                    bill_api::UpdateBillingAccountRequest {
                        billing_account: Some(bill_api::BillingAccount {
                            organization_id: org,
                            seats,
                            ..Default::default()
                        }),
                        update_mask: mask(&["seats"]),
                        etag,
                    },
                    &token,
                ))
                .await
                .map(|_| seats.to_string())
            }
        })
        .await;
        let now = get().await?.seats.to_string();
        let audits = audits(&bill_db, "billing_account.update").await? - a0;
        check_one_winner(
            &mut g,
            &mut notes,
            "UpdateBillingAccount",
            &outcomes,
            audits,
            &now,
        );
    }

    // UpdateApiKey.
    if !key_id.is_empty() {
        let identity =
            || id_api::identity_service_client::IdentityServiceClient::new(h.identity_channel());
        let get = || async {
            identity()
                .get_api_key(bearer(
                    id_api::GetApiKeyRequest {
                        api_key_id: key_id.clone(),
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().api_key.unwrap_or_default())
        };
        let etag = get().await?.etag;
        let a0 = audits(&id_db, "api_key.update").await?;
        let outcomes = burst(CONTENDERS, |i| {
            let (mut c, token, key, etag) =
                (identity(), token.clone(), key_id.clone(), etag.clone());
            async move {
                let name = format!("key {i}");
                c.update_api_key(bearer(
                    id_api::UpdateApiKeyRequest {
                        api_key: Some(id_api::ApiKey {
                            id: key,
                            name: name.clone(),
                            ..Default::default()
                        }),
                        update_mask: mask(&["name"]),
                        etag,
                    },
                    &token,
                ))
                .await
                .map(|_| name)
            }
        })
        .await;
        let now = get().await?.name;
        let audits = audits(&id_db, "api_key.update").await? - a0;
        check_one_winner(&mut g, &mut notes, "UpdateApiKey", &outcomes, audits, &now);
    } else {
        g.failures
            .push("UpdateApiKey: no key to update (CreateApiKey failed)".into());
    }

    // UpdateUser.
    {
        let identity =
            || id_api::identity_service_client::IdentityServiceClient::new(h.identity_channel());
        let get = || async {
            identity()
                .get_user(bearer(
                    id_api::GetUserRequest {
                        user_id: owner.into(),
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().user.unwrap_or_default())
        };
        let etag = get().await?.etag;
        let a0 = audits(&id_db, "user.update").await?;
        let outcomes = burst(CONTENDERS, |i| {
            let (mut c, token, etag) = (identity(), token.clone(), etag.clone());
            async move {
                let name = format!("Owner {i}");
                c.update_user(bearer(
                    id_api::UpdateUserRequest {
                        user: Some(id_api::User {
                            id: owner.into(),
                            display_name: name.clone(),
                            ..Default::default()
                        }),
                        update_mask: mask(&["display_name"]),
                        etag,
                    },
                    &token,
                ))
                .await
                .map(|_| name)
            }
        })
        .await;
        let now = get().await?.display_name;
        let audits = audits(&id_db, "user.update").await? - a0;
        check_one_winner(&mut g, &mut notes, "UpdateUser", &outcomes, audits, &now);
    }
    g.notes = format!(
        "{CONTENDERS} contenders each; {}; {:.1}s",
        notes.join(", "),
        started.elapsed().as_secs_f64()
    );

    for c in [org_db, ws_db, bill_db] {
        let _ = c.close().await;
    }
    Ok(vec![f, g])
}
