//! What SSO and verified domains mean for password sign-in and sign-up (rules ID-13, ORG-14):
//! an enforced domain refuses password Login with one answer for known and unknown addresses and
//! without hashing, and SignUp; a RESTRICTED domain signs up only by invite (LookupDomain at the
//! fake organization service, failing closed).

use super::sso::*;
use super::*;

use orgplane_proto::organization::v1::{DomainPolicy, DomainState};

fn metadata_of(status: &tonic::Status) -> std::collections::HashMap<String, String> {
    status.get_details_error_info().unwrap().metadata
}

// ----- enforcement ------------------------------------------------------------------------------

async fn login_err(rig: &Rig, email: &str, password: &str) -> tonic::Status {
    rig.client()
        .login(LoginRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .unwrap_err()
}

#[tokio::test]
async fn id_13_an_enforced_domain_refuses_password_login_the_same_for_unknown_addresses() {
    let (rig, _) = sso_rig().await;
    let (_, token) = org_with_domain(&rig, "org_a", "acme.test").await;
    rig.sign_up("ada@acme.test", AccountType::Business).await;
    // Control arm: not enforced yet, an unknown address is an ordinary wrong sign-in (hashed).
    let before = rig.identity.password_hasher().runs();
    let err = login_err(&rig, "nobody@acme.test", PASSWORD).await;
    assert_status(&err, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert!(
        rig.identity.password_hasher().runs() > before,
        "unknown addresses are hashed"
    );
    let mut enforced = spec("http://127.0.0.1:1", "client", "x", &["acme.test"]);
    enforced.enforced = true;
    create_connection(&rig, &token, "org_a", enforced)
        .await
        .unwrap();
    let runs = rig.identity.password_hasher().runs();
    let known = login_err(&rig, "ada@acme.test", PASSWORD).await;
    let wrong = login_err(&rig, "ADA@acme.test", "a wrong password!!").await;
    let unknown = login_err(&rig, "nobody@acme.test", PASSWORD).await;
    for err in [&known, &wrong, &unknown] {
        assert_status(err, Code::Unauthenticated, "SSO_REQUIRED");
        assert_eq!(err.message(), known.message());
    }
    assert_eq!(
        rig.identity.password_hasher().runs(),
        runs,
        "no password was hashed for an enforced domain"
    );
    // Another domain still signs in with a password.
    rig.login(&owner_email("org_a")).await;
    // Sign-up for the domain goes through SSO.
    let err = rig
        .client()
        .sign_up(SignUpRequest {
            email: "new@acme.test".into(),
            password: PASSWORD.into(),
            display_name: "New".into(),
            account_type: AccountType::Business as i32,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "SSO_REQUIRED");
    // A domain the organization no longer holds VERIFIED is not enforced.
    domain_event(
        &rig,
        "org_a",
        "acme.test",
        DomainState::Failed,
        DomainPolicy::None,
    )
    .await;
    rig.login("ada@acme.test").await;
}

// ----- RESTRICTED domains at sign-up (ORG-14) ----------------------------------------------------

async fn sign_up(rig: &Rig, email: &str) -> Result<User, tonic::Status> {
    rig.client()
        .sign_up(SignUpRequest {
            email: email.into(),
            password: PASSWORD.into(),
            display_name: "Someone".into(),
            account_type: AccountType::Business as i32,
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner().user.unwrap())
}

#[tokio::test]
async fn org_14_a_restricted_domain_signs_up_only_by_invite_and_fails_closed() {
    let (rig, fake) = sso_rig().await;
    rig.create_org("org_r", "user_r_owner").await;
    domain_event(
        &rig,
        "org_r",
        "restricted.test",
        DomainState::Verified,
        DomainPolicy::Restricted,
    )
    .await;
    fake.verified("org_r", "restricted.test", DomainPolicy::Restricted)
        .await;
    let err = sign_up(&rig, "eve@Restricted.test").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "EMAIL_DOMAIN_RESTRICTED");
    assert_eq!(metadata_of(&err)["domain_name"], "restricted.test");
    assert_eq!(fake.lookups().await, vec!["eve@restricted.test"]);
    // Invited by the organization: allowed.
    fake.invite("org_r", "bob@restricted.test").await;
    sign_up(&rig, "bob@restricted.test").await.unwrap();
    // The organization does not answer: closed.
    fake.set_down(true).await;
    let err = sign_up(&rig, "carol@restricted.test").await.unwrap_err();
    assert_status(&err, Code::Unavailable, "ORGANIZATION_UNAVAILABLE");
    // Other domains never ask the organization service, even while it is down.
    let asked = fake.lookups().await.len();
    sign_up(&rig, "dan@free.test").await.unwrap();
    domain_event(
        &rig,
        "org_r",
        "plain.test",
        DomainState::Verified,
        DomainPolicy::None,
    )
    .await;
    sign_up(&rig, "erin@plain.test").await.unwrap();
    assert_eq!(fake.lookups().await.len(), asked);
    // No longer VERIFIED: no restriction, no call.
    domain_event(
        &rig,
        "org_r",
        "restricted.test",
        DomainState::Failed,
        DomainPolicy::Restricted,
    )
    .await;
    sign_up(&rig, "carol@restricted.test").await.unwrap();
    assert_eq!(fake.lookups().await.len(), asked);
}
