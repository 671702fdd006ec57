//! Role inheritance (WS-4 … WS-9), through the admin API and CheckAccess.

use orgplane_platform::testkit::bearer;
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::*;
use tonic::Code;

use crate::rig::*;

#[tokio::test]
async fn ws_5_admin_and_billing_have_access_to_every_workspace() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let a = rig.workspace("o1", "Alpha").await;
    let b = rig.workspace("o1", "Beta").await;
    for ws in [&a.id, &b.id] {
        assert_eq!(rig.role("o1", ws, "o1_owner").await, WorkspaceRole::Admin);
        assert_eq!(rig.role("o1", ws, "o1_admin").await, WorkspaceRole::Admin);
        assert_eq!(
            rig.role("o1", ws, "o1_billing").await,
            WorkspaceRole::Billing
        );
        let dev = rig.check("o1", ws, "o1_dev", Permission::Read, 0).await;
        assert!(!dev.allowed);
        assert_eq!(dev.denial_reason, AccessDenialReason::NoRole as i32);
    }
    let billing = rig
        .check("o1", &a.id, "o1_billing", Permission::Billing, 0)
        .await;
    assert!(billing.allowed);
    assert_eq!(billing.role_source, WorkspaceRoleSource::OrgRole as i32);
    let billing_use = rig
        .check("o1", &a.id, "o1_billing", Permission::Use, 0)
        .await;
    assert!(!billing_use.allowed);
    assert_eq!(
        billing_use.denial_reason,
        AccessDenialReason::InsufficientRole as i32
    );
    // Listing shows the inherited members with their source.
    let members = rig
        .client()
        .list_workspace_members(bearer(
            ListWorkspaceMembersRequest {
                workspace_id: a.id.clone(),
                ..Default::default()
            },
            &rig.user("o1_admin"),
        ))
        .await
        .unwrap()
        .into_inner()
        .workspace_members;
    let listed: Vec<(String, i32, i32)> = members
        .iter()
        .map(|m| (m.user_id.clone(), m.role, m.role_source))
        .collect();
    let org_role = WorkspaceRoleSource::OrgRole as i32;
    assert_eq!(
        listed,
        vec![
            ("o1_admin".into(), WorkspaceRole::Admin as i32, org_role),
            ("o1_billing".into(), WorkspaceRole::Billing as i32, org_role),
            ("o1_owner".into(), WorkspaceRole::Admin as i32, org_role),
        ]
    );
    // USER and DEVELOPER members don't see workspaces they were not added to.
    let err = rig
        .client()
        .get_workspace(bearer(
            GetWorkspaceRequest {
                workspace_id: a.id.clone(),
            },
            &rig.user("o1_dev"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn ws_6_user_and_developer_get_roles_where_added() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let a = rig.workspace("o1", "Alpha").await;
    let added = rig
        .add_member("o1", &a.id, "o1_dev", WorkspaceRole::Admin)
        .await
        .unwrap();
    let m = added.workspace_member.unwrap();
    assert_eq!(m.role, WorkspaceRole::Admin as i32);
    assert_eq!(m.role_source, WorkspaceRoleSource::Direct as i32);
    assert_eq!(m.org_role, OrgRole::Developer as i32);
    rig.add_member("o1", &a.id, "o1_user", WorkspaceRole::Developer)
        .await
        .unwrap();
    assert_eq!(rig.role("o1", &a.id, "o1_dev").await, WorkspaceRole::Admin);
    let again = rig
        .add_member("o1", &a.id, "o1_user", WorkspaceRole::User)
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    // The direct member now sees the workspace, and only it.
    let other = rig.workspace("o1", "Beta").await;
    let listed = rig
        .client()
        .list_workspaces(bearer(
            ListWorkspacesRequest {
                organization_id: "o1".into(),
                ..Default::default()
            },
            &rig.user("o1_user"),
        ))
        .await
        .unwrap()
        .into_inner()
        .workspaces;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, a.id);
    assert_ne!(listed[0].id, other.id);
    // Update with an etag, then a stale etag is ABORTED.
    let got = rig
        .client()
        .get_workspace_member(bearer(
            GetWorkspaceMemberRequest {
                workspace_id: a.id.clone(),
                user_id: "me".into(),
            },
            &rig.user("o1_user"),
        ))
        .await
        .unwrap()
        .into_inner()
        .workspace_member
        .unwrap();
    let update = |etag: String| UpdateWorkspaceMemberRequest {
        workspace_member: Some(WorkspaceMember {
            workspace_id: a.id.clone(),
            user_id: "o1_user".into(),
            role: WorkspaceRole::User as i32,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["role".into()],
        }),
        etag,
    };
    rig.client()
        .update_workspace_member(bearer(update(got.etag.clone()), &rig.user("o1_owner")))
        .await
        .unwrap();
    let stale = rig
        .client()
        .update_workspace_member(bearer(update(got.etag), &rig.user("o1_owner")))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(rig.role("o1", &a.id, "o1_user").await, WorkspaceRole::User);
    // Not a member of the org: FAILED_PRECONDITION.
    let outsider = rig
        .add_member("o1", &a.id, "stranger", WorkspaceRole::User)
        .await
        .unwrap_err();
    assert_eq!(outsider.code(), Code::FailedPrecondition);
    assert_eq!(reason(&outsider), "NOT_ORGANIZATION_MEMBER");
    // A developer cannot manage members: they see the workspace, so PERMISSION_DENIED.
    let denied = rig
        .client()
        .add_workspace_member(bearer(
            AddWorkspaceMemberRequest {
                workspace_id: a.id.clone(),
                user_id: "o1_billing".into(),
                role: WorkspaceRole::Admin as i32,
                request_id: String::new(),
            },
            &rig.user("o1_dev"),
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn ws_4_workspace_billing_is_never_assigned_by_hand() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let a = rig.workspace("o1", "Alpha").await;
    for user in ["o1_dev", "o1_billing"] {
        let err = rig
            .add_member("o1", &a.id, user, WorkspaceRole::Billing)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(reason(&err), "WORKSPACE_BILLING_NOT_ASSIGNABLE");
    }
}

#[tokio::test]
async fn ws_7_billing_upgraded_to_workspace_admin() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let a = rig.workspace("o1", "Alpha").await;
    let b = rig.workspace("o1", "Beta").await;
    let up = rig
        .add_member("o1", &a.id, "o1_billing", WorkspaceRole::Admin)
        .await
        .unwrap()
        .workspace_member
        .unwrap();
    assert_eq!(up.role, WorkspaceRole::Admin as i32);
    assert_eq!(up.role_source, WorkspaceRoleSource::Direct as i32);
    assert_eq!(
        rig.role("o1", &a.id, "o1_billing").await,
        WorkspaceRole::Admin
    );
    assert_eq!(
        rig.role("o1", &b.id, "o1_billing").await,
        WorkspaceRole::Billing
    );
    // Any other hand-assigned role is refused for a BILLING member.
    let err = rig
        .add_member("o1", &b.id, "o1_billing", WorkspaceRole::Developer)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "ROLE_INHERITED_FROM_ORGANIZATION");
    // Removing the upgrade falls back to WORKSPACE_BILLING.
    rig.client()
        .remove_workspace_member(bearer(
            RemoveWorkspaceMemberRequest {
                workspace_id: a.id.clone(),
                user_id: "o1_billing".into(),
            },
            &rig.user("o1_admin"),
        ))
        .await
        .unwrap();
    assert_eq!(
        rig.role("o1", &a.id, "o1_billing").await,
        WorkspaceRole::Billing
    );
}

#[tokio::test]
async fn ws_7_admin_and_billing_cannot_be_removed_or_changed() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let a = rig.workspace("o1", "Alpha").await;
    for user in ["o1_owner", "o1_admin", "o1_billing"] {
        let err = rig
            .client()
            .remove_workspace_member(bearer(
                RemoveWorkspaceMemberRequest {
                    workspace_id: a.id.clone(),
                    user_id: user.into(),
                },
                &rig.user("o1_owner"),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{user}");
        assert_eq!(reason(&err), "ROLE_INHERITED_FROM_ORGANIZATION");
    }
    for user in ["o1_owner", "o1_admin"] {
        let err = rig
            .add_member("o1", &a.id, user, WorkspaceRole::User)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{user}");
        let err = rig
            .client()
            .update_workspace_member(bearer(
                UpdateWorkspaceMemberRequest {
                    workspace_member: Some(WorkspaceMember {
                        workspace_id: a.id.clone(),
                        user_id: user.into(),
                        role: WorkspaceRole::User as i32,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["role".into()],
                    }),
                    etag: String::new(),
                },
                &rig.user("o1_owner"),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{user}");
        assert_eq!(reason(&err), "ROLE_INHERITED_FROM_ORGANIZATION");
    }
}

/// WS-8 on a backend: demotion keeps only the hand-assigned workspaces; promotion grants all.
pub async fn demotion_and_promotion(rig: &Rig) {
    rig.organization("o1").await;
    let a = rig.workspace("o1", "Alpha").await;
    let b = rig.workspace("o1", "Beta").await;
    rig.add_member("o1", &a.id, "o1_dev", WorkspaceRole::Developer)
        .await
        .unwrap();
    rig.add_member("o1", &a.id, "o1_billing", WorkspaceRole::Admin)
        .await
        .unwrap();
    // Promotion: DEVELOPER → ADMIN administers every workspace; the direct role is kept.
    rig.org_event(role_changed(
        "o1",
        "o1_dev",
        OrgRole::Developer,
        OrgRole::Admin,
    ))
    .await;
    assert_eq!(rig.role("o1", &a.id, "o1_dev").await, WorkspaceRole::Admin);
    assert_eq!(rig.role("o1", &b.id, "o1_dev").await, WorkspaceRole::Admin);
    let m = rig
        .client()
        .get_workspace_member(bearer(
            GetWorkspaceMemberRequest {
                workspace_id: a.id.clone(),
                user_id: "o1_dev".into(),
            },
            &rig.user("o1_owner"),
        ))
        .await
        .unwrap()
        .into_inner()
        .workspace_member
        .unwrap();
    assert_eq!(m.role_source, WorkspaceRoleSource::OrgRole as i32);
    assert_eq!(m.assigned_role, WorkspaceRole::Developer as i32);
    // Demotion: back to exactly the hand-assigned role, nothing elsewhere.
    rig.org_event(role_changed("o1", "o1_dev", OrgRole::Admin, OrgRole::User))
        .await;
    assert_eq!(
        rig.role("o1", &a.id, "o1_dev").await,
        WorkspaceRole::Developer
    );
    assert_eq!(
        rig.role("o1", &b.id, "o1_dev").await,
        WorkspaceRole::Unspecified
    );
    // Billing demoted: keeps the hand-assigned WORKSPACE_ADMIN in Alpha only.
    rig.org_event(role_changed(
        "o1",
        "o1_billing",
        OrgRole::Billing,
        OrgRole::Developer,
    ))
    .await;
    assert_eq!(
        rig.role("o1", &a.id, "o1_billing").await,
        WorkspaceRole::Admin
    );
    assert_eq!(
        rig.role("o1", &b.id, "o1_billing").await,
        WorkspaceRole::Unspecified
    );
    // Promotion of a USER with nothing by hand: BILLING everywhere.
    rig.org_event(role_changed(
        "o1",
        "o1_user",
        OrgRole::User,
        OrgRole::Billing,
    ))
    .await;
    assert_eq!(
        rig.role("o1", &a.id, "o1_user").await,
        WorkspaceRole::Billing
    );
    assert_eq!(
        rig.role("o1", &b.id, "o1_user").await,
        WorkspaceRole::Billing
    );
}

#[tokio::test]
async fn ws_8_demotion_keeps_only_hand_assigned_workspaces_and_promotion_grants_all() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    demotion_and_promotion(&rig).await;
}

#[tokio::test]
async fn ws_8_demotion_keeps_only_hand_assigned_workspaces_on_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres).await else {
        return;
    };
    demotion_and_promotion(&rig).await;
}

/// WS-9 on a backend.
pub async fn removal_and_purge(rig: &Rig) {
    rig.organization("o1").await;
    rig.organization("o2").await;
    let a = rig.workspace("o1", "Alpha").await;
    let other = rig.workspace("o2", "Other").await;
    rig.add_member("o1", &a.id, "o1_dev", WorkspaceRole::Developer)
        .await
        .unwrap();
    rig.org_event(removed("o1", "o1_dev", OrgRole::Developer))
        .await;
    assert_eq!(
        rig.role("o1", &a.id, "o1_dev").await,
        WorkspaceRole::Unspecified
    );
    // Joining again later does not bring the old workspace role back.
    rig.org_event(added("o1", "o1_dev", OrgRole::Developer))
        .await;
    let again = rig.check("o1", &a.id, "o1_dev", Permission::Read, 0).await;
    assert_eq!(again.denial_reason, AccessDenialReason::NoRole as i32);
    // The removal is audited.
    let audit = rig
        .client()
        .list_audit_events(bearer(
            ListAuditEventsRequest {
                organization_id: "o1".into(),
                filter: Some(orgplane_proto::audit::v1::AuditEventFilter {
                    action: "workspace_member.remove".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &rig.user("o1_owner"),
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert_eq!(audit.len(), 1);
    // Purge removes the org's workspaces, and nothing of other orgs.
    rig.org_event(purged("o1")).await;
    let gone = rig
        .check("o1", &a.id, "o1_owner", Permission::Read, 0)
        .await;
    assert_eq!(gone.denial_reason, AccessDenialReason::NotFound as i32);
    assert!(
        rig.service
            .memory()
            .read(|v| !v.workspaces.contains_key(&a.id))
    );
    let listed = rig
        .client()
        .list_workspaces(bearer(
            ListWorkspacesRequest {
                organization_id: "-".into(),
                include_archived: true,
                ..Default::default()
            },
            &rig.service_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .workspaces;
    assert_eq!(
        listed.iter().map(|w| w.id.clone()).collect::<Vec<_>>(),
        vec![other.id.clone()]
    );
    assert_eq!(
        rig.role("o2", &other.id, "o2_owner").await,
        WorkspaceRole::Admin
    );
}

#[tokio::test]
async fn ws_9_member_removal_and_org_purge_remove_workspace_access() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    removal_and_purge(&rig).await;
}

#[tokio::test]
async fn ws_9_member_removal_and_org_purge_on_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres).await else {
        return;
    };
    removal_and_purge(&rig).await;
}
