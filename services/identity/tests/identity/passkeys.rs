//! Passkeys as a second factor (rule ID-10) over real gRPC, with webauthn-authenticator-rs's
//! software authenticator in place of a browser: enrollment (ACTIVE factor, ceremony state sealed
//! at rest), the refusal of replayed, foreign and malformed registration responses, expiry of a
//! PENDING factor, the factor limit, and the step-up every enrollment call needs.

use super::*;

use orgplane_identity::entity::mfa_factor;
use sea_orm::EntityTrait;
use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, Url, WebauthnAuthenticator};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

/// The origin the test rig's relying party accepts (the development default).
const ORIGIN: &str = "http://localhost:3000";

/// A software passkey that performs user verification (passkeys require it).
fn authenticator() -> SoftPasskey {
    SoftPasskey::new(true)
}

/// What a browser would pass to `navigator.credentials.create` for `options_json`.
fn creation(options_json: &str) -> CreationChallengeResponse {
    let public_key: serde_json::Value = serde_json::from_str(options_json).unwrap();
    serde_json::from_value(serde_json::json!({ "publicKey": public_key })).unwrap()
}

/// The authenticator's registration response, as the JSON a browser front end sends.
fn register(key: &mut SoftPasskey, origin: &str, options_json: &str) -> String {
    let response = key
        .do_registration(Url::parse(origin).unwrap(), creation(options_json))
        .unwrap();
    serde_json::to_string(&response).unwrap()
}

async fn start(
    rig: &Rig,
    token: &str,
    name: &str,
) -> Result<StartPasskeyEnrollmentResponse, tonic::Status> {
    rig.client()
        .start_passkey_enrollment(bearer(
            StartPasskeyEnrollmentRequest {
                display_name: name.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn confirm(
    rig: &Rig,
    token: &str,
    factor_id: &str,
    credential_json: &str,
) -> Result<ConfirmPasskeyEnrollmentResponse, tonic::Status> {
    rig.client()
        .confirm_passkey_enrollment(bearer(
            ConfirmPasskeyEnrollmentRequest {
                factor_id: factor_id.into(),
                credential_json: credential_json.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn factor_row(rig: &Rig, id: &str) -> mfa_factor::Model {
    mfa_factor::Entity::find_by_id(id.to_owned())
        .one(rig.db())
        .await
        .unwrap()
        .unwrap()
}

/// The challenge of creation options, as base64url text (how it travels in JSON).
fn challenge_of(options_json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(options_json).unwrap();
    v["challenge"].as_str().unwrap().to_owned()
}

/// Whether `sealed` shows nothing of `secret` (base64url text) nor of the JSON it was made
/// from: neither as text nor inside its base64 decoding.
fn hides(sealed: &str, secret: &str) -> bool {
    let decoded = URL_SAFE_NO_PAD.decode(sealed).unwrap_or_default();
    let text = String::from_utf8_lossy(&decoded);
    let raw = URL_SAFE_NO_PAD.decode(secret).unwrap();
    !sealed.contains(secret)
        && !text.contains(secret)
        && !decoded.windows(raw.len()).any(|w| w == raw.as_slice())
        && ["challenge", "cred_id", "counter"]
            .iter()
            .all(|key| !text.contains(key) && !sealed.contains(key))
}

async fn audit_actions(rig: &Rig, factor_id: &str) -> Vec<String> {
    let backend = rig.db().get_database_backend();
    rig.db()
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DbBackend::Postgres => {
                    "SELECT action, after_json FROM audit_log WHERE resource_id = $1 ORDER BY create_time_ms, action DESC"
                }
                _ => {
                    "SELECT action, after_json FROM audit_log WHERE resource_id = ? ORDER BY create_time_ms, action DESC"
                }
            },
            [factor_id.into()],
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            let after: Option<String> = row.try_get_by_index(1).unwrap();
            let after = after.unwrap_or_default();
            assert!(
                !after.contains("passkey_sealed") && !after.contains("challenge"),
                "{after}"
            );
            row.try_get_by_index::<String>(0).unwrap()
        })
        .collect()
}

/// Enrollment with a software passkey through the real service: the PENDING row holds the
/// registration state sealed (its challenge appears nowhere in the row), confirmation makes the
/// factor ACTIVE with its credential id and sealed credential, both steps are audited, and a
/// second enrollment excludes the first passkey.
async fn enrollment_story(rig: &Rig) {
    let (user, token, _) = rig.user("ada@example.com").await;
    let started = start(rig, &token, "").await.unwrap();
    let pending = started.factor.clone().unwrap();
    assert!(pending.id.starts_with("mfa_"), "{pending:?}");
    assert_eq!(pending.r#type, MfaFactorType::Passkey as i32);
    assert_eq!(pending.state, MfaFactorState::Pending as i32);
    assert_eq!(pending.display_name, "Passkey");
    let expire = pending.expire_time.unwrap().seconds - pending.create_time.unwrap().seconds;
    assert_eq!(expire, 600, "a pending passkey expires in 10 minutes");
    let options: serde_json::Value = serde_json::from_str(&started.creation_options_json).unwrap();
    assert_eq!(options["rp"]["id"], "localhost");
    assert_eq!(options["user"]["name"], "ada@example.com");
    assert!(
        !started.creation_options_json.contains(&user.id),
        "the user handle is not the user id"
    );

    let row = factor_row(rig, &pending.id).await;
    assert_eq!(row.kind, "passkey");
    assert_eq!(row.state, 1);
    assert_eq!(row.user_id, user.id);
    let sealed = row.passkey_sealed.clone().unwrap();
    let challenge = challenge_of(&started.creation_options_json);
    assert!(
        hides(&sealed, &challenge),
        "the registration state is stored sealed"
    );

    let mut key = authenticator();
    let response = register(&mut key, ORIGIN, &started.creation_options_json);
    let credential_id = serde_json::from_str::<serde_json::Value>(&response).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let confirmed = confirm(rig, &token, &pending.id, &response).await.unwrap();
    // The enrollment renewed the session with the passkey: further factor changes need it.
    let token = confirmed.tokens.clone().unwrap().access_token;
    let factor = confirmed.factor.unwrap();
    assert_eq!(factor.id, pending.id);
    assert_eq!(factor.state, MfaFactorState::Active as i32);
    assert_eq!(factor.expire_time, None);

    let row = factor_row(rig, &pending.id).await;
    assert_eq!(row.state, 2, "ACTIVE in the database");
    assert_eq!(row.credential_id.as_deref(), Some(credential_id.as_str()));
    assert_eq!(row.expire_time_ms, None);
    let stored = row.passkey_sealed.unwrap();
    assert_ne!(stored, sealed, "the credential replaced the ceremony state");
    assert!(
        hides(&stored, &credential_id),
        "the credential is stored sealed"
    );
    assert_eq!(
        audit_actions(rig, &pending.id).await,
        ["mfa_factor.create", "mfa_factor.confirm"]
    );

    let again = start(rig, &token, "YubiKey").await.unwrap();
    let options: serde_json::Value = serde_json::from_str(&again.creation_options_json).unwrap();
    let excluded: Vec<&str> = options["excludeCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(excluded, [credential_id.as_str()]);
    assert_eq!(again.factor.unwrap().display_name, "YubiKey");
}

#[tokio::test]
async fn id_10_a_passkey_enrolls_with_a_software_authenticator_and_is_sealed_at_rest() {
    let rig = Rig::sqlite().await;
    enrollment_story(&rig).await;
}

#[tokio::test]
async fn id_10_a_passkey_enrolls_with_a_software_authenticator_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    let rig = Rig::start(db, |_| {}).await;
    enrollment_story(&rig).await;
}

/// A registration response is good for its own ceremony once: made for another enrollment's
/// challenge it is refused, and once used it neither confirms its factor again nor registers
/// the same credential a second time.
async fn replay_story(rig: &Rig) {
    let (_, token, _) = rig.user("ada@example.com").await;
    let first = start(rig, &token, "").await.unwrap();
    let first_id = first.factor.unwrap().id;
    let mut key = authenticator();
    let response = register(&mut key, ORIGIN, &first.creation_options_json);

    let second = start(rig, &token, "").await.unwrap();
    let second_id = second.factor.unwrap().id;
    let err = confirm(rig, &token, &second_id, &response)
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, "PASSKEY_REJECTED");
    assert_eq!(factor_row(rig, &second_id).await.state, 1, "still pending");

    // Confirming renews the session with the passkey; later changes need that sign-in.
    let token = confirm(rig, &token, &first_id, &response)
        .await
        .expect("the response confirms its own enrollment")
        .tokens
        .unwrap()
        .access_token;
    let err = confirm(rig, &token, &first_id, &response)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = confirm(rig, &token, &second_id, &response)
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, "PASSKEY_REJECTED");

    // Another user cannot confirm this user's pending factor, even with a good response.
    let (_, other, _) = rig.user("eve@example.com").await;
    let own = register(&mut authenticator(), ORIGIN, &second.creation_options_json);
    let err = confirm(rig, &other, &second_id, &own).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    confirm(rig, &token, &second_id, &own)
        .await
        .expect("the owner confirms it");
}

#[tokio::test]
async fn id_10_a_replayed_registration_response_is_rejected() {
    let rig = Rig::sqlite().await;
    replay_story(&rig).await;
}

#[tokio::test]
async fn id_10_a_replayed_registration_response_is_rejected_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    let rig = Rig::start(db, |_| {}).await;
    replay_story(&rig).await;
}

#[tokio::test]
async fn id_10_registrations_for_a_wrong_origin_or_malformed_are_rejected_never_internal() {
    let rig = Rig::sqlite().await;
    let (_, token, _) = rig.user("ada@example.com").await;
    let started = start(&rig, &token, "").await.unwrap();
    let id = started.factor.unwrap().id;
    let options = &started.creation_options_json;

    // The same host on another port is another origin.
    let foreign = register(&mut authenticator(), "http://localhost:4000", options);
    // A look-alike site that rewrote the relying party to its own domain.
    let mut phished: serde_json::Value = serde_json::from_str(options).unwrap();
    phished["rp"]["id"] = "evil.example".into();
    let phished = register(
        &mut authenticator(),
        "https://evil.example",
        &phished.to_string(),
    );
    // A genuine response whose client data was given another challenge.
    let genuine = register(&mut authenticator(), ORIGIN, options);
    let mut tampered: serde_json::Value = serde_json::from_str(&genuine).unwrap();
    let client_data = tampered["response"]["clientDataJSON"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(client_data).unwrap()).unwrap();
    let challenge = challenge_of(options);
    assert!(text.contains(&challenge), "{text}");
    let other = URL_SAFE_NO_PAD.encode([7u8; 32]);
    tampered["response"]["clientDataJSON"] = URL_SAFE_NO_PAD
        .encode(text.replace(&challenge, &other))
        .into();

    for (what, json) in [
        ("wrong origin", foreign.as_str()),
        ("another relying party", phished.as_str()),
        ("another challenge", &tampered.to_string()),
        ("not JSON", "not json"),
        ("an empty object", "{}"),
        (
            "an assertion instead",
            r#"{"id":"AA","rawId":"AA","type":"public-key","response":{"authenticatorData":"AA","clientDataJSON":"AA","signature":"AA"}}"#,
        ),
        ("a truncated response", &genuine[..genuine.len() / 2]),
    ] {
        let err = confirm(&rig, &token, &id, json).await.unwrap_err();
        assert_status(&err, Code::InvalidArgument, "PASSKEY_REJECTED");
        assert_eq!(
            err.get_details_bad_request().unwrap().field_violations[0].field,
            "credential_json",
            "{what}"
        );
    }
    let err = confirm(&rig, &token, &id, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(factor_row(&rig, &id).await.state, 1, "still pending");
    // Control: the genuine response made for this enrollment is accepted.
    let confirmed = confirm(&rig, &token, &id, &genuine).await.unwrap();
    assert_eq!(
        confirmed.factor.unwrap().state,
        MfaFactorState::Active as i32
    );
}

#[tokio::test]
async fn id_10_an_expired_pending_passkey_cannot_be_confirmed() {
    let rig = Rig::sqlite().await;
    let (_, token, _) = rig.user("ada@example.com").await;
    let on_time = start(&rig, &token, "").await.unwrap();
    let late = start(&rig, &token, "").await.unwrap();
    let on_time_response = register(&mut authenticator(), ORIGIN, &on_time.creation_options_json);
    let late_response = register(&mut authenticator(), ORIGIN, &late.creation_options_json);
    let token = confirm(&rig, &token, &on_time.factor.unwrap().id, &on_time_response)
        .await
        .expect("within 10 minutes")
        .tokens
        .unwrap()
        .access_token;
    rig.clock.advance(chrono::Duration::seconds(10 * 60 + 1));
    let late_id = late.factor.unwrap().id;
    let err = confirm(&rig, &token, &late_id, &late_response)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(factor_row(&rig, &late_id).await.credential_id, None);
}

#[tokio::test]
async fn id_10_a_user_has_at_most_ten_factors_and_expired_pending_ones_do_not_count() {
    let rig = Rig::sqlite().await;
    let (_, token, _) = rig.user("ada@example.com").await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(start(&rig, &token, "").await.unwrap().factor.unwrap().id);
    }
    let err = start(&rig, &token, "").await.unwrap_err();
    assert_status(&err, Code::ResourceExhausted, "MFA_FACTOR_LIMIT");
    rig.clock.advance(chrono::Duration::seconds(10 * 60 + 1));
    start(&rig, &token, "")
        .await
        .expect("expired pending factors no longer count");
    assert!(
        mfa_factor::Entity::find_by_id(ids[0].clone())
            .one(rig.db())
            .await
            .unwrap()
            .is_none(),
        "expired pending factors are cleaned"
    );
}

#[tokio::test]
async fn id_10_passkey_enrollment_needs_a_recent_sign_in_with_the_second_factor_in_use() {
    let rig = Rig::sqlite().await;
    let (user, fresh, _) = rig.user("ada@example.com").await;
    let started = start(&rig, &fresh, "").await.expect("a fresh sign-in");
    let id = started.factor.unwrap().id;
    let response = register(&mut authenticator(), ORIGIN, &started.creation_options_json);

    let sid = claims_of(&fresh)["sid"].as_str().unwrap().to_owned();
    let signer = rig.identity.keys().signer();
    let token = |age: i64, amr: &[&str], mfa_enrolled: bool| {
        let now = chrono::Utc::now().timestamp();
        signer
            .sign(&Claims {
                iss: TEST_ISSUER.into(),
                sub: user.id.clone(),
                aud: USER_AUDIENCE.into(),
                exp: now + 600,
                iat: now,
                nbf: now,
                jti: uuid::Uuid::new_v4().to_string(),
                auth_time: Some(now - age),
                sid: Some(sid.clone()),
                amr: amr.iter().map(|a| a.to_string()).collect(),
                mfa_enrolled,
                risk: Vec::new(),
                scope: None,
            })
            .unwrap()
    };
    let metadata = |err: &tonic::Status| err.get_details_error_info().unwrap().metadata;

    let stale = token(600, &["pwd"], false);
    for err in [
        start(&rig, &stale, "").await.unwrap_err(),
        confirm(&rig, &stale, &id, &response).await.unwrap_err(),
    ] {
        assert_status(&err, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");
        assert_eq!(metadata(&err)["required"], "password");
        assert_eq!(metadata(&err)["signals"], "stale_sign_in");
    }
    // A user with an active factor must have used one in this sign-in.
    let without_factor = token(0, &["pwd"], true);
    for err in [
        start(&rig, &without_factor, "").await.unwrap_err(),
        confirm(&rig, &without_factor, &id, &response)
            .await
            .unwrap_err(),
    ] {
        assert_status(&err, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");
        assert_eq!(metadata(&err)["required"], "second_factor");
        assert_eq!(metadata(&err)["signals"], "second_factor_missing");
    }
    let service = rig.service_token().await;
    let err = start(&rig, &service, "").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "USER_CREDENTIALS_REQUIRED");
    assert_eq!(factor_row(&rig, &id).await.state, 1, "nothing changed");

    let with_factor = token(0, &["pwd", "hwk", "mfa"], true);
    confirm(&rig, &with_factor, &id, &response)
        .await
        .expect("a recent sign-in with a second factor");
}

#[tokio::test]
async fn id_10_passkeys_can_be_switched_off_and_bad_settings_stop_start_up() {
    let rig = Rig::with(|c| c.passkey_rp_id = String::new()).await;
    let (_, token, _) = rig.user("ada@example.com").await;
    let err = start(&rig, &token, "").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "PASSKEYS_NOT_CONFIGURED");

    let dir = tempfile::tempdir().unwrap();
    for (rp_id, origin, field) in [
        (
            "https://example.com",
            "https://example.com",
            "passkey_rp_id",
        ),
        ("example.com", "https://app.other.com", "passkey_origin"),
        ("example.com", "http://app.example.com", "passkey_origin"),
        ("example.com", "not a url", "passkey_origin"),
        ("example.com", "", "passkey_origin"),
    ] {
        let db = TestDb::sqlite();
        let mut config = test_config(dir.path());
        config.passkey_rp_id = rp_id.into();
        config.passkey_origin = origin.into();
        let runtime = orgplane_platform::testkit::runtime(
            "http://127.0.0.1:9",
            &orgplane_platform::testkit::TestAuth::new(),
            Arc::new(OffsetClock::new()),
        );
        let mut host = Host::new(runtime);
        let err = host
            .open::<Identity>(&db.url, &config)
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{rp_id} {origin}: {err}");
    }
}

/// The authenticator's assertion for request options `options_json` made at `origin`, as the
/// JSON a browser front end sends.
fn assert_with(key: &mut SoftPasskey, origin: &str, options_json: &str) -> String {
    use webauthn_authenticator_rs::prelude::RequestChallengeResponse;
    let public_key: serde_json::Value = serde_json::from_str(options_json).unwrap();
    let request: RequestChallengeResponse =
        serde_json::from_value(serde_json::json!({ "publicKey": public_key })).unwrap();
    let credential = key
        .do_authentication(Url::parse(origin).unwrap(), request)
        .unwrap();
    serde_json::to_string(&credential).unwrap()
}

async fn verify_passkey(
    rig: &Rig,
    challenge_id: &str,
    assertion: &str,
    token: Option<&str>,
) -> Result<VerifyMfaChallengeResponse, tonic::Status> {
    let message = VerifyMfaChallengeRequest {
        challenge_id: challenge_id.into(),
        passkey_assertion_json: assertion.into(),
        ..Default::default()
    };
    let request = match token {
        Some(t) => bearer(message, t),
        None => tonic::Request::new(message),
    };
    rig.client()
        .verify_mfa_challenge(request)
        .await
        .map(|r| r.into_inner())
}

/// Signing in with a passkey (rules ID-10, ID-11): enrollment yields recovery codes and renews
/// the session with `hwk mfa`; Login answers a challenge offering the passkey with its request
/// options; the software authenticator's assertion completes it (`amr` `pwd hwk mfa`); the same
/// assertion on a new challenge, and one made for another origin, are refused; Reauthenticate
/// with `passkey` answers a challenge bound to the session that renews it.
async fn sign_in_story(rig: &Rig) {
    let email = "pat@example.com";
    let (_, token, _) = rig.user(email).await;
    let started = start(rig, &token, "Laptop").await.unwrap();
    let mut key = authenticator();
    let response = register(&mut key, ORIGIN, &started.creation_options_json);
    let confirmed = confirm(rig, &token, &started.factor.unwrap().id, &response)
        .await
        .unwrap();
    assert_eq!(
        confirmed.recovery_codes.len(),
        10,
        "the first factor yields codes"
    );
    let renewed = confirmed.tokens.unwrap().access_token;
    assert_eq!(
        claims_of(&renewed)["amr"],
        serde_json::json!(["pwd", "hwk", "mfa"])
    );

    let login = rig.login(email).await;
    assert!(login.tokens.is_none());
    let challenge = login.mfa_challenge.unwrap();
    assert!(challenge.methods.contains(&(MfaMethod::Passkey as i32)));
    assert!(
        challenge
            .methods
            .contains(&(MfaMethod::RecoveryCode as i32))
    );
    let assertion = assert_with(&mut key, ORIGIN, &challenge.passkey_request_options_json);
    let signed_in = verify_passkey(rig, &challenge.challenge_id, &assertion, None)
        .await
        .unwrap();
    let access = signed_in.tokens.unwrap().access_token;
    assert_eq!(
        claims_of(&access)["amr"],
        serde_json::json!(["pwd", "hwk", "mfa"])
    );
    assert_eq!(claims_of(&access)["mfa_enrolled"], true);

    // The same assertion on a new challenge: its challenge does not match.
    let again = rig.login(email).await.mfa_challenge.unwrap();
    let replayed = verify_passkey(rig, &again.challenge_id, &assertion, None)
        .await
        .unwrap_err();
    assert_status(&replayed, Code::Unauthenticated, "INVALID_MFA_CODE");
    // An assertion made for another site.
    let foreign = assert_with(
        &mut key,
        "http://localhost:4000",
        &again.passkey_request_options_json,
    );
    let refused = verify_passkey(rig, &again.challenge_id, &foreign, None)
        .await
        .unwrap_err();
    assert_status(&refused, Code::Unauthenticated, "INVALID_MFA_CODE");
    // The right one still completes it (two failures do not end a challenge).
    let good = assert_with(&mut key, ORIGIN, &again.passkey_request_options_json);
    verify_passkey(rig, &again.challenge_id, &good, None)
        .await
        .unwrap();

    // Step-up with the passkey renews the caller's own session.
    let step_up = rig
        .client()
        .reauthenticate(bearer(
            ReauthenticateRequest {
                passkey: true,
                ..Default::default()
            },
            &access,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(step_up.tokens.is_none());
    let challenge = step_up.mfa_challenge.unwrap();
    let assertion = assert_with(&mut key, ORIGIN, &challenge.passkey_request_options_json);
    let anonymous = verify_passkey(rig, &challenge.challenge_id, &assertion, None)
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    let renewed = verify_passkey(rig, &challenge.challenge_id, &assertion, Some(&access))
        .await
        .unwrap()
        .tokens
        .unwrap();
    assert_eq!(
        claims_of(&renewed.access_token)["sid"],
        claims_of(&access)["sid"],
        "the step-up renews the same session"
    );
}

#[tokio::test]
async fn id_11_a_passkey_completes_sign_in_and_step_up_and_assertions_work_once() {
    let rig = Rig::sqlite().await;
    sign_in_story(&rig).await;
}

#[tokio::test]
async fn id_11_a_passkey_completes_sign_in_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let rig = Rig::start(db, |_| {}).await;
    sign_in_story(&rig).await;
}
