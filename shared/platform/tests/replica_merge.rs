//! Rule ORG-15 in the shared org-role replica: `OrganizationsMerged` gives every moved member
//! their resulting role in the prime and leaves the candidate a MERGED tombstone without members
//! (no role anywhere: NOT_FOUND for every check), the same in the database and in memory, and the
//! same when applied twice; a re-sync keeps a MERGED organization from the snapshot as a
//! tombstone (whatever members it lists) and reports the merge to the consumer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use orgplane_platform::replica::{Merge, RoleReplica};
use orgplane_platform::testkit::{ReplicaTables as M, TestAuth, TestDb, channel};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::*;
use orgplane_proto::organization::v1::organization_service_server::{
    OrganizationService, OrganizationServiceServer,
};
use orgplane_proto::organization::v1::{
    ListRoleAssignmentsRequest, ListRoleAssignmentsResponse, MergeMemberMove, OrgRole,
    Organization, OrganizationRoleAssignments, OrganizationState, RoleAssignment,
};
use sea_orm::TransactionTrait;

fn ev(revision: i64, payload: Payload) -> Event {
    Event {
        revision,
        payload: Some(payload),
        ..Default::default()
    }
}

fn created(rev: i64, org: &str, owner: &str) -> Event {
    ev(
        rev,
        Payload::OrganizationCreated(OrganizationCreated {
            organization_id: org.into(),
            name: org.into(),
            owner_user_id: owner.into(),
            ..Default::default()
        }),
    )
}

fn added(rev: i64, org: &str, user: &str, role: OrgRole) -> Event {
    ev(
        rev,
        Payload::MemberAdded(MemberAdded {
            organization_id: org.into(),
            user_id: user.into(),
            role: role as i32,
        }),
    )
}

fn mv(user: &str, c: OrgRole, p: OrgRole, r: OrgRole) -> MergeMemberMove {
    MergeMemberMove {
        user_id: user.into(),
        candidate_role: c as i32,
        prime_role: p as i32,
        resulting_role: r as i32,
    }
}

fn merged(rev: i64, members: Vec<MergeMemberMove>) -> Event {
    ev(
        rev,
        Payload::OrganizationsMerged(OrganizationsMerged {
            prime_organization_id: "op".into(),
            candidate_organization_id: "oc".into(),
            members,
            candidate_owner_user_id: "c_owner".into(),
            ..Default::default()
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

type View = (
    Option<(i32, Vec<(String, i32)>)>,
    Option<(i32, Vec<(String, i32)>)>,
);

fn view(replica: &RoleReplica) -> View {
    let of = |o: &str| {
        replica.organization(o).map(|e| {
            let mut m: Vec<(String, i32)> =
                e.members.into_iter().map(|(u, r)| (u, r as i32)).collect();
            m.sort();
            (e.state, m)
        })
    };
    (of("op"), of("oc"))
}

#[tokio::test]
async fn org_15_the_replica_moves_members_and_forgets_the_candidate_once() {
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
    use OrgRole::*;
    apply_all(
        &conn,
        &replica,
        &[
            created(1, "op", "p_owner"),
            created(2, "oc", "c_owner"),
            added(3, "oc", "c_dev", Developer),
            added(4, "oc", "both", User),
            added(5, "op", "both", Billing),
        ],
    )
    .await;
    let merge = merged(
        6,
        vec![
            mv("c_owner", Owner, Unspecified, Admin),
            mv("c_dev", Developer, Unspecified, Developer),
            mv("both", User, Billing, Billing),
        ],
    );
    apply_all(&conn, &replica, std::slice::from_ref(&merge)).await;
    assert_eq!(replica.role("op", "c_owner"), Some(Admin));
    assert_eq!(replica.role("op", "c_dev"), Some(Developer));
    assert_eq!(replica.role("op", "both"), Some(Billing));
    assert_eq!(replica.role("op", "p_owner"), Some(Owner));
    assert_eq!(replica.role("oc", "c_owner"), None);
    assert!(replica.organization("oc").unwrap().is_merged());
    assert_eq!(
        replica.organizations_of("c_owner"),
        vec![("op".to_owned(), Admin)]
    );
    // Memory agrees with the database.
    let in_memory = view(&replica);
    replica.reload().await.unwrap();
    assert_eq!(view(&replica), in_memory);
    // Applied twice: nothing changes.
    apply_all(&conn, &replica, &[merge]).await;
    assert_eq!(view(&replica), in_memory);
    replica.reload().await.unwrap();
    assert_eq!(view(&replica), in_memory);
}

#[test]
fn org_15_without_a_resulting_role_the_rule_decides() {
    use OrgRole::*;
    let r = orgplane_platform::replica::resulting_role;
    assert_eq!(r(&mv("u", Owner, Unspecified, Unspecified)), Admin);
    assert_eq!(r(&mv("u", Owner, Owner, Unspecified)), Owner);
    assert_eq!(r(&mv("u", Developer, Billing, Unspecified)), Billing);
    assert_eq!(r(&mv("u", Admin, User, Unspecified)), Admin);
    assert_eq!(r(&mv("u", Admin, User, Developer)), Developer);
}

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

fn entry(org: Organization, members: &[(&str, OrgRole)]) -> OrganizationRoleAssignments {
    OrganizationRoleAssignments {
        organization: Some(org),
        role_assignments: members
            .iter()
            .map(|(u, r)| RoleAssignment {
                user_id: (*u).into(),
                role: *r as i32,
            })
            .collect(),
        security_policy: None,
        verified_domains: Vec::new(),
    }
}

#[tokio::test]
async fn org_15_a_resync_keeps_a_merged_organization_a_tombstone_and_reports_the_merge() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let snapshot = Snapshot(vec![
        entry(
            Organization {
                id: "oc".into(),
                owner_user_id: "c_owner".into(),
                state: OrganizationState::Merged as i32,
                merged_into_organization_id: "op".into(),
                ..Default::default()
            },
            // Listed members of a MERGED organization are not resurrected.
            &[("c_owner", OrgRole::Owner)],
        ),
        entry(
            Organization {
                id: "op".into(),
                owner_user_id: "p_owner".into(),
                state: OrganizationState::Active as i32,
                ..Default::default()
            },
            &[("p_owner", OrgRole::Owner), ("c_owner", OrgRole::Admin)],
        ),
    ]);
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
        auth.service_tokens("workspace"),
    )
    .await
    .unwrap();
    apply_all(
        &conn,
        &replica,
        &[
            created(1, "oc", "c_owner"),
            added(2, "oc", "c_dev", OrgRole::Developer),
        ],
    )
    .await;
    let txn = conn.begin().await.unwrap();
    let (revision, merges) = replica.resync_with_merges(&txn).await.unwrap();
    txn.commit().await.unwrap();
    replica.reload().await.unwrap();
    assert_eq!(revision, 42);
    assert_eq!(
        merges,
        vec![Merge {
            candidate_organization_id: "oc".into(),
            prime_organization_id: "op".into(),
        }]
    );
    let oc = replica.organization("oc").unwrap();
    assert!(oc.is_merged() && oc.members.is_empty());
    assert_eq!(replica.role("oc", "c_owner"), None);
    assert_eq!(replica.role("op", "c_owner"), Some(OrgRole::Admin));
}
