//! After compaction of the organization outbox, a consumer re-syncs from ListRoleAssignments
//! and ends with the same replica as one that saw every event.

use std::time::Duration;

use orgplane_platform::testkit::TestDb;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{OrganizationDeleted, OwnershipTransferred};
use orgplane_proto::organization::v1::{OrgRole, Organization};
use orgplane_workspace::Config;

use crate::rig::*;

async fn history(rig: &Rig) {
    rig.organization("o1").await;
    rig.organization("o2").await;
    rig.organization("o3").await;
    rig.org_event(role_changed(
        "o1",
        "o1_admin",
        OrgRole::Admin,
        OrgRole::User,
    ))
    .await;
    rig.org_event(role_changed(
        "o1",
        "o1_dev",
        OrgRole::Developer,
        OrgRole::Billing,
    ))
    .await;
    rig.org_event(removed("o1", "o1_user", OrgRole::User)).await;
    rig.org_event(Payload::OwnershipTransferred(OwnershipTransferred {
        organization_id: "o1".into(),
        previous_owner_user_id: "o1_owner".into(),
        new_owner_user_id: "o1_billing".into(),
        new_owner_previous_role: OrgRole::Billing as i32,
    }))
    .await;
    rig.org_event(Payload::OrganizationDeleted(OrganizationDeleted {
        organization_id: "o2".into(),
        purge_time: None,
    }))
    .await;
    rig.org_event(purged("o3")).await;
}

pub async fn rebuilt_after_compaction(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let pg = rig.ws_db.url.starts_with("postgres");
    history(&rig).await;
    let orgs = ["o1", "o2", "o3"];
    // The snapshot the fake ListRoleAssignments serves: the organization service's state now.
    let revision = rig.org.outbox.head().await.unwrap().revision;
    let snapshot = orgs
        .iter()
        .filter_map(|o| {
            rig.service.replica().organization(o).map(|e| {
                let mut members: Vec<(String, OrgRole)> = e.members.into_iter().collect();
                members.sort();
                (
                    Organization {
                        id: o.to_string(),
                        name: e.name,
                        primary_email: e.primary_email,
                        owner_user_id: e.owner_user_id,
                        state: e.state,
                        ..Default::default()
                    },
                    members,
                )
            })
        })
        .collect();
    *rig.fake_org.snapshot.lock().unwrap() = Snapshot {
        revision,
        organizations: snapshot,
    };
    rig.org
        .outbox
        .compact(chrono::Utc::now() + chrono::Duration::days(1))
        .await
        .unwrap();
    assert!(rig.org.outbox.head().await.unwrap().compacted_through > 0);
    // One more event after the snapshot, which both must apply.
    let last = rig
        .org_event(added("o1", "late_joiner", OrgRole::Developer))
        .await;
    // A fresh consumer starts at 0, finds the events compacted, and re-syncs.
    let db = if pg {
        TestDb::postgres().await.unwrap()
    } else {
        TestDb::sqlite()
    };
    let (fresh, server, _) = start_service(
        &rig.auth,
        &rig.fakes.url(),
        &db.url,
        &Config::default(),
        &rig.keys,
    )
    .await;
    fresh
        .organization_events()
        .wait_for(last, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        fresh
            .organization_events()
            .stats()
            .resyncs
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert_eq!(
        rig.service
            .organization_events()
            .stats()
            .resyncs
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let all = ["o1", "o2", "o3"];
    assert_eq!(replica_view(&fresh, &all), replica_view(&rig.service, &all));
    // And the database agrees with memory after a reload.
    fresh.replica().reload().await.unwrap();
    assert_eq!(replica_view(&fresh, &all), replica_view(&rig.service, &all));
    server.stop().await;
}

#[tokio::test]
async fn replica_rebuilt_after_compaction_equals_one_that_saw_every_event() {
    rebuilt_after_compaction(Backend::Sqlite).await;
}

#[tokio::test]
async fn replica_rebuilt_after_compaction_on_postgres() {
    rebuilt_after_compaction(Backend::Postgres).await;
}
