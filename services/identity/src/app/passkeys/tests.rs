//! The passkey ceremonies against webauthn-authenticator-rs's software authenticator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::store::migration::Migrator;
use orgplane_platform::testkit::TestDb;
use sea_orm::DatabaseConnection;
use webauthn_authenticator_rs::prelude::{RequestChallengeResponse, WebauthnAuthenticator};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

const ORIGIN: &str = "http://localhost:3000";
const ADA: &str = "user_ada";

fn relying_party() -> Passkeys {
    Passkeys::from_config(&Config::default(), Sealer::new(&[9; 32]))
        .unwrap()
        .unwrap()
}

/// A software passkey registered for `user` and stored as an ACTIVE factor, as confirmation
/// stores it; returns the authenticator and the factor id.
async fn enrolled(db: &DatabaseConnection, rp: &Passkeys, user: &str) -> (SoftPasskey, String) {
    let (options, state) = rp
        .webauthn
        .start_passkey_registration(user_handle(user), "ada@example.com", "Ada", None)
        .unwrap();
    let mut key = SoftPasskey::new(true);
    let response = key
        .do_registration(Url::parse(ORIGIN).unwrap(), options)
        .unwrap();
    let passkey = rp
        .webauthn
        .finish_passkey_registration(&response, &state)
        .unwrap();
    assert_eq!(counter_of(&passkey), 0);
    let id = new_id("mfa");
    mfa_factor::ActiveModel {
        id: Set(id.clone()),
        user_id: Set(user.to_owned()),
        kind: Set(KIND.to_owned()),
        create_time_ms: Set(0),
        display_name: Set("Passkey".to_owned()),
        state: Set(ACTIVE),
        secret_sealed: Set(None),
        passkey_sealed: Set(Some(rp.seal(&passkey, &id).unwrap())),
        credential_id: Set(Some(URL_SAFE_NO_PAD.encode(passkey.cred_id()))),
        expire_time_ms: Set(None),
        last_used_time_ms: Set(None),
    }
    .insert(db)
    .await
    .unwrap();
    (key, id)
}

/// The authenticator's assertion for `options_json` made at `origin`, as browser JSON.
fn assertion(key: &mut SoftPasskey, origin: &str, options_json: &str) -> String {
    let public_key: serde_json::Value = serde_json::from_str(options_json).unwrap();
    let request: RequestChallengeResponse =
        serde_json::from_value(serde_json::json!({ "publicKey": public_key })).unwrap();
    let credential = key
        .do_authentication(Url::parse(origin).unwrap(), request)
        .unwrap();
    serde_json::to_string(&credential).unwrap()
}

fn assert_refused(result: ApiResult<String>, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(err.reason(), "INVALID_MFA_CODE", "{what}: {err:?}");
    assert_eq!(
        err.code(),
        orgplane_platform::error::Code::Unauthenticated,
        "{what}"
    );
}

async fn stored(db: &DatabaseConnection, rp: &Passkeys, id: &str) -> (mfa_factor::Model, u32) {
    let row = mfa_factor::Entity::find_by_id(id.to_owned())
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let passkey: Passkey = rp.open(row.passkey_sealed.as_deref().unwrap(), id).unwrap();
    let counter = counter_of(&passkey);
    (row, counter)
}

async fn assertion_story(db: &DatabaseConnection) {
    let rp = relying_party();
    assert_eq!(rp.request_options(db, ADA).await.unwrap(), None);
    let (mut key, id) = enrolled(db, &rp, ADA).await;
    let (_, other_id) = enrolled(db, &rp, ADA).await;

    let (options, state) = rp.request_options(db, ADA).await.unwrap().unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&options).unwrap();
    assert_eq!(parsed["rpId"], "localhost");
    assert_eq!(parsed["allowCredentials"].as_array().unwrap().len(), 2);
    assert!(
        !state.contains("challenge") && !state.contains(&id),
        "the ceremony state is sealed"
    );
    let good = assertion(&mut key, ORIGIN, &options);
    assert_eq!(
        rp.verify_assertion(db, ADA, &state, &good, 1_000)
            .await
            .unwrap(),
        id
    );
    let (row, counter) = stored(db, &rp, &id).await;
    assert_eq!(row.last_used_time_ms, Some(1_000));
    assert_eq!(counter, 1, "the counter is stored");
    assert_eq!(stored(db, &rp, &other_id).await.0.last_used_time_ms, None);

    // The same assertion again, with the same ceremony state.
    assert_refused(
        rp.verify_assertion(db, ADA, &state, &good, 2_000).await,
        "a replayed assertion",
    );
    assert_eq!(stored(db, &rp, &id).await.0.last_used_time_ms, Some(1_000));

    let (options, state) = rp.request_options(db, ADA).await.unwrap().unwrap();
    let foreign = assertion(&mut key, "http://localhost:4000", &options);
    assert_refused(
        rp.verify_assertion(db, ADA, &state, &foreign, 3_000).await,
        "an assertion made for another origin",
    );
    let fresh = assertion(&mut key, ORIGIN, &options);
    assert_refused(
        rp.verify_assertion(db, "user_eve", &state, &fresh, 3_000)
            .await,
        "another user's ceremony state",
    );
    for (what, sealed, json) in [
        ("not JSON", state.as_str(), "not json"),
        ("an empty object", state.as_str(), "{}"),
        (
            "a truncated assertion",
            state.as_str(),
            &fresh[..fresh.len() / 2],
        ),
        ("a forged state", "bm90IGEgc3RhdGU", fresh.as_str()),
        ("no state", "", fresh.as_str()),
    ] {
        assert_refused(
            rp.verify_assertion(db, ADA, sealed, json, 3_000).await,
            what,
        );
    }
    // Control: the genuine assertion for this ceremony verifies.
    assert_eq!(
        rp.verify_assertion(db, ADA, &state, &fresh, 4_000)
            .await
            .unwrap(),
        id
    );

    // Two concurrent uses of one assertion: one passes.
    let (options, state) = rp.request_options(db, ADA).await.unwrap().unwrap();
    let once = assertion(&mut key, ORIGIN, &options);
    let (a, b) = tokio::join!(
        rp.verify_assertion(db, ADA, &state, &once, 5_000),
        rp.verify_assertion(db, ADA, &state, &once, 5_000),
    );
    assert_eq!(
        [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{a:?} {b:?}"
    );
}

#[tokio::test]
async fn id_10_passkey_assertions_verify_once_and_only_for_their_origin() {
    let db = TestDb::sqlite();
    assertion_story(&db.open::<Migrator>().await).await;
}

#[tokio::test]
async fn id_10_passkey_assertions_verify_once_and_only_for_their_origin_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    assertion_story(&db.open::<Migrator>().await).await;
}

#[test]
fn id_10_relying_party_settings_are_checked() {
    let sealer = Sealer::new(&[1; 32]);
    let with = |rp_id: &str, origin: &str| {
        let config = Config {
            passkey_rp_id: rp_id.into(),
            passkey_origin: origin.into(),
            ..Config::default()
        };
        Passkeys::from_config(&config, sealer.clone())
    };
    assert!(with("", ORIGIN).unwrap().is_none(), "empty: off");
    let two = with(
        "Example.com",
        "https://app.example.com, https://example.com",
    )
    .unwrap()
    .unwrap();
    assert_eq!(two.webauthn.get_allowed_origins().len(), 2);
    for (rp_id, origin, field) in [
        (
            "https://example.com",
            "https://example.com",
            "passkey_rp_id",
        ),
        ("example.com:443", "https://example.com", "passkey_rp_id"),
        ("10.0.0.1", "https://10.0.0.1", "passkey_rp_id"),
        ("example.com", "https://app.other.com", "passkey_origin"),
        ("example.com", "https://notexample.com", "passkey_origin"),
        ("example.com", "http://app.example.com", "passkey_origin"),
        (
            "example.com",
            "https://app.example.com/login",
            "passkey_origin",
        ),
        ("example.com", "app.example.com", "passkey_origin"),
        ("example.com", " , ", "passkey_origin"),
    ] {
        let err = with(rp_id, origin).unwrap_err();
        assert_eq!(err.code(), orgplane_platform::error::Code::InvalidArgument);
        assert!(
            err.message().starts_with(&format!("invalid {field}:")),
            "{rp_id} {origin}: {}",
            err.message()
        );
    }
}
