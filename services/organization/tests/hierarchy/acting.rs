//! ORG-13: the operator acting in its children (read, edit, delete, undelete, invites), what it
//! may not do, isolation between operators and children, and ListChildOrganizations.

use orgplane_proto::audit::v1::ActorKind;
use orgplane_proto::organization::v1::*;
use prost_types::FieldMask;
use tonic::Code;

use crate::common::*;
use crate::harness::{Backend, Rig};

fn get(org: &str) -> GetOrganizationRequest {
    GetOrganizationRequest {
        organization_id: org.into(),
    }
}

fn rename(org: &str, name: &str, etag: &str) -> UpdateOrganizationRequest {
    UpdateOrganizationRequest {
        organization: Some(Organization {
            id: org.into(),
            name: name.into(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["name".into()],
        }),
        etag: etag.into(),
    }
}

fn delete(org: &Organization) -> DeleteOrganizationRequest {
    DeleteOrganizationRequest {
        organization_id: org.id.clone(),
        confirm_name: org.name.clone(),
        etag: org.etag.clone(),
    }
}

fn owner_invite(org: &str, email: &str) -> CreateInviteRequest {
    CreateInviteRequest {
        organization_id: org.into(),
        invite: Some(Invite {
            email: email.into(),
            role: OrgRole::Owner as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// `msg` with the credentials of `who`'s request.
fn with<T>(who: &dyn Fn() -> tonic::Request<()>, msg: T) -> tonic::Request<T> {
    let (meta, ext, ()) = who().into_parts();
    tonic::Request::from_parts(meta, ext, msg)
}

/// The one record of `action` in `log`, checked to be the operator `operator_id` acting.
fn assert_operator_record(
    log: &[orgplane_proto::audit::v1::AuditEvent],
    action: &str,
    operator_id: &str,
) {
    let record = log
        .iter()
        .find(|e| e.action == action)
        .unwrap_or_else(|| panic!("{action} in {log:?}"));
    assert_eq!(record.actor_kind, ActorKind::Operator as i32, "{record:?}");
    assert_eq!(record.actor_organization_id, operator_id, "{record:?}");
}

#[tokio::test]
async fn org_13_operator_edits_deletes_and_restores_a_child_audited_as_operator() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let op = create_operator(&rig, "user_op", "Operator").await;
    rig.add_member(&op.id, "user_op", "user_opadmin", OrgRole::Admin)
        .await;
    let created = create_child(&rig, "user_op", &op.id, "Child", "user_cown").await;
    accept(&rig, "user_cown", &created.owner_invite.unwrap().id).await;
    let child_id = created.organization.unwrap().id;
    let mut c = rig.client();
    let child = c
        .get_organization(rig.as_user("user_opadmin", get(&child_id)))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();

    // Edit, with the etag.
    expect_err(
        c.update_organization(rig.as_user("user_opadmin", rename(&child_id, "X", "stale")))
            .await,
        Code::Aborted,
        None,
    );
    let renamed = c
        .update_organization(rig.as_user(
            "user_opadmin",
            rename(&child_id, "Child Renamed", &child.etag),
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(renamed.name, "Child Renamed");

    // Delete under ORG-7: the exact name, a recent sign-in.
    let mut wrong = delete(&renamed);
    wrong.confirm_name = "Child".into();
    expect_err(
        c.delete_organization(rig.as_user("user_opadmin", wrong))
            .await,
        Code::InvalidArgument,
        Some("CONFIRM_NAME_MISMATCH"),
    );
    expect_err(
        c.delete_organization(rig.as_user_signed_in_ago("user_opadmin", 3600, delete(&renamed)))
            .await,
        Code::Unauthenticated,
        Some("REAUTHENTICATION_REQUIRED"),
    );
    let deleted = c
        .delete_organization(rig.as_user("user_opadmin", delete(&renamed)))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(deleted.state, OrganizationState::Deleted as i32);
    // Still visible to its operator (and its owner), hidden to everything else.
    let seen = c
        .get_organization(rig.as_user("user_op", get(&child_id)))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(seen.state, OrganizationState::Deleted as i32);
    expect_err(
        c.list_members(rig.as_user(
            "user_op",
            ListMembersRequest {
                organization_id: child_id.clone(),
                ..Default::default()
            },
        ))
        .await,
        Code::NotFound,
        None,
    );
    // Restore, with a recent sign-in.
    let undelete = || UndeleteOrganizationRequest {
        organization_id: child_id.clone(),
        etag: deleted.etag.clone(),
    };
    expect_err(
        c.undelete_organization(rig.as_user_signed_in_ago("user_op", 3600, undelete()))
            .await,
        Code::Unauthenticated,
        Some("REAUTHENTICATION_REQUIRED"),
    );
    let restored = c
        .undelete_organization(rig.as_user("user_op", undelete()))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(restored.state, OrganizationState::Active as i32);

    let log = rig.audit_log("user_cown", &child_id).await;
    for action in [
        "organization.update",
        "organization.delete",
        "organization.undelete",
    ] {
        assert_operator_record(&log, action, &op.id);
    }
}

#[tokio::test]
async fn org_13_operator_may_not_touch_members_nor_delete_an_operator_with_children() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let op = create_operator(&rig, "user_op", "Operator").await;
    let created = create_child(&rig, "user_op", &op.id, "Child", "user_cown").await;
    accept(&rig, "user_cown", &created.owner_invite.unwrap().id).await;
    let child_id = created.organization.unwrap().id;
    rig.add_member(&child_id, "user_cown", "user_cmember", OrgRole::User)
        .await;
    let mut c = rig.client();
    // Member mutations stay the child's.
    expect_err(
        c.update_member_role(rig.as_user(
            "user_op",
            UpdateMemberRoleRequest {
                organization_id: child_id.clone(),
                user_id: "user_cmember".into(),
                role: OrgRole::Admin as i32,
                etag: String::new(),
            },
        ))
        .await,
        Code::PermissionDenied,
        Some("INSUFFICIENT_ROLE"),
    );
    expect_err(
        c.remove_member(rig.as_user(
            "user_op",
            RemoveMemberRequest {
                organization_id: child_id.clone(),
                user_id: "user_cmember".into(),
            },
        ))
        .await,
        Code::PermissionDenied,
        Some("INSUFFICIENT_ROLE"),
    );
    // Inviting anyone but the first owner too.
    let mut invite = owner_invite(&child_id, "user_x@example.com");
    invite.invite.as_mut().unwrap().role = OrgRole::User as i32;
    expect_err(
        c.create_invite(rig.as_user("user_op", invite)).await,
        Code::PermissionDenied,
        Some("INSUFFICIENT_ROLE"),
    );
    // The refusal is recorded in the child's log, as the operator's.
    let log = rig.audit_log("user_cown", &child_id).await;
    let refused = log
        .iter()
        .find(|e| {
            e.action == "member.update_role"
                && e.outcome == orgplane_proto::audit::v1::Outcome::Failure as i32
        })
        .expect("the refusal is recorded");
    assert_eq!(
        refused.actor_kind,
        ActorKind::Operator as i32,
        "{refused:?}"
    );
    assert_eq!(refused.actor_organization_id, op.id);

    // ORG-13 / ORG-7: an operator with children that are not purged cannot be deleted.
    let op_now = c
        .get_organization(rig.as_user("user_op", get(&op.id)))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    expect_err(
        c.delete_organization(rig.as_user("user_op", delete(&op_now)))
            .await,
        Code::FailedPrecondition,
        Some("OPERATOR_HAS_CHILDREN"),
    );
}

#[tokio::test]
async fn org_13_the_first_owner_is_invited_once_and_again_after_the_invite_is_withdrawn() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let op = create_operator(&rig, "user_op", "Operator").await;
    let created = create_child(&rig, "user_op", &op.id, "Child", "user_first").await;
    let child_id = created.organization.unwrap().id;
    let first = created.owner_invite.unwrap();
    let mut c = rig.client();
    // A pending OWNER invite blocks a second one.
    expect_err(
        c.create_invite(rig.as_user(
            "user_op",
            owner_invite(&child_id, "user_second@example.com"),
        ))
        .await,
        Code::InvalidArgument,
        Some("OWNER_ROLE_NOT_ASSIGNABLE"),
    );
    // The operator reads and withdraws it.
    let listed = c
        .list_invites(rig.as_user(
            "user_op",
            ListInvitesRequest {
                organization_id: child_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invites;
    assert_eq!(listed.len(), 1);
    c.get_invite(rig.as_user(
        "user_op",
        GetInviteRequest {
            invite_id: first.id.clone(),
        },
    ))
    .await
    .unwrap();
    c.delete_invite(rig.as_user(
        "user_op",
        DeleteInviteRequest {
            invite_id: first.id.clone(),
        },
    ))
    .await
    .unwrap();
    expect_err(
        c.accept_invite(rig.as_user(
            "user_first",
            AcceptInviteRequest {
                invite_id: first.id.clone(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        Some("INVITE_NOT_PENDING"),
    );
    // Then invites another first owner, who accepts.
    let second = c
        .create_invite(rig.as_user(
            "user_op",
            owner_invite(&child_id, "user_second@example.com"),
        ))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap();
    assert_eq!(second.role, OrgRole::Owner as i32);
    accept(&rig, "user_second", &second.id).await;
    let log = rig.audit_log("user_second", &child_id).await;
    assert_operator_record(&log, "invite.delete", &op.id);
    assert!(
        log.iter()
            .filter(|e| e.action == "invite.create")
            .all(|e| e.actor_kind == ActorKind::Operator as i32)
    );
    // Once the child has an owner, nobody invites an OWNER: not the operator, not the owner.
    for user in ["user_op", "user_second"] {
        expect_err(
            c.create_invite(rig.as_user(user, owner_invite(&child_id, "user_third@example.com")))
                .await,
            Code::InvalidArgument,
            Some("OWNER_ROLE_NOT_ASSIGNABLE"),
        );
    }
    // A standard organization's owner never could.
    let standard = create_org_of_kind(&rig, "user_std", "Std", OrganizationKind::Standard).await;
    expect_err(
        c.create_invite(rig.as_user("user_std", owner_invite(&standard.id, "user_z@example.com")))
            .await,
        Code::InvalidArgument,
        Some("OWNER_ROLE_NOT_ASSIGNABLE"),
    );
}

#[tokio::test]
async fn org_13_operators_children_and_siblings_are_isolated() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let x = create_operator(&rig, "user_x", "Operator X").await;
    let y = create_operator(&rig, "user_y", "Operator Y").await;
    rig.add_member(&y.id, "user_y", "user_yuser", OrgRole::User)
        .await;
    rig.add_member(&y.id, "user_y", "user_ydev", OrgRole::Developer)
        .await;
    let y1 = create_child(&rig, "user_y", &y.id, "Y One", "user_y1").await;
    accept(&rig, "user_y1", &y1.owner_invite.unwrap().id).await;
    let y1 = y1.organization.unwrap();
    let y2 = create_child(&rig, "user_y", &y.id, "Y Two", "user_y2").await;
    accept(&rig, "user_y2", &y2.owner_invite.unwrap().id).await;
    let y2 = y2.organization.unwrap();
    let mut c = rig.client();

    // Operator X's owner and admin key, Y's USER and DEVELOPER, and a member of a sibling child
    // see nothing of Y1.
    let x_key = format!("opk_admin_{}", x.id);
    let outsiders: Vec<Box<dyn Fn() -> tonic::Request<()>>> = vec![
        Box::new(|| rig.as_user("user_x", ())),
        Box::new(|| rig.with_key(&x_key, ())),
        Box::new(|| rig.as_user("user_yuser", ())),
        Box::new(|| rig.as_user("user_ydev", ())),
        Box::new(|| rig.as_user("user_y2", ())),
    ];
    for who in &outsiders {
        let who = who.as_ref();
        expect_err(
            c.get_organization(with(who, get(&y1.id))).await,
            Code::NotFound,
            None,
        );
        expect_err(
            c.list_members(with(
                who,
                ListMembersRequest {
                    organization_id: y1.id.clone(),
                    ..Default::default()
                },
            ))
            .await,
            Code::NotFound,
            None,
        );
        expect_err(
            c.update_organization(with(who, rename(&y1.id, "Taken", "")))
                .await,
            Code::NotFound,
            None,
        );
        expect_err(
            c.delete_organization(with(who, delete(&y1))).await,
            Code::NotFound,
            None,
        );
        expect_err(
            c.list_audit_events(with(
                who,
                ListAuditEventsRequest {
                    organization_id: y1.id.clone(),
                    ..Default::default()
                },
            ))
            .await,
            Code::NotFound,
            None,
        );
    }
    // X's owner cannot list Y's children; a child's owner sees nothing of its operator.
    for (user, org) in [("user_x", &y.id), ("user_y1", &y.id)] {
        expect_err(
            c.list_child_organizations(rig.as_user(
                user,
                ListChildOrganizationsRequest {
                    operator_organization_id: org.clone(),
                    ..Default::default()
                },
            ))
            .await,
            Code::NotFound,
            None,
        );
    }
    expect_err(
        c.get_organization(rig.as_user("user_y1", get(&y.id))).await,
        Code::NotFound,
        None,
    );
    expect_err(
        c.get_organization(rig.as_user("user_y1", get(&y2.id)))
            .await,
        Code::NotFound,
        None,
    );
    // Y's USER may not list its children either.
    expect_err(
        c.list_child_organizations(rig.as_user(
            "user_yuser",
            ListChildOrganizationsRequest {
                operator_organization_id: y.id.clone(),
                ..Default::default()
            },
        ))
        .await,
        Code::PermissionDenied,
        Some("INSUFFICIENT_ROLE"),
    );
    // Y's owner reads both children, their members and audit logs.
    for child in [&y1, &y2] {
        c.get_organization(rig.as_user("user_y", get(&child.id)))
            .await
            .unwrap();
        rig.audit_log("user_y", &child.id).await;
    }
}

#[tokio::test]
async fn org_13_list_children_filters_orders_and_pages() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let op = create_operator(&rig, "user_op", "Operator").await;
    let other = create_operator(&rig, "user_other", "Other").await;
    create_child(&rig, "user_other", &other.id, "Alpha elsewhere", "user_e").await;
    let mut ids = Vec::new();
    for name in ["Delta", "alpha", "Charlie", "Bravo"] {
        let child = create_child(&rig, "user_op", &op.id, name, "user_o").await;
        ids.push(child.organization.unwrap());
    }
    let mut c = rig.client();
    let list = |r: ListChildOrganizationsRequest| rig.as_user("user_op", r);
    let base = ListChildOrganizationsRequest {
        operator_organization_id: op.id.clone(),
        ..Default::default()
    };
    let names = |orgs: &[Organization]| orgs.iter().map(|o| o.name.clone()).collect::<Vec<_>>();

    // Creation order by default; only this operator's children.
    let all = c
        .list_child_organizations(list(base.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        names(&all.organizations),
        ["Delta", "alpha", "Charlie", "Bravo"]
    );
    // By name, descending, two per page, the token bound to the request.
    let by_name = ListChildOrganizationsRequest {
        order_by: "name desc".into(),
        page_size: 2,
        ..base.clone()
    };
    let page1 = c
        .list_child_organizations(list(by_name.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&page1.organizations), ["Delta", "Charlie"]);
    let page2 = c
        .list_child_organizations(list(ListChildOrganizationsRequest {
            page_token: page1.next_page_token.clone(),
            ..by_name.clone()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&page2.organizations), ["Bravo", "alpha"]);
    assert!(page2.next_page_token.is_empty());
    expect_err(
        c.list_child_organizations(list(ListChildOrganizationsRequest {
            page_token: page1.next_page_token,
            name_contains: "a".into(),
            ..by_name
        }))
        .await,
        Code::InvalidArgument,
        None,
    );
    // Name filter, ignoring case.
    let alpha = c
        .list_child_organizations(list(ListChildOrganizationsRequest {
            name_contains: "ALP".into(),
            ..base.clone()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&alpha.organizations), ["alpha"]);
    // A deleted child: only with show_deleted.
    let delta = &ids[0];
    c.delete_organization(rig.as_user("user_op", delete(delta)))
        .await
        .unwrap();
    let active = c
        .list_child_organizations(list(base.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&active.organizations), ["alpha", "Charlie", "Bravo"]);
    let deleted = c
        .list_child_organizations(list(ListChildOrganizationsRequest {
            show_deleted: true,
            state: OrganizationState::Deleted as i32,
            ..base.clone()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&deleted.organizations), ["Delta"]);
    expect_err(
        c.list_child_organizations(list(ListChildOrganizationsRequest {
            state: OrganizationState::Deleted as i32,
            ..base.clone()
        }))
        .await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        c.list_child_organizations(list(ListChildOrganizationsRequest {
            order_by: "owner".into(),
            ..base.clone()
        }))
        .await,
        Code::InvalidArgument,
        None,
    );
    // The operator's admin API key lists them too; a standard organization has none.
    let by_key = c
        .list_child_organizations(rig.with_key(&format!("opk_admin_{}", op.id), base.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_key.organizations.len(), 3);
    let standard = create_org_of_kind(&rig, "user_op", "Std", OrganizationKind::Standard).await;
    expect_err(
        c.list_child_organizations(list(ListChildOrganizationsRequest {
            operator_organization_id: standard.id,
            ..Default::default()
        }))
        .await,
        Code::FailedPrecondition,
        Some("NOT_AN_OPERATOR"),
    );
}
