//! Authentication: one tower layer turns request metadata into a [`Principal`] — a user (a JWT in
//! `authorization: Bearer …`), an API key (`x-api-key`, resolved through identity and cached
//! briefly) or a service (a service token) — and puts it in the request's extensions, where
//! handlers read it. Health and reflection pass without credentials (Kubernetes probes send
//! none). Authorization against roles happens in the services; the guards here only say *who*.
//! A verified (or cached) access token whose session ended is refused afterwards through the
//! process's [`SessionRevocations`] (see [`crate::revocation`]).
//!
//! Token verification deliberately overrides `jsonwebtoken`'s lax defaults: the algorithm is
//! pinned to EdDSA, `iss aud exp nbf iat sub` are required, the leeway is small and explicit, the
//! key is chosen by `kid` from the JWKS here (refetched on an unknown `kid`, rate-limited),
//! headers that ask for other key sources (`jku`, `jwk`, `x5u`) or carry `crit` are refused, and
//! tokens over 8 KiB are refused before parsing.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

use crate::error::{ApiError, ApiResult};
use crate::revocation::SessionRevocations;

/// `aud` of access tokens issued to users.
pub const USER_AUDIENCE: &str = "orgplane";
/// `aud` of service tokens; only service principals carry it.
pub const SERVICE_AUDIENCE: &str = "orgplane-internal";
/// Lifetime of user access tokens (rule ID-4): identity mints them with it, and revocations
/// ([`crate::revocation`]) are kept at least this long.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 15 * 60;
/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The metadata key of API keys.
pub const API_KEY_HEADER: &str = "x-api-key";

const EXEMPT_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The claims of every Orgplane JWT (rule ID-4). Identity mints them; every service verifies them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials were sent (only public RPCs such as SignUp or Login accept this).
    Anonymous,
    /// A signed-in user.
    User(UserPrincipal),
    /// An API key of an organization.
    ApiKey(ApiKeyPrincipal),
    /// Another Orgplane service.
    Service(ServicePrincipal),
}

/// A user authenticated by an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPrincipal {
    /// The user's id.
    pub user_id: String,
    /// The session the token belongs to.
    pub session_id: String,
    /// When the user last entered their password (Unix seconds).
    pub auth_time: i64,
    /// The token's `jti`.
    pub token_id: String,
}

/// The kind of an API key (rule ID-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyKind {
    /// Acts with ADMIN rights in its one organization.
    Admin,
    /// Belongs to one workspace (or the Default Workspace).
    Workspace,
}

/// An organization's API key, as resolved by identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyPrincipal {
    /// The key's id (`key_…`).
    pub key_id: String,
    /// The organization the key belongs to.
    pub organization_id: String,
    /// The workspace of a workspace key; `None` for admin keys and the Default Workspace.
    pub workspace_id: Option<String>,
    /// Admin or workspace key.
    pub kind: ApiKeyKind,
}

/// An Orgplane service authenticated by a service token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePrincipal {
    /// The service account's name (the token's `sub`).
    pub name: String,
}

impl Principal {
    /// The principal of a request; `Anonymous` when the auth layer found no credentials.
    pub fn of<T>(req: &tonic::Request<T>) -> Principal {
        let ext = req.extensions();
        match ext.get::<Arc<Principal>>() {
            Some(shared) => Principal::clone(shared),
            None => ext
                .get::<Principal>()
                .cloned()
                .unwrap_or(Principal::Anonymous),
        }
    }

    /// Like [`Principal::of`], without copying the principal the auth layer shared (hot paths).
    pub fn shared<T>(req: &tonic::Request<T>) -> Arc<Principal> {
        let ext = req.extensions();
        match ext.get::<Arc<Principal>>() {
            Some(shared) => Arc::clone(shared),
            None => Arc::new(
                ext.get::<Principal>()
                    .cloned()
                    .unwrap_or(Principal::Anonymous),
            ),
        }
    }

    /// UNAUTHENTICATED unless credentials were sent.
    pub fn require_authenticated(&self) -> ApiResult<&Principal> {
        match self {
            Principal::Anonymous => Err(credentials_required()),
            p => Ok(p),
        }
    }

    /// The user, or UNAUTHENTICATED (no credentials) / PERMISSION_DENIED (another kind).
    pub fn require_user(&self) -> ApiResult<&UserPrincipal> {
        match self {
            Principal::User(u) => Ok(u),
            Principal::Anonymous => Err(credentials_required()),
            _ => Err(ApiError::permission_denied(
                "USER_CREDENTIALS_REQUIRED",
                "this call needs a user's access token",
            )),
        }
    }

    /// The service, or UNAUTHENTICATED / PERMISSION_DENIED: the guard of internal RPCs.
    pub fn require_service(&self) -> ApiResult<&ServicePrincipal> {
        match self {
            Principal::Service(s) => Ok(s),
            Principal::Anonymous => Err(credentials_required()),
            _ => Err(ApiError::permission_denied(
                "SERVICE_PRINCIPAL_REQUIRED",
                "internal RPC: only Orgplane services may call it",
            )),
        }
    }

    /// `(actor kind, actor id)` for audit records.
    pub fn actor(&self) -> (&'static str, String) {
        match self {
            Principal::Anonymous => ("anonymous", String::new()),
            Principal::User(u) => ("user", u.user_id.clone()),
            Principal::ApiKey(k) => ("api_key", k.key_id.clone()),
            Principal::Service(s) => ("service", s.name.clone()),
        }
    }
}

fn credentials_required() -> ApiError {
    ApiError::unauthenticated(
        "CREDENTIALS_REQUIRED",
        "send an access token (authorization: Bearer …) or an API key (x-api-key)",
    )
}

fn invalid_token(message: &str) -> ApiError {
    ApiError::unauthenticated("INVALID_TOKEN", message.to_owned())
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

/// Clock skew tolerated on `exp`/`nbf`.
pub const LEEWAY_SECS: u64 = 5;

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
            ApiError::unavailable("KEYS_UNAVAILABLE", "signing keys are unavailable; retry")
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
            }))
        }
        _ => Err(invalid_token("token for another audience")),
    }
}

/// Resolves API keys (identity's `AuthenticateApiKey` in the other services).
pub trait ApiKeyResolver: Send + Sync + 'static {
    /// The key's principal, or UNAUTHENTICATED for an unknown, malformed or inactive key.
    fn resolve<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ApiResult<ApiKeyPrincipal>>;
}

/// Caches successful API-key resolutions briefly, keyed by the SHA-256 of the key. With
/// [`CachedApiKeys::with_revocations`], a resolution cached before its key was deactivated is
/// not used again (identity is asked, and refuses the key).
pub struct CachedApiKeys {
    inner: Arc<dyn ApiKeyResolver>,
    ttl: Duration,
    /// Digest → the principal, and when the resolution that produced it started.
    cache: Mutex<HashMap<[u8; 32], (ApiKeyPrincipal, Instant)>>,
    revocations: Option<Arc<SessionRevocations>>,
}

impl CachedApiKeys {
    /// Wraps `inner`, keeping answers for `ttl` (without revocations, a deactivated key keeps
    /// working at most that long).
    pub fn new(inner: Arc<dyn ApiKeyResolver>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            cache: Mutex::new(HashMap::new()),
            revocations: None,
        }
    }

    /// Distrusts cached resolutions of keys that `revocations` saw deactivated since.
    pub fn with_revocations(mut self, revocations: Arc<SessionRevocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    fn deactivated_since(&self, principal: &ApiKeyPrincipal, since: Instant) -> bool {
        self.revocations
            .as_ref()
            .is_some_and(|r| r.key_deactivated_since(&principal.key_id, since))
    }
}

impl ApiKeyResolver for CachedApiKeys {
    fn resolve<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ApiResult<ApiKeyPrincipal>> {
        Box::pin(async move {
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            {
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((p, started)) = cache.get(&digest) {
                    if self.deactivated_since(p, *started) {
                        cache.remove(&digest);
                    } else if started.elapsed() < self.ttl {
                        return Ok(p.clone());
                    }
                }
            }
            let started = Instant::now();
            let principal = self.inner.resolve(key).await?;
            if self.deactivated_since(&principal, started) {
                // Deactivated while identity answered: ask again, and cache nothing.
                return self.inner.resolve(key).await;
            }
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() > 10_000 {
                cache.retain(|_, (_, started)| started.elapsed() < self.ttl);
            }
            cache.insert(digest, (principal.clone(), started));
            Ok(principal)
        })
    }
}

/// Turns request metadata into a [`Principal`].
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<TokenVerifier>,
    api_keys: Option<Arc<dyn ApiKeyResolver>>,
    revocations: Option<Arc<SessionRevocations>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator that verifies tokens with `tokens` and resolves API keys with `api_keys`
    /// (`None`: API keys are refused).
    pub fn new(tokens: Arc<TokenVerifier>, api_keys: Option<Arc<dyn ApiKeyResolver>>) -> Self {
        Self {
            tokens,
            api_keys,
            revocations: None,
        }
    }

    /// Refuses the access tokens of the sessions in `revocations` (UNAUTHENTICATED
    /// `SESSION_REVOKED`), cached verifications included.
    pub fn with_revocations(mut self, revocations: Arc<SessionRevocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// The principal behind `headers`; `Anonymous` when there are no credentials.
    pub async fn authenticate(&self, headers: &HeaderMap) -> ApiResult<Principal> {
        self.authenticate_shared(headers)
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// [`Self::authenticate`], sharing a cached token's principal instead of copying it.
    pub async fn authenticate_shared(&self, headers: &HeaderMap) -> ApiResult<Arc<Principal>> {
        let bearer = headers.get(http::header::AUTHORIZATION);
        let api_key = headers.get(API_KEY_HEADER);
        match (bearer, api_key) {
            (None, None) => Ok(Arc::new(Principal::Anonymous)),
            (Some(_), Some(_)) => Err(ApiError::unauthenticated(
                "AMBIGUOUS_CREDENTIALS",
                "send either an access token or an API key, not both",
            )),
            (Some(value), None) => {
                let value = value
                    .to_str()
                    .map_err(|_| invalid_token("malformed authorization header"))?;
                let token = value
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim())
                    .ok_or_else(|| invalid_token("authorization must be `Bearer <token>`"))?;
                let principal = self.tokens.verify_shared(token).await?;
                if let Some(revocations) = &self.revocations {
                    revocations.check(&principal)?;
                }
                Ok(principal)
            }
            (None, Some(value)) => {
                let key = value.to_str().map_err(|_| invalid_api_key())?;
                if key.is_empty() || key.len() > 256 {
                    return Err(invalid_api_key());
                }
                let resolver = self.api_keys.as_ref().ok_or_else(invalid_api_key)?;
                Ok(Arc::new(Principal::ApiKey(resolver.resolve(key).await?)))
            }
        }
    }
}

/// The ErrorInfo reason for an API key that is malformed or unknown.
pub const API_KEY_INVALID: &str = "API_KEY_INVALID";

/// The ErrorInfo reason for an API key that is INACTIVE, or whose organization is deleted.
pub const API_KEY_INACTIVE: &str = "API_KEY_INACTIVE";

/// The error for an API key that is malformed or unknown (every service answers identity's
/// reasons, so a caller sees the same one wherever it presents the key).
pub fn invalid_api_key() -> ApiError {
    ApiError::unauthenticated(API_KEY_INVALID, "invalid API key")
}

/// The error for an API key that is INACTIVE, or whose organization is deleted or purged.
pub fn inactive_api_key() -> ApiError {
    ApiError::unauthenticated(API_KEY_INACTIVE, "the API key is inactive")
}

/// The tower layer that runs an [`Authenticator`] on every request but health and reflection.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Authenticator,
}

impl AuthLayer {
    /// A layer around `auth`.
    pub fn new(auth: Authenticator) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service produced by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Authenticator,
}

impl<S, B, RB> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path();
        if EXEMPT_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Box::pin(inner.call(req));
        }
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth.authenticate_shared(req.headers()).await {
                Ok(principal) => {
                    // Shared, not copied: `Principal::of` reads it from the `Arc`.
                    req.extensions_mut().insert(principal);
                    inner.call(req).await
                }
                Err(err) => Ok(tonic::Status::from(err).into_http()),
            }
        })
    }
}

/// Builds an outgoing request carrying `bearer` (a service token), the caller's request id, and
/// the current W3C trace context: how every service-to-service call is made.
pub fn outgoing<T>(
    message: T,
    bearer: Option<&str>,
    ctx: Option<&crate::context::RequestContext>,
) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(token) = bearer
        && let Ok(v) = format!("Bearer {token}").parse()
    {
        req.metadata_mut().insert("authorization", v);
    }
    if let Some(ctx) = ctx
        && let Ok(v) = ctx.request_id.parse()
    {
        req.metadata_mut()
            .insert(crate::context::REQUEST_ID_HEADER, v);
    }
    crate::telemetry::inject_current(req.metadata_mut());
    req
}

/// Supplies the service token this service presents on internal calls.
pub trait ServiceTokenSource: Send + Sync + 'static {
    /// A currently valid service token.
    fn token(&self) -> BoxFuture<'_, ApiResult<String>>;
}

/// A fixed service token (tests).
#[derive(Debug, Clone)]
pub struct StaticServiceToken(pub String);

impl ServiceTokenSource for StaticServiceToken {
    fn token(&self) -> BoxFuture<'_, ApiResult<String>> {
        let t = self.0.clone();
        Box::pin(async move { Ok(t) })
    }
}

/// An Ed25519 signing key with its `kid`: how identity mints every Orgplane JWT.
pub struct Signer {
    kid: String,
    secret: ed25519_dalek::SigningKey,
    encoding: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for the 32-byte Ed25519 seed `seed`.
    pub fn from_seed(kid: impl Into<String>, seed: &[u8; 32]) -> ApiResult<Self> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let secret = ed25519_dalek::SigningKey::from_bytes(seed);
        let der = secret.to_pkcs8_der().map_err(ApiError::internal)?;
        Ok(Self {
            kid: kid.into(),
            encoding: jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
            secret,
        })
    }

    /// A new random key.
    pub fn generate(kid: impl Into<String>) -> ApiResult<Self> {
        let seed: [u8; 32] = rand::random();
        Self::from_seed(kid, &seed)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The 32-byte seed, for storage (encrypted at rest by identity).
    pub fn seed(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The public half, as published in the JWKS.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            kid: self.kid.clone(),
            x: URL_SAFE_NO_PAD.encode(self.secret.verifying_key().as_bytes()),
        }
    }

    /// Signs `claims` as an EdDSA JWT with this key's `kid`.
    pub fn sign(&self, claims: &Claims) -> ApiResult<String> {
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(ApiError::internal)
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
