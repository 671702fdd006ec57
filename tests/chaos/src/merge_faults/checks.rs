//! The checks beyond the prime's lists and reports: the candidate's API keys authenticate as keys
//! of the prime and work there; nothing of the candidate is readable; the killed consumers'
//! databases hold nothing of the candidate and the prime's members exactly once.

use std::collections::HashMap;

use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::identity::v1 as id_api;
use orgplane_proto::organization::v1 as org_api;
use orgplane_proto::workspace::v1 as ws_api;
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use super::observe::range;
use super::seed::Seeded;
use crate::Figures;
use crate::harness::{Harness, bearer, retry};

/// Each of the candidate's keys authenticates as a key of the prime (same workspace), and its
/// admin key lists the prime's workspaces in the workspace service (whose key replica moved)
/// and is refused the candidate's.
pub async fn keys(
    h: &Harness,
    s: &Seeded,
    workspaces: usize,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let service = h.service_token("workspace")?;
    for k in &s.c_keys {
        let r = retry(|| async {
            h.identity_client()
                .authenticate_api_key(bearer(
                    id_api::AuthenticateApiKeyRequest {
                        key: k.secret.clone(),
                    },
                    &service,
                ))
                .await
        })
        .await;
        match r.map(|r| r.api_key.unwrap_or_default()) {
            Ok(a) if a.organization_id == s.prime && a.workspace_id == k.workspace_id => {}
            Ok(a) => f.failures.push(format!(
                "key {} authenticates in {:?} / workspace {:?}",
                k.id, a.organization_id, a.workspace_id
            )),
            Err(e) => f
                .failures
                .push(format!("key {} no longer authenticates: {e:?}", k.id)),
        }
    }
    let admin = &s.c_keys[0].secret;
    let list = |org: String| async move {
        h.workspaces()
            .list_workspaces(crate::attacks::keyed(
                ws_api::ListWorkspacesRequest {
                    organization_id: org,
                    page_size: 1000,
                    include_archived: true,
                    ..Default::default()
                },
                admin,
            ))
            .await
    };
    match list(s.prime.clone()).await {
        Ok(r) if r.get_ref().workspaces.len() == workspaces => {}
        Ok(r) => f.failures.push(format!(
            "the candidate's admin key lists {} workspaces of the prime, not {workspaces}",
            r.get_ref().workspaces.len()
        )),
        Err(e) => f.failures.push(format!(
            "the candidate's admin key cannot list the prime's workspaces: {e:?}"
        )),
    }
    match list(s.candidate.clone()).await {
        Err(e) if e.code() == Code::NotFound => f.attacks_passed += 1,
        other => {
            f.leaks += 1;
            f.failures.push(format!(
                "the candidate's workspaces through its former admin key: {other:?}"
            ));
        }
    }
    Ok(())
}

/// Every read of the candidate, by a user of no organization, by a former plain member (now a
/// member of the prime) and by the former OWNER, answers NOT_FOUND — except the former OWNER's
/// GetOrganization, which names the prime. Usage naming the candidate is refused.
pub async fn leaks(h: &Harness, s: &Seeded, f: &mut Figures) -> anyhow::Result<()> {
    let c = s.candidate.clone();
    let plain = s.c_plain.first().cloned().unwrap_or_default();
    let (start, end) = range();
    for user in [&s.outsider, &plain, &s.owner] {
        let token = h.user_token(user)?;
        let mut answers: Vec<(&str, Result<(), tonic::Status>)> = Vec::new();
        let got = h
            .orgs()
            .get_organization(bearer(
                org_api::GetOrganizationRequest {
                    organization_id: c.clone(),
                },
                &token,
            ))
            .await;
        if user == &s.owner {
            match got {
                Ok(r) => {
                    let o = r.into_inner().organization.unwrap_or_default();
                    if o.merged_into_organization_id == s.prime {
                        f.attacks_passed += 1;
                    } else {
                        f.failures.push(format!(
                            "the former OWNER's GetOrganization of the candidate names {:?}",
                            o.merged_into_organization_id
                        ));
                    }
                }
                Err(e) => f.failures.push(format!(
                    "the former OWNER's GetOrganization of the candidate: {e:?}"
                )),
            }
        } else {
            answers.push(("GetOrganization", got.map(|_| ())));
        }
        answers.push((
            "ListMembers",
            h.orgs()
                .list_members(bearer(
                    org_api::ListMembersRequest {
                        organization_id: c.clone(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .map(|_| ()),
        ));
        answers.push((
            "ListUnits",
            h.orgs()
                .list_units(bearer(
                    org_api::ListUnitsRequest {
                        organization_id: c.clone(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .map(|_| ()),
        ));
        answers.push((
            "ListWorkspaces",
            h.workspaces()
                .list_workspaces(bearer(
                    ws_api::ListWorkspacesRequest {
                        organization_id: c.clone(),
                        include_archived: true,
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .map(|_| ()),
        ));
        answers.push((
            "ListApiKeys",
            h.identity_client()
                .list_api_keys(bearer(
                    id_api::ListApiKeysRequest {
                        organization_id: c.clone(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .map(|_| ()),
        ));
        answers.push((
            "GetBillingAccount",
            h.billing()
                .get_billing_account(bearer(
                    bill_api::GetBillingAccountRequest {
                        organization_id: c.clone(),
                    },
                    &token,
                ))
                .await
                .map(|_| ()),
        ));
        answers.push((
            "GetUsageReport",
            h.billing()
                .get_usage_report(bearer(
                    bill_api::GetUsageReportRequest {
                        organization_id: c.clone(),
                        start_time: Some(start),
                        end_time: Some(end),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .map(|_| ()),
        ));
        answers.push((
            "GetCostReport",
            h.billing()
                .get_cost_report(bearer(
                    bill_api::GetCostReportRequest {
                        organization_id: c.clone(),
                        start_time: Some(start),
                        end_time: Some(end),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .map(|_| ()),
        ));
        if user == &s.outsider {
            for ws in &s.c_workspaces {
                answers.push((
                    "GetWorkspace (moved)",
                    h.workspaces()
                        .get_workspace(bearer(
                            ws_api::GetWorkspaceRequest {
                                workspace_id: ws.clone(),
                            },
                            &token,
                        ))
                        .await
                        .map(|_| ()),
                ));
            }
        }
        for (rpc, answer) in answers {
            match answer {
                Err(e) if e.code() == Code::NotFound => f.attacks_passed += 1,
                other => {
                    f.leaks += 1;
                    f.failures.push(format!(
                        "{rpc} of the candidate by {user}: {:?}",
                        other.map_err(|e| (e.code(), e.message().to_owned()))
                    ));
                }
            }
        }
    }
    // Usage naming the candidate is refused for good.
    let late = bill_api::UsageRecord {
        organization_id: c.clone(),
        model: "orgmodel-small-1".into(),
        input_tokens: 1,
        usage_time: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() - 10,
            nanos: 0,
        }),
        idempotency_key: "late-1".into(),
        ..Default::default()
    };
    let token = h.product_token()?;
    let r = retry(|| async {
        h.billing()
            .record_usage(bearer(
                bill_api::RecordUsageRequest {
                    records: vec![late.clone()],
                },
                &token,
            ))
            .await
    })
    .await?;
    match r.results.first() {
        Some(r) if r.status == bill_api::UsageRecordStatus::Refused as i32 => f.attacks_passed += 1,
        other => {
            f.leaks += 1;
            f.failures.push(format!(
                "usage naming the candidate after the merge: {other:?}"
            ));
        }
    }
    Ok(())
}

/// Rows of `sql` (first column, text).
async fn texts(conn: &sea_orm::DatabaseConnection, sql: &str) -> anyhow::Result<Vec<String>> {
    let rows = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get_by_index::<String>(0)?))
        .collect()
}

/// The killed consumers' databases: no row of the candidate in any table that names an
/// organization; the role replicas hold the prime's members exactly once with their roles
/// (`members`, as the organization service lists them); billing holds every record of both
/// exactly once (`records`: (P's, C's)), C's under keys `"<C> <key>"`.
pub async fn databases(
    h: &Harness,
    s: &Seeded,
    members: &[(String, i32)],
    records: (i64, i64),
    f: &mut Figures,
) -> anyhow::Result<()> {
    let c = &s.candidate;
    let p = &s.prime;
    let source: HashMap<&String, i32> = members.iter().map(|(u, r)| (u, *r)).collect();
    let mut notes = Vec::new();
    for name in ["workspace", "billing-access"] {
        let conn = h.database(name).await?;
        let backend = conn.get_database_backend();
        let mut tables = vec!["replica_members"];
        if name == "workspace" {
            tables.extend(["workspaces", "replica_api_keys", "workspace_members"]);
        } else {
            tables.extend([
                "usage_records",
                "usage_rollups",
                "billing_workspaces",
                "billing_accounts",
                "billing_managed_accounts",
            ]);
        }
        for table in tables {
            let left = texts(
                &conn,
                &format!("SELECT organization_id FROM {table} WHERE organization_id = '{c}'"),
            )
            .await?;
            if !left.is_empty() {
                f.lost += left.len() as u64;
                f.failures.push(format!(
                    "{name}: {} rows of the candidate left in {table}",
                    left.len()
                ));
            }
        }
        let rows = conn
            .query_all_raw(Statement::from_string(
                backend,
                format!("SELECT user_id, role FROM replica_members WHERE organization_id = '{p}'"),
            ))
            .await?;
        let mut replica: HashMap<String, (i32, u64)> = HashMap::new();
        for row in rows {
            let e = replica
                .entry(row.try_get_by_index(0)?)
                .or_insert((row.try_get_by_index(1)?, 0));
            e.1 += 1;
        }
        let missing = source.keys().filter(|u| !replica.contains_key(**u)).count();
        let extra = replica.keys().filter(|u| !source.contains_key(u)).count();
        let twice: u64 = replica.values().map(|(_, n)| n - 1).sum();
        let differ = replica
            .iter()
            .filter(|(u, (r, _))| source.get(u).is_some_and(|s| s != r))
            .count();
        f.lost += missing as u64;
        f.applied_twice += twice + (extra + differ) as u64;
        if missing + extra + differ > 0 || twice > 0 {
            f.failures.push(format!(
                "{name}: replica of the prime's members: {missing} missing, {extra} extra, \
                 {differ} with another role, {twice} twice"
            ));
        }
        notes.push(format!("{name} replica {} members", replica.len()));
        if name == "billing-access" {
            let keys = texts(
                &conn,
                &format!("SELECT idempotency_key FROM usage_records WHERE organization_id = '{p}'"),
            )
            .await?;
            let moved = keys
                .iter()
                .filter(|k| k.starts_with(&format!("{c} ")))
                .count();
            let total = keys.len() as i64;
            if total != records.0 + records.1 || moved as i64 != records.1 {
                f.failures.push(format!(
                    "billing: {total} records in the prime ({moved} moved), expected {} + {}",
                    records.0, records.1
                ));
                f.lost += (records.0 + records.1 - total).max(0) as u64;
                f.applied_twice += (total - records.0 - records.1).max(0) as u64;
            }
            notes.push(format!("{total} usage records, {moved} moved"));
        }
        let _ = conn.close().await;
    }
    f.notes.push_str(&notes.join(", "));
    Ok(())
}
