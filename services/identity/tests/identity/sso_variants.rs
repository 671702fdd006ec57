//! SSO sign-in with the other ways a real provider may be set up (rule ID-13): a client
//! registered for `client_secret_post`, and ID tokens signed ES256 for a connection that accepts
//! ES256 only (while an RS256 provider is refused by the same pin).

use super::sso::*;
use super::sso_signin::{by_connection, complete, connect, through_provider};
use super::*;
use orgplane_oracles::oidc::{Account, OidcProvider, ProviderOptions};

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
