//! SSO sign-in against real OpenID providers (rule ID-13): panva's oidc-provider for the full
//! flow, key rotation and kid-less keys; oauth2-mock-server for every bad ID token a relying
//! party must refuse. The browser is played by `oidc::follow_authorization`; membership is
//! provisioned through the rig's [`FakeOrganization`] (a real gRPC server recording every
//! ProvisionMember call and publishing `MemberAdded` through the rig's organization producer).

use super::mfa::{amr_of, confirm_totp, fresh_code, set_policy, start_totp, verify};
use super::sso::*;
use super::*;
use orgplane_oracles::oidc::{Account, MockProvider, OidcProvider, Shape, follow_authorization};

use orgplane_proto::organization::v1::{DomainPolicy, DomainState, MfaRequirement};

/// What a product's callback holds after the provider sent the browser back.
pub(super) struct Returned {
    state: String,
    code: String,
    binding: String,
}

async fn start(
    rig: &Rig,
    request: StartSsoLoginRequest,
) -> Result<StartSsoLoginResponse, tonic::Status> {
    rig.client()
        .start_sso_login(request)
        .await
        .map(|r| r.into_inner())
}

fn by_email(email: &str) -> StartSsoLoginRequest {
    StartSsoLoginRequest {
        email: email.into(),
        redirect_uri: REDIRECT_URI.into(),
        ..Default::default()
    }
}

pub(super) fn by_connection(id: &str) -> StartSsoLoginRequest {
    StartSsoLoginRequest {
        sso_connection_id: id.into(),
        redirect_uri: REDIRECT_URI.into(),
        ..Default::default()
    }
}

/// Starts a sign-in and plays the browser at the provider (`login_hint` picks the account).
pub(super) async fn through_provider(
    rig: &Rig,
    request: StartSsoLoginRequest,
    hint: &str,
) -> Returned {
    let started = start(rig, request).await.unwrap();
    let mut url = url::Url::parse(&started.authorization_url).unwrap();
    if !url.query_pairs().any(|(k, _)| k == "login_hint") {
        url.query_pairs_mut().append_pair("login_hint", hint);
    }
    let callback = follow_authorization(url.as_str()).await.unwrap();
    let (code, state) = callback.code_and_state();
    assert_eq!(state, started.state, "the provider returns our state");
    Returned {
        state,
        code,
        binding: started.browser_binding,
    }
}

pub(super) async fn complete(
    rig: &Rig,
    r: &Returned,
) -> Result<CompleteSsoLoginResponse, tonic::Status> {
    rig.client()
        .complete_sso_login(CompleteSsoLoginRequest {
            state: r.state.clone(),
            code: r.code.clone(),
            browser_binding: r.binding.clone(),
        })
        .await
        .map(|r| r.into_inner())
}

/// An oidc-provider and org_a's connection to it serving the VERIFIED `acme.test` (JIT on), with
/// the owner's (password) token: the setting most sign-in tests start from.
pub(super) async fn acme_connection(rig: &Rig) -> (OidcProvider, SsoConnection, String) {
    let idp = OidcProvider::start(REDIRECT_URI).await;
    let (_, token) = org_with_domain(rig, "org_a", "acme.test").await;
    let conn = connect(rig, &token, "org_a", &idp, &["acme.test"], |_| {}).await;
    (idp, conn, token)
}

/// A connection of `org` to `issuer` (client `client_id`/`secret`) serving `domains`, JIT on.
pub(super) async fn connect(
    rig: &Rig,
    token: &str,
    org: &str,
    oracle: &orgplane_oracles::oidc::Oracle,
    domains: &[&str],
    tweak: impl FnOnce(&mut SsoConnection),
) -> SsoConnection {
    let mut c = spec(
        &oracle.issuer,
        &oracle.client_id,
        &oracle.client_secret,
        domains,
    );
    c.jit_provisioning = true;
    c.default_role = OrgRole::Developer as i32;
    tweak(&mut c);
    create_connection(rig, token, org, c).await.unwrap()
}

async fn federated_rows(rig: &Rig) -> Vec<(String, String, String)> {
    rig.db()
        .query_all_raw(Statement::from_string(
            rig.db().get_database_backend(),
            "SELECT connection_id, subject, user_id FROM federated_identities ORDER BY connection_id",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.try_get("", "connection_id").unwrap(),
                r.try_get("", "subject").unwrap(),
                r.try_get("", "user_id").unwrap(),
            )
        })
        .collect()
}

// ----- the full sign-in -------------------------------------------------------------------------

async fn id_13_full_flow(rig: &Rig, fake: &FakeOrganization) {
    let idp = OidcProvider::start(REDIRECT_URI).await;
    let (_, token) = org_with_domain(rig, "org_a", "acme.test").await;
    let conn = connect(rig, &token, "org_a", &idp, &["acme.test"], |_| {}).await;
    idp.upsert_account(&Account::new("sub-ada", "ada@acme.test"))
        .await;
    // TestSsoConnection reads the provider now: every check passes.
    let tested = rig
        .client()
        .test_sso_connection(bearer(
            TestSsoConnectionRequest {
                sso_connection_id: conn.id.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = tested.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "discovery",
            "issuer",
            "endpoints",
            "algorithms",
            "jwks",
            "domains"
        ]
    );
    assert!(tested.ok, "{:?}", tested.checks);

    let first = through_provider(rig, by_email("Ada@ACME.test"), "ada@acme.test").await;
    // A wrong binding is refused and does not use the attempt up.
    let wrong = Returned {
        state: first.state.clone(),
        code: first.code.clone(),
        binding: "ssob_not-this-browser".into(),
    };
    assert_status(
        &complete(rig, &wrong).await.unwrap_err(),
        Code::Unauthenticated,
        "SSO_STATE_INVALID",
    );
    let done = complete(rig, &first).await.unwrap();
    assert!(done.user_created && done.membership_created, "{done:?}");
    let user = done.user.clone().unwrap();
    assert_eq!(user.email, "ada@acme.test");
    assert!(user.email_verified);
    let tokens = done.tokens.clone().unwrap();
    let amr = amr_of(&tokens.access_token);
    assert!(
        amr.contains(&"sso".to_string()) && amr.contains(&"ext".to_string()),
        "{amr:?}"
    );
    assert!(!amr.contains(&"pwd".to_string()) && !amr.contains(&"mfa".to_string()));
    assert_eq!(me(rig, &tokens.access_token).await.unwrap().id, user.id);
    let provisions = fake.provisions().await;
    assert_eq!(provisions.len(), 1);
    assert_eq!(provisions[0].source, "sso_jit");
    assert_eq!(provisions[0].role, OrgRole::Developer as i32);
    // `state` replay.
    assert_status(
        &complete(rig, &first).await.unwrap_err(),
        Code::Unauthenticated,
        "SSO_STATE_INVALID",
    );
    // `code` replay under a fresh attempt: the provider refuses the used code.
    let second = through_provider(rig, by_connection(&conn.id), "ada@acme.test").await;
    let replay = Returned {
        code: first.code.clone(),
        state: second.state.clone(),
        binding: second.binding.clone(),
    };
    assert_status(
        &complete(rig, &replay).await.unwrap_err(),
        Code::Unauthenticated,
        "SSO_CODE_REJECTED",
    );
    // Again: the same account, no new membership.
    let again = through_provider(rig, by_connection(&conn.id), "ada@acme.test").await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let done = rig
        .client()
        .complete_sso_login(with_request_id(
            tonic::Request::new(CompleteSsoLoginRequest {
                state: again.state.clone(),
                code: again.code.clone(),
                browser_binding: again.binding.clone(),
            }),
            &request_id,
        ))
        .await
        .unwrap()
        .into_inner();
    // One audit record for the sign-in, as Login writes (the chaos audit script relies on it).
    let audited = rig
        .db()
        .query_all_raw(Statement::from_string(
            rig.db().get_database_backend(),
            format!("SELECT action FROM audit_log WHERE request_id = '{request_id}'"),
        ))
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    let action: String = audited[0].try_get("", "action").unwrap();
    assert_eq!(action, "session.create");
    assert!(!done.user_created && !done.membership_created);
    assert_eq!(done.user.unwrap().id, user.id);
    assert_eq!(federated_rows(rig).await.len(), 1);
    // The account has no usable password.
    let err = rig
        .client()
        .login(LoginRequest {
            email: "ada@acme.test".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_CREDENTIALS");
}

#[tokio::test]
async fn id_13_sign_in_through_a_real_provider_creates_provisions_and_refuses_replays() {
    let (rig, fake) = sso_rig().await;
    id_13_full_flow(&rig, &fake).await;
}

#[tokio::test]
async fn id_13_sign_in_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    let (rig, fake) = sso_rig_on(db).await;
    id_13_full_flow(&rig, &fake).await;
}

#[tokio::test]
async fn id_13_a_rotated_provider_key_and_a_key_without_kid_are_accepted() {
    let (rig, _) = sso_rig().await;
    let (idp, conn, _) = acme_connection(&rig).await;
    idp.upsert_account(&Account::new("sub-ada", "ada@acme.test"))
        .await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    complete(&rig, &r).await.unwrap();
    // The key the relying party cached leaves the provider's set.
    idp.rotate_key().await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    complete(&rig, &r)
        .await
        .expect("a token of the new key, after a refresh");
    // Forced refreshes are rate-limited per key set: wait the interval out.
    tokio::time::sleep(orgplane_identity::oidc::FORCED_REFRESH_INTERVAL).await;
    idp.use_keys_without_kid().await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    complete(&rig, &r).await.expect("a token without kid");
}

// ----- bad ID tokens ----------------------------------------------------------------------------

#[tokio::test]
async fn id_13_every_bad_id_token_is_refused_as_sso_assertion_invalid() {
    let (rig, _) = sso_rig().await;
    let idp = MockProvider::start(REDIRECT_URI).await;
    let (_, token) = org_with_domain(&rig, "org_a", "acme.test").await;
    let conn = connect(&rig, &token, "org_a", &idp, &["acme.test"], |_| {}).await;
    idp.upsert_account(&Account::new("sub-ada", "ada@acme.test"))
        .await;
    // Control arm: an unshaped token signs in.
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    complete(&rig, &r).await.expect("a good token is accepted");
    for shape in [
        Shape::WrongAudience,
        Shape::WrongIssuer,
        Shape::WrongNonce,
        Shape::NoNonce,
        Shape::Expired,
        Shape::Es256,
        Shape::AlgNone,
        Shape::Hs256ClientSecret,
        Shape::UnknownKey,
        Shape::ForgedKid,
    ] {
        idp.shape_next_token(shape).await;
        let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
        let err = complete(&rig, &r).await.unwrap_err();
        assert_status(&err, Code::Unauthenticated, "SSO_ASSERTION_INVALID");
        assert!(
            !err.message().contains("eyJ"),
            "{shape:?}: the token is not echoed"
        );
    }
    // Signed by the real key without `kid`: accepted.
    idp.shape_next_token(Shape::NoKid).await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    complete(&rig, &r).await.expect("no kid, the right key");
    idp.shape_next_token(Shape::TokenError).await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    assert_status(
        &complete(&rig, &r).await.unwrap_err(),
        Code::Unauthenticated,
        "SSO_CODE_REJECTED",
    );
    idp.shape_next_token(Shape::ServerError).await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    assert_status(
        &complete(&rig, &r).await.unwrap_err(),
        Code::Unavailable,
        "SSO_PROVIDER_UNAVAILABLE",
    );
    // The relying party authenticated with the secret and sent the PKCE verifier every time.
    for request in idp.token_requests().await {
        assert_eq!(request["client_auth"], "basic", "{request}");
        assert_eq!(request["code_verifier"], true, "{request}");
    }
}

// ----- linking ----------------------------------------------------------------------------------

#[tokio::test]
async fn id_13_unverified_email_or_a_domain_not_verified_by_the_connections_org_never_links() {
    let (rig, _) = sso_rig().await;
    let idp = MockProvider::start(REDIRECT_URI).await;
    let (_, token) = org_with_domain(&rig, "org_a", "acme.test").await;
    let conn = connect(&rig, &token, "org_a", &idp, &["acme.test"], |_| {}).await;
    let bob = rig.sign_up("bob@acme.test", AccountType::Business).await;
    idp.upsert_account(&Account::new("sub-bob", "bob@acme.test"))
        .await;
    // The provider does not vouch for the address.
    idp.shape_next_token(Shape::EmailUnverified).await;
    let r = through_provider(&rig, by_connection(&conn.id), "bob@acme.test").await;
    assert_status(
        &complete(&rig, &r).await.unwrap_err(),
        Code::FailedPrecondition,
        "SSO_ACCOUNT_NOT_LINKABLE",
    );
    // The connection's organization no longer holds the domain VERIFIED (another one does).
    rig.create_org("org_b", "user_b_owner").await;
    domain_event(
        &rig,
        "org_b",
        "acme.test",
        DomainState::Verified,
        DomainPolicy::None,
    )
    .await;
    domain_event(
        &rig,
        "org_a",
        "acme.test",
        DomainState::Failed,
        DomainPolicy::None,
    )
    .await;
    let r = through_provider(&rig, by_connection(&conn.id), "bob@acme.test").await;
    assert_status(
        &complete(&rig, &r).await.unwrap_err(),
        Code::FailedPrecondition,
        "SSO_ACCOUNT_NOT_LINKABLE",
    );
    assert!(federated_rows(&rig).await.is_empty(), "nothing was linked");
    // Control arm: verified again, the verified address links to Bob's account.
    domain_event(
        &rig,
        "org_a",
        "acme.test",
        DomainState::Verified,
        DomainPolicy::None,
    )
    .await;
    let r = through_provider(&rig, by_connection(&conn.id), "bob@acme.test").await;
    let done = complete(&rig, &r).await.unwrap();
    assert_eq!(done.user.unwrap().id, bob.id);
    assert!(!done.user_created);
}

#[tokio::test]
async fn id_13_two_connections_asserting_one_email_are_two_federated_identities() {
    let (rig, fake) = sso_rig().await;
    let idp = OidcProvider::start(REDIRECT_URI).await;
    let (_, token_a) = org_with_domain(&rig, "org_a", "acme.test").await;
    let (_, token_b) = org_with_domain(&rig, "org_b", "acme.test").await;
    let a = connect(&rig, &token_a, "org_a", &idp, &["acme.test"], |_| {}).await;
    let b = connect(&rig, &token_b, "org_b", &idp, &["acme.test"], |_| {}).await;
    idp.upsert_account(&Account::new("sub-ada", "ada@acme.test"))
        .await;
    let ra = through_provider(&rig, by_connection(&a.id), "ada@acme.test").await;
    let user = complete(&rig, &ra).await.unwrap().user.unwrap();
    let rb = through_provider(&rig, by_connection(&b.id), "ada@acme.test").await;
    let done = complete(&rig, &rb).await.unwrap();
    assert_eq!(done.user.unwrap().id, user.id, "one person, one account");
    let rows = federated_rows(&rig).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|(_, sub, u)| sub == "sub-ada" && *u == user.id)
    );
    let orgs: Vec<String> = fake
        .provisions()
        .await
        .into_iter()
        .map(|p| p.organization_id)
        .collect();
    assert_eq!(orgs, vec!["org_a", "org_b"]);
    // Sign-in by email finds the domain's connections: two, so it must be named.
    assert_status(
        &start(&rig, by_email("ada@acme.test")).await.unwrap_err(),
        Code::FailedPrecondition,
        "SSO_CONNECTION_AMBIGUOUS",
    );
}

#[tokio::test]
async fn id_13_jit_membership_is_created_once_under_concurrent_completions() {
    let (rig, fake) = sso_rig().await;
    let (idp, conn, _) = acme_connection(&rig).await;
    idp.upsert_account(&Account::new("sub-cy", "cy@acme.test"))
        .await;
    let one = through_provider(&rig, by_connection(&conn.id), "cy@acme.test").await;
    let two = through_provider(&rig, by_connection(&conn.id), "cy@acme.test").await;
    let (x, y) = tokio::join!(complete(&rig, &one), complete(&rig, &two));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.user.as_ref().unwrap().id, y.user.as_ref().unwrap().id);
    assert_eq!(
        u8::from(x.user_created) + u8::from(y.user_created),
        1,
        "one completion created the account"
    );
    let added = rig
        .org
        .read(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(
            |e| matches!(&e.payload, Some(Payload::MemberAdded(m)) if m.organization_id == "org_a"),
        )
        .count();
    assert_eq!(added, 1, "MemberAdded once");
    let ids: std::collections::HashSet<String> = fake
        .provisions()
        .await
        .into_iter()
        .map(|p| p.request_id)
        .collect();
    assert_eq!(ids.len(), 1, "every call carried the same request id");
    assert_eq!(federated_rows(&rig).await.len(), 1);
}

// ----- second factors after SSO (ID-11, ORG-16) --------------------------------------------------

#[tokio::test]
async fn id_13_the_mfa_requirement_applies_after_sso_unless_the_provider_s_factor_is_trusted() {
    let (rig, _) = sso_rig().await;
    let (idp, conn, token) = acme_connection(&rig).await;
    idp.upsert_account(&Account::new("sub-ada", "ada@acme.test"))
        .await;
    set_policy(&rig, "org_a", MfaRequirement::Required).await;
    // No factor yet: tokens, and the organization asks for enrollment.
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    let done = complete(&rig, &r).await.unwrap();
    assert_eq!(done.mfa_enrollment_required_organization_ids, vec!["org_a"]);
    let sso_token = done.tokens.unwrap().access_token;
    let started = start_totp(&rig, &sso_token).await.unwrap();
    let factor = started.factor.unwrap().id;
    confirm_totp(
        &rig,
        &sso_token,
        &factor,
        &fresh_code(&rig, &started.secret),
    )
    .await
    .unwrap();
    // With a factor: a challenge, completed by VerifyMfaChallenge; the session is SSO's.
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    let done = complete(&rig, &r).await.unwrap();
    assert!(done.tokens.is_none());
    let challenge = done.mfa_challenge.unwrap();
    let verified = verify(
        &rig,
        &challenge.challenge_id,
        &fresh_code(&rig, &started.secret),
        "",
    )
    .await
    .unwrap();
    let amr = amr_of(&verified.tokens.unwrap().access_token);
    for m in ["ext", "sso", "otp", "mfa"] {
        assert!(amr.contains(&m.to_string()), "{m} in {amr:?}");
    }
    assert!(!amr.contains(&"pwd".to_string()), "{amr:?}");
    // The provider's second factor, trusted: tokens with `mfa` at once.
    // (The owner signed in with a password only: the policy is relaxed while they edit.)
    set_policy(&rig, "org_a", MfaRequirement::Optional).await;
    let mut patch = conn.clone();
    patch.trust_idp_mfa = true;
    rig.client()
        .update_sso_connection(bearer(
            UpdateSsoConnectionRequest {
                sso_connection: Some(patch),
                update_mask: mask(&["trust_idp_mfa"]),
                etag: String::new(),
            },
            &token,
        ))
        .await
        .unwrap();
    set_policy(&rig, "org_a", MfaRequirement::Required).await;
    idp.upsert_account(&Account::new("sub-ada", "ada@acme.test").with_amr(&["pwd", "mfa"]))
        .await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    let done = complete(&rig, &r).await.unwrap();
    assert!(done.mfa_challenge.is_none());
    assert!(done.mfa_enrollment_required_organization_ids.is_empty());
    let amr = amr_of(&done.tokens.unwrap().access_token);
    assert!(amr.contains(&"mfa".to_string()), "{amr:?}");
    // Control arm: the provider's `pwd` alone is not a second factor.
    idp.upsert_account(&Account::new("sub-ada", "ada@acme.test"))
        .await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    assert!(complete(&rig, &r).await.unwrap().mfa_challenge.is_some());
}

#[tokio::test]
async fn id_13_an_attempt_expires_after_10_minutes() {
    let (rig, _) = sso_rig().await;
    let (idp, conn, _) = acme_connection(&rig).await;
    idp.upsert_account(&Account::new("sub-ada", "ada@acme.test"))
        .await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    rig.clock.advance(chrono::Duration::minutes(10));
    assert_status(
        &complete(&rig, &r).await.unwrap_err(),
        Code::Unauthenticated,
        "SSO_STATE_INVALID",
    );
}

/// The organization's refusal to provision (a BLOCKED domain) reaches the caller as such.
#[tokio::test]
async fn id_13_a_blocked_domain_refuses_jit_membership_with_email_domain_blocked() {
    let (rig, fake) = sso_rig().await;
    let (idp, conn, _) = acme_connection(&rig).await;
    idp.upsert_account(&Account::new("sub-ada", "ada@acme.test"))
        .await;
    fake.block("org_a").await;
    let r = through_provider(&rig, by_connection(&conn.id), "ada@acme.test").await;
    assert_status(
        &complete(&rig, &r).await.unwrap_err(),
        Code::FailedPrecondition,
        "EMAIL_DOMAIN_BLOCKED",
    );
}
