//! The browser's part of a sign-in, for the SSO tests: PKCE pairs and authorization requests
//! (for the self-tests; the SSO tests get theirs from StartSsoLogin), following the provider's
//! redirects up to the redirect URI, and reading an ID token without verifying it.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::Digest;

/// A PKCE pair (RFC 7636, S256).
#[derive(Clone, Debug)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

impl Pkce {
    /// A fresh random verifier and its S256 challenge.
    pub fn new() -> Pkce {
        let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// The parameters of an authorization request the self-tests build themselves (the SSO tests
/// get theirs from StartSsoLogin).
#[derive(Clone, Debug)]
pub struct AuthRequest {
    pub redirect_uri: String,
    pub state: String,
    pub nonce: String,
    pub pkce: Pkce,
    pub login_hint: Option<String>,
}

impl AuthRequest {
    /// Fresh state, nonce and PKCE for `redirect_uri`, signing in `login_hint`.
    pub fn new(redirect_uri: &str, login_hint: &str) -> Self {
        AuthRequest {
            redirect_uri: redirect_uri.into(),
            state: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            nonce: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            pkce: Pkce::new(),
            login_hint: Some(login_hint.into()),
        }
    }
}

/// Where the provider sent the browser back: the redirect URI's query.
#[derive(Clone, Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The provider's `error` (e.g. `access_denied`) when it refused.
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// Every query parameter of the redirect.
    pub params: BTreeMap<String, String>,
}

impl Callback {
    /// The code and state, failing the test if the provider answered an error.
    pub fn code_and_state(&self) -> (String, String) {
        match (&self.code, &self.state) {
            (Some(code), Some(state)) => (code.clone(), state.clone()),
            _ => panic!("the provider answered no code: {self:?}"),
        }
    }
}

/// Plays the browser: follows the redirects from `authorization_url` (keeping cookies, fresh
/// for every call) until one targets the request's `redirect_uri`, which is not fetched, and
/// answers its query. Fails when a page answers something other than a redirect.
pub async fn follow_authorization(authorization_url: &str) -> Result<Callback, String> {
    let start = url::Url::parse(authorization_url).map_err(|e| e.to_string())?;
    let redirect_uri = start
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .ok_or("the authorization URL has no redirect_uri")?;
    let target = url::Url::parse(&redirect_uri).map_err(|e| e.to_string())?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let mut url = start;
    for _ in 0..16 {
        let mut request = http.get(url.clone());
        if !cookies.is_empty() {
            let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header(reqwest::header::COOKIE, header.join("; "));
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e:?}"))?;
        for set in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let set = set.to_str().map_err(|e| e.to_string())?;
            let pair = set.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                let expired = set
                    .to_ascii_lowercase()
                    .contains("expires=thu, 01 jan 1970");
                if value.is_empty() || expired {
                    cookies.remove(name.trim());
                } else {
                    cookies.insert(name.trim().to_string(), value.to_string());
                }
            }
        }
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let Some(location) = location.filter(|_| status.is_redirection()) else {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("{url} answered {status}: {body}"));
        };
        url = url.join(&location).map_err(|e| e.to_string())?;
        if url.origin() == target.origin() && url.path() == target.path() {
            let params: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
            return Ok(Callback {
                code: params.get("code").cloned(),
                state: params.get("state").cloned(),
                error: params.get("error").cloned(),
                error_description: params.get("error_description").cloned(),
                params,
            });
        }
    }
    Err("more than 16 redirects".into())
}

/// The header and claims of a compact JWS, unverified.
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = || -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(parts.next().unwrap_or_default())
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    (part(), part())
}
