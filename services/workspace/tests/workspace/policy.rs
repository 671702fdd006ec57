//! The organization's security policy (rule ORG-16) as the workspace service enforces it: the
//! calling user's sign-in is judged by the policy of the organization the call is about, in
//! that organization only; the policy comes from the organization's events and from its
//! re-sync snapshot, and survives a restart.

use std::time::Duration;

use orgplane_platform::policy::{MFA_REQUIRED, MfaRequirement};
use orgplane_platform::testkit::{TestDb, bearer};
use orgplane_proto::organization::v1::{MfaRequirement as ProtoMfa, OrgRole, Organization};
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;
use orgplane_proto::workspace::v1::*;
use orgplane_workspace::Config;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::rig::*;

/// A user token whose sign-in used only a password.
fn password(rig: &Rig, user: &str) -> String {
    rig.auth
        .user_token_with(user, |c| c.amr = vec!["pwd".into()])
}

/// A password-only token of a user who has a second factor enrolled.
fn password_enrolled(rig: &Rig, user: &str) -> String {
    rig.auth.user_token_with(user, |c| {
        c.amr = vec!["pwd".into()];
        c.mfa_enrolled = true;
    })
}

/// A user token whose sign-in used a password and a one-time code.
fn with_mfa(rig: &Rig, user: &str) -> String {
    rig.auth.user_token_with(user, |c| {
        c.amr = vec!["pwd".into(), "otp".into(), "mfa".into()];
        c.mfa_enrolled = true;
    })
}

async fn list(
    client: &mut WorkspaceServiceClient<Channel>,
    org: &str,
    token: &str,
) -> Result<ListWorkspacesResponse, tonic::Status> {
    client
        .list_workspaces(bearer(
            ListWorkspacesRequest {
                organization_id: org.into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn get(
    client: &mut WorkspaceServiceClient<Channel>,
    workspace_id: &str,
    token: &str,
) -> Result<GetWorkspaceResponse, tonic::Status> {
    client
        .get_workspace(bearer(
            GetWorkspaceRequest {
                workspace_id: workspace_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// CheckAccess about `user` with `token` (the user's own, or a service's).
async fn check(
    client: &mut WorkspaceServiceClient<Channel>,
    org: &str,
    workspace_id: &str,
    user: &str,
    token: &str,
) -> Result<CheckAccessResponse, tonic::Status> {
    client
        .check_access(bearer(
            CheckAccessRequest {
                organization_id: org.into(),
                workspace_id: workspace_id.into(),
                subject: Some(check_access_request::Subject::UserId(user.into())),
                permission: Permission::Read as i32,
                min_organization_revision: 0,
                min_workspace_revision: 0,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// Asserts UNAUTHENTICATED `MFA_REQUIRED` about `org`, saying whether enrollment comes first.
fn assert_mfa_required<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    org: &str,
    enrollment_required: bool,
) {
    let status = result.expect_err("the policy must refuse this sign-in");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, MFA_REQUIRED.as_str_name());
    assert_eq!(info.metadata["organization_id"], org);
    assert_eq!(
        info.metadata["enrollment_required"],
        enrollment_required.to_string()
    );
}

/// Organizations `oa` and `ob`, a workspace in each, and `shared`, a DEVELOPER in both with a
/// direct USER role in both workspaces. Returns the workspaces.
async fn two_organizations(rig: &Rig) -> (Workspace_, Workspace_) {
    rig.organization("oa").await;
    rig.organization("ob").await;
    let a = rig.workspace("oa", "Alpha").await;
    let b = rig.workspace("ob", "Beta").await;
    for (org, ws) in [("oa", &a), ("ob", &b)] {
        rig.org_event(added(org, "shared", OrgRole::Developer))
            .await;
        rig.add_member(org, &ws.id, "shared", WorkspaceRole::User)
            .await
            .unwrap();
    }
    (a, b)
}

pub async fn required_in_one_organization(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let (a, b) = two_organizations(&rig).await;
    let mut client = rig.client();
    let pwd = password(&rig, "shared");
    // Before the policy, the password-only token works in both.
    list(&mut client, "oa", &pwd).await.unwrap();
    rig.org_event(policy_changed("oa", ProtoMfa::Required))
        .await;

    // Refused in oa: a listing, a get and CheckAccess about itself.
    assert_mfa_required(list(&mut client, "oa", &pwd).await, "oa", true);
    assert_mfa_required(get(&mut client, &a.id, &pwd).await, "oa", true);
    assert_mfa_required(
        check(&mut client, "oa", &a.id, "shared", &pwd).await,
        "oa",
        true,
    );
    assert_mfa_required(
        check(&mut client, "oa", "", "shared", &pwd).await,
        "oa",
        true,
    );
    // A user who has a factor but did not use it is told to use it, not to enroll.
    let enrolled = password_enrolled(&rig, "shared");
    assert_mfa_required(list(&mut client, "oa", &enrolled).await, "oa", false);

    // The same token still works in ob, whose policy stays OPTIONAL.
    let listed = list(&mut client, "ob", &pwd).await.unwrap();
    assert_eq!(listed.workspaces.len(), 1);
    get(&mut client, &b.id, &pwd).await.unwrap();
    assert!(
        check(&mut client, "ob", &b.id, "shared", &pwd)
            .await
            .unwrap()
            .allowed
    );

    // A sign-in with a second factor works in oa.
    let mfa = with_mfa(&rig, "shared");
    let listed = list(&mut client, "oa", &mfa).await.unwrap();
    assert_eq!(listed.workspaces[0].id, a.id);
    get(&mut client, &a.id, &mfa).await.unwrap();
    assert!(
        check(&mut client, "oa", &a.id, "shared", &mfa)
            .await
            .unwrap()
            .allowed
    );

    // A product backend asking about the user gets the user's permissions: its call is not
    // the user's sign-in.
    let answer = check(&mut client, "oa", &a.id, "shared", &rig.service_token())
        .await
        .unwrap();
    assert!(answer.allowed);
    assert_eq!(answer.role, WorkspaceRole::User as i32);

    // Relaxing the policy lets the password-only token back in.
    rig.org_event(policy_changed("oa", ProtoMfa::Optional))
        .await;
    list(&mut client, "oa", &pwd).await.unwrap();
}

#[tokio::test]
async fn org_16_password_only_token_refused_where_mfa_required_and_accepted_elsewhere() {
    required_in_one_organization(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_16_password_only_token_refused_where_mfa_required_on_postgres() {
    required_in_one_organization(Backend::Postgres).await;
}

pub async fn privileged_roles_only(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    rig.organization("oa").await;
    let a = rig.workspace("oa", "Alpha").await;
    for user in ["oa_dev", "oa_user"] {
        rig.add_member("oa", &a.id, user, WorkspaceRole::User)
            .await
            .unwrap();
    }
    rig.org_event(policy_changed("oa", ProtoMfa::RequiredForPrivilegedRoles))
        .await;
    let mut client = rig.client();
    // DEVELOPER and USER need no second factor.
    for user in ["oa_dev", "oa_user"] {
        let pwd = password(&rig, user);
        list(&mut client, "oa", &pwd).await.unwrap();
        get(&mut client, &a.id, &pwd).await.unwrap();
        assert!(
            check(&mut client, "oa", &a.id, user, &pwd)
                .await
                .unwrap()
                .allowed
        );
    }
    // OWNER, ADMIN and BILLING do.
    for user in ["oa_owner", "oa_admin", "oa_billing"] {
        let pwd = password(&rig, user);
        assert_mfa_required(list(&mut client, "oa", &pwd).await, "oa", true);
        assert_mfa_required(
            check(&mut client, "oa", &a.id, user, &pwd).await,
            "oa",
            true,
        );
        list(&mut client, "oa", &with_mfa(&rig, user))
            .await
            .unwrap();
    }
    // A promotion to a privileged role brings the requirement with it.
    rig.org_event(role_changed(
        "oa",
        "oa_dev",
        OrgRole::Developer,
        OrgRole::Admin,
    ))
    .await;
    assert_mfa_required(
        list(&mut client, "oa", &password(&rig, "oa_dev")).await,
        "oa",
        true,
    );
}

#[tokio::test]
async fn org_16_required_for_privileged_roles_lets_developer_and_user_pass() {
    privileged_roles_only(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_16_required_for_privileged_roles_on_postgres() {
    privileged_roles_only(Backend::Postgres).await;
}

pub async fn kept_across_restart(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let (a, _) = two_organizations(&rig).await;
    rig.org_event(policy_changed("oa", ProtoMfa::Required))
        .await;
    // The memory view rebuilt from this service's database keeps the policy.
    rig.service.replica().reload().await.unwrap();
    assert_eq!(
        rig.service.replica().policy("oa").mfa,
        MfaRequirement::Required
    );
    assert_eq!(
        rig.service.replica().policy("ob").mfa,
        MfaRequirement::Optional
    );
    // So does a new process on the same database, which has no event left to apply.
    let (restarted, server, _) = start_service(
        &rig.auth,
        &rig.fakes.url(),
        &rig.ws_db.url,
        &Config::default(),
        &rig.keys,
    )
    .await;
    assert_eq!(
        restarted.replica().policy("oa").mfa,
        MfaRequirement::Required
    );
    let mut client = WorkspaceServiceClient::new(server.channel());
    let pwd = password(&rig, "shared");
    assert_mfa_required(list(&mut client, "oa", &pwd).await, "oa", true);
    assert_mfa_required(
        check(&mut client, "oa", &a.id, "shared", &pwd).await,
        "oa",
        true,
    );
    list(&mut client, "ob", &pwd).await.unwrap();
    list(&mut client, "oa", &with_mfa(&rig, "shared"))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn org_16_policy_kept_across_a_restart() {
    kept_across_restart(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_16_policy_kept_across_a_restart_on_postgres() {
    kept_across_restart(Backend::Postgres).await;
}

pub async fn from_resync_snapshot(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let pg = rig.ws_db.url.starts_with("postgres");
    let (a, _) = two_organizations(&rig).await;
    // The policy exists only in the snapshot: no SecurityPolicyChanged was published.
    rig.fake_org
        .policies
        .lock()
        .unwrap()
        .insert("oa".into(), mfa_policy("oa", ProtoMfa::Required));
    let revision = rig.org.outbox.head().await.unwrap().revision;
    let organizations = ["oa", "ob"]
        .iter()
        .map(|o| {
            let e = rig.service.replica().organization(o).unwrap();
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
        .collect();
    *rig.fake_org.snapshot.lock().unwrap() = Snapshot {
        revision,
        organizations,
    };
    rig.org
        .outbox
        .compact(chrono::Utc::now() + chrono::Duration::days(1))
        .await
        .unwrap();
    assert!(rig.org.outbox.head().await.unwrap().compacted_through > 0);
    let last = rig
        .org_event(added("ob", "late_joiner", OrgRole::Developer))
        .await;
    // A fresh consumer finds the events compacted and re-syncs from the snapshot.
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
    assert_eq!(fresh.replica().policy("oa").mfa, MfaRequirement::Required);
    assert_eq!(fresh.replica().policy("ob").mfa, MfaRequirement::Optional);
    let pwd = password(&rig, "shared");
    let mut fresh_client = WorkspaceServiceClient::new(server.channel());
    assert_mfa_required(list(&mut fresh_client, "oa", &pwd).await, "oa", true);
    assert_mfa_required(
        check(&mut fresh_client, "oa", &a.id, "shared", &pwd).await,
        "oa",
        true,
    );
    list(&mut fresh_client, "ob", &pwd).await.unwrap();
    // The first consumer, which never saw the policy, still lets the token in: the refusal
    // above came from the snapshot.
    list(&mut rig.client(), "oa", &pwd).await.unwrap();
    // The re-synced policy is in the fresh consumer's database too.
    fresh.replica().reload().await.unwrap();
    assert_eq!(fresh.replica().policy("oa").mfa, MfaRequirement::Required);
    server.stop().await;
}

#[tokio::test]
async fn org_16_policy_from_a_resync_snapshot() {
    from_resync_snapshot(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_16_policy_from_a_resync_snapshot_on_postgres() {
    from_resync_snapshot(Backend::Postgres).await;
}
