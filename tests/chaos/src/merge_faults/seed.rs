//! The two organizations of the merge scenario: a prime P and a candidate C, both owned by one
//! user, with members (some of both), units, workspaces with direct members (one archived), an
//! account with a subaccount, API keys and usage whose idempotency keys overlap between P and C.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::identity::v1 as id_api;
use orgplane_proto::organization::v1::{self as org_api, OrgRole};
use orgplane_proto::workspace::v1 as ws_api;

use super::MergeSize;
use crate::harness::{Harness, bearer, retry};

/// The models of the harness's (default) price table.
const MODELS: [&str; 3] = ["orgmodel-small-1", "orgmodel-medium-1", "orgmodel-large-2"];

/// Roles of members of both organizations: (in P, in C). The higher one is kept.
const BOTH: [(OrgRole, OrgRole); 4] = [
    (OrgRole::Developer, OrgRole::Admin),
    (OrgRole::Admin, OrgRole::User),
    (OrgRole::User, OrgRole::Billing),
    (OrgRole::Billing, OrgRole::Developer),
];

/// An API key: id, secret, workspace (empty: none).
#[derive(Debug, Clone)]
pub struct Key {
    /// `key_…`.
    pub id: String,
    /// The secret (to authenticate with).
    pub secret: String,
    /// The workspace it is bound to; empty for an admin key.
    pub workspace_id: String,
}

/// What [`seed`] created.
#[derive(Debug, Clone, Default)]
pub struct Seeded {
    /// The OWNER of both.
    pub owner: String,
    /// The prime.
    pub prime: String,
    /// The candidate.
    pub candidate: String,
    /// Members of C other than the OWNER, with their role in C.
    pub c_members: Vec<(String, OrgRole)>,
    /// Members of C with the role USER only there (former plain members, for the leak checks).
    pub c_plain: Vec<String>,
    /// A user of no organization.
    pub outsider: String,
    /// C's workspaces (the last one archived).
    pub c_workspaces: Vec<String>,
    /// C's API keys: an admin key first, then workspace keys.
    pub c_keys: Vec<Key>,
    /// C's account and its subaccount.
    pub c_accounts: (String, String),
    /// The organization service's revision after the seeding.
    pub revision: i64,
    /// Usage records accepted per organization (P, C).
    pub records: (usize, usize),
}

/// Seeds P and C (see the module documentation). The prime's domain is verified last.
pub async fn seed(h: &Harness, size: &MergeSize) -> anyhow::Result<Seeded> {
    let owner = "user_mf_owner".to_owned();
    let (prime, _) = h.seed_org(&owner).await?;
    let token = h.user_token(&owner)?;
    let created = h
        .orgs()
        .create_organization(bearer(
            org_api::CreateOrganizationRequest {
                organization: Some(org_api::Organization {
                    name: "Candidate".into(),
                    r#type: org_api::OrganizationType::Company as i32,
                    primary_email: format!("{owner}@chaos.test"),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .context("CreateOrganization (candidate)")?
        .into_inner();
    let candidate = created
        .organization
        .ok_or_else(|| anyhow!("no organization"))?
        .id;
    let mut revision = created.revision;
    let outsider = "user_mf_outsider".to_owned();
    h.seed_user(&outsider, &format!("{outsider}@elsewhere.test"))
        .await?;

    // Members: C's own, and a few of both with different roles.
    let mut c_members = Vec::new();
    let mut c_plain = Vec::new();
    let mut joins: Vec<(String, String, OrgRole, bool)> = Vec::new();
    for i in 0..size.members {
        let user = format!("user_mf_c_{i:04}");
        let role = match i % 10 {
            0 => OrgRole::Admin,
            1 => OrgRole::Billing,
            2..=4 => OrgRole::Developer,
            _ => OrgRole::User,
        };
        if role == OrgRole::User {
            c_plain.push(user.clone());
        }
        c_members.push((user.clone(), role));
        joins.push((candidate.clone(), user, role, true));
    }
    for (i, (p_role, c_role)) in BOTH.iter().enumerate() {
        let user = format!("user_mf_both_{i}");
        joins.push((prime.clone(), user.clone(), *p_role, true));
        c_members.push((user.clone(), *c_role));
    }
    for i in 0..3 {
        joins.push((
            prime.clone(),
            format!("user_mf_p_{i}"),
            OrgRole::Developer,
            true,
        ));
    }
    revision = revision.max(join_all(h, &owner, joins).await?);
    let both: Vec<_> = BOTH
        .iter()
        .enumerate()
        .map(|(i, (_, c_role))| {
            (
                candidate.clone(),
                format!("user_mf_both_{i}"),
                *c_role,
                false,
            )
        })
        .collect();
    revision = revision.max(join_all(h, &owner, both).await?);

    // Units: two top-level units in C with a child each; one in P.
    let mut c_units = Vec::new();
    for i in 0..2 {
        let top = create_unit(h, &token, &candidate, &format!("c-unit-{i}"), "").await?;
        let child = create_unit(h, &token, &candidate, &format!("c-unit-{i}-a"), &top).await?;
        c_units.push(top);
        c_units.push(child);
    }
    create_unit(h, &token, &prime, "p-unit", "").await?;

    // Workspaces in C, half of them in a unit, with direct members (DEVELOPER or USER in C).
    let eligible: Vec<&String> = c_members
        .iter()
        .filter(|(u, r)| {
            matches!(r, OrgRole::Developer | OrgRole::User) && u.starts_with("user_mf_c_")
        })
        .map(|(u, _)| u)
        .collect();
    let mut c_workspaces = Vec::new();
    for i in 0..size.workspaces {
        let unit = if i % 2 == 0 {
            c_units[i % c_units.len()].clone()
        } else {
            String::new()
        };
        let ws = retry(|| async {
            let mut req = bearer(
                ws_api::CreateWorkspaceRequest {
                    organization_id: candidate.clone(),
                    workspace: Some(ws_api::Workspace {
                        name: format!("c-ws-{i:03}"),
                        unit_id: unit.clone(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &token,
            );
            req.metadata_mut()
                .insert("x-min-organization-revision", revision.into());
            h.workspaces().create_workspace(req).await
        })
        .await
        .with_context(|| format!("CreateWorkspace c-ws-{i:03}"))?;
        c_workspaces.push(ws.workspace.unwrap_or_default().id);
    }
    let roles = [
        ws_api::WorkspaceRole::Admin,
        ws_api::WorkspaceRole::Developer,
        ws_api::WorkspaceRole::User,
    ];
    let mut adds = Vec::new();
    for (w, ws) in c_workspaces.iter().enumerate() {
        for k in 0..size.direct_members {
            let user = eligible[(w * 7 + k * 13) % eligible.len()].clone();
            adds.push((ws.clone(), user, roles[(w + k) % roles.len()]));
        }
    }
    adds.sort();
    adds.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(adds)
        .map(|(ws, user, role)| {
            let token = token.clone();
            async move {
                retry(|| async {
                    let mut req = bearer(
                        ws_api::AddWorkspaceMemberRequest {
                            workspace_id: ws.clone(),
                            user_id: user.clone(),
                            role: role as i32,
                            request_id: String::new(),
                        },
                        &token,
                    );
                    req.metadata_mut()
                        .insert("x-min-organization-revision", revision.into());
                    h.workspaces().add_workspace_member(req).await
                })
                .await
                .map(|_| ())
                .map_err(|s| anyhow!("AddWorkspaceMember {user} to {ws}: {s:?}"))
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    // API keys: an admin key of C, a key of each of the first workspaces, an admin key of P.
    use crate::security::create_api_key_full;
    use id_api::ApiKeyKind;
    let key = |r: id_api::CreateApiKeyResponse| {
        let k = r.api_key.unwrap_or_default();
        Key {
            id: k.id,
            secret: r.secret,
            workspace_id: k.workspace_id,
        }
    };
    let mut c_keys = vec![key(create_api_key_full(
        h,
        &owner,
        &candidate,
        None,
        ApiKeyKind::Admin,
    )
    .await?)];
    for ws in c_workspaces.iter().take(size.workspace_keys) {
        c_keys.push(key(create_api_key_full(
            h,
            &owner,
            &candidate,
            Some(ws),
            ApiKeyKind::Workspace,
        )
        .await?));
    }
    create_api_key_full(h, &owner, &prime, None, ApiKeyKind::Admin).await?;

    // An account with a subaccount in C, named by some of C's usage.
    let account = crate::accounts::create(h, &candidate, &token, "Merged account", "").await?;
    let subaccount =
        crate::accounts::create_subaccount(h, &account, &token, "Merged subaccount").await?;

    // Usage: keys u-0 … in C, u-(n/2) … in P (half of them in both).
    let n = size.usage_records;
    let p_ws = h
        .workspaces()
        .list_workspaces(bearer(
            ws_api::ListWorkspacesRequest {
                organization_id: prime.clone(),
                page_size: 10,
                ..Default::default()
            },
            &token,
        ))
        .await?
        .into_inner()
        .workspaces
        .first()
        .map(|w| w.id.clone())
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let record = |org: &str, i: usize, ws: String, key: String, account: String, user: String| {
        let x = (i as i64).wrapping_mul(2_654_435_761) & 0xFFFF_FFFF;
        bill_api::UsageRecord {
            organization_id: org.into(),
            workspace_id: ws,
            api_key_id: key,
            user_id: user,
            model: MODELS[i % MODELS.len()].into(),
            input_tokens: 1 + x % 9_973,
            output_tokens: x % 2_011,
            usage_time: Some(prost_types::Timestamp {
                seconds: now - 120 - (x % (2 * 86_400)),
                nanos: 0,
            }),
            idempotency_key: format!("u-{i}"),
            account_id: account,
        }
    };
    let mut p_records = Vec::new();
    let mut c_records = Vec::new();
    for i in 0..n {
        let j = i + n / 2;
        let ws = if j.is_multiple_of(3) {
            p_ws.clone()
        } else {
            String::new()
        };
        p_records.push(record(
            &prime,
            j,
            ws,
            String::new(),
            String::new(),
            owner.clone(),
        ));
        // C: a third in the Default Workspace, the rest in its active workspaces.
        let active = &c_workspaces[..c_workspaces.len().saturating_sub(1).max(1)];
        let (ws, key) = if i % 3 == 0 {
            (String::new(), c_keys[0].id.clone())
        } else {
            let ws = active[i % active.len()].clone();
            let key = c_keys
                .iter()
                .find(|k| k.workspace_id == ws)
                .map(|k| k.id.clone())
                .unwrap_or_default();
            (ws, key)
        };
        let acct = match i % 11 {
            0 => account.clone(),
            1 => subaccount.clone(),
            _ => String::new(),
        };
        let user = c_members[i % c_members.len()].0.clone();
        c_records.push(record(&candidate, i, ws, key, acct, user));
    }
    let accepted_p = record_usage(h, p_records, revision).await?;
    let accepted_c = record_usage(h, c_records, revision).await?;

    // Archive C's last workspace (its members and usage move all the same).
    if let Some(last) = c_workspaces.last() {
        retry(|| async {
            h.workspaces()
                .archive_workspace(bearer(
                    ws_api::ArchiveWorkspaceRequest {
                        workspace_id: last.clone(),
                        etag: String::new(),
                    },
                    &token,
                ))
                .await
        })
        .await
        .context("ArchiveWorkspace")?;
    }

    // Last: P's domain chaos.test (the OWNER's email domain) VERIFIED.
    crate::accounts::verified_domain(h, &prime, &token, "chaos.test").await?;
    Ok(Seeded {
        owner,
        prime,
        candidate,
        c_members,
        c_plain,
        outsider,
        c_workspaces,
        c_keys,
        c_accounts: (account, subaccount),
        revision,
        records: (accepted_p, accepted_c),
    })
}

/// Seeds each new user (the fourth field) and makes them members (invite and acceptance), eight
/// at a time; answers the highest revision acknowledged.
async fn join_all(
    h: &Harness,
    owner: &str,
    joins: Vec<(String, String, OrgRole, bool)>,
) -> anyhow::Result<i64> {
    let results: Vec<anyhow::Result<i64>> = futures::stream::iter(joins)
        .map(|(org, user, role, new)| async move {
            if new {
                h.seed_user(&user, &format!("{user}@chaos.test")).await?;
            }
            join(h, owner, &org, &user, role).await
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut max = 0;
    for r in results {
        max = max.max(r?);
    }
    Ok(max)
}

/// Invites `user` (seeded) to `org` with `role` and accepts; answers the revision.
async fn join(
    h: &Harness,
    owner: &str,
    org: &str,
    user: &str,
    role: OrgRole,
) -> anyhow::Result<i64> {
    let token = h.user_token(owner)?;
    let invite = retry(|| async {
        h.orgs()
            .create_invite(bearer(
                org_api::CreateInviteRequest {
                    organization_id: org.into(),
                    invite: Some(org_api::Invite {
                        email: format!("{user}@chaos.test"),
                        role: role as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &token,
            ))
            .await
    })
    .await
    .with_context(|| format!("CreateInvite {user}"))?
    .invite
    .ok_or_else(|| anyhow!("no invite"))?;
    let user_token = h.user_token(user)?;
    let accepted = retry(|| async {
        h.orgs()
            .accept_invite(bearer(
                org_api::AcceptInviteRequest {
                    invite_id: invite.id.clone(),
                },
                &user_token,
            ))
            .await
    })
    .await
    .with_context(|| format!("AcceptInvite {user}"))?;
    Ok(accepted.revision)
}

async fn create_unit(
    h: &Harness,
    token: &str,
    org: &str,
    name: &str,
    parent: &str,
) -> anyhow::Result<String> {
    let unit = retry(|| async {
        h.orgs()
            .create_unit(bearer(
                org_api::CreateUnitRequest {
                    organization_id: org.into(),
                    unit: Some(org_api::Unit {
                        name: name.into(),
                        parent_unit_id: parent.into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                token,
            ))
            .await
    })
    .await
    .with_context(|| format!("CreateUnit {name}"))?;
    Ok(unit.unit.unwrap_or_default().id)
}

/// Records `records` in batches of 1,000 as the product backend, sending again the ones refused
/// because billing has not learnt of their organization or account yet (for up to 30 s).
/// Answers how many were accepted (each exactly once).
pub async fn record_usage(
    h: &Harness,
    records: Vec<bill_api::UsageRecord>,
    revision: i64,
) -> anyhow::Result<usize> {
    let token = h.product_token()?;
    let start = Instant::now();
    let mut pending = records;
    let mut accepted = 0;
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    while !pending.is_empty() {
        let mut again = Vec::new();
        refused.clear();
        for batch in pending.chunks(1000) {
            let results = retry(|| async {
                let mut req = bearer(
                    bill_api::RecordUsageRequest {
                        records: batch.to_vec(),
                    },
                    &token,
                );
                req.metadata_mut()
                    .insert("x-min-organization-revision", revision.into());
                h.billing().record_usage(req).await
            })
            .await
            .context("RecordUsage")?
            .results;
            for (r, rec) in results.iter().zip(batch) {
                use bill_api::UsageRecordStatus as S;
                match S::try_from(r.status) {
                    Ok(S::Accepted) => accepted += 1,
                    // A batch retried after a failed call: already counted.
                    Ok(S::Duplicate) => accepted += 1,
                    _ if matches!(
                        r.reason.as_str(),
                        "ORGANIZATION_NOT_FOUND" | "ACCOUNT_NOT_FOUND"
                    ) =>
                    {
                        *refused.entry(r.reason.clone()).or_default() += 1;
                        again.push(rec.clone());
                    }
                    _ => bail!("usage record {} refused: {}", rec.idempotency_key, r.reason),
                }
            }
        }
        if !again.is_empty() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("usage still refused after 30 s: {refused:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pending = again;
    }
    Ok(accepted)
}
