//! The org-role replica: events applied in a transaction and in memory agree with a reload from
//! the database, and the memory view answers roles only for ACTIVE organizations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use orgplane_platform::replica::DomainEntry;
use orgplane_platform::replica::RoleReplica;
use orgplane_platform::testkit::{TestAuth, TestDb, channel};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::*;
use orgplane_proto::organization::v1::organization_service_server::{
    OrganizationService, OrganizationServiceServer,
};
use orgplane_proto::organization::v1::{
    DomainPolicy, DomainState, ListRoleAssignmentsRequest, ListRoleAssignmentsResponse, OrgRole,
    Organization, OrganizationRoleAssignments, OrganizationState, VerifiedDomain,
};
use sea_orm::TransactionTrait;

use orgplane_platform::testkit::ReplicaTables as M;

/// The replica in `conn`, its organization service unreachable (nothing here resyncs).
async fn replica_on(conn: &sea_orm::DatabaseConnection) -> RoleReplica {
    RoleReplica::load(
        conn.clone(),
        channel("http://127.0.0.1:9"),
        TestAuth::new().service_tokens("workspace"),
    )
    .await
    .unwrap()
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
    let replica = replica_on(&conn).await;
    let o = "org_1".to_string();
    let events = vec![
        ev(
            1,
            Payload::OrganizationCreated(OrganizationCreated {
                organization_id: o.clone(),
                name: "Acme".into(),
                owner_user_id: "u_owner".into(),
                primary_email: String::new(),
                ..Default::default()
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

fn domain_changed(revision: i64, id: &str, org: &str, name: &str, state: DomainState) -> Event {
    ev(
        revision,
        Payload::DomainChanged(DomainChanged {
            domain_id: id.into(),
            organization_id: org.into(),
            domain_name: name.into(),
            state: state as i32,
            policy: DomainPolicy::Restricted as i32,
        }),
    )
}

async fn apply_all(conn: &sea_orm::DatabaseConnection, replica: &RoleReplica, events: &[Event]) {
    let txn = conn.begin().await.unwrap();
    for e in events {
        replica.apply(&txn, e).await.unwrap();
    }
    txn.commit().await.unwrap();
    replica.apply_in_memory(events);
}

fn names(domains: Vec<DomainEntry>) -> Vec<String> {
    domains.into_iter().map(|d| d.domain_name).collect()
}

/// Rule ORG-14: the replica keeps exactly the VERIFIED domains — kept while VERIFIED, dropped on
/// any other state, on deletion and on the organization's purge — in the database and in memory.
#[tokio::test]
async fn org_14_replica_keeps_verified_domains_from_domain_events() {
    let db = TestDb::sqlite();
    let conn = db.open::<M>().await;
    let auth = TestAuth::new();
    let replica = RoleReplica::load(
        conn.clone(),
        channel("http://127.0.0.1:9"),
        auth.service_tokens("identity"),
    )
    .await
    .unwrap();
    apply_all(
        &conn,
        &replica,
        &[
            domain_changed(1, "dom_1", "org_a", "acme.test", DomainState::Pending),
            domain_changed(2, "dom_2", "org_a", "beta.test", DomainState::Verified),
            domain_changed(3, "dom_3", "org_b", "acme.test", DomainState::Verified),
            domain_changed(4, "dom_1", "org_a", "acme.test", DomainState::Verified),
        ],
    )
    .await;
    assert_eq!(
        names(replica.domains_of("org_a")),
        ["acme.test", "beta.test"]
    );
    let holders: Vec<String> = replica
        .holders_of_domain("acme.test")
        .into_iter()
        .map(|d| d.organization_id)
        .collect();
    assert_eq!(holders, ["org_a", "org_b"]);
    assert_eq!(
        replica.holders_of_domain("acme.test")[0].policy,
        DomainPolicy::Restricted
    );
    assert!(replica.holds_verified("org_b", "acme.test"));
    assert!(!replica.holds_verified("org_b", "beta.test"));
    apply_all(
        &conn,
        &replica,
        &[
            domain_changed(5, "dom_2", "org_a", "beta.test", DomainState::Failed),
            ev(
                6,
                Payload::DomainDeleted(DomainDeleted {
                    domain_id: "dom_3".into(),
                    organization_id: "org_b".into(),
                    domain_name: "acme.test".into(),
                }),
            ),
        ],
    )
    .await;
    assert_eq!(names(replica.domains_of("org_a")), ["acme.test"]);
    assert!(replica.domains_of("org_b").is_empty());
    let in_memory = replica.domains_of("org_a");
    replica.reload().await.unwrap();
    assert_eq!(
        replica.domains_of("org_a"),
        in_memory,
        "memory equals the database"
    );
    apply_all(
        &conn,
        &replica,
        &[ev(
            7,
            Payload::OrganizationPurged(OrganizationPurged {
                organization_id: "org_a".into(),
            }),
        )],
    )
    .await;
    assert!(replica.domains_of("org_a").is_empty());
    replica.reload().await.unwrap();
    assert!(replica.holders_of_domain("acme.test").is_empty());
}

/// The organization service's snapshot, served by a real gRPC server.
#[derive(Clone)]
struct Snapshot(Vec<OrganizationRoleAssignments>);

#[tonic::async_trait]
impl OrganizationService for Snapshot {
    async fn list_role_assignments(
        &self,
        _req: tonic::Request<ListRoleAssignmentsRequest>,
    ) -> Result<tonic::Response<ListRoleAssignmentsResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListRoleAssignmentsResponse {
            organizations: self.0.clone(),
            next_page_token: String::new(),
            revision: 42,
        }))
    }
}

/// Rule ORG-14: a re-sync replaces the replica's domains with the snapshot's `verified_domains`.
#[tokio::test]
async fn org_14_replica_resyncs_verified_domains_from_the_snapshot() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let snapshot = Snapshot(vec![OrganizationRoleAssignments {
        organization: Some(Organization {
            id: "org_s".into(),
            name: "S".into(),
            owner_user_id: "u_s".into(),
            state: OrganizationState::Active as i32,
            ..Default::default()
        }),
        role_assignments: Vec::new(),
        security_policy: None,
        verified_domains: vec![VerifiedDomain {
            domain_id: "dom_s".into(),
            organization_id: "org_s".into(),
            domain_name: "snap.test".into(),
            policy: DomainPolicy::AutoEnroll as i32,
        }],
    }]);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(OrganizationServiceServer::new(snapshot))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let db = TestDb::sqlite();
    let conn = db.open::<M>().await;
    let auth = TestAuth::new();
    let replica = RoleReplica::load(
        conn.clone(),
        channel(&format!("http://{addr}")),
        auth.service_tokens("identity"),
    )
    .await
    .unwrap();
    // A domain the snapshot no longer has.
    apply_all(
        &conn,
        &replica,
        &[domain_changed(
            1,
            "dom_old",
            "org_old",
            "old.test",
            DomainState::Verified,
        )],
    )
    .await;
    let txn = conn.begin().await.unwrap();
    assert_eq!(replica.resync(&txn).await.unwrap(), 42);
    txn.commit().await.unwrap();
    replica.reload().await.unwrap();
    assert!(replica.holders_of_domain("old.test").is_empty());
    let held = replica.domains_of("org_s");
    assert_eq!(names(held.clone()), ["snap.test"]);
    assert_eq!(held[0].policy, DomainPolicy::AutoEnroll);
}

#[tokio::test]
async fn org_13_a_child_has_no_owner_until_its_first_owner_joins_as_owner() {
    let db = TestDb::sqlite();
    let conn = db.open::<M>().await;
    let replica = replica_on(&conn).await;
    let o = "org_child".to_string();
    let created = [ev(
        1,
        Payload::OrganizationCreated(OrganizationCreated {
            organization_id: o.clone(),
            name: "Child".into(),
            owner_user_id: String::new(),
            operator_organization_id: "org_operator".into(),
            ..Default::default()
        }),
    )];
    let joined = [ev(
        2,
        Payload::MemberAdded(MemberAdded {
            organization_id: o.clone(),
            user_id: "u_first".into(),
            role: OrgRole::Owner as i32,
        }),
    )];
    for (events, owner) in [(&created, ""), (&joined, "u_first")] {
        let txn = conn.begin().await.unwrap();
        for e in events {
            replica.apply(&txn, e).await.unwrap();
        }
        txn.commit().await.unwrap();
        replica.apply_in_memory(events);
        let in_memory = replica.organization(&o).unwrap();
        assert_eq!(in_memory.owner_user_id, owner);
        assert!(!in_memory.members.contains_key(""), "{in_memory:?}");
        assert_eq!(in_memory.members.len(), usize::from(!owner.is_empty()));
        replica.reload().await.unwrap();
        assert_eq!(
            replica.organization(&o).unwrap(),
            in_memory,
            "memory equals the database"
        );
    }
    assert_eq!(replica.role(&o, "u_first"), Some(OrgRole::Owner));
}

/// A reload reads every member of every organization back with its role (the members come one
/// organization at a time, as a JSON array): ids that need JSON escapes or hold the characters
/// a separator would use, an organization of many members, one of none but its owner.
async fn reload_reads_every_member(db: TestDb) {
    let conn = db.open::<M>().await;
    let replica = replica_on(&conn).await;
    let awkward = [
        "u_\"quoted\"",
        "u_back\\slash",
        "u_é_ü_日本",
        "u_a,b:c;d",
        "u_[1, 2]",
    ];
    let mut events = Vec::new();
    let mut revision = 0;
    let mut next = || {
        revision += 1;
        revision
    };
    for (o, members) in [("org_many", 300usize), ("org_awkward", 0), ("org_alone", 0)] {
        events.push(ev(
            next(),
            Payload::OrganizationCreated(OrganizationCreated {
                organization_id: o.into(),
                name: o.into(),
                owner_user_id: format!("{o}_owner"),
                ..Default::default()
            }),
        ));
        for i in 0..members {
            let role = [OrgRole::Admin, OrgRole::Developer, OrgRole::User][i % 3];
            events.push(ev(
                next(),
                Payload::MemberAdded(MemberAdded {
                    organization_id: o.into(),
                    user_id: format!("user_{i:04}"),
                    role: role as i32,
                }),
            ));
        }
    }
    for (i, user) in awkward.iter().enumerate() {
        events.push(ev(
            next(),
            Payload::MemberAdded(MemberAdded {
                organization_id: "org_awkward".into(),
                user_id: (*user).into(),
                role: [OrgRole::Billing, OrgRole::Admin][i % 2] as i32,
            }),
        ));
    }
    let txn = conn.begin().await.unwrap();
    for e in &events {
        replica.apply(&txn, e).await.unwrap();
    }
    txn.commit().await.unwrap();
    replica.apply_in_memory(&events);
    let in_memory: Vec<_> = ["org_many", "org_awkward", "org_alone"]
        .iter()
        .map(|o| replica.organization(o).unwrap())
        .collect();
    assert_eq!(in_memory[0].members.len(), 301);
    assert_eq!(
        replica.role("org_awkward", "u_\"quoted\""),
        Some(OrgRole::Billing)
    );
    replica.reload().await.unwrap();
    for (o, before) in ["org_many", "org_awkward", "org_alone"]
        .iter()
        .zip(in_memory)
    {
        assert_eq!(
            replica.organization(o).unwrap(),
            before,
            "{o} after a reload"
        );
    }
    assert_eq!(
        replica.role("org_awkward", "u_back\\slash"),
        Some(OrgRole::Admin)
    );
    assert_eq!(
        replica.role("org_awkward", "u_é_ü_日本"),
        Some(OrgRole::Billing)
    );
    assert_eq!(replica.role("org_many", "user_0299"), Some(OrgRole::User));
}

#[tokio::test]
async fn replica_reload_reads_every_member_of_every_organization() {
    reload_reads_every_member(TestDb::sqlite()).await;
}

#[tokio::test]
async fn replica_reload_reads_every_member_of_every_organization_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    reload_reads_every_member(db).await;
}

/// The replica's rows, in key order.
async fn member_rows(conn: &sea_orm::DatabaseConnection) -> Vec<(String, String, i32)> {
    use sea_orm::{EntityTrait, QueryOrder};
    orgplane_platform::replica::member_row::Entity::find()
        .order_by_asc(orgplane_platform::replica::member_row::Column::OrganizationId)
        .order_by_asc(orgplane_platform::replica::member_row::Column::UserId)
        .all(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.organization_id, m.user_id, m.role))
        .collect()
}

/// A burst of role changes: 600 members added (over a statement's 500), then role changes that
/// hit some members twice, an ownership transfer in the middle (not part of a run), and more
/// changes of the same members after it.
fn burst() -> Vec<Event> {
    let roles = [
        OrgRole::Admin,
        OrgRole::Billing,
        OrgRole::Developer,
        OrgRole::User,
    ];
    let mut events = vec![ev(
        1,
        Payload::OrganizationCreated(OrganizationCreated {
            organization_id: "org_b".into(),
            name: "Burst".into(),
            owner_user_id: "u_owner".into(),
            ..Default::default()
        }),
    )];
    let mut payloads: Vec<Payload> = (0..600)
        .map(|i| {
            Payload::MemberAdded(MemberAdded {
                organization_id: "org_b".into(),
                user_id: format!("u_{i:03}"),
                role: roles[i % 4] as i32,
            })
        })
        .collect();
    let change = |i: usize, role: OrgRole| {
        Payload::MemberRoleChanged(MemberRoleChanged {
            organization_id: "org_b".into(),
            user_id: format!("u_{i:03}"),
            new_role: role as i32,
            ..Default::default()
        })
    };
    payloads.extend((0..100).map(|i| change(i % 50, roles[(i / 50 + 1) % 4])));
    payloads.push(Payload::OwnershipTransferred(OwnershipTransferred {
        organization_id: "org_b".into(),
        previous_owner_user_id: "u_owner".into(),
        new_owner_user_id: "u_007".into(),
        ..Default::default()
    }));
    payloads.extend((10..30).map(|i| change(i, OrgRole::Billing)));
    payloads.push(change(3, OrgRole::User));
    events.extend(payloads.into_iter().zip(2..).map(|(p, r)| ev(r, p)));
    events
}

/// Rule WS-10 answers from the replica at a revision: a batch whose runs of role changes are each
/// written with one statement leaves the tables as applying its events one by one does. The
/// control arm writes the same runs in reverse order and must differ, so the comparison catches a
/// run that does not keep each member's last role.
async fn run_of_role_changes_written_at_once(dbs: [TestDb; 3]) {
    use orgplane_platform::events::handlers::OrgRoleEvents;
    use orgplane_platform::events::{EventHandler, ProcessSpans};
    let events = burst();
    let [one_by_one, batched, reversed] = dbs;
    let (one_by_one, batched, reversed) = (
        one_by_one.open::<M>().await,
        batched.open::<M>().await,
        reversed.open::<M>().await,
    );

    let replica = replica_on(&one_by_one).await;
    apply_all(&one_by_one, &replica, &events).await;
    let expected = member_rows(&one_by_one).await;
    assert_eq!(expected.len(), 601);
    assert!(expected.contains(&("org_b".into(), "u_007".into(), OrgRole::Owner as i32)));
    assert!(expected.contains(&("org_b".into(), "u_owner".into(), OrgRole::Admin as i32)));
    assert!(expected.contains(&("org_b".into(), "u_003".into(), OrgRole::User as i32)));

    let handler = OrgRoleEvents::new(replica_on(&batched).await, ());
    let spans = ProcessSpans::new(Producer::Organization, "test");
    let txn = batched.begin().await.unwrap();
    handler.apply_batch(&txn, &events, &spans).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(member_rows(&batched).await, expected);

    // Control: each run written in reverse keeps a member's first role of the run instead.
    let replica = replica_on(&reversed).await;
    let txn = reversed.begin().await.unwrap();
    let mut rest = &events[..];
    while !rest.is_empty() {
        let run = rest
            .iter()
            .take_while(|e| RoleReplica::member_role_set_by(e).is_some())
            .count();
        if run == 0 {
            replica.apply(&txn, &rest[0]).await.unwrap();
            rest = &rest[1..];
            continue;
        }
        let mut backwards = rest[..run].to_vec();
        backwards.reverse();
        replica.apply_member_roles(&txn, &backwards).await.unwrap();
        rest = &rest[run..];
    }
    txn.commit().await.unwrap();
    assert_ne!(
        member_rows(&reversed).await,
        expected,
        "the control arm must see the order a run is written in"
    );
}

#[tokio::test]
async fn ws_10_a_run_of_role_changes_written_at_once_leaves_the_replica_as_one_by_one() {
    run_of_role_changes_written_at_once([TestDb::sqlite(), TestDb::sqlite(), TestDb::sqlite()])
        .await;
}

#[tokio::test]
async fn ws_10_a_run_of_role_changes_written_at_once_leaves_the_replica_as_one_by_one_postgres() {
    let (Some(a), Some(b), Some(c)) = (
        TestDb::postgres().await,
        TestDb::postgres().await,
        TestDb::postgres().await,
    ) else {
        return;
    };
    run_of_role_changes_written_at_once([a, b, c]).await;
}
