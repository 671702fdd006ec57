//! The organization's security policy (rule ORG-16) as billing-access enforces it: the calling
//! user's sign-in is judged by the policy of the organization the call is about, in that
//! organization only, and the policy survives a restart.

use orgplane_billing_access::Config;
use orgplane_platform::policy::{MFA_REQUIRED, MfaRequirement};
use orgplane_platform::testkit::bearer;
use orgplane_proto::billing::v1::billing_access_service_client::BillingAccessServiceClient;
use orgplane_proto::billing::v1::check_billing_access_request::Subject;
use orgplane_proto::billing::v1::*;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{MemberAdded, SecurityPolicyChanged};
use orgplane_proto::organization::v1::{MfaRequirement as ProtoMfa, OrgRole, SecurityPolicy};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::support::{Backend, Rig, reason};

/// A user token whose sign-in used only a password.
fn password(rig: &Rig, user: &str) -> String {
    rig.auth
        .user_token_with(user, |c| c.amr = vec!["pwd".into()])
}

/// A user token whose sign-in used a password and a one-time code.
fn with_mfa(rig: &Rig, user: &str) -> String {
    rig.auth.user_token_with(user, |c| {
        c.amr = vec!["pwd".into(), "otp".into(), "mfa".into()];
        c.mfa_enrolled = true;
    })
}

/// Sets `org`'s MFA requirement (the rest of the policy default) and waits for it.
async fn set_policy(rig: &Rig, org: &str, mfa: ProtoMfa) {
    let rev = rig
        .org_events(vec![Payload::SecurityPolicyChanged(
            SecurityPolicyChanged {
                organization_id: org.into(),
                security_policy: Some(SecurityPolicy {
                    mfa_requirement: mfa as i32,
                    ..orgplane_platform::policy::SecurityPolicy::default().to_proto(org)
                }),
            },
        )])
        .await;
    rig.org_synced(rev).await;
}

async fn account(
    client: &mut BillingAccessServiceClient<Channel>,
    org: &str,
    token: &str,
) -> Result<BillingAccount, tonic::Status> {
    client
        .get_billing_account(bearer(
            GetBillingAccountRequest {
                organization_id: org.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().billing_account.unwrap())
}

async fn members(
    client: &mut BillingAccessServiceClient<Channel>,
    org: &str,
    token: &str,
) -> Result<ListBillingMembersResponse, tonic::Status> {
    client
        .list_billing_members(bearer(
            ListBillingMembersRequest {
                organization_id: org.into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// CheckBillingAccess about `user` with `token` (the user's own, or a service's).
async fn check(
    client: &mut BillingAccessServiceClient<Channel>,
    org: &str,
    user: &str,
    token: &str,
) -> Result<CheckBillingAccessResponse, tonic::Status> {
    client
        .check_billing_access(bearer(
            CheckBillingAccessRequest {
                organization_id: org.into(),
                subject: Some(Subject::UserId(user.into())),
                min_organization_revision: 0,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// Asserts UNAUTHENTICATED `MFA_REQUIRED` about `org` for a user with no factor enrolled.
fn assert_mfa_required<T: std::fmt::Debug>(result: Result<T, tonic::Status>, org: &str) {
    let status = result.expect_err("the policy must refuse this sign-in");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, MFA_REQUIRED.as_str_name());
    assert_eq!(info.metadata["organization_id"], org);
    assert_eq!(info.metadata["enrollment_required"], "true");
}

/// `org_a` and `org_b`, with `shared` a BILLING member of both.
async fn two_organizations(rig: &Rig) {
    rig.create_org("org_a", &[("shared", OrgRole::Billing)])
        .await;
    rig.create_org("org_b", &[("shared", OrgRole::Billing)])
        .await;
}

async fn required_in_one_organization(rig: Rig) {
    two_organizations(&rig).await;
    let mut c = rig.client();
    let pwd = password(&rig, "shared");
    account(&mut c, "org_a", &pwd).await.unwrap();
    set_policy(&rig, "org_a", ProtoMfa::Required).await;

    // Refused in org_a: the account, the members, and CheckBillingAccess about itself.
    assert_mfa_required(account(&mut c, "org_a", &pwd).await, "org_a");
    assert_mfa_required(members(&mut c, "org_a", &pwd).await, "org_a");
    assert_mfa_required(check(&mut c, "org_a", "shared", &pwd).await, "org_a");

    // The same token works in org_b, whose policy stays OPTIONAL.
    assert_eq!(
        account(&mut c, "org_b", &pwd)
            .await
            .unwrap()
            .organization_id,
        "org_b"
    );
    assert!(
        check(&mut c, "org_b", "shared", &pwd)
            .await
            .unwrap()
            .allowed
    );

    // A sign-in with a second factor works in org_a.
    let mfa = with_mfa(&rig, "shared");
    account(&mut c, "org_a", &mfa).await.unwrap();
    members(&mut c, "org_a", &mfa).await.unwrap();
    assert!(
        check(&mut c, "org_a", "shared", &mfa)
            .await
            .unwrap()
            .allowed
    );

    // A service asking about the user gets the user's permissions: its call is not the user's
    // sign-in.
    let answer = check(
        &mut c,
        "org_a",
        "shared",
        &rig.auth.service_token("product"),
    )
    .await
    .unwrap();
    assert!(answer.allowed);
    assert_eq!(answer.org_role, OrgRole::Billing as i32);
}

#[tokio::test]
async fn org_16_password_only_token_refused_where_mfa_required_and_accepted_elsewhere() {
    required_in_one_organization(Rig::sqlite().await).await;
}

#[tokio::test]
async fn org_16_password_only_token_refused_where_mfa_required_on_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await else {
        return;
    };
    required_in_one_organization(rig).await;
}

async fn privileged_roles(rig: Rig) {
    rig.create_org(
        "org_a",
        &[
            ("u_billing", OrgRole::Billing),
            ("u_dev", OrgRole::Developer),
        ],
    )
    .await;
    set_policy(&rig, "org_a", ProtoMfa::RequiredForPrivilegedRoles).await;
    let mut c = rig.client();
    // A BILLING member's password-only token is refused; with a second factor it works.
    let pwd = password(&rig, "u_billing");
    assert_mfa_required(account(&mut c, "org_a", &pwd).await, "org_a");
    assert_mfa_required(check(&mut c, "org_a", "u_billing", &pwd).await, "org_a");
    account(&mut c, "org_a", &with_mfa(&rig, "u_billing"))
        .await
        .unwrap();
    // A DEVELOPER's passes the policy and meets the role check (BILL-1) as before.
    let dev = password(&rig, "u_dev");
    let err = account(&mut c, "org_a", &dev).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "INSUFFICIENT_ROLE");
    let answer = check(&mut c, "org_a", "u_dev", &dev).await.unwrap();
    assert!(!answer.allowed);
    assert_eq!(answer.org_role, OrgRole::Developer as i32);
    // A member who joins as BILLING meets the requirement at once.
    let rev = rig
        .org_events(vec![Payload::MemberAdded(MemberAdded {
            organization_id: "org_a".into(),
            user_id: "u_new".into(),
            role: OrgRole::Billing as i32,
        })])
        .await;
    rig.org_synced(rev).await;
    assert_mfa_required(
        account(&mut c, "org_a", &password(&rig, "u_new")).await,
        "org_a",
    );
}

#[tokio::test]
async fn org_16_required_for_privileged_roles_refuses_billing_members_password_only_token() {
    privileged_roles(Rig::sqlite().await).await;
}

#[tokio::test]
async fn org_16_required_for_privileged_roles_on_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await else {
        return;
    };
    privileged_roles(rig).await;
}

async fn kept_across_restart(rig: Rig) {
    two_organizations(&rig).await;
    set_policy(&rig, "org_a", ProtoMfa::Required).await;
    // The memory view rebuilt from the database keeps the policy.
    rig.service.replica().reload().await.unwrap();
    assert_eq!(
        rig.service.replica().policy("org_a").mfa,
        MfaRequirement::Required
    );
    assert_eq!(
        rig.service.replica().policy("org_b").mfa,
        MfaRequirement::Optional
    );
    // So does a new process on the same database.
    let (restarted, server) = rig.restarted().await;
    assert_eq!(
        restarted.replica().policy("org_a").mfa,
        MfaRequirement::Required
    );
    let mut c = BillingAccessServiceClient::new(server.channel());
    let pwd = password(&rig, "shared");
    assert_mfa_required(account(&mut c, "org_a", &pwd).await, "org_a");
    account(&mut c, "org_b", &pwd).await.unwrap();
    account(&mut c, "org_a", &with_mfa(&rig, "shared"))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn org_16_policy_kept_across_a_restart() {
    kept_across_restart(Rig::sqlite().await).await;
}

#[tokio::test]
async fn org_16_policy_kept_across_a_restart_on_postgres() {
    let Some(rig) = Rig::new(Backend::Postgres, Config::default()).await else {
        return;
    };
    kept_across_restart(rig).await;
}
