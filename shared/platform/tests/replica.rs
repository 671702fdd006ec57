//! The org-role replica: events applied in a transaction and in memory agree with a reload from
//! the database, and the memory view answers roles only for ACTIVE organizations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use orgplane_platform::replica::{
    CreateRoleReplica, CreateSecurityPolicyReplica, CreateVerifiedDomainReplica, RoleReplica,
};
use orgplane_platform::testkit::{TestAuth, TestDb, channel};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::*;
use orgplane_proto::organization::v1::OrgRole;
use sea_orm::TransactionTrait;
use sea_orm_migration::{MigrationTrait, MigratorTrait};

struct M;
impl MigratorTrait for M {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateRoleReplica),
            Box::new(CreateSecurityPolicyReplica),
            Box::new(CreateVerifiedDomainReplica),
        ]
    }
}

fn ev(revision: i64, payload: Payload) -> Event {
    Event {
        revision,
        payload: Some(payload),
        ..Default::default()
    }
}

#[tokio::test]
async fn replica_follows_role_events_in_the_database_and_in_memory() {
    let db = TestDb::sqlite();
    let conn = db.open::<M>().await;
    let auth = TestAuth::new();
    let replica = RoleReplica::load(
        conn.clone(),
        channel("http://127.0.0.1:9"),
        auth.service_tokens("workspace"),
    )
    .await
    .unwrap();
    let o = "org_1".to_string();
    let events = vec![
        ev(
            1,
            Payload::OrganizationCreated(OrganizationCreated {
                organization_id: o.clone(),
                name: "Acme".into(),
                owner_user_id: "u_owner".into(),
                primary_email: String::new(),
            }),
        ),
        ev(
            2,
            Payload::MemberAdded(MemberAdded {
                organization_id: o.clone(),
                user_id: "u_admin".into(),
                role: OrgRole::Admin as i32,
            }),
        ),
        ev(
            3,
            Payload::MemberAdded(MemberAdded {
                organization_id: o.clone(),
                user_id: "u_dev".into(),
                role: OrgRole::Developer as i32,
            }),
        ),
        ev(
            4,
            Payload::MemberRoleChanged(MemberRoleChanged {
                organization_id: o.clone(),
                user_id: "u_admin".into(),
                old_role: OrgRole::Admin as i32,
                new_role: OrgRole::User as i32,
            }),
        ),
        ev(
            5,
            Payload::MemberRemoved(MemberRemoved {
                organization_id: o.clone(),
                user_id: "u_dev".into(),
                old_role: OrgRole::Developer as i32,
            }),
        ),
        ev(
            6,
            Payload::OwnershipTransferred(OwnershipTransferred {
                organization_id: o.clone(),
                previous_owner_user_id: "u_owner".into(),
                new_owner_user_id: "u_admin".into(),
                new_owner_previous_role: OrgRole::User as i32,
            }),
        ),
    ];
    let txn = conn.begin().await.unwrap();
    for e in &events {
        replica.apply(&txn, e).await.unwrap();
    }
    txn.commit().await.unwrap();
    replica.apply_in_memory(&events);
    assert_eq!(replica.role(&o, "u_admin"), Some(OrgRole::Owner));
    assert_eq!(replica.role(&o, "u_owner"), Some(OrgRole::Admin));
    assert_eq!(replica.role(&o, "u_dev"), None);
    let in_memory = replica.organization(&o).unwrap();
    replica.reload().await.unwrap();
    assert_eq!(
        replica.organization(&o).unwrap(),
        in_memory,
        "memory equals the database"
    );

    let deleted = [ev(
        7,
        Payload::OrganizationDeleted(OrganizationDeleted {
            organization_id: o.clone(),
            purge_time: None,
        }),
    )];
    let txn = conn.begin().await.unwrap();
    replica.apply(&txn, &deleted[0]).await.unwrap();
    txn.commit().await.unwrap();
    replica.apply_in_memory(&deleted);
    assert_eq!(
        replica.role(&o, "u_admin"),
        None,
        "a deleted org grants nothing"
    );
    assert!(replica.organizations_of("u_admin").is_empty());

    let purged = [ev(
        8,
        Payload::OrganizationPurged(OrganizationPurged {
            organization_id: o.clone(),
        }),
    )];
    let txn = conn.begin().await.unwrap();
    replica.apply(&txn, &purged[0]).await.unwrap();
    txn.commit().await.unwrap();
    replica.apply_in_memory(&purged);
    assert!(replica.organization(&o).is_none());
    replica.reload().await.unwrap();
    assert!(replica.organization(&o).is_none());
}
