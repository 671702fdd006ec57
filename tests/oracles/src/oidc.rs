//! Real OpenID providers for the SSO tests (rule ID-13), as child processes: `OidcProvider` is
//! panva's oidc-provider (OpenID-certified) completing logins without a browser, `MockProvider`
//! is oauth2-mock-server shaping the bad ID tokens a relying party must refuse. Both are Node
//! scripts in `tests/oidc` (see its README), installed once per machine by `ensure_installed`.
//! `follow_authorization` plays the browser between an authorization URL and the redirect URI.
//! The self-tests at the end prove the oracles do what they promise, without the identity service.

use std::fs::{File, OpenOptions};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a script may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The Node package of the oracles, `tests/oidc` at the workspace root.
pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../oidc")
}

/// Installs the oracles' Node packages (`npm ci`) when `node_modules` is missing or older than
/// `package-lock.json`. Test binaries and threads share one install: an exclusive lock on
/// `tests/oidc/.install.lock` serialises them, and whoever comes second finds it fresh.
pub fn ensure_installed() -> Result<PathBuf, String> {
    static DONE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DONE.get_or_init(install).clone()
}

fn install() -> Result<PathBuf, String> {
    let dir = oidc_dir()
        .canonicalize()
        .map_err(|e| format!("tests/oidc is missing: {e}"))?;
    check_node()?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".install.lock"))
        .map_err(|e| format!("cannot open tests/oidc/.install.lock: {e}"))?;
    lock.lock()
        .map_err(|e| format!("cannot lock tests/oidc/.install.lock: {e}"))?;
    let result = if installed_is_fresh(&dir) {
        Ok(dir.clone())
    } else {
        match std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .output()
        {
            Err(e) => Err(format!(
                "cannot run `npm ci` ({e}): the SSO tests need npm on PATH to install \
                 their OpenID providers (tests/oidc)"
            )),
            Ok(out) if out.status.success() => Ok(dir.clone()),
            Ok(out) => Err(format!(
                "npm ci --prefix tests/oidc failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    };
    drop(lock);
    result
}

/// Node.js 20.19 or later must be on PATH (oauth2-mock-server 8 asks for it).
fn check_node() -> Result<(), String> {
    let missing = "the SSO tests need Node.js 20.19 or later (`node` on PATH) to run their \
                   OpenID providers (tests/oidc)";
    let out = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("{missing}: {e}"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut parts = version
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (20, 19) {
        return Err(format!("{missing}; found {version:?}"));
    }
    Ok(())
}

/// Whether npm's record of the installed tree is at least as new as the lock file.
fn installed_is_fresh(dir: &Path) -> bool {
    let modified = |p: PathBuf| File::open(p).and_then(|f| f.metadata()?.modified()).ok();
    match (
        modified(dir.join("node_modules/.package-lock.json")),
        modified(dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => installed >= locked,
        _ => false,
    }
}

/// An account the provider signs in: the authorization request's `login_hint` (its email or
/// sub) picks it; without a hint the account upserted last signs in.
#[derive(Clone, Debug, Serialize)]
pub struct Account {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    /// Authentication methods the ID token's `amr` reports (`pwd`, `mfa`, `otp`, …).
    pub amr: Vec<String>,
}

impl Account {
    /// A verified address that signed in with a password only.
    pub fn new(sub: &str, email: &str) -> Self {
        Account {
            sub: sub.into(),
            email: email.into(),
            email_verified: true,
            amr: vec!["pwd".into()],
        }
    }

    /// The same account, with these `amr` values.
    pub fn with_amr(mut self, amr: &[&str]) -> Self {
        self.amr = amr.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// A running oracle script: its issuer, its one client's registration and its control endpoint.
/// The child is killed when this is dropped (and exits by itself when its stdin closes).
pub struct Oracle {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// The base URL of the control endpoint (`<issuer>/control`).
    pub control: String,
    /// The ID token algorithm of the client registration.
    pub alg: String,
    /// How the client authenticates at the token endpoint (`client_secret_basic` or `_post`).
    pub auth_method: String,
    http: reqwest::Client,
    stderr: Arc<Mutex<String>>,
    _child: Child,
}

impl Oracle {
    async fn start(script: &str, args: &[String]) -> Oracle {
        let dir = ensure_installed().unwrap_or_else(|e| panic!("{e}"));
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {script}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await;
        let ready: Value = match line {
            Ok(Ok(Some(line))) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{script}: bad ready line {line:?}: {e}")),
            other => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "{script} printed no ready line ({other:?}); stderr:\n{}",
                    stderr.lock().unwrap()
                )
            }
        };
        // Nothing else is expected on stdout; drain it into the log all the same.
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let field = |name: &str| ready[name].as_str().unwrap_or_default().to_string();
        Oracle {
            issuer: field("issuer"),
            client_id: field("client_id"),
            client_secret: field("client_secret"),
            control: field("control"),
            alg: field("alg"),
            auth_method: field("auth_method"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            stderr,
            _child: child,
        }
    }

    /// Calls a control route; a refusal fails the test with the script's answer.
    async fn call(&self, method: reqwest::Method, route: &str, body: Value) -> Value {
        let url = format!("{}/{route}", self.control);
        let mut request = self.http.request(method, &url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "{url} answered {status}: {answer}; stderr:\n{}",
            self.stderr.lock().unwrap()
        );
        answer
    }

    /// What the script wrote on stderr so far, for failure messages.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Adds or replaces (by `sub`) an account the provider can sign in.
    pub async fn upsert_account(&self, account: &Account) {
        self.call(
            reqwest::Method::POST,
            "accounts",
            serde_json::to_value(account).unwrap(),
        )
        .await;
    }

    /// The provider's discovery document.
    pub async fn discovery(&self) -> Value {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let response = self.http.get(url).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.unwrap()
    }

    /// The provider's published keys (its `jwks_uri`).
    pub async fn jwks(&self) -> Value {
        let uri = self.discovery().await["jwks_uri"]
            .as_str()
            .unwrap()
            .to_string();
        self.http
            .get(uri)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Redeems a code at the token endpoint as a relying party would (the registered client
    /// authentication); answers the HTTP status and the JSON body.
    pub async fn redeem(&self, code: &str, redirect_uri: &str, verifier: &str) -> (u16, Value) {
        let token_endpoint = self.discovery().await["token_endpoint"]
            .as_str()
            .unwrap()
            .to_string();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut request = self.http.post(token_endpoint);
        if self.auth_method == "client_secret_post" {
            form.extend([
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
            ]);
        } else {
            request = request.basic_auth(&self.client_id, Some(&self.client_secret));
        }
        let response = request.form(&form).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// An authorization URL as a relying party builds it (scope `openid email profile`, S256).
    pub async fn authorization_url(&self, request: &AuthRequest) -> String {
        let endpoint = self.discovery().await["authorization_endpoint"]
            .as_str()
            .unwrap()
            .to_string();
        let mut url = url::Url::parse(&endpoint).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid email profile")
            .append_pair("redirect_uri", &request.redirect_uri)
            .append_pair("state", &request.state)
            .append_pair("nonce", &request.nonce)
            .append_pair("code_challenge", &request.pkce.challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(hint) = &request.login_hint {
            url.query_pairs_mut().append_pair("login_hint", hint);
        }
        url.to_string()
    }
}

/// Options of an `OidcProvider`.
#[derive(Clone, Debug)]
pub struct ProviderOptions {
    pub redirect_uris: Vec<String>,
    /// `RS256` (default) or `ES256`.
    pub alg: String,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub auth_method: String,
}

impl ProviderOptions {
    /// One redirect URI, RS256, client_secret_basic.
    pub fn new(redirect_uri: &str) -> Self {
        ProviderOptions {
            redirect_uris: vec![redirect_uri.into()],
            alg: "RS256".into(),
            auth_method: "client_secret_basic".into(),
        }
    }
}

/// oidc-provider: a certified provider that signs in the account named by `login_hint`.
pub struct OidcProvider(Oracle);

impl Deref for OidcProvider {
    type Target = Oracle;
    fn deref(&self) -> &Oracle {
        &self.0
    }
}

impl OidcProvider {
    /// Starts a provider whose client may redirect to `redirect_uri` (RS256, client_secret_basic).
    pub async fn start(redirect_uri: &str) -> OidcProvider {
        Self::start_with(ProviderOptions::new(redirect_uri)).await
    }

    /// Starts a provider with these options.
    pub async fn start_with(options: ProviderOptions) -> OidcProvider {
        let mut args = Vec::new();
        for uri in &options.redirect_uris {
            args.extend(["--redirect-uri".to_string(), uri.clone()]);
        }
        args.extend(["--alg".to_string(), options.alg.clone()]);
        args.extend(["--auth-method".to_string(), options.auth_method.clone()]);
        OidcProvider(Oracle::start("provider.mjs", &args).await)
    }

    /// Replaces the signing key by a new one (new `kid`; the old key leaves the JWKS). Answers
    /// the new kid.
    pub async fn rotate_key(&self) -> String {
        let answer = self
            .call(reqwest::Method::POST, "rotate-key", Value::Null)
            .await;
        answer["kid"].as_str().unwrap().to_string()
    }

    /// Switches to one fresh key published without `kid`; ID tokens then carry no `kid` header.
    pub async fn use_keys_without_kid(&self) {
        self.call(reqwest::Method::POST, "keys-without-kid", Value::Null)
            .await;
    }
}

/// How the mock shapes the next ID token (or the token endpoint's answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `aud` is another client.
    WrongAudience,
    /// `iss` is another issuer.
    WrongIssuer,
    /// `nonce` is not the one of the authorization request.
    WrongNonce,
    /// No `nonce` claim.
    NoNonce,
    /// `exp` an hour ago.
    Expired,
    /// `email_verified: false`.
    EmailUnverified,
    /// Signed ES256 by a key of the JWKS (refused when RS256 is pinned).
    Es256,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 with the client secret as the key.
    Hs256ClientSecret,
    /// Signed by a key the JWKS does not hold, under its own `kid`.
    UnknownKey,
    /// Signed by a key the JWKS does not hold, under the `kid` of the real key.
    ForgedKid,
    /// Signed by the real key, without `kid` in the header.
    NoKid,
    /// The token endpoint refuses the code (400 invalid_grant).
    TokenError,
    /// The token endpoint fails (500 server_error).
    ServerError,
}

impl Shape {
    /// Every shape, for tables of attacks.
    pub const ALL: [Shape; 14] = [
        Shape::WrongAudience,
        Shape::WrongIssuer,
        Shape::WrongNonce,
        Shape::NoNonce,
        Shape::Expired,
        Shape::EmailUnverified,
        Shape::Es256,
        Shape::AlgNone,
        Shape::Hs256ClientSecret,
        Shape::UnknownKey,
        Shape::ForgedKid,
        Shape::NoKid,
        Shape::TokenError,
        Shape::ServerError,
    ];

    /// The name the mock's control endpoint knows it by.
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::WrongAudience => "wrong_audience",
            Shape::WrongIssuer => "wrong_issuer",
            Shape::WrongNonce => "wrong_nonce",
            Shape::NoNonce => "no_nonce",
            Shape::Expired => "expired",
            Shape::EmailUnverified => "email_unverified",
            Shape::Es256 => "es256",
            Shape::AlgNone => "alg_none",
            Shape::Hs256ClientSecret => "hs256_client_secret",
            Shape::UnknownKey => "unknown_key",
            Shape::ForgedKid => "forged_kid",
            Shape::NoKid => "no_kid",
            Shape::TokenError => "token_error",
            Shape::ServerError => "server_error",
        }
    }
}

/// oauth2-mock-server: good tokens by default, the shape the test asks for next.
pub struct MockProvider(Oracle);

impl Deref for MockProvider {
    type Target = Oracle;
    fn deref(&self) -> &Oracle {
        &self.0
    }
}

impl MockProvider {
    /// Starts a mock whose client may redirect to `redirect_uri`.
    pub async fn start(redirect_uri: &str) -> MockProvider {
        let args = ["--redirect-uri".to_string(), redirect_uri.to_string()];
        MockProvider(Oracle::start("mock.mjs", &args).await)
    }

    /// Shapes the next ID token the token endpoint issues; calls add up until it is issued.
    pub async fn shape_next_token(&self, shape: Shape) {
        self.call(
            reqwest::Method::POST,
            "shape",
            json!({ "shape": shape.as_str() }),
        )
        .await;
    }

    /// Overrides discovery fields (`null` removes one), e.g. a different `issuer`.
    pub async fn override_discovery(&self, fields: Value) {
        self.call(reqwest::Method::POST, "discovery", fields).await;
    }

    /// What the relying party sent to the token endpoint so far: per request `client_auth`
    /// (`basic`, `post`, `none`), `code_verifier` (sent or not), `redirect_uri`, `outcome`.
    pub async fn token_requests(&self) -> Vec<Value> {
        let answer = self
            .call(reqwest::Method::GET, "token-requests", Value::Null)
            .await;
        answer["requests"].as_array().cloned().unwrap_or_default()
    }

    /// The kids of the mock's keys: `rs256_kid`, `es256_kid` (both published) and `foreign_kid`.
    pub async fn kids(&self) -> Value {
        self.call(reqwest::Method::GET, "keys", Value::Null).await
    }
}

mod flow;
#[cfg(test)]
mod selftest;

pub use flow::*;
