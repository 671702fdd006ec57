//! The identity service's settings: the clap [`Config`] of the `orgplane` binary (defaults
//! written once, in the `#[arg]` attributes and mirrored by `Default`), and how the signing-key
//! encryption key is found.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use orgplane_platform::auth::{Capabilities, parse_capability_list};
use orgplane_platform::{ApiError, ApiResult};

use std::time::Duration;

use crate::app::Limits;
use crate::crypto::{self, PasswordHasherPool};
use crate::throttle::TrustedProxies;

/// The defaults of [`Config`], written once: the flags and `Default` both read them.
pub mod defaults {
    /// `--mail-url`.
    pub const MAIL_URL: &str = "file://./data/mail";
    /// `--identity-mail-from`.
    pub const MAIL_FROM: &str = "Orgplane <no-reply@orgplane.local>";
    /// `--identity-public-url`.
    pub const PUBLIC_URL: &str = "http://localhost:8080";
    /// `--signing-key-rotation-hours` (30 days).
    pub const SIGNING_KEY_ROTATION_HOURS: u64 = 720;
    /// `--step-up-max-age-secs` (rule ID-6: 5 minutes).
    pub const STEP_UP_MAX_AGE_SECS: u64 = 300;
    /// `--login-failures-per-account`.
    pub const LOGIN_FAILURES_PER_ACCOUNT: u32 = 5;
    /// `--login-failures-per-peer`.
    pub const LOGIN_FAILURES_PER_PEER: u32 = 50;
    /// `--login-throttle-window-secs` (15 minutes).
    pub const LOGIN_THROTTLE_WINDOW_SECS: u64 = 900;
    /// `--signups-per-peer`.
    pub const SIGNUPS_PER_PEER: u32 = 30;
    /// `--mails-per-address`.
    pub const MAILS_PER_ADDRESS: u32 = 5;
    /// `--passkey-rp-id` (development: passkeys made on `localhost`).
    pub const PASSKEY_RP_ID: &str = "localhost";
    /// `--passkey-origin` (development: a front end on port 3000).
    pub const PASSKEY_ORIGIN: &str = "http://localhost:3000";
    /// `--passkey-rp-name`.
    pub const PASSKEY_RP_NAME: &str = "Orgplane";
    /// `--totp-issuer`.
    pub const TOTP_ISSUER: &str = "Orgplane";
}

/// A service account identity issues service tokens to (`--service-accounts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredAccount {
    /// Hex SHA-256 of its secret.
    pub secret_sha256: String,
    /// What its tokens may do (their `scope`).
    pub capabilities: Capabilities,
}

/// The service's own settings (flags and environment variables of the `orgplane` binary).
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct Config {
    /// Where mail goes: `file://DIR` (development: `.eml` files) or `smtp://` / `smtps://user:pass@host:port`.
    #[arg(
        id = "identity_mail_url",
        long = "mail-url",
        env = "ORGPLANE_MAIL_URL",
        default_value = defaults::MAIL_URL,
        hide_env_values = true
    )]
    pub mail_url: String,

    /// The sender of identity's mail.
    #[arg(
        id = "identity_mail_from",
        long = "identity-mail-from",
        env = "ORGPLANE_IDENTITY_MAIL_FROM",
        default_value = defaults::MAIL_FROM
    )]
    pub mail_from: String,

    /// The public base URL that verification and password-reset links start with.
    #[arg(
        id = "identity_public_url",
        long = "identity-public-url",
        env = "ORGPLANE_IDENTITY_PUBLIC_URL",
        default_value = defaults::PUBLIC_URL
    )]
    pub public_url: String,

    /// The key that seals signing keys at rest: 32 bytes, base64. When unset, a key file is used
    /// (see `--signing-key-encryption-key-file`).
    #[arg(
        id = "identity_signing_key_encryption_key",
        long = "signing-key-encryption-key",
        env = "ORGPLANE_SIGNING_KEY_ENCRYPTION_KEY",
        hide_env_values = true
    )]
    pub signing_key_encryption_key: Option<String>,

    /// A file holding that key (base64), created with mode 0600 when missing. Default:
    /// `identity-signing.key` beside the SQLite database, or `./data/identity-signing.key` for
    /// other databases. Production should set the key (for example from a Kubernetes Secret).
    #[arg(
        id = "identity_signing_key_encryption_key_file",
        long = "signing-key-encryption-key-file",
        env = "ORGPLANE_SIGNING_KEY_ENCRYPTION_KEY_FILE"
    )]
    pub signing_key_encryption_key_file: Option<PathBuf>,

    /// How often the token-signing key rotates, in hours.
    #[arg(
        id = "identity_signing_key_rotation_hours",
        long = "signing-key-rotation-hours",
        env = "ORGPLANE_SIGNING_KEY_ROTATION_HOURS",
        default_value_t = defaults::SIGNING_KEY_ROTATION_HOURS
    )]
    pub signing_key_rotation_hours: u64,

    /// Service accounts allowed to get service tokens, comma-separated
    /// `client_id:sha256-hex-of-secret:capabilities`, the capabilities `+`-separated names
    /// (`check-access+record-usage`) or `@<service>` for what an Orgplane service uses
    /// (`@workspace`). An account without capabilities gets tokens that no internal RPC
    /// accepts (a warning at start). This process's own account is always trusted, with what
    /// the services of this process use.
    #[arg(
        id = "identity_service_accounts",
        long = "service-accounts",
        env = "ORGPLANE_SERVICE_ACCOUNTS",
        default_value = "",
        hide_env_values = true
    )]
    pub service_accounts: String,

    /// Sensitive actions need a sign-in at most this many seconds old (rule ID-6).
    #[arg(
        id = "identity_step_up_max_age_secs",
        long = "step-up-max-age-secs",
        env = "ORGPLANE_STEP_UP_MAX_AGE_SECS",
        default_value_t = defaults::STEP_UP_MAX_AGE_SECS
    )]
    pub step_up_max_age_secs: u64,

    /// Failed sign-ins allowed per account per 15 minutes.
    #[arg(
        id = "identity_login_failures_per_account",
        long = "login-failures-per-account",
        env = "ORGPLANE_LOGIN_FAILURES_PER_ACCOUNT",
        default_value_t = defaults::LOGIN_FAILURES_PER_ACCOUNT
    )]
    pub login_failures_per_account: u32,

    /// Failed sign-ins allowed per peer address per 15 minutes.
    #[arg(
        id = "identity_login_failures_per_peer",
        long = "login-failures-per-peer",
        env = "ORGPLANE_LOGIN_FAILURES_PER_PEER",
        default_value_t = defaults::LOGIN_FAILURES_PER_PEER
    )]
    pub login_failures_per_peer: u32,

    /// The window of the account's and the peer address's sign-in budgets, in seconds (rule
    /// ID-3): it opens at the first failure, and is the longest an account or address stays
    /// throttled.
    #[arg(
        id = "identity_login_throttle_window_secs",
        long = "login-throttle-window-secs",
        env = "ORGPLANE_LOGIN_THROTTLE_WINDOW_SECS",
        default_value_t = defaults::LOGIN_THROTTLE_WINDOW_SECS
    )]
    pub login_throttle_window_secs: u64,

    /// Proxies (comma-separated addresses or CIDR ranges, e.g. a product backend calling Login
    /// for its users) whose `x-forwarded-for` names the client address that the per-address
    /// throttles count; other peers' headers are ignored (rule ID-3).
    #[arg(
        id = "identity_trusted_proxies",
        long = "trusted-proxies",
        env = "ORGPLANE_TRUSTED_PROXIES",
        default_value = ""
    )]
    pub trusted_proxies: String,

    /// Sign-ups allowed per peer address per hour.
    #[arg(
        id = "identity_signups_per_peer",
        long = "signups-per-peer",
        env = "ORGPLANE_SIGNUPS_PER_PEER",
        default_value_t = defaults::SIGNUPS_PER_PEER
    )]
    pub signups_per_peer: u32,

    /// Verification or reset mails per address per hour.
    #[arg(
        id = "identity_mails_per_address",
        long = "mails-per-address",
        env = "ORGPLANE_MAILS_PER_ADDRESS",
        default_value_t = defaults::MAILS_PER_ADDRESS
    )]
    pub mails_per_address: u32,

    /// The WebAuthn relying party id passkeys are bound to: the product's domain (e.g.
    /// `example.com`), never changed once users have passkeys. Empty: passkeys are off.
    /// Default `localhost`, for development.
    #[arg(
        id = "identity_passkey_rp_id",
        long = "passkey-rp-id",
        env = "ORGPLANE_PASSKEY_RP_ID",
        default_value = defaults::PASSKEY_RP_ID
    )]
    pub passkey_rp_id: String,

    /// The web origins (comma-separated, e.g. `https://app.example.com`) whose pages register
    /// and use passkeys; each must be on the relying party's domain, `https` except on
    /// `localhost`. Default `http://localhost:3000`, for development.
    #[arg(
        id = "identity_passkey_origin",
        long = "passkey-origin",
        env = "ORGPLANE_PASSKEY_ORIGIN",
        default_value = defaults::PASSKEY_ORIGIN
    )]
    pub passkey_origin: String,

    /// The relying party name authenticators may show.
    #[arg(
        id = "identity_passkey_rp_name",
        long = "passkey-rp-name",
        env = "ORGPLANE_PASSKEY_RP_NAME",
        default_value = defaults::PASSKEY_RP_NAME
    )]
    pub passkey_rp_name: String,

    /// The issuer authenticator apps show for TOTP factors (rule ID-10).
    #[arg(
        id = "identity_totp_issuer",
        long = "totp-issuer",
        env = "ORGPLANE_TOTP_ISSUER",
        default_value = defaults::TOTP_ISSUER
    )]
    pub totp_issuer: String,

    /// Admits `http://` SSO issuers and provider endpoints (rule ID-13): for loopback tests and
    /// development only; production providers are `https://`.
    #[arg(
        id = "identity_sso_allow_http_issuers",
        long = "sso-allow-http-issuers",
        env = "ORGPLANE_SSO_ALLOW_HTTP_ISSUERS",
        default_value_t = false
    )]
    pub sso_allow_http_issuers: bool,

    /// argon2id memory in KiB (OWASP: 19456). Lower only in tests.
    #[arg(id = "identity_password_hash_memory_kib", long = "password-hash-memory-kib", env = "ORGPLANE_PASSWORD_HASH_MEMORY_KIB", default_value_t = crypto::OWASP_MEMORY_KIB, hide = true)]
    pub password_hash_memory_kib: u32,

    /// argon2id iterations (OWASP: 2). Lower only in tests.
    #[arg(id = "identity_password_hash_iterations", long = "password-hash-iterations", env = "ORGPLANE_PASSWORD_HASH_ITERATIONS", default_value_t = crypto::OWASP_ITERATIONS, hide = true)]
    pub password_hash_iterations: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mail_url: defaults::MAIL_URL.into(),
            mail_from: defaults::MAIL_FROM.into(),
            public_url: defaults::PUBLIC_URL.into(),
            signing_key_encryption_key: None,
            signing_key_encryption_key_file: None,
            signing_key_rotation_hours: defaults::SIGNING_KEY_ROTATION_HOURS,
            service_accounts: String::new(),
            step_up_max_age_secs: defaults::STEP_UP_MAX_AGE_SECS,
            login_failures_per_account: defaults::LOGIN_FAILURES_PER_ACCOUNT,
            login_failures_per_peer: defaults::LOGIN_FAILURES_PER_PEER,
            login_throttle_window_secs: defaults::LOGIN_THROTTLE_WINDOW_SECS,
            trusted_proxies: String::new(),
            signups_per_peer: defaults::SIGNUPS_PER_PEER,
            mails_per_address: defaults::MAILS_PER_ADDRESS,
            passkey_rp_id: defaults::PASSKEY_RP_ID.into(),
            passkey_origin: defaults::PASSKEY_ORIGIN.into(),
            passkey_rp_name: defaults::PASSKEY_RP_NAME.into(),
            totp_issuer: defaults::TOTP_ISSUER.into(),
            sso_allow_http_issuers: false,
            password_hash_memory_kib: crypto::OWASP_MEMORY_KIB,
            password_hash_iterations: crypto::OWASP_ITERATIONS,
        }
    }
}

impl Config {
    /// How often the token-signing key rotates (at least hourly; the default when the value is
    /// out of range).
    pub(crate) fn rotation(&self) -> chrono::Duration {
        let hours = |h: u64| {
            i64::try_from(h.max(1))
                .ok()
                .and_then(chrono::Duration::try_hours)
        };
        hours(self.signing_key_rotation_hours)
            .or_else(|| hours(defaults::SIGNING_KEY_ROTATION_HOURS))
            .unwrap_or_default()
    }

    /// The longest a sign-in may be for sensitive actions (rule ID-6; the default when the value
    /// is out of range).
    pub(crate) fn step_up(&self) -> chrono::Duration {
        let secs = |s: u64| {
            i64::try_from(s)
                .ok()
                .and_then(chrono::Duration::try_seconds)
        };
        secs(self.step_up_max_age_secs)
            .or_else(|| secs(defaults::STEP_UP_MAX_AGE_SECS))
            .unwrap_or_default()
    }

    /// The budgets of the throttles (rule ID-3).
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            login_failures_per_account: self.login_failures_per_account,
            login_failures_per_peer: self.login_failures_per_peer,
            login_window: Duration::from_secs(self.login_throttle_window_secs.max(1)),
            signups_per_peer: self.signups_per_peer,
            mails_per_address: self.mails_per_address,
        }
    }

    /// The proxies whose `x-forwarded-for` is believed (rule ID-3).
    pub(crate) fn trusted_proxies(&self) -> ApiResult<TrustedProxies> {
        TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| ApiError::invalid_argument("trusted_proxies", e))
    }

    /// The argon2id hasher, as many at once as there are cores.
    pub(crate) fn password_hasher(&self) -> ApiResult<PasswordHasherPool> {
        let parallel = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        PasswordHasherPool::new(
            self.password_hash_memory_kib,
            self.password_hash_iterations,
            parallel,
        )
    }

    /// The configured service accounts by client id.
    pub fn parse_service_accounts(&self) -> ApiResult<HashMap<String, ConfiguredAccount>> {
        let mut out = HashMap::new();
        for entry in self
            .service_accounts
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (id, rest) = entry.split_once(':').ok_or_else(|| {
                ApiError::invalid_argument(
                    "service_accounts",
                    "expected client_id:sha256hex:capabilities entries",
                )
            })?;
            let (hash, list) = rest.split_once(':').unwrap_or((rest, ""));
            let hash = hash.trim().to_ascii_lowercase();
            if id.trim().is_empty()
                || hash.len() != 64
                || !hash.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(ApiError::invalid_argument(
                    "service_accounts",
                    format!("{id}: the secret must be given as 64 hex digits of its SHA-256"),
                ));
            }
            let capabilities = parse_capability_list(list).map_err(|why| {
                ApiError::invalid_argument("service_accounts", format!("{}: {why}", id.trim()))
            })?;
            out.insert(
                id.trim().to_owned(),
                ConfiguredAccount {
                    secret_sha256: hash,
                    capabilities,
                },
            );
        }
        Ok(out)
    }

    /// The file the signing-key encryption key is kept in when the key itself is not configured
    /// ([`Self::has_encryption_key`]): a backup of the identity database must carry it along.
    pub fn encryption_key_file(&self, database_url: &str) -> PathBuf {
        match &self.signing_key_encryption_key_file {
            Some(p) => p.clone(),
            None => default_key_file(database_url),
        }
    }

    /// Whether the signing-key encryption key is configured directly (not kept in a file).
    pub fn has_encryption_key(&self) -> bool {
        self.signing_key_encryption_key
            .as_deref()
            .is_some_and(|k| !k.is_empty())
    }

    pub(crate) fn encryption_key(&self, database_url: &str) -> ApiResult<[u8; 32]> {
        let decode = |text: &str, from: &str| -> ApiResult<[u8; 32]> {
            let bytes = STANDARD
                .decode(text.trim())
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()))
                .map_err(|_| {
                    ApiError::invalid_argument(
                        "signing_key_encryption_key",
                        format!("{from}: not base64"),
                    )
                })?;
            bytes.try_into().map_err(|_| {
                ApiError::invalid_argument(
                    "signing_key_encryption_key",
                    format!("{from}: must be 32 bytes"),
                )
            })
        };
        if let Some(key) = self
            .signing_key_encryption_key
            .as_deref()
            .filter(|k| !k.is_empty())
        {
            return decode(key, "ORGPLANE_SIGNING_KEY_ENCRYPTION_KEY");
        }
        let path = self.encryption_key_file(database_url);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return decode(&text, &path.display().to_string());
        }
        tracing::warn!(
            path = %path.display(),
            "no signing-key encryption key configured: generating a key file (set ORGPLANE_SIGNING_KEY_ENCRYPTION_KEY in production)"
        );
        let key: [u8; 32] = rand::random();
        write_private(&path, &STANDARD.encode(key))
            .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
        Ok(key)
    }
}

fn default_key_file(database_url: &str) -> PathBuf {
    let sqlite = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .and_then(|rest| rest.split('?').next())
        .filter(|p| !p.is_empty() && !p.contains(":memory:"));
    match sqlite.and_then(|p| Path::new(p).parent()) {
        Some(dir) => dir.join("identity-signing.key"),
        None => PathBuf::from("./data/identity-signing.key"),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        identity: Config,
    }

    #[test]
    fn flags_reach_the_config_and_defaults_are_owasp() {
        let hash = crypto::sha256_hex("s3cret");
        let cli = Cli::try_parse_from([
            "t",
            "--mail-url",
            "smtp://mail.example.com:587",
            "--service-accounts",
            &format!(
                "billing:{hash}:@billing-access, search:{hash}:check-access+read-users, old:{hash}"
            ),
            "--signing-key-rotation-hours",
            "24",
        ])
        .unwrap();
        let c = cli.identity;
        assert_eq!(c.mail_url, "smtp://mail.example.com:587");
        assert_eq!(c.signing_key_rotation_hours, 24);
        assert_eq!(c.password_hash_memory_kib, 19_456);
        assert_eq!(c.password_hash_iterations, 2);
        assert_eq!(c.step_up_max_age_secs, 300);
        assert!(
            !c.sso_allow_http_issuers,
            "SSO issuers are https by default"
        );
        use orgplane_platform::auth::Capability;
        let accounts = c.parse_service_accounts().unwrap();
        assert_eq!(accounts.len(), 3);
        assert_eq!(accounts["search"].secret_sha256, hash);
        assert_eq!(
            accounts["search"].capabilities,
            Capabilities::of(&[Capability::CheckAccess, Capability::ReadUsers])
        );
        assert_eq!(
            Some(accounts["billing"].capabilities),
            Capabilities::of_service("billing-access")
        );
        assert!(
            accounts["old"].capabilities.is_empty(),
            "an account without a list gets no capability"
        );
        for bad in [
            format!("search:{hash}:check-access+launch-missiles"),
            format!("search:{hash}:@search"),
        ] {
            let config = Config {
                service_accounts: bad.clone(),
                ..Config::default()
            };
            let err = config.parse_service_accounts().unwrap_err();
            assert_eq!(
                err.code(),
                orgplane_platform::error::Code::InvalidArgument,
                "{bad}"
            );
        }
        let bad = Config {
            service_accounts: "billing:plaintext".into(),
            ..Config::default()
        };
        assert!(
            bad.parse_service_accounts().is_err(),
            "only hashes are accepted"
        );
        let defaults = Cli::try_parse_from(["t"]).unwrap().identity;
        assert_eq!(defaults.mail_url, Config::default().mail_url);
    }

    #[test]
    fn the_development_key_file_sits_beside_the_sqlite_database() {
        assert_eq!(
            default_key_file("sqlite://./data/identity.db?mode=rwc"),
            PathBuf::from("./data/identity-signing.key")
        );
        assert_eq!(
            default_key_file("postgres://db/identity"),
            PathBuf::from("./data/identity-signing.key")
        );
    }
}
