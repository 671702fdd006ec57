//! The oracles against themselves, without the identity service: discovery, a full code flow
//! with PKCE whose ID token carries the upserted account, key rotation and kid-less keys, and
//! every mock shape producing the token (or answer) it promises — signatures checked with
//! jsonwebtoken against the published JWKS, so a shape that signs wrongly fails here.

use super::*;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

const REDIRECT: &str = "http://127.0.0.1:9/sso/callback";

/// Whether `token`'s signature verifies for `alg` under `key` (claims unchecked).
fn signature_ok(token: &str, alg: Algorithm, key: &DecodingKey) -> bool {
    let mut validation = Validation::new(alg);
    validation.validate_aud = false;
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, key, &validation).is_ok()
}

/// The published key with this `kid` (or the only one when `kid` is None).
fn jwk(jwks: &Value, kid: Option<&str>) -> Option<DecodingKey> {
    let keys = jwks["keys"].as_array().unwrap();
    let key = match kid {
        Some(kid) => keys.iter().find(|k| k["kid"] == kid)?,
        None if keys.len() == 1 => &keys[0],
        None => return None,
    };
    let jwk: Jwk = serde_json::from_value(key.clone()).unwrap();
    Some(DecodingKey::from_jwk(&jwk).unwrap())
}

/// A complete sign-in: authorization (login_hint), redirects, code redemption.
async fn sign_in(oracle: &Oracle, email: &str) -> (AuthRequest, (u16, Value)) {
    let request = AuthRequest::new(REDIRECT, email);
    let url = oracle.authorization_url(&request).await;
    let callback = follow_authorization(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", oracle.stderr()));
    let (code, state) = callback.code_and_state();
    assert_eq!(state, request.state);
    let answer = oracle.redeem(&code, REDIRECT, &request.pkce.verifier).await;
    (request, answer)
}

fn id_token(answer: &(u16, Value)) -> String {
    assert_eq!(answer.0, 200, "{}", answer.1);
    answer.1["id_token"].as_str().unwrap().to_string()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn oidc_oracles_publish_discovery() {
    let provider = OidcProvider::start(REDIRECT).await;
    let doc = provider.discovery().await;
    assert_eq!(doc["issuer"], provider.issuer.as_str());
    assert!(
        doc["token_endpoint"]
            .as_str()
            .unwrap()
            .starts_with(&provider.issuer)
    );
    assert!(
        doc["code_challenge_methods_supported"]
            .to_string()
            .contains("S256")
    );
    assert!(
        doc["id_token_signing_alg_values_supported"]
            .to_string()
            .contains("RS256")
    );
    assert!(provider.jwks().await["keys"][0]["kid"].is_string());

    let mock = MockProvider::start(REDIRECT).await;
    let doc = mock.discovery().await;
    assert_eq!(doc["issuer"], mock.issuer.as_str());
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    mock.override_discovery(json!({ "issuer": "https://elsewhere.example", "jwks_uri": null }))
        .await;
    let doc = mock.discovery().await;
    assert_eq!(doc["issuer"], "https://elsewhere.example");
    assert!(doc.get("jwks_uri").is_none());
}

#[tokio::test]
async fn oidc_provider_code_flow_with_pkce_yields_the_accounts_claims() {
    let provider = OidcProvider::start(REDIRECT).await;
    let alice = Account::new("alice-sub", "alice@corp.example").with_amr(&["pwd", "mfa"]);
    let mut bob = Account::new("bob-sub", "bob@corp.example");
    bob.email_verified = false;
    provider.upsert_account(&alice).await;
    provider.upsert_account(&bob).await;

    let (request, answer) = sign_in(&provider, "alice@corp.example").await;
    let token = id_token(&answer);
    let (header, claims) = decode_jwt(&token);
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().expect("a kid").to_string();
    assert_eq!(claims["sub"], "alice-sub");
    assert_eq!(claims["email"], "alice@corp.example");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["amr"], json!(["pwd", "mfa"]));
    assert_eq!(claims["nonce"], request.nonce.as_str());
    assert_eq!(claims["aud"], provider.client_id.as_str());
    assert_eq!(claims["iss"], provider.issuer.as_str());
    assert!(claims["exp"].as_i64().unwrap() > now());
    let key = jwk(&provider.jwks().await, Some(&kid)).unwrap();
    assert!(signature_ok(&token, Algorithm::RS256, &key));

    let (_, answer) = sign_in(&provider, "bob-sub").await;
    let (_, claims) = decode_jwt(&id_token(&answer));
    assert_eq!(
        (claims["sub"].clone(), claims["email_verified"].clone()),
        (json!("bob-sub"), json!(false))
    );
    assert_eq!(claims["amr"], json!(["pwd"]));

    // The provider enforces PKCE and single-use codes; unknown people are refused.
    let request = AuthRequest::new(REDIRECT, "alice@corp.example");
    let callback = follow_authorization(&provider.authorization_url(&request).await)
        .await
        .unwrap();
    let (code, _) = callback.code_and_state();
    let (status, body) = provider
        .redeem(&code, REDIRECT, &Pkce::new().verifier)
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant"))
    );
    let (status, body) = provider
        .redeem(&code, REDIRECT, &request.pkce.verifier)
        .await;
    assert_eq!(status, 200, "the right verifier still redeems: {body}");
    let (status, _) = provider
        .redeem(&code, REDIRECT, &request.pkce.verifier)
        .await;
    assert_eq!(status, 400, "a code is single-use");
    let request = AuthRequest::new(REDIRECT, "mallory@corp.example");
    let callback = follow_authorization(&provider.authorization_url(&request).await)
        .await
        .unwrap();
    assert_eq!(
        callback.error.as_deref(),
        Some("access_denied"),
        "{callback:?}"
    );
    assert_eq!(callback.state.as_deref(), Some(request.state.as_str()));
    assert!(
        callback
            .error_description
            .as_deref()
            .is_some_and(|d| d.contains("mallory@corp.example")),
        "{callback:?}"
    );
    // RFC 9207: the provider names itself on the redirect.
    assert_eq!(
        callback.params.get("iss").map(String::as_str),
        Some(provider.issuer.as_str())
    );
    assert!(callback.code.is_none());
}

#[tokio::test]
async fn oidc_provider_rotates_keys_and_drops_kids() {
    let provider = OidcProvider::start(REDIRECT).await;
    provider
        .upsert_account(&Account::new("carol-sub", "carol@corp.example"))
        .await;
    let (_, answer) = sign_in(&provider, "carol@corp.example").await;
    let (header, _) = decode_jwt(&id_token(&answer));
    let first = header["kid"].as_str().unwrap().to_string();

    let second = provider.rotate_key().await;
    assert_ne!(second, first);
    let jwks = provider.jwks().await;
    assert!(
        jwk(&jwks, Some(&first)).is_none(),
        "the old key left the JWKS"
    );
    let (_, answer) = sign_in(&provider, "carol@corp.example").await;
    let token = id_token(&answer);
    assert_eq!(decode_jwt(&token).0["kid"], second.as_str());
    assert!(signature_ok(
        &token,
        Algorithm::RS256,
        &jwk(&jwks, Some(&second)).unwrap()
    ));

    provider.use_keys_without_kid().await;
    let jwks = provider.jwks().await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert!(jwks["keys"][0].get("kid").is_none(), "{jwks}");
    let (_, answer) = sign_in(&provider, "carol@corp.example").await;
    let token = id_token(&answer);
    assert!(decode_jwt(&token).0.get("kid").is_none());
    let only = jwk(&jwks, None).unwrap();
    assert!(signature_ok(&token, Algorithm::RS256, &only));
}

#[tokio::test]
async fn oidc_provider_signs_es256_for_a_client_secret_post_client() {
    let mut options = ProviderOptions::new(REDIRECT);
    options.alg = "ES256".into();
    options.auth_method = "client_secret_post".into();
    let provider = OidcProvider::start_with(options).await;
    assert_eq!(provider.alg, "ES256");
    provider
        .upsert_account(&Account::new("dan-sub", "dan@corp.example"))
        .await;
    let (_, answer) = sign_in(&provider, "dan@corp.example").await;
    let token = id_token(&answer);
    let (header, claims) = decode_jwt(&token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["sub"], "dan-sub");
    let key = jwk(&provider.jwks().await, header["kid"].as_str()).unwrap();
    assert!(signature_ok(&token, Algorithm::ES256, &key));
}

#[tokio::test]
async fn mock_provider_fills_the_checks_the_library_lacks() {
    let mock = MockProvider::start(REDIRECT).await;
    mock.upsert_account(&Account::new("erin-sub", "erin@corp.example").with_amr(&["pwd", "otp"]))
        .await;
    let (request, answer) = sign_in(&mock, "erin@corp.example").await;
    let token = id_token(&answer);
    let (header, claims) = decode_jwt(&token);
    assert_eq!(claims["sub"], "erin-sub");
    assert_eq!(claims["email"], "erin@corp.example");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims["nonce"], request.nonce.as_str());
    assert_eq!(claims["aud"], mock.client_id.as_str());
    assert_eq!(claims["iss"], mock.issuer.as_str());
    let kids = mock.kids().await;
    assert_eq!(header["kid"], kids["rs256_kid"]);
    let jwks = mock.jwks().await;
    let rs = jwk(&jwks, header["kid"].as_str()).unwrap();
    assert!(signature_ok(&token, Algorithm::RS256, &rs));

    // A code is single-use, needs its verifier and the client's secret.
    let request = AuthRequest::new(REDIRECT, "erin@corp.example");
    let callback = follow_authorization(&mock.authorization_url(&request).await)
        .await
        .unwrap();
    let (code, _) = callback.code_and_state();
    let (status, body) = mock.redeem(&code, REDIRECT, &request.pkce.verifier).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = mock.redeem(&code, REDIRECT, &request.pkce.verifier).await;
    assert_eq!(status, 400, "a used code: {body}");
    let requests = mock.token_requests().await;
    let last = requests.last().unwrap();
    assert_eq!(
        (last["client_auth"].clone(), last["code_verifier"].clone()),
        (json!("basic"), json!(true))
    );

    let request = AuthRequest::new(REDIRECT, "erin@corp.example");
    let callback = follow_authorization(&mock.authorization_url(&request).await)
        .await
        .unwrap();
    let (code, _) = callback.code_and_state();
    let token_endpoint = format!("{}/token", mock.issuer);
    let answer = reqwest::Client::new()
        .post(&token_endpoint)
        .basic_auth(&mock.client_id, Some("not-the-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", request.pkce.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let answer = reqwest::Client::new()
        .post(&token_endpoint)
        .basic_auth(&mock.client_id, Some(&mock.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400, "no code_verifier");

    // Authorization without S256 PKCE, or for an unknown person, is refused on the redirect URI.
    let request = AuthRequest::new(REDIRECT, "erin@corp.example");
    let url = mock
        .authorization_url(&request)
        .await
        .replace("S256", "plain");
    let callback = follow_authorization(&url).await.unwrap();
    assert_eq!(
        callback.error.as_deref(),
        Some("invalid_request"),
        "{callback:?}"
    );
    let request = AuthRequest::new(REDIRECT, "nobody@corp.example");
    let callback = follow_authorization(&mock.authorization_url(&request).await)
        .await
        .unwrap();
    assert_eq!(
        callback.error.as_deref(),
        Some("access_denied"),
        "{callback:?}"
    );
}

#[tokio::test]
async fn mock_provider_shapes_each_bad_token_as_promised() {
    let mock = MockProvider::start(REDIRECT).await;
    mock.upsert_account(&Account::new("fay-sub", "fay@corp.example"))
        .await;
    let jwks = mock.jwks().await;
    let kids = mock.kids().await;
    let rs_kid = kids["rs256_kid"].as_str().unwrap();
    let rs = jwk(&jwks, Some(rs_kid)).unwrap();
    let es = jwk(&jwks, kids["es256_kid"].as_str()).unwrap();
    for shape in Shape::ALL {
        mock.shape_next_token(shape).await;
        let (request, answer) = sign_in(&mock, "fay@corp.example").await;
        match shape {
            Shape::TokenError => {
                assert_eq!(
                    (answer.0, answer.1["error"].clone()),
                    (400, json!("invalid_grant"))
                );
                continue;
            }
            Shape::ServerError => {
                assert_eq!(answer.0, 500, "{}", answer.1);
                continue;
            }
            _ => {}
        }
        let token = id_token(&answer);
        let (header, claims) = decode_jwt(&token);
        let good_signature = signature_ok(&token, Algorithm::RS256, &rs);
        let ok = match shape {
            Shape::WrongAudience => good_signature && claims["aud"] != mock.client_id.as_str(),
            Shape::WrongIssuer => good_signature && claims["iss"] != mock.issuer.as_str(),
            Shape::WrongNonce => {
                good_signature
                    && claims["nonce"].is_string()
                    && claims["nonce"] != request.nonce.as_str()
            }
            Shape::NoNonce => good_signature && claims.get("nonce").is_none(),
            Shape::Expired => good_signature && claims["exp"].as_i64().unwrap() < now(),
            Shape::EmailUnverified => good_signature && claims["email_verified"] == false,
            Shape::Es256 => header["alg"] == "ES256" && signature_ok(&token, Algorithm::ES256, &es),
            Shape::AlgNone => header["alg"] == "none" && token.ends_with('.'),
            Shape::Hs256ClientSecret => {
                let secret = DecodingKey::from_secret(mock.client_secret.as_bytes());
                header["alg"] == "HS256" && signature_ok(&token, Algorithm::HS256, &secret)
            }
            Shape::UnknownKey => {
                header["kid"] == kids["foreign_kid"] && jwk(&jwks, header["kid"].as_str()).is_none()
            }
            Shape::ForgedKid => header["kid"] == rs_kid && !good_signature,
            Shape::NoKid => header.get("kid").is_none() && good_signature,
            Shape::TokenError | Shape::ServerError => unreachable!(),
        };
        assert!(ok, "{shape:?}: {header} {claims}");
        // Every other promise still holds, so each shape isolates one fault.
        if shape != Shape::WrongNonce && shape != Shape::NoNonce {
            assert_eq!(claims["nonce"], request.nonce.as_str(), "{shape:?}");
        }
        if shape != Shape::WrongAudience {
            assert_eq!(claims["aud"], mock.client_id.as_str(), "{shape:?}");
        }
        if shape != Shape::Expired {
            assert!(claims["exp"].as_i64().unwrap() > now(), "{shape:?}");
        }
    }
    // Shapes are one-shot: the next token is good again.
    let (_, answer) = sign_in(&mock, "fay@corp.example").await;
    let token = id_token(&answer);
    assert!(signature_ok(&token, Algorithm::RS256, &rs));
    assert_eq!(decode_jwt(&token).1["email_verified"], true);
}
