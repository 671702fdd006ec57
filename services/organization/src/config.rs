//! The organization service's settings: flags and environment variables of the `orgplane`
//! binary, each default written once (the constants below), and the clock offset they may set.

use clap::Args;
use orgplane_platform::clock::{Clock, SharedClock};

const MAIL_URL: &str = "file://./data/mail";
const MAIL_FROM: &str = "Orgplane <no-reply@orgplane.dev>";
const INVITE_LINK_BASE: &str = "https://orgplane.local/invites/";
const STEP_UP_MAX_AGE_SECS: i64 = 300;
const PURGE_INTERVAL_SECS: u64 = 60;
const READY_TIMEOUT_MS: u64 = 3000;
const DOMAIN_VERIFICATION_WINDOW_DAYS: i64 = 7;
const DOMAIN_CHALLENGE_PREFIX: &str = "_orgplane-challenge";
const DOMAIN_CHECK_INTERVAL_SECS: u64 = 10;
const DNS_TIMEOUT_MS: u64 = 5000;
const BRANDING_NAME: &str = "Orgplane";
const MAX_ACCOUNTS: u64 = 10;
const MAX_SUBACCOUNTS: u64 = 1000;
const MERGE_MAX_ACTIVE_WORKSPACES: u64 = 100;

/// One organization's own account limit (rule ACC-1): `ORG_ID=N` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLimit {
    /// The organization.
    pub organization_id: String,
    /// Its most open top-level accounts (pending imports included).
    pub max: u64,
}

impl std::str::FromStr for AccountLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (org, n) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected ORG_ID=N"))?;
        let org = org.trim();
        if org.is_empty() {
            return Err(format!("{s:?}: expected ORG_ID=N"));
        }
        let max = n
            .trim()
            .parse()
            .map_err(|e| format!("{s:?}: the limit is not a number ({e})"))?;
        Ok(Self {
            organization_id: org.to_owned(),
            max,
        })
    }
}

/// Whether role changes share commits (`--organization-group-commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupCommit {
    /// The default: on (for both).
    Auto,
    /// On for both.
    On,
    /// Off for both.
    Off,
}

impl GroupCommit {
    /// Applies the setting to `outbox` (`auto` keeps the outbox's own default).
    pub fn apply(
        self,
        outbox: orgplane_platform::events::Outbox,
    ) -> orgplane_platform::events::Outbox {
        match self {
            Self::Auto => outbox,
            Self::On => outbox.with_group_commit(true),
            Self::Off => outbox.with_group_commit(false),
        }
    }
}

/// The service's own settings. Every flag starts with `organization-` so that it cannot clash
/// with another service's.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct Config {
    /// Where invite mail goes: `file://DIR` (`.eml` files) or `smtp://` / `smtps://…`.
    #[arg(
        long = "organization-mail-url",
        env = "ORGPLANE_ORGANIZATION_MAIL_URL",
        default_value = MAIL_URL
    )]
    pub mail_url: String,

    /// The sender of invite mail.
    #[arg(
        long = "organization-mail-from",
        env = "ORGPLANE_ORGANIZATION_MAIL_FROM",
        default_value = MAIL_FROM
    )]
    pub mail_from: String,

    /// The start of the link in invite mail; the invite id is appended.
    #[arg(
        long = "organization-invite-link-base",
        env = "ORGPLANE_ORGANIZATION_INVITE_LINK_BASE",
        default_value = INVITE_LINK_BASE
    )]
    pub invite_link_base: String,

    /// How recent a sign-in must be for sensitive actions (delete, undelete, ownership
    /// transfer, security policy changes; rule ID-6) in an organization whose security policy
    /// was never changed: the default policy's re-authentication age (rule ORG-16), in seconds.
    #[arg(
        long = "organization-step-up-max-age-secs",
        env = "ORGPLANE_ORGANIZATION_STEP_UP_MAX_AGE_SECS",
        default_value_t = STEP_UP_MAX_AGE_SECS
    )]
    pub step_up_max_age_secs: i64,

    /// How often the purge job looks for organizations past their purge time, in seconds.
    #[arg(
        long = "organization-purge-interval-secs",
        env = "ORGPLANE_ORGANIZATION_PURGE_INTERVAL_SECS",
        default_value_t = PURGE_INTERVAL_SECS
    )]
    pub purge_interval_secs: u64,

    /// The longest start-up waits for the identity event stream to catch up before reporting
    /// SERVING anyway (identity may be deployed later), in milliseconds.
    #[arg(
        long = "organization-ready-timeout-ms",
        env = "ORGPLANE_ORGANIZATION_READY_TIMEOUT_MS",
        default_value_t = READY_TIMEOUT_MS
    )]
    pub ready_timeout_ms: u64,

    /// A file of consumer mail domains to refuse as organization domains (rule ORG-14), in
    /// addition to the built-in list: one domain per line, `#` starts a comment.
    #[arg(
        long = "organization-consumer-mail-domains-file",
        env = "ORGPLANE_ORGANIZATION_CONSUMER_MAIL_DOMAINS_FILE"
    )]
    pub consumer_mail_domains_file: Option<std::path::PathBuf>,

    /// How long a registered domain may wait for its first verification before it expires
    /// (rule ORG-14), in days.
    #[arg(
        long = "organization-domain-verification-window-days",
        env = "ORGPLANE_ORGANIZATION_DOMAIN_VERIFICATION_WINDOW_DAYS",
        default_value_t = DOMAIN_VERIFICATION_WINDOW_DAYS
    )]
    pub domain_verification_window_days: i64,

    /// The first label of the DNS name that holds a domain's challenge TXT record
    /// (`<prefix>.<domain>`).
    #[arg(
        long = "organization-domain-challenge-prefix",
        env = "ORGPLANE_ORGANIZATION_DOMAIN_CHALLENGE_PREFIX",
        default_value = DOMAIN_CHALLENGE_PREFIX
    )]
    pub domain_challenge_prefix: String,

    /// The least time between two DNS checks of one domain (VerifyDomain), in seconds; 0 lets
    /// every call check.
    #[arg(
        long = "organization-domain-check-interval-secs",
        env = "ORGPLANE_ORGANIZATION_DOMAIN_CHECK_INTERVAL_SECS",
        default_value_t = DOMAIN_CHECK_INTERVAL_SECS
    )]
    pub domain_check_interval_secs: u64,

    /// The DNS servers (`ip:port`) that domain checks ask, in order; repeat the flag (or
    /// separate with commas) for several. Unset: the system's resolver configuration.
    #[arg(
        long = "organization-dns-server",
        env = "ORGPLANE_ORGANIZATION_DNS_SERVER",
        value_delimiter = ','
    )]
    pub dns_servers: Vec<std::net::SocketAddr>,

    /// How long one domain check's DNS lookup may take before it counts as LOOKUP_FAILED, in
    /// milliseconds.
    #[arg(
        long = "organization-dns-timeout-ms",
        env = "ORGPLANE_ORGANIZATION_DNS_TIMEOUT_MS",
        default_value_t = DNS_TIMEOUT_MS
    )]
    pub dns_timeout_ms: u64,

    /// The system default of the branding's display name (rule ORG-13): what organizations
    /// show when neither they nor their operator set one.
    #[arg(
        long = "organization-branding-display-name",
        env = "ORGPLANE_ORGANIZATION_BRANDING_DISPLAY_NAME",
        default_value = BRANDING_NAME
    )]
    pub branding_display_name: String,

    /// The system default of the branding's mail sender name (rule ORG-13): the sender name of
    /// invite mail when neither the organization nor its operator set one.
    #[arg(
        long = "organization-branding-mail-sender-name",
        env = "ORGPLANE_ORGANIZATION_BRANDING_MAIL_SENDER_NAME",
        default_value = BRANDING_NAME
    )]
    pub branding_mail_sender_name: String,

    /// The most open top-level accounts an organization may hold, pending imports included
    /// (rule ACC-1); closed accounts and subaccounts do not count.
    #[arg(
        long = "organization-max-accounts",
        env = "ORGPLANE_ORGANIZATION_MAX_ACCOUNTS",
        default_value_t = MAX_ACCOUNTS
    )]
    pub max_accounts: u64,

    /// One organization's own account limit instead of `--organization-max-accounts`, as
    /// `ORG_ID=N`; repeat the flag (or separate with commas) for several organizations.
    #[arg(
        long = "organization-max-accounts-override",
        env = "ORGPLANE_ORGANIZATION_MAX_ACCOUNTS_OVERRIDE",
        value_delimiter = ','
    )]
    pub max_accounts_overrides: Vec<AccountLimit>,

    /// The most open subaccounts one account may hold (rule ACC-4).
    #[arg(
        long = "organization-max-subaccounts",
        env = "ORGPLANE_ORGANIZATION_MAX_SUBACCOUNTS",
        default_value_t = MAX_SUBACCOUNTS
    )]
    pub max_subaccounts: u64,

    /// The most active workspaces an organization may hold (rule WS-1), as a merge (rule
    /// ORG-15) checks it: keep it equal to the workspace service's
    /// `--workspace-max-active-per-org` (default 100).
    #[arg(
        long = "organization-merge-max-active-workspaces",
        env = "ORGPLANE_ORGANIZATION_MERGE_MAX_ACTIVE_WORKSPACES",
        default_value_t = MERGE_MAX_ACTIVE_WORKSPACES
    )]
    pub merge_max_active_workspaces: u64,

    /// Whether UpdateMemberRole calls arriving while one is being written share its transaction
    /// (each in a savepoint, all answered after the one commit): `auto` (the default) groups
    /// them on both backends — on SQLite it replaces the busy handler's sleeps by a queue, on
    /// PostgreSQL one commit's flush serves many changes; `on` or `off` decides for both.
    #[arg(
        long = "organization-group-commit",
        env = "ORGPLANE_ORGANIZATION_GROUP_COMMIT",
        value_enum,
        default_value_t = GroupCommit::Auto
    )]
    pub group_commit: GroupCommit,

    /// Debugging and end-to-end tests only: runs this service's clock this many seconds ahead
    /// (purge times, invite expiry, step-up age), to reach a purge without waiting 7 days.
    #[arg(
        long = "organization-clock-offset-secs",
        env = "ORGPLANE_ORGANIZATION_CLOCK_OFFSET_SECS",
        default_value_t = 0,
        hide = true
    )]
    pub clock_offset_secs: i64,
}

impl Config {
    /// The account limit of `organization_id` (rule ACC-1): its override, else the default.
    pub fn max_accounts_of(&self, organization_id: &str) -> u64 {
        self.max_accounts_overrides
            .iter()
            .rev()
            .find(|o| o.organization_id == organization_id)
            .map_or(self.max_accounts, |o| o.max)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mail_url: MAIL_URL.to_owned(),
            mail_from: MAIL_FROM.to_owned(),
            invite_link_base: INVITE_LINK_BASE.to_owned(),
            step_up_max_age_secs: STEP_UP_MAX_AGE_SECS,
            purge_interval_secs: PURGE_INTERVAL_SECS,
            ready_timeout_ms: READY_TIMEOUT_MS,
            clock_offset_secs: 0,
            group_commit: GroupCommit::Auto,
            consumer_mail_domains_file: None,
            domain_verification_window_days: DOMAIN_VERIFICATION_WINDOW_DAYS,
            domain_challenge_prefix: DOMAIN_CHALLENGE_PREFIX.to_owned(),
            domain_check_interval_secs: DOMAIN_CHECK_INTERVAL_SECS,
            dns_servers: Vec::new(),
            dns_timeout_ms: DNS_TIMEOUT_MS,
            branding_display_name: BRANDING_NAME.to_owned(),
            branding_mail_sender_name: BRANDING_NAME.to_owned(),
            max_accounts: MAX_ACCOUNTS,
            max_accounts_overrides: Vec::new(),
            max_subaccounts: MAX_SUBACCOUNTS,
            merge_max_active_workspaces: MERGE_MAX_ACTIVE_WORKSPACES,
        }
    }
}

/// A clock running a fixed offset ahead of (or behind) another (`--organization-clock-offset-secs`).
#[derive(Debug)]
pub(crate) struct ShiftedClock {
    pub(crate) inner: SharedClock,
    pub(crate) offset: chrono::Duration,
}

impl Clock for ShiftedClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.now() + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acc_1_account_limit_overrides_parse_and_apply() {
        let c = Config {
            max_accounts_overrides: vec![
                "org_a=3".parse().unwrap(),
                " org_b = 50 ".parse().unwrap(),
            ],
            ..Config::default()
        };
        assert_eq!(c.max_accounts_of("org_a"), 3);
        assert_eq!(c.max_accounts_of("org_b"), 50);
        assert_eq!(c.max_accounts_of("org_c"), MAX_ACCOUNTS);
        assert!("org_a".parse::<AccountLimit>().is_err());
        assert!("=3".parse::<AccountLimit>().is_err());
        assert!("org_a=x".parse::<AccountLimit>().is_err());
    }

    #[test]
    fn the_clock_offset_shifts_the_runtime_clock() {
        let clock = ShiftedClock {
            inner: orgplane_platform::clock::system(),
            offset: chrono::Duration::days(8),
        };
        let ahead = clock.now() - chrono::Utc::now();
        assert!(ahead >= chrono::Duration::days(8) - chrono::Duration::seconds(5));
        assert!(ahead <= chrono::Duration::days(8) + chrono::Duration::seconds(5));
    }
}
