//! ORG-13: creating a child organization, its first owner joining, and who may create one.

use orgplane_proto::audit::v1::ActorKind;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::*;
use tonic::Code;

use crate::common::*;
use crate::harness::{Backend, Rig};

async fn creation_and_acceptance(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let op = create_operator(&rig, "user_op", "Operator").await;
    assert_eq!(op.kind, OrganizationKind::Operator as i32);
    let created = create_child(&rig, "user_op", &op.id, "Child One", "user_first").await;
    let child = created.organization.unwrap();
    let invite = created.owner_invite.unwrap();
    assert!(child.id.starts_with("org_"));
    assert_eq!(child.state, OrganizationState::Active as i32);
    assert_eq!(child.kind, OrganizationKind::Standard as i32);
    assert_eq!(child.operator_organization_id, op.id);
    assert_eq!(child.owner_user_id, "");
    assert_eq!(invite.organization_id, child.id);
    assert_eq!(invite.role, OrgRole::Owner as i32);
    assert_eq!(invite.state, InviteState::Pending as i32);
    assert_eq!(invite.email, "user_first@example.com");
    assert_eq!(invite.inviter_user_id, "user_op");

    // The invite was mailed.
    let mails: Vec<_> = std::fs::read_dir(rig.mail_dir.path()).unwrap().collect();
    assert_eq!(mails.len(), 1);
    let text = std::fs::read_to_string(mails[0].as_ref().unwrap().path()).unwrap();
    assert!(
        text.contains(&invite.id) && text.contains("OWNER"),
        "{text}"
    );

    // OrganizationCreated names the operator and no owner, then the child's policy in force;
    // no member was added.
    let events = rig.events_after(created.revision - 2, 2).await;
    assert!(
        matches!(
            events.get(1).and_then(|e| e.payload.clone()),
            Some(Payload::SecurityPolicyChanged(p)) if p.organization_id == child.id
        ),
        "{events:?}"
    );
    match events.first().and_then(|e| e.payload.clone()) {
        Some(Payload::OrganizationCreated(e)) => {
            assert_eq!(e.organization_id, child.id);
            assert_eq!(e.owner_user_id, "");
            assert_eq!(e.operator_organization_id, op.id);
        }
        other => panic!("expected OrganizationCreated, got {other:?}"),
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.payload, Some(Payload::MemberAdded(_))))
    );

    // Audited in the child's log as the operator, and in the operator's own log.
    let in_child = rig.audit_log("user_op", &child.id).await;
    for action in ["organization.create", "invite.create"] {
        let record = in_child
            .iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("{action} in {in_child:?}"));
        assert_eq!(record.actor_kind, ActorKind::Operator as i32, "{record:?}");
        assert_eq!(record.actor_id, "user_op");
        assert_eq!(record.actor_organization_id, op.id);
    }
    let in_operator = rig.audit_log("user_op", &op.id).await;
    let record = in_operator
        .iter()
        .find(|e| e.action == "child_organization.create")
        .expect("child_organization.create in the operator's log");
    assert_eq!(record.resource_id, child.id);
    assert_eq!(record.actor_kind, ActorKind::User as i32);

    // The first owner accepts and becomes OWNER.
    let accepted = accept(&rig, "user_first", &invite.id).await;
    assert_eq!(accepted.member.unwrap().role, OrgRole::Owner as i32);
    let mut c = rig.client();
    let after = c
        .get_organization(rig.as_user(
            "user_first",
            GetOrganizationRequest {
                organization_id: child.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(after.owner_user_id, "user_first");
    assert_ne!(after.etag, child.etag, "the owner changes the etag");
    let me = c
        .get_member(rig.as_user(
            "user_first",
            GetMemberRequest {
                organization_id: child.id.clone(),
                user_id: "me".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(me.role, OrgRole::Owner as i32);
    let events = rig.events_after(accepted.revision - 1, 1).await;
    match events.first().and_then(|e| e.payload.clone()) {
        Some(Payload::MemberAdded(e)) => {
            assert_eq!(
                (e.organization_id, e.user_id),
                (child.id.clone(), "user_first".into())
            );
            assert_eq!(e.role, OrgRole::Owner as i32);
        }
        other => panic!("expected MemberAdded, got {other:?}"),
    }
    // The operator sees the owner among the child's members.
    let members = c
        .list_members(rig.as_user(
            "user_op",
            ListMembersRequest {
                organization_id: child.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].user_id, "user_first");
}

#[tokio::test]
async fn org_13_child_is_active_without_owner_until_the_owner_invite_is_accepted_sqlite() {
    creation_and_acceptance(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_13_child_is_active_without_owner_until_the_owner_invite_is_accepted_postgres() {
    creation_and_acceptance(Backend::Postgres).await;
}

#[tokio::test]
async fn org_13_create_child_is_idempotent_and_names_are_unique_per_operator() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let op = create_operator(&rig, "user_op", "Operator").await;
    let other = create_operator(&rig, "user_other", "Other Operator").await;
    let mut c = rig.client();
    let rid = "0190a6a4-5d2e-7000-8000-0000000000c1";
    let first = c
        .create_child_organization(rig.as_user(
            "user_op",
            child_request(&op.id, "Acme", "user_a@example.com", rid),
        ))
        .await
        .unwrap()
        .into_inner();
    let again = c
        .create_child_organization(rig.as_user(
            "user_op",
            child_request(&op.id, "Acme", "user_a@example.com", rid),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.organization, first.organization);
    assert_eq!(
        again.owner_invite.unwrap().id,
        first.owner_invite.unwrap().id
    );
    // Unique per operator, ignoring case; another operator (or an account) may use the name.
    expect_err(
        c.create_child_organization(rig.as_user(
            "user_op",
            child_request(&op.id, "ACME", "user_b@example.com", ""),
        ))
        .await,
        Code::AlreadyExists,
        Some("ORGANIZATION_NAME_TAKEN"),
    );
    c.create_child_organization(rig.as_user(
        "user_other",
        child_request(&other.id, "acme", "user_b@example.com", ""),
    ))
    .await
    .unwrap();
    create_operator(&rig, "user_op", "acme").await;
    // The refusal is audited in the operator's log.
    let log = rig.audit_log("user_op", &op.id).await;
    assert!(
        log.iter().any(|e| e.action == "child_organization.create"
            && e.outcome == orgplane_proto::audit::v1::Outcome::Failure as i32),
        "{log:?}"
    );
}

#[tokio::test]
async fn org_13_only_the_owner_or_admins_of_an_operator_create_children() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let op = create_operator(&rig, "user_op", "Operator").await;
    let standard =
        create_org_of_kind(&rig, "user_std", "Standard", OrganizationKind::Unspecified).await;
    assert_eq!(standard.kind, OrganizationKind::Standard as i32);
    let mut c = rig.client();
    let req = |org: &str, name: &str| child_request(org, name, "user_new@example.com", "");

    // A standard organization has no children.
    expect_err(
        c.create_child_organization(rig.as_user("user_std", req(&standard.id, "C")))
            .await,
        Code::FailedPrecondition,
        Some("NOT_AN_OPERATOR"),
    );
    // Nor does a child: not for its operator, not for its owner.
    let child = create_child(&rig, "user_op", &op.id, "Child", "user_cown").await;
    accept(&rig, "user_cown", &child.owner_invite.unwrap().id).await;
    let child_id = child.organization.unwrap().id;
    for user in ["user_op", "user_cown"] {
        expect_err(
            c.create_child_organization(rig.as_user(user, req(&child_id, "Grandchild")))
                .await,
            Code::FailedPrecondition,
            Some("NOT_AN_OPERATOR"),
        );
    }
    // A child is never an operator.
    let mut as_operator = req(&op.id, "Sub-operator");
    as_operator.organization.as_mut().unwrap().kind = OrganizationKind::Operator as i32;
    expect_err(
        c.create_child_organization(rig.as_user("user_op", as_operator))
            .await,
        Code::InvalidArgument,
        None,
    );
    // Bad input.
    for bad in ["", "not-an-email"] {
        expect_err(
            c.create_child_organization(
                rig.as_user("user_op", child_request(&op.id, "Fine", bad, "")),
            )
            .await,
            Code::InvalidArgument,
            None,
        );
    }
    expect_err(
        c.create_child_organization(rig.as_user("user_op", req(&op.id, "  ")))
            .await,
        Code::InvalidArgument,
        None,
    );
    // Members below ADMIN may not; outsiders do not see the operator.
    rig.add_member(&op.id, "user_op", "user_plain", OrgRole::User)
        .await;
    expect_err(
        c.create_child_organization(rig.as_user("user_plain", req(&op.id, "By user")))
            .await,
        Code::PermissionDenied,
        Some("INSUFFICIENT_ROLE"),
    );
    expect_err(
        c.create_child_organization(rig.as_user("user_stranger", req(&op.id, "By stranger")))
            .await,
        Code::NotFound,
        None,
    );
    // An ADMIN of the operator may, and so may its admin API key (recorded as the key).
    rig.add_member(&op.id, "user_op", "user_opadmin", OrgRole::Admin)
        .await;
    c.create_child_organization(rig.as_user("user_opadmin", req(&op.id, "By admin")))
        .await
        .unwrap();
    let by_key = c
        .create_child_organization(
            rig.with_key(&format!("opk_admin_{}", op.id), req(&op.id, "By key")),
        )
        .await
        .unwrap()
        .into_inner();
    let invite = by_key.owner_invite.unwrap();
    assert_eq!(invite.inviter_user_id, "");
    assert!(!invite.inviter_api_key_id.is_empty());
    let log = rig
        .audit_log("user_op", &by_key.organization.unwrap().id)
        .await;
    let record = log
        .iter()
        .find(|e| e.action == "organization.create")
        .unwrap();
    assert_eq!(record.actor_kind, ActorKind::ApiKey as i32, "{record:?}");
    assert_eq!(record.actor_organization_id, "");
}

#[tokio::test]
async fn org_13_an_expired_owner_invite_gives_way_and_purged_children_free_the_operator() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let op = create_operator(&rig, "user_op", "Operator").await;
    let created = create_child(&rig, "user_op", &op.id, "Child", "user_late").await;
    let child = created.organization.unwrap();
    let mut c = rig.client();
    let invite = |email: &str| CreateInviteRequest {
        organization_id: child.id.clone(),
        invite: Some(Invite {
            email: email.into(),
            role: OrgRole::Owner as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let expiry = chrono::Duration::days(21) + chrono::Duration::seconds(1);
    rig.clock.advance(expiry);
    // Signed in "now" by the service's advanced clock (ORG-7's step-up).
    let offset = std::cell::Cell::new(expiry.num_seconds());
    let signed_in = |msg| rig.as_user_signed_in_ago("user_op", -offset.get(), msg);
    let fresh = c
        .create_invite(rig.as_user("user_op", invite("user_late@example.com")))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    accept(&rig, "user_late", &fresh.id).await;

    // The operator goes once its children are purged, not before.
    let op_delete = |etag: &str| DeleteOrganizationRequest {
        organization_id: op.id.clone(),
        confirm_name: op.name.clone(),
        etag: etag.into(),
    };
    expect_err(
        c.delete_organization(signed_in(op_delete(""))).await,
        Code::FailedPrecondition,
        Some("OPERATOR_HAS_CHILDREN"),
    );
    let current = c
        .get_organization(rig.as_user(
            "user_op",
            GetOrganizationRequest {
                organization_id: child.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    c.delete_organization(signed_in(DeleteOrganizationRequest {
        organization_id: child.id.clone(),
        confirm_name: current.name.clone(),
        etag: current.etag.clone(),
    }))
    .await
    .unwrap();
    expect_err(
        c.delete_organization(signed_in(op_delete(""))).await,
        Code::FailedPrecondition,
        Some("OPERATOR_HAS_CHILDREN"),
    );
    rig.clock.advance(chrono::Duration::days(8));
    offset.set(offset.get() + chrono::Duration::days(8).num_seconds());
    let purged = rig.org.purge_once().await.unwrap();
    assert_eq!(purged, std::slice::from_ref(&child.id));
    let deleted = c
        .delete_organization(signed_in(op_delete("")))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(deleted.state, OrganizationState::Deleted as i32);
}
