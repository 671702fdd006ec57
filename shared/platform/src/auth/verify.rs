//! Access-token and service-token verification (rules ID-4, ID-5): the claims, the key sources,
//! and the verifier that caches verified tokens until they expire.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::*;
use crate::error::Reason;
use crate::error::{ApiError, ApiResult};

/// The claims of every Orgplane JWT (rule ID-4). Identity mints them; every service verifies them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer: identity's configured issuer URL.
    pub iss: String,
    /// Subject: a user id, or a service account name for service tokens.
    pub sub: String,
    /// Audience: [`USER_AUDIENCE`] or [`SERVICE_AUDIENCE`].
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// When the user last proved their password (Unix seconds); drives step-up (ID-6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The session the token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// How the user signed in (RFC 8176 values; rule ID-11).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// Whether the user had an active second factor at issue (private claim; rule ORG-16's
    /// `enrollment_required`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mfa_enrolled: bool,
    /// The risk signals identity saw at this sign-in (private claim; rule ID-12).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risk: Vec<String>,
    /// A service token's capabilities, space-separated (see [`Capability`]); absent or empty:
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

pub(super) fn invalid_token(message: &str) -> ApiError {
    ApiError::unauthenticated(Reason::InvalidToken, message.to_owned())
}

/// A public signing key as published by `IdentityService/GetJwks` (Ed25519, `x` base64url).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key id tokens name in their header.
    pub kid: String,
    /// The raw 32-byte Ed25519 public key, base64url without padding (JWK `x`).
    pub x: String,
}

/// Where a verifier gets the current signing keys: identity's own key store in process, or
/// `GetJwks` over gRPC in the other services.
pub trait KeySource: Send + Sync + 'static {
    /// The keys whose tokens may still be valid.
    fn fetch(&self) -> BoxFuture<'_, ApiResult<Vec<PublicKey>>>;
}

/// A fixed key set (tests, and tools that pin keys).
#[derive(Debug, Clone, Default)]
pub struct StaticKeys(pub Vec<PublicKey>);

impl KeySource for StaticKeys {
    fn fetch(&self) -> BoxFuture<'_, ApiResult<Vec<PublicKey>>> {
        let keys = self.0.clone();
        Box::pin(async move { Ok(keys) })
    }
}

struct CachedToken {
    principal: Arc<Principal>,
    nbf: i64,
    exp: i64,
}

/// Verifies Orgplane JWTs against a key set fetched from a [`KeySource`], caching verified
/// tokens until they expire so that the hot path does not verify a signature per request.
pub struct TokenVerifier {
    issuer: String,
    source: Arc<dyn KeySource>,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_refetch: Duration,
    validation: Validation,
    cache: RwLock<HashMap<String, CachedToken>>,
    cache_capacity: usize,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for tokens issued by `issuer` with keys from `source`.
    pub fn new(issuer: impl Into<String>, source: Arc<dyn KeySource>) -> Self {
        let issuer = issuer.into();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["iss", "aud", "exp", "nbf", "iat", "sub"]);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&[USER_AUDIENCE, SERVICE_AUDIENCE]);
        Self {
            issuer,
            source,
            keys: RwLock::new(HashMap::new()),
            last_fetch: tokio::sync::Mutex::new(None),
            min_refetch: Duration::from_secs(10),
            validation,
            cache: RwLock::new(HashMap::new()),
            cache_capacity: 100_000,
        }
    }

    /// Sets the least time between two key-set fetches caused by unknown `kid`s.
    pub fn with_min_refetch(mut self, interval: Duration) -> Self {
        self.min_refetch = interval;
        self
    }

    /// Verifies `token` and returns its principal, or UNAUTHENTICATED.
    pub async fn verify(&self, token: &str) -> ApiResult<Principal> {
        self.verify_shared(token).await.map(Arc::unwrap_or_clone)
    }

    /// [`Self::verify`], answering a cached token with the cached principal itself (no copy,
    /// no signature check): the hot path of every authenticated call.
    pub async fn verify_shared(&self, token: &str) -> ApiResult<Arc<Principal>> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid_token("token too large"));
        }
        let now = chrono::Utc::now().timestamp();
        if let Some(hit) = self.cached(token, now) {
            return Ok(hit);
        }
        let kid = check_header(token)?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                self.refetch().await?;
                self.key(&kid)
                    .ok_or_else(|| invalid_token("token signed with an unknown key"))?
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => invalid_token("token expired"),
                ErrorKind::ImmatureSignature => invalid_token("token not yet valid"),
                ErrorKind::InvalidIssuer => invalid_token("token from another issuer"),
                ErrorKind::InvalidAudience => invalid_token("token for another audience"),
                _ => invalid_token("invalid token"),
            }
        })?;
        let claims = data.claims;
        let principal = Arc::new(principal_from_claims(&claims)?);
        self.remember(token, &principal, &claims);
        Ok(principal)
    }

    fn cached(&self, token: &str, now: i64) -> Option<Arc<Principal>> {
        // A read lock: concurrent hits do not serialize.
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let hit = cache.get(token)?;
        let leeway = LEEWAY_SECS as i64;
        (now < hit.exp + leeway && now >= hit.nbf - leeway).then(|| Arc::clone(&hit.principal))
    }

    fn remember(&self, token: &str, principal: &Arc<Principal>, claims: &Claims) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.cache_capacity {
            let now = chrono::Utc::now().timestamp();
            cache.retain(|_, v| v.exp > now);
            if cache.len() >= self.cache_capacity {
                cache.clear();
            }
        }
        cache.insert(
            token.to_owned(),
            CachedToken {
                principal: Arc::clone(principal),
                nbf: claims.nbf,
                exp: claims.exp,
            },
        );
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned()
    }

    /// Refetches the key set, at most once per `min_refetch`.
    async fn refetch(&self) -> ApiResult<()> {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let fetched = self.source.fetch().await.map_err(|e| {
            tracing::warn!(error = %e, "fetching the signing keys failed");
            ApiError::unavailable(
                Reason::KeysUnavailable,
                "signing keys are unavailable; retry",
            )
        })?;
        let mut keys = HashMap::new();
        for k in fetched {
            match DecodingKey::from_ed_components(&k.x) {
                Ok(key) => {
                    keys.insert(k.kid, key);
                }
                Err(e) => tracing::warn!(kid = %k.kid, error = %e, "ignoring malformed key"),
            }
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }
}

/// Checks the raw JOSE header and returns its `kid`.
fn check_header(token: &str) -> ApiResult<String> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid_token("malformed token"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| invalid_token("malformed token header"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| invalid_token("malformed token header"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| invalid_token("malformed token header"))?;
    if obj.get("alg").and_then(|v| v.as_str()) != Some("EdDSA") {
        return Err(invalid_token("token algorithm not accepted"));
    }
    for refused in ["crit", "jku", "jwk", "x5u", "x5c"] {
        if obj.contains_key(refused) {
            return Err(invalid_token("token header field not accepted"));
        }
    }
    if let Some(typ) = obj.get("typ")
        && typ.as_str() != Some("JWT")
    {
        return Err(invalid_token("token type not accepted"));
    }
    obj.get("kid")
        .and_then(|v| v.as_str())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| invalid_token("token names no key"))
}

fn principal_from_claims(claims: &Claims) -> ApiResult<Principal> {
    if claims.sub.is_empty() {
        return Err(invalid_token("token has no subject"));
    }
    match claims.aud.as_str() {
        SERVICE_AUDIENCE => Ok(Principal::Service(ServicePrincipal {
            name: claims.sub.clone(),
            capabilities: claims
                .scope
                .as_deref()
                .map(Capabilities::from_scope)
                .unwrap_or_default(),
        })),
        USER_AUDIENCE => {
            let (Some(sid), Some(auth_time)) = (&claims.sid, claims.auth_time) else {
                return Err(invalid_token("token has no session"));
            };
            if sid.is_empty() || claims.jti.is_empty() {
                return Err(invalid_token("token has no session"));
            }
            Ok(Principal::User(UserPrincipal {
                user_id: claims.sub.clone(),
                session_id: sid.clone(),
                auth_time,
                token_id: claims.jti.clone(),
                sign_in: SignIn {
                    amr: bounded(&claims.amr),
                    mfa_enrolled: claims.mfa_enrolled,
                    risk: bounded(&claims.risk),
                },
            }))
        }
        _ => Err(invalid_token("token for another audience")),
    }
}

/// At most 8 short values of a list claim: a signed token is trusted, but its claims still feed
/// error metadata and memory.
fn bounded(values: &[String]) -> Vec<String> {
    values
        .iter()
        .filter(|v| v.len() <= 32)
        .take(8)
        .cloned()
        .collect()
}
