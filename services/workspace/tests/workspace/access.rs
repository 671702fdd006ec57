//! CheckAccess (WS-10): read-your-writes across the organization events, deadlines, the
//! Default Workspace, API keys, and who may ask.

use std::time::Duration;

use orgplane_platform::auth::ApiKeyKind;
use orgplane_platform::testkit::bearer;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{ApiKeyCreated, ApiKeyStatusChanged};
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::*;
use tonic::Code;

use crate::rig::*;

/// Flips a member between ADMIN and USER `n` times; each CheckAccess names the change's
/// revision and must never answer with the role before it.
pub async fn demote_then_check(rig: &Rig, n: usize) {
    rig.organization("o1").await;
    let a = rig.workspace("o1", "Alpha").await;
    rig.add_member("o1", &a.id, "o1_user", WorkspaceRole::User)
        .await
        .unwrap();
    let mut client = rig.client();
    let token = rig.service_token();
    let mut role = OrgRole::User;
    for i in 0..n {
        let next = if role == OrgRole::User {
            OrgRole::Admin
        } else {
            OrgRole::User
        };
        let revision = rig
            .org
            .emit(role_changed("o1", "o1_user", role, next))
            .await;
        role = next;
        let answer = client
            .check_access(bearer(
                CheckAccessRequest {
                    organization_id: "o1".into(),
                    workspace_id: a.id.clone(),
                    subject: Some(check_access_request::Subject::UserId("o1_user".into())),
                    permission: Permission::Admin as i32,
                    min_organization_revision: revision,
                    min_workspace_revision: 0,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(answer.organization_revision >= revision);
        let expected = if next == OrgRole::Admin {
            WorkspaceRole::Admin
        } else {
            WorkspaceRole::User
        };
        assert_eq!(answer.role, expected as i32, "repetition {i}");
        assert_eq!(answer.allowed, next == OrgRole::Admin, "repetition {i}");
        assert_eq!(answer.org_role, next as i32, "repetition {i}");
    }
}

#[tokio::test]
async fn ws_10_demote_then_check_with_the_revision_never_answers_the_old_role_1000_times() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    demote_then_check(&rig, 1000).await;
}

#[tokio::test]
async fn ws_10_demote_then_check_never_answers_the_old_role_on_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres).await else {
        return;
    };
    demote_then_check(&rig, 1000).await;
}

#[tokio::test]
async fn ws_10_a_revision_not_reached_by_the_deadline_is_unavailable() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let mut request = bearer(
        CheckAccessRequest {
            organization_id: "o1".into(),
            workspace_id: String::new(),
            subject: Some(check_access_request::Subject::UserId("o1_user".into())),
            permission: Permission::Read as i32,
            min_organization_revision: 1_000_000,
            min_workspace_revision: 0,
        },
        &rig.service_token(),
    );
    request.set_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = rig.client().check_access(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(reason(&err), "REVISION_NOT_YET_APPLIED");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The same for this service's own revision.
    let mut request = bearer(
        CheckAccessRequest {
            organization_id: "o1".into(),
            workspace_id: String::new(),
            subject: Some(check_access_request::Subject::UserId("o1_user".into())),
            permission: Permission::Read as i32,
            min_organization_revision: 0,
            min_workspace_revision: 1_000_000,
        },
        &rig.service_token(),
    );
    request.set_timeout(Duration::from_millis(300));
    let err = rig.client().check_access(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    // A revision that arrives while waiting is answered.
    let pending = {
        let mut client = rig.client();
        let token = rig.service_token();
        let next = rig.org.outbox.head().await.unwrap().revision + 1;
        tokio::spawn(async move {
            client
                .check_access(bearer(
                    CheckAccessRequest {
                        organization_id: "o1".into(),
                        workspace_id: String::new(),
                        subject: Some(check_access_request::Subject::UserId("late".into())),
                        permission: Permission::Read as i32,
                        min_organization_revision: next,
                        min_workspace_revision: 0,
                    },
                    &token,
                ))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    rig.org.emit(added("o1", "late", OrgRole::Developer)).await;
    let answer = pending.await.unwrap().unwrap().into_inner();
    assert!(answer.allowed);
    assert_eq!(answer.role, WorkspaceRole::Developer as i32);
}

#[tokio::test]
async fn ws_10_new_workspace_is_visible_at_the_returned_revision() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let created = rig
        .client()
        .create_workspace(bearer(
            CreateWorkspaceRequest {
                organization_id: "o1".into(),
                workspace: Some(Workspace_ {
                    name: "Fresh".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &rig.user("o1_admin"),
        ))
        .await
        .unwrap()
        .into_inner();
    let answer = rig
        .client()
        .check_access(bearer(
            CheckAccessRequest {
                organization_id: "o1".into(),
                workspace_id: created.workspace.unwrap().id,
                subject: Some(check_access_request::Subject::UserId("o1_admin".into())),
                permission: Permission::Admin as i32,
                min_organization_revision: 0,
                min_workspace_revision: created.workspace_revision,
            },
            &rig.service_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.allowed);
    assert!(answer.workspace_revision >= created.workspace_revision);
}

#[tokio::test]
async fn ws_3_default_workspace_follows_the_org_role() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    for (user, role) in [
        ("o1_owner", WorkspaceRole::Admin),
        ("o1_billing", WorkspaceRole::Billing),
        ("o1_dev", WorkspaceRole::Developer),
        ("o1_user", WorkspaceRole::User),
    ] {
        assert_eq!(rig.role("o1", "", user).await, role, "{user}");
    }
    let stranger = rig.check("o1", "", "stranger", Permission::Read, 0).await;
    assert_eq!(stranger.denial_reason, AccessDenialReason::NotFound as i32);
    // Deleted organizations grant nothing.
    rig.org_event(Payload::OrganizationDeleted(
        orgplane_proto::events::v1::OrganizationDeleted {
            organization_id: "o1".into(),
            purge_time: None,
        },
    ))
    .await;
    let deleted = rig.check("o1", "", "o1_owner", Permission::Read, 0).await;
    assert_eq!(
        deleted.denial_reason,
        AccessDenialReason::OrganizationDeleted as i32
    );
}

#[tokio::test]
async fn ws_10_api_keys_resolve_to_their_workspace_and_org() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    rig.organization("o2").await;
    let a = rig.workspace("o1", "Alpha").await;
    let b = rig.workspace("o1", "Beta").await;
    let key = |id: &str, workspace: &str, admin: bool| {
        Payload::ApiKeyCreated(ApiKeyCreated {
            api_key_id: id.into(),
            organization_id: "o1".into(),
            workspace_id: workspace.into(),
            admin,
            active: true,
        })
    };
    rig.identity_event(key("key_ws", &a.id, false)).await;
    rig.identity_event(key("key_default", "", false)).await;
    rig.identity_event(key("key_admin", "", true)).await;
    let check = |key: &'static str, org: &'static str, ws: String, p: Permission| {
        let mut client = rig.client();
        let token = rig.service_token();
        async move {
            client
                .check_access(bearer(
                    CheckAccessRequest {
                        organization_id: org.into(),
                        workspace_id: ws,
                        subject: Some(check_access_request::Subject::ApiKeyId(key.into())),
                        permission: p as i32,
                        min_organization_revision: 0,
                        min_workspace_revision: 0,
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let ws_key = check("key_ws", "o1", a.id.clone(), Permission::Develop).await;
    assert!(ws_key.allowed);
    assert_eq!(ws_key.role, WorkspaceRole::Developer as i32);
    assert_eq!(ws_key.role_source, WorkspaceRoleSource::ApiKey as i32);
    assert!(
        !check("key_ws", "o1", b.id.clone(), Permission::Read)
            .await
            .allowed
    );
    assert!(
        !check("key_ws", "o1", String::new(), Permission::Read)
            .await
            .allowed
    );
    assert!(
        check("key_default", "o1", String::new(), Permission::Use)
            .await
            .allowed
    );
    assert!(
        check("key_admin", "o1", b.id.clone(), Permission::Admin)
            .await
            .allowed
    );
    let other_org = check("key_admin", "o2", String::new(), Permission::Read).await;
    assert_eq!(other_org.denial_reason, AccessDenialReason::NotFound as i32);
    rig.identity_event(Payload::ApiKeyStatusChanged(ApiKeyStatusChanged {
        api_key_id: "key_ws".into(),
        organization_id: "o1".into(),
        active: false,
    }))
    .await;
    let inactive = check("key_ws", "o1", a.id.clone(), Permission::Read).await;
    assert_eq!(
        inactive.denial_reason,
        AccessDenialReason::ApiKeyInactive as i32
    );
    // An archived workspace grants nothing.
    rig.client()
        .archive_workspace(bearer(
            ArchiveWorkspaceRequest {
                workspace_id: b.id.clone(),
                etag: String::new(),
            },
            &rig.user("o1_owner"),
        ))
        .await
        .unwrap();
    let archived = check("key_admin", "o1", b.id.clone(), Permission::Read).await;
    assert_eq!(
        archived.denial_reason,
        AccessDenialReason::WorkspaceArchived as i32
    );
    // An API key may ask about itself through x-api-key.
    rig.api_key("opk_secret_ws", "key_default", "o1", ApiKeyKind::Workspace);
    let mut own = tonic::Request::new(CheckAccessRequest {
        organization_id: "o1".into(),
        workspace_id: String::new(),
        subject: Some(check_access_request::Subject::ApiKeyId(
            "key_default".into(),
        )),
        permission: Permission::Use as i32,
        min_organization_revision: 0,
        min_workspace_revision: 0,
    });
    own.metadata_mut()
        .insert("x-api-key", "opk_secret_ws".parse().unwrap());
    assert!(
        rig.client()
            .check_access(own)
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
}

#[tokio::test]
async fn ws_10_users_may_only_check_themselves() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let own = rig
        .client()
        .check_access(bearer(
            CheckAccessRequest {
                organization_id: "o1".into(),
                workspace_id: String::new(),
                subject: Some(check_access_request::Subject::UserId("o1_dev".into())),
                permission: Permission::Read as i32,
                ..Default::default()
            },
            &rig.user("o1_dev"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(own.allowed);
    let other = rig
        .client()
        .check_access(bearer(
            CheckAccessRequest {
                organization_id: "o1".into(),
                workspace_id: String::new(),
                subject: Some(check_access_request::Subject::UserId("o1_owner".into())),
                permission: Permission::Read as i32,
                ..Default::default()
            },
            &rig.user("o1_dev"),
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
}
