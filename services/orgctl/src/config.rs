//! The configuration file: contexts (a server and the credentials to use there) and which one is
//! current.
//!
//! The file is TOML at `$ORGCTL_CONFIG`, else `${XDG_CONFIG_HOME:-~/.config}/orgctl/config.toml`.
//! It holds secrets (refresh tokens, API keys), so it is written with mode 0600 (its directory,
//! when orgctl creates it, 0700), replaced atomically, and refused when group or others may read
//! it. Writers that change credentials (sign-in, token refresh) hold an advisory lock on
//! `<file>.lock`, so that two orgctl processes never both spend the same refresh token (which
//! would end the session, rule ID-4).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::errors::Failure;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The context used when neither `--context` nor `ORGCTL_CONTEXT` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// The contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// A named server with its TLS settings and credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// The gRPC URL: `http://host:port` (plaintext) or `https://host:port` (TLS).
    pub server: String,
    /// CA certificates (PEM) that verify the server; the Web PKI roots when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// A client certificate chain (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// The organization commands use when `--org` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// How orgctl authenticates in this context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// The newest revisions this context's own writes produced (read your writes).
    #[serde(default, skip_serializing_if = "Revisions::is_empty")]
    pub revisions: Revisions,
}

/// The credentials of a context.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credentials {
    /// A signed-in user's session from `orgctl login`.
    Session(Session),
    /// An API key, sent as `x-api-key`.
    ApiKey {
        /// The key's secret (`opk_…`).
        key: String,
    },
    /// A service token, sent as a bearer token as is (it is not refreshable).
    ServiceToken {
        /// The token.
        token: String,
    },
    /// A service account's client credentials: orgctl mints a service token with
    /// IssueServiceToken before each command.
    ServiceAccount {
        /// The account's client id.
        client_id: String,
        /// The account's secret.
        client_secret: String,
    },
}

impl Credentials {
    /// What kind of credentials these are, for people.
    pub fn describe(&self) -> String {
        match self {
            Credentials::Session(s) => format!("session of {} ({})", s.email, s.user_id),
            Credentials::ApiKey { key } => format!("API key {}", hint(key)),
            Credentials::ServiceToken { .. } => "service token".to_owned(),
            Credentials::ServiceAccount { client_id, .. } => {
                format!("service account {client_id}")
            }
        }
    }
}

/// The non-secret head and tail of a secret, as the server's `partial_key_hint` shows them.
fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 16 {
        return "…".to_owned();
    }
    let head = ["opk_admin_", "opk_"]
        .into_iter()
        .find(|p| secret.starts_with(p))
        .unwrap_or_default();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// A signed-in session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// The signed-in user's id.
    pub user_id: String,
    /// The signed-in user's email.
    pub email: String,
    /// The current access token.
    pub access_token: String,
    /// When `access_token` expires.
    #[serde(with = "rfc3339")]
    pub access_token_expire_time: DateTime<Utc>,
    /// The session's current (single-use) refresh token.
    pub refresh_token: String,
    /// When `refresh_token` expires.
    #[serde(with = "rfc3339")]
    pub refresh_token_expire_time: DateTime<Utc>,
}

/// The newest revisions a context's writes produced, sent back so that the next command observes
/// them (`x-min-organization-revision`; CheckAccess's `min_workspace_revision`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Revisions {
    /// The organization service's revision of the last write.
    #[serde(default)]
    pub organization: i64,
    /// When it was recorded: a revision older than a few minutes is surely applied everywhere
    /// (or the server was reset), so it is no longer sent.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    pub organization_time: Option<DateTime<Utc>>,
    /// The workspace service's revision of the last workspace write.
    #[serde(default)]
    pub workspace: i64,
    /// When it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    pub workspace_time: Option<DateTime<Utc>>,
}

impl Revisions {
    fn is_empty(&self) -> bool {
        self.organization == 0 && self.workspace == 0
    }
}

/// Times as RFC 3339 strings (chrono's serde support is not enabled in the workspace).
mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// Optional times as RFC 3339 strings.
mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        super::rfc3339::deserialize(d).map(Some)
    }
}

/// Where the configuration file is: `$ORGCTL_CONFIG`, else
/// `${XDG_CONFIG_HOME:-~/.config}/orgctl/config.toml`.
pub fn path() -> Result<PathBuf, Failure> {
    if let Some(p) = std::env::var_os("ORGCTL_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(Failure::config(
                    "cannot locate the configuration file: set ORGCTL_CONFIG, XDG_CONFIG_HOME or HOME",
                ));
            }
        },
    };
    Ok(base.join("orgctl").join("config.toml"))
}

/// The configuration file as loaded, with where it lives.
#[derive(Debug)]
pub struct Store {
    /// The file.
    pub path: PathBuf,
    /// Its contents (empty when the file does not exist yet).
    pub config: Config,
}

impl Store {
    /// Loads the configuration (an empty one when the file does not exist).
    pub fn load() -> Result<Store, Failure> {
        let path = path()?;
        let config = read(&path)?;
        Ok(Store { path, config })
    }

    /// Writes the configuration back (mode 0600, atomically).
    pub fn save(&self) -> Result<(), Failure> {
        write(&self.path, &self.config)
    }

    /// Takes the advisory lock that serializes credential updates between orgctl processes,
    /// then re-reads the file (another process may have refreshed the session meanwhile). The
    /// lock is held until the returned guard is dropped.
    pub fn lock_and_reload(&mut self) -> Result<std::fs::File, Failure> {
        ensure_dir(&self.path)?;
        let lock_path = lock_path(&self.path);
        let file = open_private(&lock_path, false)?;
        file.lock()
            .map_err(|e| Failure::config(format!("cannot lock {}: {e}", lock_path.display())))?;
        self.config = read(&self.path)?;
        Ok(file)
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Reads and checks the file: missing is empty; group- or world-accessible is refused.
pub fn read(path: &Path) -> Result<Config, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => {
            return Err(Failure::config(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    check_private(path)?;
    toml::from_str(&text).map_err(|e| {
        Failure::config(format!(
            "{} is not a valid orgctl configuration: {e}",
            path.display()
        ))
    })
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| Failure::config(format!("cannot read {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Failure::config(format!(
            "refusing to read {}: it holds credentials but its mode is {:04o}, readable by group or others\nhint: run `chmod 600 {}` (and consider the credentials in it exposed)",
            path.display(),
            mode & 0o7777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), Failure> {
    Ok(())
}

fn ensure_dir(path: &Path) -> Result<(), Failure> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Failure::config(format!("cannot create {}: {e}", dir.display())))
}

/// Opens (creating with mode 0600) `path` for writing; `truncate` empties it.
fn open_private(path: &Path, truncate: bool) -> Result<std::fs::File, Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|e| Failure::config(format!("cannot open {}: {e}", path.display())))
}

/// Writes `config` to `path`: a temporary file with mode 0600 beside it, renamed over it.
pub fn write(path: &Path, config: &Config) -> Result<(), Failure> {
    ensure_dir(path)?;
    let text = toml::to_string_pretty(config)
        .map_err(|e| Failure::config(format!("cannot encode the configuration: {e}")))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = open_private(&tmp, true)?;
        let io =
            |e: std::io::Error| Failure::config(format!("cannot write {}: {e}", tmp.display()));
        file.write_all(
            b"# orgctl configuration: contexts and their credentials. Keep it private (mode 0600).\n",
        )
        .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        if !text.ends_with('\n') {
            file.write_all(b"\n").map_err(io)?;
        }
        file.sync_all().map_err(io)?;
        #[cfg(unix)]
        {
            // The file may have existed with other permissions (an earlier crashed write).
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        std::fs::rename(&tmp, path)
            .map_err(|e| Failure::config(format!("cannot replace {}: {e}", path.display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_credential_kind() {
        let mut config = Config {
            current_context: Some("a".into()),
            ..Config::default()
        };
        let now = Utc::now();
        for (name, credentials) in [
            (
                "a",
                Credentials::Session(Session {
                    user_id: "user_1".into(),
                    email: "a@example.com".into(),
                    access_token: "t".into(),
                    access_token_expire_time: now,
                    refresh_token: "r".into(),
                    refresh_token_expire_time: now,
                }),
            ),
            (
                "b",
                Credentials::ApiKey {
                    key: "opk_admin_abcdefghijklmn".into(),
                },
            ),
            ("c", Credentials::ServiceToken { token: "x".into() }),
            (
                "d",
                Credentials::ServiceAccount {
                    client_id: "id".into(),
                    client_secret: "s".into(),
                },
            ),
        ] {
            config.contexts.insert(
                name.into(),
                Context {
                    server: "http://127.0.0.1:1".into(),
                    credentials: Some(credentials),
                    ..Context::default()
                },
            );
        }
        let text = toml::to_string_pretty(&config).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn hints_do_not_reveal_secrets() {
        assert_eq!(hint("opk_admin_abcdefghijklmnop"), "opk_admin_…mnop");
        assert_eq!(hint("opk_abcdefghijklmnopqr"), "opk_…opqr");
        assert_eq!(hint("short"), "…");
    }
}
