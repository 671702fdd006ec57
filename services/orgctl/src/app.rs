//! What every command shares: the loaded configuration, the chosen context, connections with
//! fresh credentials, and the revisions of this context's writes.

use std::io::BufRead;
use std::time::Duration;

use chrono::{DateTime, Utc};
use orgplane_proto::identity::v1::{IssueServiceTokenRequest, RefreshRequest, SessionTokens};

use crate::cli::{OrgArg, PageArgs};
use crate::config::{Context, Credentials, Session, Store};
use crate::conn::{Api, Auth, channel};
use crate::errors::Failure;
use crate::output::Format;

/// Refresh the access token when it expires within this margin.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Remembered revisions older than this are no longer sent: they are surely applied (or the
/// server was reset, and waiting for them would only time out).
const REVISION_MEMORY: Duration = Duration::from_secs(300);

/// The state of one orgctl invocation.
pub struct App {
    /// The configuration file.
    pub store: Store,
    /// `--context` / `ORGCTL_CONTEXT`.
    pub context_override: Option<String>,
    /// The output format.
    pub format: Format,
    /// `--min-org-revision`.
    pub min_org_revision: Option<i64>,
    /// The deadline of each call.
    pub timeout: Duration,
    /// Lines of standard input not yet consumed (password, then MFA code).
    stdin_lines: Option<std::io::Lines<std::io::StdinLock<'static>>>,
}

impl App {
    /// The invocation's state for the given global options.
    pub fn new(
        store: Store,
        context_override: Option<String>,
        format: Format,
        min_org_revision: Option<i64>,
        timeout: Duration,
    ) -> Self {
        App {
            store,
            context_override,
            format,
            min_org_revision,
            timeout,
            stdin_lines: None,
        }
    }

    /// The name of the context in use.
    pub fn context_name(&self) -> Result<String, Failure> {
        let name = self
            .context_override
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| self.store.config.current_context.clone())
            .ok_or_else(|| {
                Failure::config(
                    "no context selected\nhint: add one with `orgctl context add NAME --server URL` (or pick one with `orgctl context use NAME`)",
                )
            })?;
        if !self.store.config.contexts.contains_key(&name) {
            return Err(Failure::config(format!(
                "no context named {name:?} in {}\nhint: `orgctl context list` shows the contexts",
                self.store.path.display()
            )));
        }
        Ok(name)
    }

    /// The context in use.
    pub fn context(&self) -> Result<&Context, Failure> {
        let name = self.context_name()?;
        self.store
            .config
            .contexts
            .get(&name)
            .ok_or_else(|| Failure::config(format!("no context named {name:?}")))
    }

    /// The organization revision requests should carry: `--min-org-revision`, else the
    /// context's last write when recent.
    fn org_revision(&self, context: &Context) -> i64 {
        if let Some(r) = self.min_org_revision {
            return r;
        }
        recent(
            context.revisions.organization,
            context.revisions.organization_time,
        )
    }

    /// The workspace revision of the context's last workspace write, when recent.
    pub fn workspace_revision(&self) -> i64 {
        self.context()
            .map(|c| recent(c.revisions.workspace, c.revisions.workspace_time))
            .unwrap_or(0)
    }

    /// A connection without credentials (sign-up, sign-in).
    pub fn anonymous(&self) -> Result<Api, Failure> {
        let context = self.context()?;
        Ok(Api::new(channel(context)?, Auth::None, 0, self.timeout))
    }

    /// A connection with the context's credentials, refreshing a session's access token first
    /// when it is about to expire.
    pub async fn api(&mut self) -> Result<Api, Failure> {
        let context = self.context()?.clone();
        let channel = channel(&context)?;
        let revision = self.org_revision(&context);
        let anonymous = Api::new(channel.clone(), Auth::None, 0, self.timeout);
        let auth = match &context.credentials {
            None => {
                return Err(Failure::config(format!(
                    "the context {:?} has no credentials\nhint: sign in with `orgctl login`, or store an API key with `orgctl context set-credentials --api-key-stdin`",
                    self.context_name()?
                )));
            }
            Some(Credentials::ApiKey { key }) => Auth::ApiKey(key.clone()),
            Some(Credentials::ServiceToken { token }) => Auth::Bearer(token.clone()),
            Some(Credentials::ServiceAccount {
                client_id,
                client_secret,
            }) => {
                let answer = anonymous
                    .identity()
                    .issue_service_token(anonymous.request(IssueServiceTokenRequest {
                        client_id: client_id.clone(),
                        client_secret: client_secret.clone(),
                    }))
                    .await?
                    .into_inner();
                Auth::Bearer(answer.access_token)
            }
            Some(Credentials::Session(session)) => {
                if expires_soon(session.access_token_expire_time) {
                    Auth::Bearer(self.refresh(&anonymous).await?)
                } else {
                    Auth::Bearer(session.access_token.clone())
                }
            }
        };
        Ok(Api::new(channel, auth, revision, self.timeout))
    }

    /// Exchanges the session's refresh token for new tokens under the configuration lock, and
    /// returns the new access token.
    async fn refresh(&mut self, anonymous: &Api) -> Result<String, Failure> {
        let name = self.context_name()?;
        let _lock = self.store.lock_and_reload()?;
        let session = match self
            .store
            .config
            .contexts
            .get(&name)
            .and_then(|c| c.credentials.clone())
        {
            Some(Credentials::Session(s)) => s,
            _ => {
                return Err(Failure::config(
                    "the context's session is gone; run `orgctl login`",
                ));
            }
        };
        // Another orgctl may have refreshed it while this one waited for the lock.
        if !expires_soon(session.access_token_expire_time) {
            return Ok(session.access_token);
        }
        if session.refresh_token_expire_time <= Utc::now() {
            return Err(Failure::config(
                "the session has expired\nhint: sign in again with `orgctl login`",
            ));
        }
        let tokens = anonymous
            .identity()
            .refresh(anonymous.request(RefreshRequest {
                refresh_token: session.refresh_token.clone(),
            }))
            .await?
            .into_inner()
            .tokens
            .ok_or_else(|| Failure::local("the server answered Refresh without tokens"))?;
        let renewed = session_from(tokens, session.user_id, session.email);
        let access = renewed.access_token.clone();
        if let Some(c) = self.store.config.contexts.get_mut(&name) {
            c.credentials = Some(Credentials::Session(renewed));
        }
        self.store.save()?;
        Ok(access)
    }

    /// Stores new credentials in the context (under the configuration lock).
    pub fn set_credentials(&mut self, credentials: Option<Credentials>) -> Result<(), Failure> {
        let name = self.context_name()?;
        let _lock = self.store.lock_and_reload()?;
        let context = self
            .store
            .config
            .contexts
            .get_mut(&name)
            .ok_or_else(|| Failure::config(format!("no context named {name:?}")))?;
        context.credentials = credentials;
        // A new identity starts without remembered revisions.
        context.revisions = Default::default();
        self.store.save()
    }

    /// Remembers the organization revision of a write of this context.
    pub fn remember_org_revision(&mut self, revision: i64) -> Result<(), Failure> {
        if revision <= 0 {
            return Ok(());
        }
        let name = self.context_name()?;
        let _lock = self.store.lock_and_reload()?;
        if let Some(c) = self.store.config.contexts.get_mut(&name) {
            c.revisions.organization = c.revisions.organization.max(revision);
            c.revisions.organization_time = Some(Utc::now());
        }
        self.store.save()
    }

    /// Remembers the workspace revision of a workspace write of this context.
    pub fn remember_workspace_revision(&mut self, revision: i64) -> Result<(), Failure> {
        if revision <= 0 {
            return Ok(());
        }
        let name = self.context_name()?;
        let _lock = self.store.lock_and_reload()?;
        if let Some(c) = self.store.config.contexts.get_mut(&name) {
            c.revisions.workspace = c.revisions.workspace.max(revision);
            c.revisions.workspace_time = Some(Utc::now());
        }
        self.store.save()
    }

    /// The organization a command is about: `--org`, else the context's default.
    pub fn org(&self, arg: &OrgArg) -> Result<String, Failure> {
        if let Some(org) = arg.org.clone().filter(|o| !o.is_empty()) {
            return Ok(org);
        }
        self.context()
            .ok()
            .and_then(|c| c.organization.clone())
            .ok_or_else(|| {
                Failure::usage(
                    "which organization? pass --org ORG_ID (or set a default with `orgctl context set-org ORG_ID`)",
                )
            })
    }

    /// Makes `organization_id` the context's default organization when it has none yet (after
    /// creating or joining one).
    pub fn default_org_if_unset(&mut self, organization_id: &str) -> Result<(), Failure> {
        if organization_id.is_empty() || self.context()?.organization.is_some() {
            return Ok(());
        }
        let org = organization_id.to_owned();
        let set = self.with_context(|c| {
            if c.organization.is_none() {
                c.organization = Some(org);
                true
            } else {
                false
            }
        })?;
        if set {
            eprintln!(
                "{organization_id} is now the context's default organization (`orgctl context set-org` changes it)"
            );
        }
        Ok(())
    }

    /// The signed-in user's id, when the context holds a session.
    pub fn session_user(&mut self) -> Result<Option<String>, Failure> {
        Ok(match &self.context()?.credentials {
            Some(Credentials::Session(s)) => Some(s.user_id.clone()),
            _ => None,
        })
    }

    /// Mutable access to the context in use (for `context set-org`).
    pub fn with_context<T>(&mut self, f: impl FnOnce(&mut Context) -> T) -> Result<T, Failure> {
        let name = self.context_name()?;
        let _lock = self.store.lock_and_reload()?;
        let context = self
            .store
            .config
            .contexts
            .get_mut(&name)
            .ok_or_else(|| Failure::config(format!("no context named {name:?}")))?;
        let out = f(context);
        self.store.save()?;
        Ok(out)
    }

    /// The next line of standard input, without its line end; `what` names it in errors.
    pub fn stdin_line(&mut self, what: &str) -> Result<String, Failure> {
        let lines = self
            .stdin_lines
            .get_or_insert_with(|| std::io::stdin().lock().lines());
        match lines.next() {
            Some(Ok(line)) => Ok(line.trim_end_matches(['\r', '\n']).to_owned()),
            Some(Err(e)) => Err(Failure::local(format!(
                "cannot read the {what} from standard input: {e}"
            ))),
            None => Err(Failure::usage(format!(
                "expected the {what} on standard input, found its end"
            ))),
        }
    }

    /// Prompts on the terminal without echo.
    pub fn prompt_hidden(&self, prompt: &str) -> Result<String, Failure> {
        rpassword::prompt_password(prompt).map_err(|e| {
            Failure::usage(format!(
                "cannot prompt on the terminal ({e}); pass the secret on standard input instead (see --help)"
            ))
        })
    }

    /// Prompts on the terminal with echo.
    pub fn prompt(&self, prompt: &str) -> Result<String, Failure> {
        use std::io::Write;
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| Failure::local(format!("cannot read from the terminal: {e}")))?;
        Ok(line.trim().to_owned())
    }
}

fn recent(revision: i64, time: Option<DateTime<Utc>>) -> i64 {
    match time {
        Some(t)
            if revision > 0
                && Utc::now()
                    .signed_duration_since(t)
                    .to_std()
                    .unwrap_or_default()
                    < REVISION_MEMORY =>
        {
            revision
        }
        _ => 0,
    }
}

fn expires_soon(t: DateTime<Utc>) -> bool {
    t.signed_duration_since(Utc::now())
        .to_std()
        .map(|left| left < REFRESH_MARGIN)
        .unwrap_or(true)
}

/// A protobuf timestamp as chrono's (the epoch when unset or out of range).
pub fn timestamp(t: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .unwrap_or_default()
}

/// A chrono time as a protobuf timestamp.
pub fn to_timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The stored form of a session's tokens.
pub fn session_from(tokens: SessionTokens, user_id: String, email: String) -> Session {
    Session {
        user_id,
        email,
        access_token_expire_time: timestamp(tokens.access_token_expire_time.as_ref()),
        refresh_token_expire_time: timestamp(tokens.refresh_token_expire_time.as_ref()),
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
    }
}

/// Parses a time argument: RFC 3339 (`2026-01-31T00:00:00Z`), a date (`2026-01-31`, midnight
/// UTC), `now`, or an age before now (`90s`, `30m`, `2h`, `7d`, `2w`).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, Failure> {
    let text = text.trim();
    if text == "now" {
        return Ok(Utc::now());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    let bad = || {
        Failure::usage(format!(
            "{text:?} is not a time: use RFC 3339 (2026-01-31T00:00:00Z), a date (2026-01-31), or an age such as 30m, 2h, 7d"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let age =
        chrono::TimeDelta::try_seconds(n.checked_mul(seconds).ok_or_else(bad)?).ok_or_else(bad)?;
    Utc::now().checked_sub_signed(age).ok_or_else(bad)
}

/// Follows a list RPC's pages as `page` asks: one page (from `--page-token`), or all of them
/// with `--all`. `fetch` gets the page token and size and returns the items and the next token.
/// Returns the items and the token of the page after the last one fetched (empty: no more).
pub async fn paginate<T, F, Fut>(page: &PageArgs, mut fetch: F) -> Result<(Vec<T>, String), Failure>
where
    F: FnMut(String, i32) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    if let Some(size) = page.page_size
        && size < 0
    {
        return Err(Failure::usage("--page-size must not be negative"));
    }
    let size = page.page_size.unwrap_or(0);
    let mut token = page.page_token.clone().unwrap_or_default();
    let mut all = Vec::new();
    loop {
        let (items, next) = fetch(token, size).await?;
        all.extend(items);
        if !page.all || next.is_empty() {
            return Ok((all, next));
        }
        token = next;
    }
}

/// Tells people on standard error how to get the next page.
pub fn note_next_page(next: &str) {
    if !next.is_empty() {
        eprintln!("(more: pass --page-token {next}, or --all)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_form() {
        assert_eq!(
            parse_time("2026-01-31T00:00:00Z").unwrap().timestamp(),
            1_769_817_600
        );
        assert_eq!(parse_time("2026-01-31").unwrap().timestamp(), 1_769_817_600);
        let age = Utc::now() - parse_time("2h").unwrap();
        assert!((age.num_seconds() - 7200).abs() < 5);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("5y").is_err());
        assert!(parse_time("99999999999999999d").is_err());
    }

    #[test]
    fn old_revisions_are_forgotten() {
        assert_eq!(recent(7, Some(Utc::now())), 7);
        assert_eq!(recent(7, Some(Utc::now() - chrono::TimeDelta::hours(1))), 0);
        assert_eq!(recent(7, None), 0);
    }
}
