//! SSO sign-in with the other ways a real provider may be set up (rule ID-13): a client
//! registered for `client_secret_post`, and ID tokens signed ES256 for a connection that accepts
//! ES256 only (while an RS256 provider is refused by the same pin).

use super::sso::*;
use super::sso_signin::{acme_connection, by_connection, complete, connect, through_provider};
use super::*;
use orgplane_oracles::oidc::{Account, OidcProvider, ProviderOptions};
use orgplane_proto::organization::v1::{SecurityPolicy, SignInMethod};

#[tokio::test]
async fn id_13_a_client_registered_for_client_secret_post_and_es256_tokens_sign_in() {
    let (rig, _) = sso_rig().await;
    let mut options = ProviderOptions::new(REDIRECT_URI);
    options.alg = "ES256".into();
    options.auth_method = "client_secret_post".into();
    let idp = OidcProvider::start_with(options).await;
    let (_, token) = org_with_domain(&rig, "org_a", "acme.test").await;
    let es256 = |c: &mut SsoConnection| {
        c.oidc.as_mut().unwrap().allowed_algorithms = vec!["ES256".into()];
    };
    let conn = connect(&rig, &token, "org_a", &idp, &["acme.test"], es256).await;
    idp.upsert_account(&Account::new("sub-ada", "ada@acme.test"))
        .await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    let done = complete(&rig, &r).await.unwrap();
    assert!(done.tokens.is_some() && done.user_created);
    // Control arm: the same provider's ES256 tokens under a connection pinned to RS256.
    let (_, token_b) = org_with_domain(&rig, "org_b", "acme.test").await;
    let pinned = connect(&rig, &token_b, "org_b", &idp, &["acme.test"], |_| {}).await;
    let r = through_provider(&rig, by_connection(&pinned.id), "ada@acme.test").await;
    assert_status(
        &complete(&rig, &r).await.unwrap_err(),
        Code::Unauthenticated,
        "SSO_ASSERTION_INVALID",
    );
}

/// Publishes that `org` allows exactly `methods` to sign in (rule ORG-16).
async fn allow_only(rig: &Rig, org: &str, methods: &[SignInMethod]) {
    rig.org_event(Payload::SecurityPolicyChanged(SecurityPolicyChanged {
        organization_id: org.into(),
        security_policy: Some(SecurityPolicy {
            allowed_sign_in_methods: methods.iter().map(|m| *m as i32).collect(),
            ..orgplane_platform::policy::SecurityPolicy::default().to_proto(org)
        }),
    }))
    .await;
}

/// ORG-16 meets ID-13: an organization that allows only passwords does not start SSO sign-ins
/// through its connection; one that allows only SSO admits the SSO session in its RPCs and
/// refuses the password session (the control: the same call, the other sign-in).
#[tokio::test]
async fn org_16_id_13_the_policy_s_sign_in_methods_govern_sso() {
    let (rig, _) = sso_rig().await;
    let (idp, conn, password_token) = acme_connection(&rig).await;
    idp.upsert_account(&Account::new("sub-ada", "ada@acme.test"))
        .await;

    allow_only(&rig, "org_a", &[SignInMethod::Password]).await;
    let refused = rig
        .client()
        .start_sso_login(by_connection(&conn.id))
        .await
        .unwrap_err();
    assert_status(&refused, Code::FailedPrecondition, "SSO_NOT_ALLOWED");

    allow_only(&rig, "org_a", &[SignInMethod::Sso]).await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    let done = complete(&rig, &r).await.unwrap();
    let ada = done.user.unwrap();
    let sso_token = done.tokens.unwrap().access_token;
    rig.add_member("org_a", &ada.id, OrgRole::Admin).await;
    let list = |token: &str| {
        bearer(
            ListApiKeysRequest {
                organization_id: "org_a".into(),
                ..Default::default()
            },
            token,
        )
    };
    rig.client().list_api_keys(list(&sso_token)).await.unwrap();
    assert_status(
        &rig.client()
            .list_api_keys(list(&password_token))
            .await
            .unwrap_err(),
        Code::Unauthenticated,
        "SSO_REQUIRED",
    );
}
