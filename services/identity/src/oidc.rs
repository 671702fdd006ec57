//! The OpenID Connect relying party of SSO (rule ID-13), written over `reqwest` (rustls, time
//! limits, a cap on every body) and `jsonwebtoken`: the provider's discovery document (cached),
//! its keys (cached, fetched again when a token names an unknown `kid`, at most once per
//! [`FORCED_REFRESH_INTERVAL`] per key set), the code exchange with the PKCE verifier, and the ID
//! token's verification with pinned algorithms, issuer, audience (`azp` when several), expiry
//! and nonce. Keys without `kid` are handled by trying every key that fits the algorithm.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

mod verify;

pub use verify::{Expected, IdClaims, key_fits};

/// The longest body read from a provider (discovery, keys, token answers).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// How long one request to a provider may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a discovery document or key set is used before it is fetched again.
pub const CACHE_TTL: Duration = Duration::from_secs(60 * 60);
/// The shortest interval between two fetches of a key set forced by unknown `kid`s.
pub const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Clock skew tolerated on `exp`, `nbf` and `iat` (seconds).
pub const LEEWAY_SECS: u64 = 60;

/// What went wrong with a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcError {
    /// No usable answer (network, status, size, format): SSO_PROVIDER_UNAVAILABLE.
    Unavailable(String),
    /// The provider refused the code: SSO_CODE_REJECTED.
    CodeRejected(String),
    /// The ID token failed verification: SSO_ASSERTION_INVALID.
    Invalid(String),
}

impl std::fmt::Display for OidcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OidcError::Unavailable(d) | OidcError::CodeRejected(d) | OidcError::Invalid(d) => {
                f.write_str(d)
            }
        }
    }
}

/// The parts of a discovery document SSO uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Discovery {
    /// The provider's issuer identifier.
    pub issuer: String,
    /// Where the browser is sent.
    pub authorization_endpoint: String,
    /// Where codes are redeemed.
    pub token_endpoint: String,
    /// The key set.
    pub jwks_uri: String,
    /// Algorithms the provider signs ID tokens with.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// PKCE methods.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// How clients authenticate at the token endpoint.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
}

/// A discovery document and where it was read.
#[derive(Debug, Clone)]
pub struct FetchedDiscovery {
    /// Its URL.
    pub source: String,
    /// The document.
    pub document: Discovery,
}

struct CachedKeys {
    keys: Arc<JwkSet>,
    fetched: Instant,
    forced: Option<Instant>,
}

/// One code redemption's inputs.
struct TokenRequest<'a> {
    discovery: &'a Discovery,
    client_id: &'a str,
    client_secret: Option<&'a str>,
    code: &'a str,
    verifier: &'a str,
    redirect_uri: &'a str,
}

/// The relying party: an HTTP client and the caches. Cheap to share.
pub struct OidcClient {
    http: reqwest::Client,
    allow_http: bool,
    discovery: Mutex<HashMap<String, (Arc<Discovery>, Instant)>>,
    keys: Mutex<HashMap<String, CachedKeys>>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    /// A client; `allow_http` admits `http://` issuers and endpoints (loopback tests and
    /// development only).
    pub fn new(allow_http: bool) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("orgplane-identity")
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            allow_http,
            discovery: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `http://` issuers are admitted.
    pub fn allows_http(&self) -> bool {
        self.allow_http
    }

    /// An endpoint the provider names: a URL, https unless http is allowed.
    pub fn check_endpoint(&self, what: &str, url: &str) -> Result<(), OidcError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| OidcError::Unavailable(format!("{what} {url:?} is not a URL: {e}")))?;
        let ok = parsed.scheme() == "https" || (self.allow_http && parsed.scheme() == "http");
        if !ok {
            return Err(OidcError::Unavailable(format!(
                "{what} {url:?} is not https"
            )));
        }
        Ok(())
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, OidcError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            OidcError::Unavailable(format!("reading the answer failed: {}", causes(&e)))
        })? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(OidcError::Unavailable(format!(
                    "the answer is larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
    ) -> Result<T, OidcError> {
        let response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                OidcError::Unavailable(format!("fetching {what} from {url} failed: {}", causes(&e)))
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(OidcError::Unavailable(format!(
                "{what} at {url} answered HTTP {status}"
            )));
        }
        let body = self.read_body(response).await?;
        serde_json::from_slice(&body)
            .map_err(|e| OidcError::Unavailable(format!("{what} at {url} is not valid: {e}")))
    }

    /// The discovery document of `issuer` read now, unchecked (TestSsoConnection reports on it).
    pub async fn fetch_discovery(&self, issuer: &str) -> Result<FetchedDiscovery, OidcError> {
        self.check_endpoint("the issuer", issuer)?;
        let source = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let document = self.get_json("the discovery document", &source).await?;
        Ok(FetchedDiscovery { source, document })
    }

    /// The discovery document of `issuer` (cached for [`CACHE_TTL`]); its `issuer` must equal
    /// `issuer` exactly and its endpoints must be https (unless http is allowed).
    pub async fn discovery(&self, issuer: &str, fresh: bool) -> Result<Arc<Discovery>, OidcError> {
        if !fresh
            && let Some((d, at)) = self
                .discovery
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(issuer)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(d.clone());
        }
        let d = self.fetch_discovery(issuer).await?.document;
        if d.issuer != issuer {
            return Err(OidcError::Unavailable(format!(
                "issuer in discovery is {:?}, expected {issuer:?}",
                d.issuer
            )));
        }
        self.check_endpoint("authorization_endpoint", &d.authorization_endpoint)?;
        self.check_endpoint("token_endpoint", &d.token_endpoint)?;
        self.check_endpoint("jwks_uri", &d.jwks_uri)?;
        let d = Arc::new(d);
        self.discovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(issuer.to_owned(), (d.clone(), Instant::now()));
        Ok(d)
    }

    /// The key set at `jwks_uri`: cached for [`CACHE_TTL`]; `force` fetches it again (for an
    /// unknown `kid`) unless a forced fetch happened within [`FORCED_REFRESH_INTERVAL`].
    pub async fn keys(&self, jwks_uri: &str, force: bool) -> Result<Arc<JwkSet>, OidcError> {
        {
            let cache = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.get(jwks_uri) {
                let fresh = c.fetched.elapsed() < CACHE_TTL;
                let throttled = c
                    .forced
                    .is_some_and(|f| f.elapsed() < FORCED_REFRESH_INTERVAL);
                if fresh && (!force || throttled) {
                    return Ok(c.keys.clone());
                }
            }
        }
        let set: JwkSet = self.get_json("the key set", jwks_uri).await?;
        let keys = Arc::new(set);
        let now = Instant::now();
        let mut cache = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let forced = if force {
            Some(now)
        } else {
            cache.get(jwks_uri).and_then(|c| c.forced)
        };
        cache.insert(
            jwks_uri.to_owned(),
            CachedKeys {
                keys: keys.clone(),
                fetched: now,
                forced,
            },
        );
        Ok(keys)
    }

    /// Redeems `code` at the token endpoint with the PKCE `verifier`; answers the ID token.
    /// The client authenticates with `client_secret_basic` (or `client_secret_post` when the
    /// provider offers only that, or refuses the client authenticated the basic way) when it has
    /// a secret.
    pub async fn redeem(
        &self,
        discovery: &Discovery,
        client_id: &str,
        client_secret: Option<&str>,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, OidcError> {
        let methods = &discovery.token_endpoint_auth_methods_supported;
        let post_only = !methods.is_empty()
            && !methods.iter().any(|m| m == "client_secret_basic")
            && methods.iter().any(|m| m == "client_secret_post");
        let request = TokenRequest {
            discovery,
            client_id,
            client_secret,
            code,
            verifier,
            redirect_uri,
        };
        let first = self.token_call(&request, post_only).await;
        // The client may be registered for `client_secret_post`: the provider refuses the
        // client (it authenticates the client before it looks at the code), so try once more.
        let offers_post = methods.is_empty() || methods.iter().any(|m| m == "client_secret_post");
        match first {
            Err(OidcError::CodeRejected(ref why))
                if why.starts_with("invalid_client")
                    && client_secret.is_some()
                    && !post_only
                    && offers_post =>
            {
                self.token_call(&request, true).await
            }
            other => other,
        }
    }

    async fn token_call(&self, r: &TokenRequest<'_>, post: bool) -> Result<String, OidcError> {
        let (discovery, client_id, client_secret) = (r.discovery, r.client_id, r.client_secret);
        let (code, verifier, redirect_uri) = (r.code, r.verifier, r.redirect_uri);
        let post_only = post;
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut fields = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut basic = None;
        match client_secret {
            Some(secret) if !post_only => {
                basic = Some(STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret))));
            }
            Some(secret) => {
                fields.push(("client_id", client_id));
                fields.push(("client_secret", secret));
            }
            None => fields.push(("client_id", client_id)),
        }
        let body = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .http
            .post(&discovery.token_endpoint)
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(b) = basic {
            request = request.header("authorization", format!("Basic {b}"));
        }
        let response = request.body(body).send().await.map_err(|e| {
            OidcError::Unavailable(format!("the token endpoint failed: {}", causes(&e)))
        })?;
        let status = response.status();
        let body = self.read_body(response).await?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if status.is_client_error() {
            let error = json
                .as_ref()
                .and_then(|j| j["error"].as_str())
                .unwrap_or("error");
            return Err(OidcError::CodeRejected(format!("{error} (HTTP {status})")));
        }
        if !status.is_success() {
            return Err(OidcError::Unavailable(format!(
                "the token endpoint answered HTTP {status}"
            )));
        }
        let json = json.ok_or_else(|| {
            OidcError::Unavailable("the token endpoint's answer is not JSON".into())
        })?;
        json["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| OidcError::Invalid("the token answer has no id_token".into()))
    }
}

/// An error with the chain of its causes (`error sending request: dns error: …`): a transport
/// error's own message names only the request, its sources say what went wrong.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::verify::{algorithm_name, algorithm_of};
    use super::*;

    /// A one-shot HTTP server answering `body` with status 200; its base URL.
    async fn serve_once(body: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&body).await;
        });
        url
    }

    #[tokio::test]
    async fn bodies_over_the_cap_are_refused_and_issuers_are_https_by_default() {
        let big = format!("{{\"issuer\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES));
        let url = serve_once(big.into_bytes()).await;
        let client = OidcClient::new(true).unwrap();
        let err = client.fetch_discovery(&url).await.unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        let strict = OidcClient::new(false).unwrap();
        let err = strict
            .fetch_discovery("http://127.0.0.1:9")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("is not https"), "{err}");
    }

    #[test]
    fn algorithm_names_round_trip() {
        for a in crate::domain::sso::ALLOWED_ALGORITHMS {
            let parsed = algorithm_of(a).unwrap();
            assert_eq!(algorithm_name(parsed), a);
        }
        assert!(algorithm_of("none").is_none());
    }

    #[test]
    fn email_verified_accepts_booleans_and_the_string_true_only() {
        let mut c: IdClaims = serde_json::from_value(serde_json::json!({"sub": "s"})).unwrap();
        assert!(!c.email_verified());
        c.email_verified = Some(serde_json::json!(true));
        assert!(c.email_verified());
        c.email_verified = Some(serde_json::json!("true"));
        assert!(c.email_verified());
        c.email_verified = Some(serde_json::json!("yes"));
        assert!(!c.email_verified());
    }
}
