//! ORG-15 / BILL-1 / BILL-6 around a merge: who sees the candidate's former usage in the prime,
//! late workspace events naming the candidate, and usage racing the merge (moved or refused,
//! never lost nor counted twice).

use std::collections::BTreeMap;

use orgplane_billing_access::Config;
use orgplane_proto::billing::v1::*;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{WorkspaceArchived, WorkspaceCreated, WorkspaceUpdated};
use tonic::Code;

use crate::merge_reports::{merge_event, prices, record_keys, seed, snapshot};
use crate::support::{Backend, Rig, days_ago, merged, ts, usage};

const DAY: i64 = 86_400_000;

/// Input tokens per workspace id (`"id|name"`) over the seeded days, as `user` reads them in
/// `org`; the gRPC status when refused.
async fn input_by_workspace(
    rig: &Rig,
    org: &str,
    user: &str,
    day: i64,
) -> Result<BTreeMap<String, i64>, tonic::Status> {
    let report = rig
        .client()
        .get_usage_report(rig.as_user(
            user,
            GetUsageReportRequest {
                organization_id: org.into(),
                start_time: Some(ts(day)),
                end_time: Some(ts(day + 2 * DAY)),
                group_by: vec![UsageDimension::Workspace as i32],
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let mut out = BTreeMap::new();
    for r in report.buckets.iter().flat_map(|b| &b.rows) {
        *out.entry(format!("{}|{}", r.workspace_id, r.workspace_name))
            .or_default() += r.input_tokens;
    }
    Ok(out)
}

async fn prime_billing_member_sees_the_candidates_usage(rig: &Rig) {
    let day = days_ago(3);
    seed(rig, day).await;
    let candidate = input_by_workspace(rig, "org_c", "c_billing", day)
        .await
        .unwrap();
    assert!(
        input_by_workspace(rig, "org_p", "p_billing", day)
            .await
            .unwrap()
            .keys()
            .all(|w| !w.starts_with("ws_c"))
    );
    rig.org_applied(vec![merge_event()]).await;
    // The prime's BILLING member sees the candidate's former workspaces with their usage.
    let prime = input_by_workspace(rig, "org_p", "p_billing", day)
        .await
        .unwrap();
    for ws in ["ws_c1|Candidate one", "ws_c2|Candidate two"] {
        assert_eq!(prime.get(ws), candidate.get(ws), "{ws}");
    }
    assert_eq!(
        snapshot(rig, "org_p", "p_billing", day).await,
        snapshot(rig, "org_p", "org_p_owner", day).await
    );
    // A USER of the prime still may not; the candidate answers NOT_FOUND to its members.
    let denied = input_by_workspace(rig, "org_p", "p_user", day)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    for user in ["c_billing", "c_user"] {
        let gone = input_by_workspace(rig, "org_c", user, day)
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound, "{user}");
    }
}

#[tokio::test]
async fn bill_6_a_prime_billing_member_sees_the_candidates_former_usage() {
    prime_billing_member_sees_the_candidates_usage(
        &Rig::new(Backend::Sqlite, prices()).await.unwrap(),
    )
    .await;
}

#[tokio::test]
async fn bill_6_a_prime_billing_member_sees_the_candidates_former_usage_postgres() {
    if let Some(rig) = Rig::new(Backend::Postgres, prices()).await {
        prime_billing_member_sees_the_candidates_usage(&rig).await;
    }
}

/// BILL-1 through the shared role replica: moved members hold their resulting role in the prime.
/// A candidate-only USER gets no billing; the candidate's BILLING member, a member of both who
/// keeps the prime's BILLING, and the candidate's former OWNER (now ADMIN) do.
#[tokio::test]
async fn org_15_moved_members_have_billing_access_by_their_resulting_role() {
    let rig = Rig::new(Backend::Sqlite, prices()).await.unwrap();
    let day = days_ago(3);
    seed(&rig, day).await;
    rig.org_applied(vec![merge_event()]).await;
    let denied = input_by_workspace(&rig, "org_p", "c_user", day)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    for user in ["c_billing", "both", "org_c_owner"] {
        let seen = input_by_workspace(&rig, "org_p", user, day).await;
        assert!(seen.is_ok(), "{user}: {seen:?}");
    }
}

async fn late_workspace_events_land_in_the_prime(rig: &Rig) {
    rig.create_org("org_p", &[]).await;
    rig.create_org("org_c", &[]).await;
    rig.create_workspace("org_c", "ws_c1", "One").await;
    rig.create_workspace("org_c", "ws_c2", "Two").await;
    rig.org_applied(vec![merged(
        "org_p",
        "org_c",
        &[],
        &["ws_c1", "ws_c2"],
        &[],
    )])
    .await;
    assert_eq!(rig.count("billing_workspaces", "org_p").await, 2);
    // The workspace stream delivers events of the candidate published before the workspace
    // service moved its workspaces: they apply to the prime.
    let rev = rig
        .ws_events(vec![
            Payload::WorkspaceUpdated(WorkspaceUpdated {
                organization_id: "org_c".into(),
                workspace_id: "ws_c1".into(),
                name: "One renamed".into(),
                unit_id: String::new(),
            }),
            Payload::WorkspaceCreated(WorkspaceCreated {
                organization_id: "org_c".into(),
                workspace_id: "ws_c3".into(),
                name: "Three".into(),
                unit_id: String::new(),
            }),
            Payload::WorkspaceArchived(WorkspaceArchived {
                organization_id: "org_c".into(),
                workspace_id: "ws_c2".into(),
            }),
        ])
        .await;
    rig.ws_synced(rev).await;
    assert_eq!(rig.count("billing_workspaces", "org_c").await, 0);
    assert_eq!(rig.count("billing_workspaces", "org_p").await, 3);
    let day = days_ago(1);
    let m = "orgmodel-small-1";
    // Archived when the event was published: usage since is refused.
    let now = chrono::Utc::now().timestamp_millis();
    let results = rig
        .record(vec![
            usage("org_p", "a", ["ws_c1", "", "", m], (1, 0), day + 1000),
            usage("org_p", "b", ["ws_c3", "", "", m], (10, 0), day + 1000),
            usage("org_p", "c", ["ws_c2", "", "", m], (100, 0), now),
        ])
        .await;
    let reasons: Vec<&str> = results.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["", "", "WORKSPACE_ARCHIVED"]);
    let seen = input_by_workspace(rig, "org_p", "org_p_owner", day)
        .await
        .unwrap();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            ("ws_c1|One renamed".to_owned(), 1),
            ("ws_c3|Three".to_owned(), 10)
        ]
    );
}

#[tokio::test]
async fn org_15_late_workspace_events_of_the_candidate_land_in_the_prime() {
    late_workspace_events_land_in_the_prime(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn org_15_late_workspace_events_of_the_candidate_land_in_the_prime_postgres() {
    if let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await {
        late_workspace_events_land_in_the_prime(&rig).await;
    }
}

/// Usage recorded for the candidate while the merge is applied: each record is either accepted
/// (and then counted once in the prime) or refused as not found, for good.
async fn usage_racing_the_merge(rig: &Rig) {
    rig.create_org("org_p", &[]).await;
    rig.create_org("org_c", &[]).await;
    let day = days_ago(1);
    let m = "orgmodel-small-1";
    let mut tasks = Vec::new();
    for task in 0..6_i64 {
        let batches: Vec<_> = (0..8_i64)
            .map(|batch| {
                let records = (0..25_i64)
                    .map(|i| {
                        let n = task * 1000 + batch * 100 + i;
                        let key = format!("k{n}");
                        usage("org_c", &key, ["", "", "", m], (n + 1, 1), day + n * 1000)
                    })
                    .collect();
                rig.as_service(RecordUsageRequest { records })
            })
            .collect();
        let mut client = rig.client();
        tasks.push(tokio::spawn(async move {
            let mut accepted = (0_i64, 0_i64);
            for request in batches {
                let sent: Vec<i64> = request
                    .get_ref()
                    .records
                    .iter()
                    .map(|r| r.input_tokens)
                    .collect();
                let results = client.record_usage(request).await.unwrap().into_inner();
                for (r, input) in results.results.iter().zip(sent) {
                    if r.status == UsageRecordStatus::Accepted as i32 {
                        accepted = (accepted.0 + 1, accepted.1 + input);
                    } else {
                        assert_eq!(
                            (r.reason.as_str(), r.retryable),
                            ("ORGANIZATION_NOT_FOUND", false)
                        );
                    }
                }
            }
            accepted
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    rig.org_applied(vec![merged("org_p", "org_c", &[], &[], &[])])
        .await;
    let mut accepted = (0, 0);
    for t in tasks {
        let (n, input) = t.await.unwrap();
        accepted = (accepted.0 + n, accepted.1 + input);
    }
    assert_eq!(rig.count("usage_records", "org_c").await, 0);
    assert_eq!(rig.count("usage_rollups", "org_c").await, 0);
    assert_eq!(rig.count("usage_account_rollups", "org_c").await, 0);
    assert_eq!(rig.count("usage_records", "org_p").await, accepted.0);
    let seen: i64 = input_by_workspace(rig, "org_p", "org_p_owner", day)
        .await
        .unwrap()
        .values()
        .sum();
    assert_eq!(seen, accepted.1, "accepted {} records", accepted.0);
}

#[tokio::test]
async fn org_15_usage_racing_the_merge_is_moved_or_refused_never_lost() {
    usage_racing_the_merge(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn org_15_usage_racing_the_merge_is_moved_or_refused_never_lost_postgres() {
    if let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await {
        usage_racing_the_merge(&rig).await;
    }
}

/// Merges a re-sync learns of (their events compacted away) are applied with the prime and the
/// candidate alone, in any order: a chain A → B → C ends with everything in C.
async fn merges_out_of_order_follow_the_chain(rig: &Rig) {
    use orgplane_billing_access::app::merge::apply_organizations_merged;
    use orgplane_platform::audit::AuditLogWriter;
    use orgplane_proto::events::v1::OrganizationsMerged;
    let day = days_ago(1);
    let m = "orgmodel-small-1";
    for org in ["org_a", "org_b", "org_z"] {
        rig.create_org(org, &[]).await;
        let results = rig
            .record(vec![
                usage(org, "same", ["", "", "", m], (1000, 1), day + 1000),
                usage(org, org, ["", "", "", m], (7, 0), day + 2000),
            ])
            .await;
        assert!(results.iter().all(|r| r.reason.is_empty()), "{results:?}");
    }
    let log = AuditLogWriter::new("billing-access");
    for (candidate, prime) in [("org_b", "org_z"), ("org_a", "org_b"), ("org_a", "org_b")] {
        let txn = orgplane_platform::db::begin_write(rig.db()).await.unwrap();
        let event = OrganizationsMerged {
            prime_organization_id: prime.into(),
            candidate_organization_id: candidate.into(),
            ..Default::default()
        };
        apply_organizations_merged(&txn, &log, &event, chrono::Utc::now())
            .await
            .unwrap();
        txn.commit().await.unwrap();
    }
    for org in ["org_a", "org_b"] {
        for table in [
            "usage_records",
            "usage_rollups",
            "usage_account_rollups",
            "billing_accounts",
        ] {
            assert_eq!(rig.count(table, org).await, 0, "{table} of {org}");
        }
    }
    assert_eq!(rig.count("usage_records", "org_z").await, 6);
    let keys = record_keys(rig, "org_z").await;
    assert_eq!(
        keys,
        [
            "org_a org_a",
            "org_a same",
            "org_b org_b",
            "org_b same",
            "org_z",
            "same"
        ]
    );
    let seen = input_by_workspace(rig, "org_z", "org_z_owner", day)
        .await
        .unwrap();
    assert_eq!(seen.get("|"), Some(&(3 * 1007)));
}

#[tokio::test]
async fn org_15_merges_learnt_out_of_order_follow_the_chain() {
    merges_out_of_order_follow_the_chain(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn org_15_merges_learnt_out_of_order_follow_the_chain_postgres() {
    if let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await {
        merges_out_of_order_follow_the_chain(&rig).await;
    }
}
