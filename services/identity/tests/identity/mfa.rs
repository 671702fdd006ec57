//! Second factors, the MFA challenge, risk-based step-up, the admin MFA reset and ORG-16 in
//! identity's organization-scoped RPCs (rules ID-8, ID-10, ID-11, ID-12, ORG-16), over real gRPC.
//! TOTP codes are computed here with `totp-rs` directly from the secret the service showed; the
//! rig's clock is moved to the start of a fresh 30-second step before each code, so a step
//! boundary never falls between computing a code and the service checking it.

use super::*;

use orgplane_platform::clock::Clock;
use orgplane_proto::organization::v1::{MfaRequirement, SecurityPolicy};

const STEP: i64 = 30;

fn secret_bytes(base32: &str) -> Vec<u8> {
    totp_rs::Secret::try_from_base32(base32)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// The code of `secret` (base32) at Unix time `t`, computed independently of the service.
fn code_at(secret: &str, t: i64) -> String {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(secret_bytes(secret))
        .build()
        .unwrap()
        .generate(u64::try_from(t).unwrap())
        .to_string()
}

/// Moves the rig's clock to one second into the next TOTP step; returns that time.
fn next_step(rig: &Rig) -> i64 {
    let now = rig.clock.now();
    let into = now.timestamp().rem_euclid(STEP);
    let by = (STEP - into + 1) * 1000 - i64::from(now.timestamp_subsec_millis());
    rig.clock.advance(chrono::Duration::milliseconds(by));
    rig.clock.now().timestamp()
}

/// A code of a step no code was used in yet.
pub(super) fn fresh_code(rig: &Rig, secret: &str) -> String {
    code_at(secret, next_step(rig))
}

fn metadata(status: &tonic::Status) -> std::collections::HashMap<String, String> {
    status.get_details_error_info().unwrap().metadata
}

pub(super) fn amr_of(token: &str) -> Vec<String> {
    serde_json::from_value(claims_of(token)["amr"].clone()).unwrap_or_default()
}

fn risk_of(token: &str) -> Vec<String> {
    serde_json::from_value(claims_of(token)["risk"].clone()).unwrap_or_default()
}

fn mfa_enrolled(token: &str) -> bool {
    claims_of(token)["mfa_enrolled"].as_bool().unwrap_or(false)
}

pub(super) async fn start_totp(
    rig: &Rig,
    token: &str,
) -> Result<StartTotpEnrollmentResponse, tonic::Status> {
    rig.client()
        .start_totp_enrollment(bearer(
            StartTotpEnrollmentRequest {
                display_name: "Phone".into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

pub(super) async fn confirm_totp(
    rig: &Rig,
    token: &str,
    factor_id: &str,
    code: &str,
) -> Result<ConfirmTotpEnrollmentResponse, tonic::Status> {
    rig.client()
        .confirm_totp_enrollment(bearer(
            ConfirmTotpEnrollmentRequest {
                factor_id: factor_id.into(),
                code: code.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// A user with a confirmed TOTP factor.
pub(super) struct Enrolled {
    user: User,
    pub(super) email: String,
    pub(super) secret: String,
    factor_id: String,
    recovery_codes: Vec<String>,
    /// The tokens ConfirmTotpEnrollment renewed (signed in with the factor).
    tokens: SessionTokens,
}

pub(super) async fn enrolled(rig: &Rig, email: &str) -> Enrolled {
    let (user, token, _) = rig.user(email).await;
    let started = start_totp(rig, &token).await.unwrap();
    let code = fresh_code(rig, &started.secret);
    let factor_id = started.factor.unwrap().id;
    let confirmed = confirm_totp(rig, &token, &factor_id, &code).await.unwrap();
    Enrolled {
        user,
        email: email.into(),
        secret: started.secret,
        factor_id,
        recovery_codes: confirmed.recovery_codes,
        tokens: confirmed.tokens.unwrap(),
    }
}

pub(super) async fn login_as(rig: &Rig, email: &str, client_addr: Option<&str>) -> LoginResponse {
    let mut req = tonic::Request::new(LoginRequest {
        email: email.into(),
        password: PASSWORD.into(),
    });
    if let Some(addr) = client_addr {
        req.metadata_mut()
            .insert("x-forwarded-for", addr.parse().unwrap());
    }
    rig.client().login(req).await.unwrap().into_inner()
}

pub(super) async fn verify(
    rig: &Rig,
    challenge_id: &str,
    totp_code: &str,
    recovery_code: &str,
) -> Result<VerifyMfaChallengeResponse, tonic::Status> {
    rig.client()
        .verify_mfa_challenge(VerifyMfaChallengeRequest {
            challenge_id: challenge_id.into(),
            totp_code: totp_code.into(),
            recovery_code: recovery_code.into(),
            passkey_assertion_json: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn reauth(
    rig: &Rig,
    token: &str,
    request: ReauthenticateRequest,
) -> Result<SessionTokens, tonic::Status> {
    rig.client()
        .reauthenticate(bearer(request, token))
        .await
        .map(|r| r.into_inner().tokens.unwrap())
}

fn totp_reauth(code: &str) -> ReauthenticateRequest {
    ReauthenticateRequest {
        totp_code: code.into(),
        ..Default::default()
    }
}

async fn list_factors(rig: &Rig, token: &str) -> ListMfaFactorsResponse {
    rig.client()
        .list_mfa_factors(bearer(ListMfaFactorsRequest {}, token))
        .await
        .unwrap()
        .into_inner()
}

async fn delete_factor(
    rig: &Rig,
    token: &str,
    factor_id: &str,
) -> Result<DeleteMfaFactorResponse, tonic::Status> {
    rig.client()
        .delete_mfa_factor(bearer(
            DeleteMfaFactorRequest {
                factor_id: factor_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn count_rows(rig: &Rig, table: &str, user_id: &str) -> i64 {
    let row = rig
        .db()
        .query_one_raw(Statement::from_sql_and_values(
            rig.db().get_database_backend(),
            format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1"),
            [user_id.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

fn pw_amr() -> Vec<String> {
    vec!["pwd".to_owned()]
}

fn mfa_amr() -> Vec<String> {
    ["pwd", "otp", "mfa"].map(String::from).to_vec()
}

// ----- ID-10 ------------------------------------------------------------------------------------

#[tokio::test]
async fn id_10_totp_enrollment_shows_the_secret_once_and_confirming_yields_codes_and_mfa_tokens() {
    let rig = Rig::sqlite().await;
    let (user, token, _) = rig.user("ada@example.com").await;
    assert_eq!(amr_of(&token), pw_amr());
    assert!(!mfa_enrolled(&token));

    let started = start_totp(&rig, &token).await.unwrap();
    let factor = started.factor.clone().unwrap();
    assert!(factor.id.starts_with("mfa_"), "{}", factor.id);
    assert_eq!(factor.state, MfaFactorState::Pending as i32);
    assert_eq!(factor.r#type, MfaFactorType::Totp as i32);
    assert_eq!(factor.display_name, "Phone");
    assert!(factor.expire_time.is_some());
    assert_eq!(started.secret.len(), 32, "160 bits in base32");
    assert!(!started.secret.contains('='));
    assert_eq!(secret_bytes(&started.secret).len(), 20);
    let uri = url::Url::parse(&started.otpauth_uri).unwrap();
    assert_eq!(uri.scheme(), "otpauth");
    assert_eq!(uri.host_str(), Some("totp"));
    assert_eq!(uri.path(), "/Orgplane:ada@example.com");
    let query: std::collections::HashMap<_, _> = uri.query_pairs().into_owned().collect();
    assert_eq!(query["secret"], started.secret);
    assert_eq!(query["issuer"], "Orgplane");
    assert_eq!(query["digits"], "6");
    assert_eq!(query["period"], "30");
    assert_eq!(query["algorithm"], "SHA1");

    // A wrong code is refused; the factor stays PENDING.
    let now = next_step(&rig);
    let wrong = format!(
        "{:06}",
        (code_at(&started.secret, now).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let err = confirm_totp(&rig, &token, &factor.id, &wrong)
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");
    let err = confirm_totp(&rig, &token, "mfa_unknown", &code_at(&started.secret, now))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let confirmed = confirm_totp(&rig, &token, &factor.id, &code_at(&started.secret, now))
        .await
        .unwrap();
    let active = confirmed.factor.unwrap();
    assert_eq!(active.state, MfaFactorState::Active as i32);
    assert!(active.expire_time.is_none());
    assert_eq!(confirmed.recovery_codes.len(), 10);
    let distinct: std::collections::HashSet<_> = confirmed.recovery_codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    for code in &confirmed.recovery_codes {
        assert_eq!(code.len(), 14, "{code}");
        assert!(
            code.chars()
                .all(|c| c == '-' || "0123456789abcdefghjkmnpqrstvwxyz".contains(c)),
            "{code}"
        );
    }
    let tokens = confirmed.tokens.unwrap();
    assert_eq!(
        claims_of(&tokens.access_token)["sid"],
        claims_of(&token)["sid"]
    );
    assert_eq!(amr_of(&tokens.access_token), mfa_amr());
    assert!(mfa_enrolled(&tokens.access_token));

    // A second factor: no new recovery codes.
    let second = start_totp(&rig, &tokens.access_token).await.unwrap();
    let second_id = second.factor.unwrap().id;
    let confirmed = confirm_totp(
        &rig,
        &tokens.access_token,
        &second_id,
        &fresh_code(&rig, &second.secret),
    )
    .await
    .unwrap();
    assert!(confirmed.recovery_codes.is_empty());
    let listed = list_factors(&rig, &tokens.access_token).await;
    assert_eq!(
        listed
            .factors
            .iter()
            .map(|f| f.id.clone())
            .collect::<Vec<_>>(),
        [factor.id.clone(), second_id.clone()]
    );
    assert_eq!(listed.remaining_recovery_codes, 10);

    // Removing one keeps the codes; removing the last removes them.
    let tokens = confirmed.tokens.unwrap();
    let left = delete_factor(&rig, &tokens.access_token, &second_id)
        .await
        .unwrap();
    assert_eq!(left.remaining_factor_count, 1);
    assert_eq!(
        list_factors(&rig, &tokens.access_token)
            .await
            .remaining_recovery_codes,
        10
    );
    let err = delete_factor(&rig, &tokens.access_token, &second_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let left = delete_factor(&rig, &tokens.access_token, &factor.id)
        .await
        .unwrap();
    assert_eq!(left.remaining_factor_count, 0);
    let listed = list_factors(&rig, &tokens.access_token).await;
    assert!(listed.factors.is_empty());
    assert_eq!(listed.remaining_recovery_codes, 0);
    assert_eq!(count_rows(&rig, "mfa_recovery_codes", &user.id).await, 0);
    let err = rig
        .client()
        .regenerate_recovery_codes(bearer(
            RegenerateRecoveryCodesRequest {},
            &tokens.access_token,
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "MFA_NOT_ENROLLED");

    // Every change was audited, by id and kind only.
    let actions: Vec<String> = rig
        .db()
        .query_all_raw(Statement::from_string(
            rig.db().get_database_backend(),
            "SELECT action FROM audit_log WHERE resource_type = 'mfa_factor' ORDER BY create_time_ms, id",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "mfa_factor.create",
            "mfa_factor.activate",
            "mfa_factor.create",
            "mfa_factor.activate",
            "mfa_factor.delete",
            "mfa_factor.delete"
        ]
    );
}

#[tokio::test]
async fn id_10_at_most_ten_factors_and_expired_pending_ones_do_not_count() {
    let rig = Rig::sqlite().await;
    let (_, token, _) = rig.user("many@example.com").await;
    for _ in 0..10 {
        start_totp(&rig, &token).await.unwrap();
    }
    let err = start_totp(&rig, &token).await.unwrap_err();
    assert_status(&err, Code::ResourceExhausted, "MFA_FACTOR_LIMIT");
    assert_eq!(list_factors(&rig, &token).await.factors.len(), 10);
    rig.clock.advance(chrono::Duration::minutes(11));
    assert!(
        list_factors(&rig, &token).await.factors.is_empty(),
        "expired"
    );
    let started = start_totp(&rig, &token).await.unwrap();
    let err = confirm_totp(&rig, &token, &started.factor.unwrap().id, "000000")
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");
    assert_eq!(list_factors(&rig, &token).await.factors.len(), 1);
}

#[tokio::test]
async fn id_10_codes_are_accepted_one_step_either_way_and_once_per_step() {
    let rig = Rig::sqlite().await;
    let ada = enrolled(&rig, "ada@example.com").await;
    let token = ada.tokens.access_token.clone();
    // The confirmation's code, in its own step, is used up.
    let now = rig.clock.now().timestamp();
    let err = reauth(&rig, &token, totp_reauth(&code_at(&ada.secret, now)))
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");

    // The previous and the next step are accepted; two steps off is not.
    let now = next_step(&rig) + STEP;
    rig.clock.advance(chrono::Duration::seconds(STEP));
    let token = reauth(&rig, &token, totp_reauth(&code_at(&ada.secret, now - STEP)))
        .await
        .expect("one step behind")
        .access_token;
    let token = reauth(&rig, &token, totp_reauth(&code_at(&ada.secret, now + STEP)))
        .await
        .expect("one step ahead")
        .access_token;
    let now = next_step(&rig) + 2 * STEP;
    rig.clock.advance(chrono::Duration::seconds(2 * STEP));
    for off in [now - 2 * STEP, now + 2 * STEP] {
        let err = reauth(&rig, &token, totp_reauth(&code_at(&ada.secret, off)))
            .await
            .unwrap_err();
        assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");
    }
    // The same code twice in its step: the second time refused.
    let code = fresh_code(&rig, &ada.secret);
    let token = reauth(&rig, &token, totp_reauth(&code))
        .await
        .unwrap()
        .access_token;
    let err = reauth(&rig, &token, totp_reauth(&code)).await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");
    assert_eq!(amr_of(&token), mfa_amr());
}

async fn once_per_step_across_instances(rig: &Rig) {
    let ada = enrolled(rig, "ada@example.com").await;
    let other = rig.replica(|_| {}).await;
    let (other, shutdown) = (other.server, other.shutdown);
    let mut b = IdentityServiceClient::new(other.channel());
    let token = ada.tokens.access_token.clone();

    // A accepts a code; B, with fresh memory, refuses it in the same step.
    let code = fresh_code(rig, &ada.secret);
    let token = reauth(rig, &token, totp_reauth(&code))
        .await
        .unwrap()
        .access_token;
    let err = b
        .reauthenticate(bearer(totp_reauth(&code), &token))
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");

    // The next code, sent to both at once: exactly one accepts it.
    let code = fresh_code(rig, &ada.secret);
    let mut a = rig.client();
    let (ra, rb) = tokio::join!(
        a.reauthenticate(bearer(totp_reauth(&code), &token)),
        b.reauthenticate(bearer(totp_reauth(&code), &token)),
    );
    let accepted = [ra.is_ok(), rb.is_ok()];
    assert_eq!(
        accepted.iter().filter(|ok| **ok).count(),
        1,
        "{ra:?} {rb:?}"
    );
    let token = match (ra, rb) {
        (Ok(r), Err(e)) | (Err(e), Ok(r)) => {
            assert_status(&e, Code::Unauthenticated, "INVALID_MFA_CODE");
            r.into_inner().tokens.unwrap().access_token
        }
        _ => unreachable!(),
    };
    // B accepts a later step; A (whose memory saw none of it) then refuses that code.
    let code = fresh_code(rig, &ada.secret);
    let token = b
        .reauthenticate(bearer(totp_reauth(&code), &token))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap()
        .access_token;
    let err = reauth(rig, &token, totp_reauth(&code)).await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");
    shutdown.cancel();
}

#[tokio::test]
async fn id_10_a_code_is_used_once_across_a_restart_and_two_instances_on_sqlite() {
    let rig = Rig::sqlite().await;
    once_per_step_across_instances(&rig).await;
}

#[tokio::test]
async fn id_10_a_code_is_used_once_across_a_restart_and_two_instances_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    let rig = Rig::start(db, |_| {}).await;
    once_per_step_across_instances(&rig).await;
}

#[tokio::test]
async fn id_10_wrong_codes_are_throttled_like_passwords_with_retry_info() {
    let rig = Rig::with(|c| c.login_failures_per_account = 3).await;
    let ada = enrolled(&rig, "ada@example.com").await;
    let challenge = login_as(&rig, &ada.email, None)
        .await
        .mfa_challenge
        .unwrap();
    for _ in 0..3 {
        let err = verify(&rig, &challenge.challenge_id, "000000", "")
            .await
            .unwrap_err();
        assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");
    }
    // The right code does not help once the account's budget is spent.
    let code = fresh_code(&rig, &ada.secret);
    let err = verify(&rig, &challenge.challenge_id, &code, "")
        .await
        .unwrap_err();
    assert_status(&err, Code::ResourceExhausted, "RATE_LIMITED");
    let retry = err.get_details_retry_info().expect("RetryInfo");
    assert!(retry.retry_delay.unwrap() >= Duration::from_secs(1));
    // Reauthenticate codes count too.
    let mut refused = Vec::new();
    for _ in 0..4 {
        refused.push(
            reauth(&rig, &ada.tokens.access_token, totp_reauth("000000"))
                .await
                .unwrap_err()
                .code(),
        );
    }
    assert_eq!(
        refused,
        [
            Code::Unauthenticated,
            Code::Unauthenticated,
            Code::Unauthenticated,
            Code::ResourceExhausted
        ]
    );
}

#[tokio::test]
async fn id_10_recovery_codes_are_single_use_and_regenerating_replaces_them() {
    let rig = Rig::sqlite().await;
    let ada = enrolled(&rig, "ada@example.com").await;
    let first = &ada.recovery_codes[0];
    let challenge = login_as(&rig, &ada.email, None)
        .await
        .mfa_challenge
        .unwrap();
    // Typed loosely: upper case, spaces for dashes.
    let done = verify(
        &rig,
        &challenge.challenge_id,
        "",
        &first.to_uppercase().replace('-', " "),
    )
    .await
    .unwrap();
    let token = done.tokens.unwrap().access_token;
    assert_eq!(amr_of(&token), mfa_amr());
    assert_eq!(list_factors(&rig, &token).await.remaining_recovery_codes, 9);

    let challenge = login_as(&rig, &ada.email, None)
        .await
        .mfa_challenge
        .unwrap();
    let err = verify(&rig, &challenge.challenge_id, "", first)
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");
    let err = reauth(
        &rig,
        &token,
        ReauthenticateRequest {
            recovery_code: first.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");

    let fresh = rig
        .client()
        .regenerate_recovery_codes(bearer(RegenerateRecoveryCodesRequest {}, &token))
        .await
        .unwrap()
        .into_inner()
        .recovery_codes;
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|c| !ada.recovery_codes.contains(c)));
    let err = verify(&rig, &challenge.challenge_id, "", &ada.recovery_codes[1])
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");
    verify(&rig, &challenge.challenge_id, "", &fresh[0])
        .await
        .expect("a new code works");
    assert_eq!(list_factors(&rig, &token).await.remaining_recovery_codes, 9);
}

// ----- ID-11 ------------------------------------------------------------------------------------

async fn challenge_flow(rig: &Rig) {
    let ada = enrolled(rig, "ada@example.com").await;
    let login = login_as(rig, &ada.email, None).await;
    assert!(login.tokens.is_none(), "no tokens before the second factor");
    assert_eq!(login.user.as_ref().unwrap().id, ada.user.id);
    let challenge = login.mfa_challenge.unwrap();
    assert!(challenge.challenge_id.starts_with("mfac_"));
    assert_eq!(
        challenge.methods,
        [MfaMethod::Totp as i32, MfaMethod::RecoveryCode as i32]
    );
    let expires = challenge.expire_time.unwrap().seconds - rig.clock.now().timestamp();
    assert!((295..=300).contains(&expires), "{expires}");

    let err = verify(
        rig,
        &challenge.challenge_id,
        "123456",
        &ada.recovery_codes[0],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "two proofs");
    let done = verify(
        rig,
        &challenge.challenge_id,
        &fresh_code(rig, &ada.secret),
        "",
    )
    .await
    .unwrap();
    assert_eq!(done.user.unwrap().id, ada.user.id);
    let tokens = done.tokens.unwrap();
    assert_eq!(amr_of(&tokens.access_token), mfa_amr());
    assert!(mfa_enrolled(&tokens.access_token));
    me(rig, &tokens.access_token).await.unwrap();
    // Refresh keeps them.
    let refreshed = rig
        .client()
        .refresh(RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(amr_of(&refreshed.access_token), mfa_amr());
    assert!(mfa_enrolled(&refreshed.access_token));

    // Single use.
    let err = verify(rig, &challenge.challenge_id, "", &ada.recovery_codes[0])
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "MFA_CHALLENGE_INVALID");
    let err = verify(rig, "mfac_unknown", "", &ada.recovery_codes[0])
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "MFA_CHALLENGE_INVALID");

    // Single use under concurrency: two right proofs at once, one session.
    let challenge = login_as(rig, &ada.email, None).await.mfa_challenge.unwrap();
    let (a, b) = tokio::join!(
        verify(rig, &challenge.challenge_id, "", &ada.recovery_codes[1]),
        verify(rig, &challenge.challenge_id, "", &ada.recovery_codes[2]),
    );
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1);
    let loser = a.err().or(b.err()).unwrap();
    assert_status(&loser, Code::Unauthenticated, "MFA_CHALLENGE_INVALID");

    // Expiry after 5 minutes.
    let challenge = login_as(rig, &ada.email, None).await.mfa_challenge.unwrap();
    rig.clock.advance(chrono::Duration::seconds(301));
    let err = verify(rig, &challenge.challenge_id, "", &ada.recovery_codes[3])
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "MFA_CHALLENGE_INVALID");

    // Five wrong proofs end it.
    let challenge = login_as(rig, &ada.email, None).await.mfa_challenge.unwrap();
    for _ in 0..5 {
        let err = verify(rig, &challenge.challenge_id, "000000", "")
            .await
            .unwrap_err();
        assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");
    }
    let err = verify(rig, &challenge.challenge_id, "", &ada.recovery_codes[3])
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "MFA_CHALLENGE_INVALID");
    // The recovery code was not used up by the refused attempt.
    let challenge = login_as(rig, &ada.email, None).await.mfa_challenge.unwrap();
    verify(rig, &challenge.challenge_id, "", &ada.recovery_codes[3])
        .await
        .unwrap();
}

#[tokio::test]
async fn id_11_login_with_a_factor_answers_a_challenge_that_completes_once() {
    let rig = Rig::with(|c| c.login_failures_per_account = 50).await;
    challenge_flow(&rig).await;
}

#[tokio::test]
async fn id_11_the_challenge_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    let rig = Rig::start(db, |c| c.login_failures_per_account = 50).await;
    challenge_flow(&rig).await;
}

#[tokio::test]
async fn id_11_reauthenticate_takes_exactly_one_proof_and_a_code_adds_otp_and_mfa() {
    let rig = Rig::sqlite().await;
    // A session started before the factor was enrolled: password only.
    rig.sign_up("ada@example.com", AccountType::Business).await;
    let old = rig.login("ada@example.com").await.tokens.unwrap();
    let (bob, bob_t, _) = rig.user("bob@example.com").await;
    let _ = bob;
    let ada_t = rig
        .login("ada@example.com")
        .await
        .tokens
        .unwrap()
        .access_token;
    let started = start_totp(&rig, &ada_t).await.unwrap();
    let confirmed = confirm_totp(
        &rig,
        &ada_t,
        &started.factor.unwrap().id,
        &fresh_code(&rig, &started.secret),
    )
    .await
    .unwrap();
    let factor_id = confirmed.factor.unwrap().id;
    assert_eq!(amr_of(&old.access_token), pw_amr());

    for request in [
        ReauthenticateRequest::default(),
        ReauthenticateRequest {
            password: PASSWORD.into(),
            totp_code: "123456".into(),
            ..Default::default()
        },
        ReauthenticateRequest {
            recovery_code: "abcd-efgh-jkmn".into(),
            passkey: true,
            ..Default::default()
        },
    ] {
        let err = reauth(&rig, &old.access_token, request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    // Factor proofs from a user without factors.
    for request in [
        totp_reauth("123456"),
        ReauthenticateRequest {
            recovery_code: "abcd-efgh-jkmn".into(),
            ..Default::default()
        },
        ReauthenticateRequest {
            passkey: true,
            ..Default::default()
        },
    ] {
        let err = reauth(&rig, &bob_t, request).await.unwrap_err();
        assert_status(&err, Code::FailedPrecondition, "MFA_NOT_ENROLLED");
    }

    // The old session may not change factors: the user has one and this sign-in did not use it.
    let err = delete_factor(&rig, &old.access_token, &factor_id)
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");
    let md = metadata(&err);
    assert_eq!(md["required"], "second_factor");
    assert_eq!(md["signals"], "second_factor_missing");
    assert_eq!(md["max_age_seconds"], "300");
    // A password does not add a factor.
    let pw = reauth(
        &rig,
        &old.access_token,
        ReauthenticateRequest {
            password: PASSWORD.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(amr_of(&pw.access_token), pw_amr());
    assert!(mfa_enrolled(&pw.access_token));
    let err = delete_factor(&rig, &pw.access_token, &factor_id)
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");
    // A code does.
    let fresh = reauth(
        &rig,
        &pw.access_token,
        totp_reauth(&fresh_code(&rig, &started.secret)),
    )
    .await
    .unwrap();
    assert_eq!(
        claims_of(&fresh.access_token)["sid"],
        claims_of(&old.access_token)["sid"]
    );
    assert_eq!(amr_of(&fresh.access_token), mfa_amr());
    // The previous refresh token of the session is invalid.
    let err = rig
        .client()
        .refresh(RefreshRequest {
            refresh_token: pw.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let left = delete_factor(&rig, &fresh.access_token, &factor_id)
        .await
        .unwrap();
    assert_eq!(left.remaining_factor_count, 0);
    // Without factors, Login signs in at once again.
    assert!(rig.login("ada@example.com").await.tokens.is_some());
}

// ----- ID-12 ------------------------------------------------------------------------------------

#[tokio::test]
async fn id_12_a_new_address_alone_requires_reauthentication_and_a_fresh_proof_clears_it() {
    let rig = Rig::with(|c| c.trusted_proxies = "127.0.0.1".into()).await;
    rig.sign_up("ada@example.com", AccountType::Business).await;
    let home = login_as(&rig, "ada@example.com", Some("198.51.100.7")).await;
    let home = home.tokens.unwrap().access_token;
    assert!(
        risk_of(&home).is_empty(),
        "the first sign-in sets the baseline"
    );
    let again = login_as(&rig, "ada@example.com", Some("198.51.100.7")).await;
    assert!(risk_of(&again.tokens.unwrap().access_token).is_empty());

    let away = login_as(&rig, "ada@example.com", Some("203.0.113.9")).await;
    let away = away.tokens.unwrap().access_token;
    assert_eq!(risk_of(&away), ["new_address"]);
    let err = start_totp(&rig, &away).await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");
    let md = metadata(&err);
    assert_eq!(md["signals"], "new_address", "the only signal");
    assert_eq!(md["required"], "password");
    assert_eq!(md["max_age_seconds"], "300");
    // The home session is not at risk.
    start_totp(&rig, &home).await.unwrap();

    let fresh = reauth(
        &rig,
        &away,
        ReauthenticateRequest {
            password: PASSWORD.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(risk_of(&fresh.access_token).is_empty());
    start_totp(&rig, &fresh.access_token).await.unwrap();
    // The address is known now.
    let back = login_as(&rig, "ada@example.com", Some("203.0.113.9")).await;
    assert!(risk_of(&back.tokens.unwrap().access_token).is_empty());
    // Known for 30 days.
    rig.clock.advance(chrono::Duration::days(29));
    let later = login_as(&rig, "ada@example.com", Some("198.51.100.7")).await;
    assert!(risk_of(&later.tokens.unwrap().access_token).is_empty());
    rig.clock.advance(chrono::Duration::days(2));
    let later = login_as(&rig, "ada@example.com", Some("198.51.100.7")).await;
    assert!(risk_of(&later.tokens.unwrap().access_token).is_empty());
    let stale = login_as(&rig, "ada@example.com", Some("203.0.113.9")).await;
    assert_eq!(
        risk_of(&stale.tokens.unwrap().access_token),
        ["new_address"]
    );
}

#[tokio::test]
async fn id_12_recent_failures_alone_require_a_second_factor_again_until_a_fresh_code() {
    let rig = Rig::sqlite().await;
    let ada = enrolled(&rig, "ada@example.com").await;
    // Two failures are not yet "repeated".
    for _ in 0..2 {
        let err = rig
            .client()
            .login(LoginRequest {
                email: ada.email.clone(),
                password: "wrong password!!".into(),
            })
            .await
            .unwrap_err();
        assert_status(&err, Code::Unauthenticated, "INVALID_CREDENTIALS");
    }
    let challenge = login_as(&rig, &ada.email, None)
        .await
        .mfa_challenge
        .unwrap();
    let calm = verify(
        &rig,
        &challenge.challenge_id,
        &fresh_code(&rig, &ada.secret),
        "",
    )
    .await
    .unwrap()
    .tokens
    .unwrap()
    .access_token;
    assert!(risk_of(&calm).is_empty());
    // A wrong code is the third failure of the hour.
    let err = reauth(&rig, &calm, totp_reauth("000000"))
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");
    let challenge = login_as(&rig, &ada.email, None)
        .await
        .mfa_challenge
        .unwrap();
    let risky = verify(
        &rig,
        &challenge.challenge_id,
        &fresh_code(&rig, &ada.secret),
        "",
    )
    .await
    .unwrap()
    .tokens
    .unwrap()
    .access_token;
    assert_eq!(risk_of(&risky), ["recent_failures"]);
    assert_eq!(amr_of(&risky), mfa_amr());
    let err = delete_factor(&rig, &risky, &ada.factor_id)
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");
    let md = metadata(&err);
    assert_eq!(md["signals"], "recent_failures", "the only signal");
    assert_eq!(md["required"], "second_factor");
    // A fresh code clears it.
    let fresh = reauth(&rig, &risky, totp_reauth(&fresh_code(&rig, &ada.secret)))
        .await
        .unwrap();
    assert!(risk_of(&fresh.access_token).is_empty());
    delete_factor(&rig, &fresh.access_token, &ada.factor_id)
        .await
        .unwrap();
    // An hour later the failures no longer count.
    rig.clock.advance(chrono::Duration::minutes(61));
    let later = rig.login(&ada.email).await.tokens.unwrap();
    assert!(risk_of(&later.access_token).is_empty());
}

// ----- ID-8 -------------------------------------------------------------------------------------

#[tokio::test]
async fn id_8_admin_reset_mfa_removes_factors_and_ends_the_members_sessions() {
    let rig = Rig::sqlite().await;
    let (owner, owner_t, _) = rig.user("owner@example.com").await;
    let member = enrolled(&rig, "member@example.com").await;
    rig.create_org("org_a", &owner.id).await;
    rig.add_member("org_a", &member.user.id, OrgRole::Developer)
        .await;
    // An open challenge and a used step exist.
    let pending = login_as(&rig, &member.email, None)
        .await
        .mfa_challenge
        .unwrap();
    me(&rig, &member.tokens.access_token).await.unwrap();

    let reset = rig
        .client()
        .admin_reset_mfa(bearer(
            AdminResetMfaRequest {
                organization_id: "org_a".into(),
                user_id: member.user.id.clone(),
            },
            &owner_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.removed_factor_count, 1);
    assert_eq!(
        reset.ended_session_count, 1,
        "the session the factor was enrolled in"
    );
    let err = me(&rig, &member.tokens.access_token).await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "SESSION_REVOKED");
    let err = rig
        .client()
        .refresh(RefreshRequest {
            refresh_token: member.tokens.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = verify(&rig, &pending.challenge_id, "", &member.recovery_codes[0])
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "MFA_CHALLENGE_INVALID");
    for table in [
        "mfa_factors",
        "mfa_recovery_codes",
        "totp_steps",
        "mfa_challenges",
    ] {
        assert_eq!(count_rows(&rig, table, &member.user.id).await, 0, "{table}");
    }
    assert!(
        revoked_sessions(&rig)
            .await
            .contains(&member.tokens.session_id)
    );
    // The member signs in with the password alone now.
    let login = rig.login(&member.email).await;
    assert!(login.mfa_challenge.is_none());
    let token = login.tokens.unwrap().access_token;
    assert!(!mfa_enrolled(&token));
    assert!(list_factors(&rig, &token).await.factors.is_empty());

    // DeleteUser removes the per-user rows too.
    let ada = enrolled(&rig, "ada@example.com").await;
    rig.identity.organization_events().wait_caught_up().await;
    rig.client()
        .delete_user(bearer(
            DeleteUserRequest {
                user_id: "me".into(),
            },
            &ada.tokens.access_token,
        ))
        .await
        .unwrap();
    for table in [
        "mfa_factors",
        "mfa_recovery_codes",
        "totp_steps",
        "sign_in_addresses",
        "sign_in_failures",
    ] {
        assert_eq!(count_rows(&rig, table, &ada.user.id).await, 0, "{table}");
    }
}

// ----- ORG-16 -----------------------------------------------------------------------------------

pub(super) async fn set_policy(rig: &Rig, org: &str, mfa: MfaRequirement) {
    rig.org_event(Payload::SecurityPolicyChanged(SecurityPolicyChanged {
        organization_id: org.into(),
        security_policy: Some(SecurityPolicy {
            organization_id: org.into(),
            mfa_requirement: mfa as i32,
            reauthentication_max_age: Some(prost_types::Duration {
                seconds: 300,
                nanos: 0,
            }),
            allowed_sign_in_methods: Vec::new(),
            etag: "v2".into(),
            ..Default::default()
        }),
    }))
    .await;
}

async fn list_keys(
    rig: &Rig,
    token: &str,
    org: &str,
) -> Result<ListApiKeysResponse, tonic::Status> {
    rig.client()
        .list_api_keys(bearer(
            ListApiKeysRequest {
                organization_id: org.into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn org_16_identity_refuses_a_password_only_token_where_the_policy_requires_mfa_only() {
    let rig = Rig::sqlite().await;
    let (owner, token, _) = rig.user("owner@example.com").await;
    rig.create_org("org_strict", &owner.id).await;
    rig.create_org("org_relaxed", &owner.id).await;
    set_policy(&rig, "org_strict", MfaRequirement::Required).await;
    set_policy(&rig, "org_relaxed", MfaRequirement::Optional).await;

    let err = list_keys(&rig, &token, "org_strict").await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "MFA_REQUIRED");
    let md = metadata(&err);
    assert_eq!(md["organization_id"], "org_strict");
    assert_eq!(md["enrollment_required"], "true");
    let err = create_key(&rig, &token, "org_strict", ApiKeyKind::Workspace, "")
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "MFA_REQUIRED");
    list_keys(&rig, &token, "org_relaxed")
        .await
        .expect("another organization's policy is satisfied");
    create_key(&rig, &token, "org_relaxed", ApiKeyKind::Admin, "")
        .await
        .expect("admin key where the policy is optional");
    // Login says where a factor must be enrolled.
    let login = rig.login("owner@example.com").await;
    assert_eq!(
        login.mfa_enrollment_required_organization_ids,
        ["org_strict"]
    );
    let second_session = login.tokens.unwrap().access_token;

    // With a factor, the strict organization admits the token.
    let started = start_totp(&rig, &token).await.unwrap();
    let confirmed = confirm_totp(
        &rig,
        &token,
        &started.factor.unwrap().id,
        &fresh_code(&rig, &started.secret),
    )
    .await
    .unwrap();
    let mfa_token = confirmed.tokens.unwrap().access_token;
    list_keys(&rig, &mfa_token, "org_strict").await.unwrap();
    create_key(&rig, &mfa_token, "org_strict", ApiKeyKind::Admin, "")
        .await
        .expect("admin key with a second factor");
    // Privileged roles only: an OWNER needs it, a DEVELOPER does not.
    let (dev, dev_t, _) = rig.user("dev@example.com").await;
    rig.add_member("org_strict", &dev.id, OrgRole::Developer)
        .await;
    set_policy(
        &rig,
        "org_strict",
        MfaRequirement::RequiredForPrivilegedRoles,
    )
    .await;
    list_keys(&rig, &dev_t, "org_strict").await.unwrap();
    let login = rig.login("owner@example.com").await;
    assert!(login.mfa_challenge.is_some());
    // A password-only sign-in of a user who has a factor: use it, rather than enroll one.
    let pw_only = reauth(
        &rig,
        &second_session,
        ReauthenticateRequest {
            password: PASSWORD.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .access_token;
    let err = list_keys(&rig, &pw_only, "org_strict").await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "MFA_REQUIRED");
    assert_eq!(metadata(&err)["enrollment_required"], "false");
}

/// Admin keys need a recent sign-in under the organization's policy: its re-authentication
/// age, with REAUTHENTICATION_REQUIRED and the platform's metadata.
#[tokio::test]
async fn org_16_admin_key_step_up_follows_the_organizations_policy() {
    let rig = Rig::with(|c| c.step_up_max_age_secs = 1).await;
    let (owner, token, _) = rig.user("owner@example.com").await;
    rig.create_org("org_a", &owner.id).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = create_key(&rig, &token, "org_a", ApiKeyKind::Admin, "")
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");
    let md = metadata(&err);
    assert_eq!(md["signals"], "stale_sign_in");
    assert_eq!(md["required"], "password");
    assert_eq!(md["max_age_seconds"], "1");
    assert_eq!(md["organization_id"], "org_a");
}

// ----- secrets ----------------------------------------------------------------------------------

#[tokio::test]
async fn id_10_totp_secrets_and_recovery_codes_are_never_stored_or_logged_in_plaintext() {
    let rig = Rig::sqlite().await;
    let ada = enrolled(&rig, "secret@example.com").await;
    let challenge = login_as(&rig, &ada.email, None)
        .await
        .mfa_challenge
        .unwrap();
    let code = fresh_code(&rig, &ada.secret);
    verify(&rig, &challenge.challenge_id, &code, "")
        .await
        .unwrap();
    let second = login_as(&rig, &ada.email, None)
        .await
        .mfa_challenge
        .unwrap();
    let _ = verify(&rig, &second.challenge_id, "", "wxyz-wxyz-wxyz").await;
    verify(&rig, &second.challenge_id, "", &ada.recovery_codes[0])
        .await
        .unwrap();
    let raw = secret_bytes(&ada.secret);
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        (
            "TOTP secret (base32)".into(),
            ada.secret.clone().into_bytes(),
        ),
        ("TOTP secret (raw)".into(), raw.clone()),
        (
            "TOTP secret (base64)".into(),
            base64::engine::general_purpose::STANDARD
                .encode(&raw)
                .into_bytes(),
        ),
        (
            "TOTP secret (hex)".into(),
            raw.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        ),
        (
            "challenge id".into(),
            challenge.challenge_id.clone().into_bytes(),
        ),
        (
            "second challenge id".into(),
            second.challenge_id.clone().into_bytes(),
        ),
        ("password".into(), PASSWORD.as_bytes().to_vec()),
    ];
    for (i, c) in ada.recovery_codes.iter().enumerate() {
        secrets.push((format!("recovery code {i}"), c.clone().into_bytes()));
        secrets.push((
            format!("recovery code {i} (normalized)"),
            c.replace('-', "").into_bytes(),
        ));
    }
    rig.db()
        .execute_raw(Statement::from_string(
            rig.db().get_database_backend(),
            "PRAGMA wal_checkpoint(FULL)",
        ))
        .await
        .unwrap();
    let db_path = PathBuf::from(
        rig.db_url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap(),
    );
    let mut files = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db_path.display()));
        if let Ok(bytes) = std::fs::read(&p) {
            files.push((p.display().to_string(), bytes));
        }
    }
    assert!(!files.is_empty());
    files.push(("captured logs".into(), log_buffer().lock().unwrap().clone()));
    for (name, secret) in &secrets {
        for (file, bytes) in &files {
            assert!(!contains(bytes, secret), "{name} found in {file}");
        }
    }
    // What is stored instead: the sealed secret (opening with the sealing key and the factor
    // id as associated data) and digests of the codes.
    let key_file = std::fs::read_to_string(rig.dir.path().join("signing.key")).unwrap();
    let sealing: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(key_file.trim())
        .unwrap()
        .try_into()
        .unwrap();
    let row = rig
        .db()
        .query_one_raw(Statement::from_sql_and_values(
            rig.db().get_database_backend(),
            "SELECT secret_sealed FROM mfa_factors WHERE id = $1",
            [ada.factor_id.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let sealed: String = row.try_get_by_index(0).unwrap();
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .unwrap();
    let sealer = orgplane_identity::crypto::Sealer::new(&sealing);
    assert_eq!(sealer.open(&sealed, &ada.factor_id).unwrap(), raw);
    assert!(
        sealer.open(&sealed, "mfa_other").is_err(),
        "bound to its factor"
    );
    let digest = orgplane_identity::crypto::sha256_hex(&ada.recovery_codes[1].replace('-', ""));
    assert!(files.iter().any(|(_, b)| contains(b, digest.as_bytes())));
}

// ----- the sweep --------------------------------------------------------------------------------

#[tokio::test]
async fn id_10_every_mfa_rpc_without_credentials_answers_a_deliberate_code() {
    let rig = Rig::sqlite().await;
    let mut c = rig.client();
    let results: Vec<(&str, Result<(), tonic::Status>)> = vec![
        (
            "StartTotpEnrollment",
            c.start_totp_enrollment(StartTotpEnrollmentRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "ConfirmTotpEnrollment",
            c.confirm_totp_enrollment(ConfirmTotpEnrollmentRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "ListMfaFactors",
            c.list_mfa_factors(ListMfaFactorsRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "DeleteMfaFactor",
            c.delete_mfa_factor(DeleteMfaFactorRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "RegenerateRecoveryCodes",
            c.regenerate_recovery_codes(RegenerateRecoveryCodesRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "VerifyMfaChallenge",
            c.verify_mfa_challenge(VerifyMfaChallengeRequest::default())
                .await
                .map(|_| ()),
        ),
    ];
    for (name, result) in results {
        let status = result.expect_err(name);
        assert!(
            matches!(status.code(), Code::Unauthenticated | Code::InvalidArgument),
            "{name}: {status:?}"
        );
        assert!(reason_of(&status).is_some(), "{name} has an ErrorInfo");
    }
}
