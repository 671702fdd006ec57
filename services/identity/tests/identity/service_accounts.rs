//! Least-privilege service accounts at identity: IssueServiceToken puts the configured
//! capabilities into the token's `scope`, and identity's own service-only paths (GetUser of
//! anyone, AuthenticateApiKey, API-key reads) refuse an account without theirs. The rig trusts
//! `billing` (`@billing-access`) and `product` (`check-access` only).

use super::*;

use orgplane_platform::auth::{
    CAPABILITY_REQUIRED, Capabilities, Capability, Principal, TokenVerifier,
};

async fn issue(rig: &Rig, client_id: &str, secret: &str) -> String {
    rig.client()
        .issue_service_token(IssueServiceTokenRequest {
            client_id: client_id.into(),
            client_secret: secret.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token
}

/// The capabilities identity's JWKS-verified token grants.
async fn capabilities_of(rig: &Rig, token: &str) -> Capabilities {
    let verifier = TokenVerifier::new(
        TEST_ISSUER,
        Arc::new(RemoteKeys::new(channel(&rig.server.url()))),
    );
    match verifier.verify(token).await.unwrap() {
        Principal::Service(s) => s.capabilities,
        other => panic!("not a service: {other:?}"),
    }
}

fn needs(answer: Result<impl std::fmt::Debug, tonic::Status>, capability: &str) {
    let status = answer.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        reason_of(&status).as_deref(),
        Some(CAPABILITY_REQUIRED.as_str_name())
    );
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.metadata["capability"], capability);
}

#[tokio::test]
async fn service_accounts_tokens_carry_the_configured_capabilities_and_identity_checks_them() {
    let rig = Rig::sqlite().await;
    let user = rig.sign_up("kim@example.com", AccountType::Business).await;
    let product = issue(&rig, "product", "product-secret").await;
    let billing = issue(&rig, "billing", "billing-secret").await;
    assert_eq!(
        capabilities_of(&rig, &product).await,
        Capabilities::of(&[Capability::CheckAccess])
    );
    assert_eq!(
        Some(capabilities_of(&rig, &billing).await),
        Capabilities::of_service("billing-access")
    );

    let get_user = |token: String| {
        let mut client = rig.client();
        let id = user.id.clone();
        async move {
            client
                .get_user(bearer(GetUserRequest { user_id: id }, &token))
                .await
        }
    };
    let resolve = |token: String| {
        let mut client = rig.client();
        async move {
            client
                .authenticate_api_key(bearer(
                    AuthenticateApiKeyRequest {
                        key: "opk_admin_nosuchkey".into(),
                    },
                    &token,
                ))
                .await
        }
    };
    let list_keys = |token: String| {
        let mut client = rig.client();
        async move {
            client
                .list_api_keys(bearer(
                    ListApiKeysRequest {
                        organization_id: "org_any".into(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
        }
    };
    needs(get_user(product.clone()).await, "read-users");
    needs(resolve(product.clone()).await, "authenticate-api-keys");
    needs(list_keys(product.clone()).await, "read-api-keys");

    // Control: the account holding those capabilities passes the same checks (an unknown key
    // is then UNAUTHENTICATED, the listing answers).
    assert_eq!(
        get_user(billing.clone())
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
            .id,
        user.id
    );
    assert_eq!(
        resolve(billing.clone()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    if let Err(refused) = list_keys(billing.clone()).await {
        assert_ne!(
            reason_of(&refused).as_deref(),
            Some(CAPABILITY_REQUIRED.as_str_name()),
            "{refused:?}"
        );
    }
}
