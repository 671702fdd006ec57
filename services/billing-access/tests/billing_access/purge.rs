//! BILL-5: purging an organization removes its billing data, and nothing brings it back.

use orgplane_billing_access::Config;
use orgplane_proto::billing::v1::*;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{OrganizationPurged, WorkspaceCreated};
use tonic::Code;

use crate::support::{Backend, Rig, days_ago, usage};

const M: &str = "orgmodel-small-1";

async fn purge(rig: &Rig) {
    rig.create_org("org_p", &[]).await;
    rig.create_org("org_keep", &[]).await;
    rig.create_workspace("org_p", "ws_p", "Doomed").await;
    rig.create_workspace("org_keep", "ws_k", "Kept").await;
    let t = days_ago(1);
    rig.record(vec![
        usage("org_p", "a", ["ws_p", "", "", M], (10, 1), t),
        usage("org_p", "b", ["", "", "", M], (10, 1), t),
        usage("org_keep", "a", ["ws_k", "", "", M], (10, 1), t),
    ])
    .await;
    let tables = [
        "billing_accounts",
        "usage_records",
        "usage_rollups",
        "usage_account_rollups",
        "billing_workspaces",
        "audit_log",
    ];
    for table in tables {
        assert!(rig.count(table, "org_p").await > 0, "{table} before purge");
    }

    let rev = rig
        .org_events(vec![Payload::OrganizationPurged(OrganizationPurged {
            organization_id: "org_p".into(),
        })])
        .await;
    rig.org_synced(rev).await;
    for table in tables {
        assert_eq!(rig.count(table, "org_p").await, 0, "{table} after purge");
        assert!(
            rig.count(table, "org_keep").await > 0,
            "{table} of another org"
        );
    }
    assert_eq!(
        rig.count("billing_purged_organizations", "org_p").await,
        1,
        "the id is remembered"
    );

    // Nothing answers for it any more.
    let err = rig
        .client()
        .get_billing_account(rig.as_user(
            "org_p_owner",
            GetBillingAccountRequest {
                organization_id: "org_p".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Late usage is refused for good; late workspace events are ignored.
    let results = rig
        .record(vec![usage("org_p", "c", ["", "", "", M], (1, 1), t)])
        .await;
    assert_eq!(results[0].reason, "ORGANIZATION_NOT_FOUND");
    assert!(!results[0].retryable);
    let rev = rig
        .ws_events(vec![Payload::WorkspaceCreated(WorkspaceCreated {
            organization_id: "org_p".into(),
            workspace_id: "ws_late".into(),
            name: "Late".into(),
            unit_id: String::new(),
        })])
        .await;
    rig.ws_synced(rev).await;
    assert_eq!(rig.count("billing_workspaces", "org_p").await, 0);
    assert_eq!(rig.count("usage_records", "org_p").await, 0);
}

#[tokio::test]
async fn bill_5_purge_removes_the_organizations_billing_data() {
    purge(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn bill_5_purge_removes_the_organizations_billing_data_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await else {
        return;
    };
    purge(&rig).await;
}
