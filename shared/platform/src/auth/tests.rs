use super::*;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::BoxFuture;
use http::HeaderMap;
use jsonwebtoken::Algorithm;

use crate::error::ApiResult;
use crate::revocation::SessionRevocations;
use base64::Engine;

const ISSUER: &str = "https://identity.test";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn user_claims() -> Claims {
    Claims {
        iss: ISSUER.into(),
        sub: "user_1".into(),
        aud: USER_AUDIENCE.into(),
        exp: now() + 900,
        iat: now(),
        nbf: now(),
        jti: "tok_1".into(),
        auth_time: Some(now()),
        sid: Some("ses_1".into()),
        ..Default::default()
    }
}

fn verifier(signer: &Signer) -> TokenVerifier {
    TokenVerifier::new(ISSUER, Arc::new(StaticKeys(vec![signer.public_key()])))
        .with_min_refetch(Duration::ZERO)
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn a_valid_user_token_yields_the_user() {
    let signer = Signer::generate("k1").unwrap();
    let token = signer.sign(&user_claims()).unwrap();
    let p = verifier(&signer).verify(&token).await.unwrap();
    let Principal::User(u) = p else {
        panic!("not a user")
    };
    assert_eq!(u.user_id, "user_1");
    assert_eq!(u.session_id, "ses_1");
}

#[tokio::test]
async fn a_service_token_yields_a_service() {
    let signer = Signer::generate("k1").unwrap();
    let mut claims = user_claims();
    claims.aud = SERVICE_AUDIENCE.into();
    claims.sub = "workspace".into();
    claims.sid = None;
    claims.auth_time = None;
    claims.scope = Some("watch:organization check-access".into());
    let token = signer.sign(&claims).unwrap();
    let p = verifier(&signer).verify(&token).await.unwrap();
    let service = p.require_capability(Capability::CheckAccess).unwrap();
    assert_eq!(service.name, "workspace");
    assert_eq!(
        service.capabilities,
        Capabilities::of(&[Capability::WatchOrganization, Capability::CheckAccess])
    );
    let refused = p.require_capability(Capability::RecordUsage).unwrap_err();
    assert_eq!(refused.error_reason(), CAPABILITY_REQUIRED);
    assert!(p.require_user().is_err());
}

/// ID-5: every token an attacker could forge or replay is UNAUTHENTICATED.
#[tokio::test]
async fn id_5_token_attack_table_is_unauthenticated() {
    let signer = Signer::generate("k1").unwrap();
    let other = Signer::generate("k1").unwrap();
    let stranger = Signer::generate("k9").unwrap();
    let v = verifier(&signer);
    let good = signer.sign(&user_claims()).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let public_x = signer.public_key().x;

    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "kid": "k1", "typ": "JWT"})),
            parts[1]
        ),
    ));
    {
        // HS256 signed with the public key as the HMAC secret (algorithm confusion).
        let header = jsonwebtoken::Header {
            kid: Some("k1".into()),
            ..jsonwebtoken::Header::new(Algorithm::HS256)
        };
        let key = jsonwebtoken::EncodingKey::from_secret(public_x.as_bytes());
        cases.push((
            "hs256 with public key",
            jsonwebtoken::encode(&header, &user_claims(), &key).unwrap(),
        ));
    }
    cases.push(("unknown kid", stranger.sign(&user_claims()).unwrap()));
    let mut c = user_claims();
    c.exp = now() - 3600;
    c.iat = now() - 7200;
    c.nbf = now() - 7200;
    cases.push(("expired", signer.sign(&c).unwrap()));
    let mut c = user_claims();
    c.nbf = now() + 3600;
    cases.push(("nbf in the future", signer.sign(&c).unwrap()));
    let mut c = user_claims();
    c.iss = "https://evil.test".into();
    cases.push(("wrong iss", signer.sign(&c).unwrap()));
    let mut c = user_claims();
    c.aud = "someone-else".into();
    cases.push(("wrong aud", signer.sign(&c).unwrap()));
    {
        let mut c = user_claims();
        c.sub = "user_admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        cases.push((
            "tampered payload",
            format!("{}.{}.{}", parts[0], forged_payload, parts[2]),
        ));
    }
    cases.push((
        "signature from a different key with the same kid",
        other.sign(&user_claims()).unwrap(),
    ));
    {
        let mut c = user_claims();
        c.jti = "x".repeat(9000);
        cases.push(("over 8 KiB", signer.sign(&c).unwrap()));
    }
    cases.push((
        "malformed header",
        format!("not-base64!.{}.{}", parts[1], parts[2]),
    ));
    cases.push(("two segments", format!("{}.{}", parts[0], parts[1])));
    cases.push((
        "jku header",
        format!(
            "{}.{}.{}",
            b64(&serde_json::json!({"alg": "EdDSA", "kid": "k1", "jku": "https://evil.test/jwks"})),
            parts[1],
            parts[2]
        ),
    ));
    cases.push((
        "missing kid",
        format!(
            "{}.{}.{}",
            b64(&serde_json::json!({"alg": "EdDSA"})),
            parts[1],
            parts[2]
        ),
    ));
    {
        let mut c = user_claims();
        c.sid = None;
        cases.push(("user token without session", signer.sign(&c).unwrap()));
    }
    assert!(v.verify(&good).await.is_ok(), "the control token must pass");
    for (name, token) in cases {
        let err = v.verify(&token).await.expect_err(name);
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{name}: {err}");
    }
}

#[tokio::test]
async fn an_unknown_kid_triggers_one_rate_limited_refetch() {
    struct Counting(std::sync::atomic::AtomicUsize, Vec<PublicKey>);
    impl KeySource for Counting {
        fn fetch(&self) -> BoxFuture<'_, ApiResult<Vec<PublicKey>>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let keys = self.1.clone();
            Box::pin(async move { Ok(keys) })
        }
    }
    let signer = Signer::generate("k1").unwrap();
    let stranger = Signer::generate("k2").unwrap();
    let source = Arc::new(Counting(Default::default(), vec![signer.public_key()]));
    let v = TokenVerifier::new(ISSUER, source.clone()).with_min_refetch(Duration::from_secs(60));
    v.verify(&signer.sign(&user_claims()).unwrap())
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(
            v.verify(&stranger.sign(&user_claims()).unwrap())
                .await
                .is_err()
        );
    }
    assert_eq!(source.0.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn headers_select_the_credential() {
    struct Keys;
    impl ApiKeyResolver for Keys {
        fn resolve<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ApiResult<ApiKeyPrincipal>> {
            Box::pin(async move {
                if key == "opk_good" {
                    Ok(ApiKeyPrincipal {
                        key_id: "key_1".into(),
                        organization_id: "org_1".into(),
                        workspace_id: None,
                        kind: ApiKeyKind::Workspace,
                    })
                } else {
                    Err(invalid_api_key())
                }
            })
        }
    }
    let signer = Signer::generate("k1").unwrap();
    let auth = Authenticator::new(
        Arc::new(verifier(&signer)),
        Some(Arc::new(CachedApiKeys::new(
            Arc::new(Keys),
            Duration::from_secs(5),
        ))),
    );
    let mut h = HeaderMap::new();
    assert_eq!(auth.authenticate(&h).await.unwrap(), Principal::Anonymous);
    h.insert(API_KEY_HEADER, "opk_good".parse().unwrap());
    assert!(matches!(
        auth.authenticate(&h).await.unwrap(),
        Principal::ApiKey(_)
    ));
    h.insert(API_KEY_HEADER, "opk_bad".parse().unwrap());
    assert_eq!(
        auth.authenticate(&h).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let token = signer.sign(&user_claims()).unwrap();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert_eq!(
        auth.authenticate(&h).await.unwrap_err().reason(),
        "AMBIGUOUS_CREDENTIALS"
    );
    h.remove(API_KEY_HEADER);
    assert!(matches!(
        auth.authenticate(&h).await.unwrap(),
        Principal::User(_)
    ));
    h.insert("authorization", format!("Basic {token}").parse().unwrap());
    assert!(auth.authenticate(&h).await.is_err());
}

/// Identity as the cache sees it: a key whose status can be flipped, counting the questions; with
/// `deactivate_while_answering`, the deactivation event arrives while it answers "active".
struct FlippableKey {
    active: std::sync::atomic::AtomicBool,
    asked: std::sync::atomic::AtomicUsize,
    deactivate_while_answering: Option<Arc<SessionRevocations>>,
}

impl ApiKeyResolver for FlippableKey {
    fn resolve<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, ApiResult<ApiKeyPrincipal>> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async move {
            self.asked.fetch_add(1, SeqCst);
            if !self.active.load(SeqCst) {
                return Err(invalid_api_key());
            }
            if let Some(revocations) = &self.deactivate_while_answering {
                self.active.store(false, SeqCst);
                revocations.key_status_changed("key_1", false);
            }
            Ok(ApiKeyPrincipal {
                key_id: "key_1".into(),
                organization_id: "org_1".into(),
                workspace_id: None,
                kind: ApiKeyKind::Admin,
            })
        })
    }
}

fn flippable(deactivate_while_answering: Option<Arc<SessionRevocations>>) -> Arc<FlippableKey> {
    Arc::new(FlippableKey {
        active: true.into(),
        asked: 0.into(),
        deactivate_while_answering,
    })
}

#[tokio::test]
async fn id_7_a_deactivated_key_is_refused_at_once_although_its_resolution_was_cached() {
    use std::sync::atomic::Ordering::SeqCst;
    let identity = flippable(None);
    let revocations = SessionRevocations::new();
    let cache = CachedApiKeys::new(identity.clone(), Duration::from_secs(3600))
        .with_revocations(revocations.clone());
    cache.resolve("opk_admin_x").await.unwrap();
    cache.resolve("opk_admin_x").await.unwrap();
    assert_eq!(
        identity.asked.load(SeqCst),
        1,
        "the second answer is cached"
    );

    // Deactivated at identity: until the event arrives the cache still answers (that window is
    // the event's propagation, milliseconds), then identity is asked again and refuses.
    identity.active.store(false, SeqCst);
    cache.resolve("opk_admin_x").await.unwrap();
    revocations.key_status_changed("key_1", false);
    let err = cache.resolve("opk_admin_x").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(identity.asked.load(SeqCst), 2);

    // Reactivated: accepted and cached again; another key's deactivation changes nothing.
    identity.active.store(true, SeqCst);
    revocations.key_status_changed("key_1", true);
    cache.resolve("opk_admin_x").await.unwrap();
    revocations.key_status_changed("key_2", false);
    cache.resolve("opk_admin_x").await.unwrap();
    assert_eq!(identity.asked.load(SeqCst), 3);
}

#[tokio::test]
async fn id_7_a_key_deactivated_while_identity_answered_is_asked_again_and_not_cached() {
    use std::sync::atomic::Ordering::SeqCst;
    let revocations = SessionRevocations::new();
    let identity = flippable(Some(revocations.clone()));
    let cache = CachedApiKeys::new(identity.clone(), Duration::from_secs(3600))
        .with_revocations(revocations.clone());
    let err = cache.resolve("opk_admin_x").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(identity.asked.load(SeqCst), 2);
    assert!(
        cache.resolve("opk_admin_x").await.is_err(),
        "nothing cached"
    );
}

#[tokio::test]
async fn a_consumer_that_missed_key_events_distrusts_every_cached_key() {
    use std::sync::atomic::Ordering::SeqCst;
    let identity = flippable(None);
    let revocations = SessionRevocations::new();
    let cache = CachedApiKeys::new(identity.clone(), Duration::from_secs(3600))
        .with_revocations(revocations.clone());
    cache.resolve("opk_admin_x").await.unwrap();
    let db = crate::testkit::TestDb::sqlite();
    let conn = db.open::<RevocationsOnly>().await;
    // A re-sync (or another replica applying the events) may have skipped a deactivation.
    revocations.committed(&conn, &[], true).await;
    cache.resolve("opk_admin_x").await.unwrap();
    assert_eq!(identity.asked.load(SeqCst), 2, "identity asked again");
    cache.resolve("opk_admin_x").await.unwrap();
    assert_eq!(
        identity.asked.load(SeqCst),
        2,
        "and the answer cached again"
    );
}

struct RevocationsOnly;

impl sea_orm_migration::MigratorTrait for RevocationsOnly {
    fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
        vec![Box::new(crate::revocation::CreateSessionRevocations)]
    }
}
