//! Identity's use cases, split by concern: [`signup`], [`mail_links`] (verification and reset
//! links), [`sessions`] (sign-in, refresh, sign-out), [`reauth`] (step-up, rule ID-6),
//! [`factors`] (second factors, rule ID-10), [`challenge`] (the MFA challenge, rule ID-11),
//! [`risk`] (sign-in risk signals, rule ID-12),
//! [`password_reset`], [`users`], [`admin`] (member credential resets, rule ID-8),
//! [`service_tokens`], [`api_keys`] (rule ID-7), SSO ([`sso_connections`], [`sso_changes`], [`sso_login`],
//! [`sso_enforcement`], rule ID-13), [`scim`] (provisioning, rule ID-14) and [`audit_log`]; [`standing`] resolves what a
//! caller may do in an organization. Each use case takes the [`Call`] and a plain command, owns
//! its transaction ([`orgplane_platform::events::WriteUnit`]) and answers store rows or plain
//! outcomes; the handlers in [`crate::api`] translate to and from the wire.

pub mod admin;
pub mod api_keys;
pub mod audit_log;
pub mod challenge;
pub mod factors;
pub mod mail_links;
pub mod passkeys;
pub mod password_reset;
pub mod reauth;
pub mod risk;
pub mod scim;
pub mod service_tokens;
pub mod sessions;
pub mod signup;
pub mod sso_accounts;
pub mod sso_changes;
pub mod sso_connections;
pub mod sso_enforcement;
pub mod sso_login;
pub mod standing;
pub mod users;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::auth::{Principal, UserPrincipal};
use orgplane_platform::clock::SharedClock;
use orgplane_platform::events::{ConsumerHandle, Outbox};
use orgplane_platform::host::CancellationToken;
use orgplane_platform::mail::Mailer;
use orgplane_platform::pagination::PageTokens;
use orgplane_platform::replica::RoleReplica;
use orgplane_platform::revocation::SessionRevocations;
use orgplane_platform::runtime::ServiceAccount;
use orgplane_platform::{ApiResult, Call};
use sea_orm::DatabaseConnection;

use crate::crypto::{PasswordHasherPool, Sealer};
use crate::domain::Error;
use crate::keys::KeyStore;
use crate::throttle::sign_in::{SignInBudgets, SignInLimits};
use crate::throttle::{Throttle, TrustedProxies};
use orgplane_platform::clients::workspace::WorkspaceClient;

/// Access-token lifetime (rule ID-4), shared with the verifiers' revocation window.
pub use orgplane_platform::auth::ACCESS_TOKEN_TTL_SECS;
/// Service-token lifetime.
pub const SERVICE_TOKEN_TTL_SECS: i64 = 5 * 60;
/// Refresh-token lifetime (each rotation starts a new one).
pub const REFRESH_TOKEN_TTL: chrono::Duration = chrono::Duration::days(30);
/// Absolute session lifetime.
pub const SESSION_TTL: chrono::Duration = chrono::Duration::days(90);
/// Lifetime of verification and reset links (rules ID-2, ID-8).
pub const MAIL_TOKEN_TTL: chrono::Duration = chrono::Duration::hours(24);
/// How long AuthenticateApiKey answers may be cached.
pub const API_KEY_CACHE_TTL: Duration = Duration::from_secs(10);
/// The `me` alias of user ids.
pub const ME: &str = "me";

/// Budgets of the throttles (rule ID-3).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Failed sign-ins per account per `login_window`.
    pub login_failures_per_account: u32,
    /// Failed sign-ins per peer address per `login_window`.
    pub login_failures_per_peer: u32,
    /// The window of those budgets, opened by its first failure (15 minutes by default).
    pub login_window: Duration,
    /// Sign-ups per peer address per hour.
    pub signups_per_peer: u32,
    /// Verification or reset mails per address per hour.
    pub mails_per_address: u32,
}

/// The throttles of rule ID-3: the sign-in budgets shared through the database, the others in
/// this replica's memory.
#[derive(Debug)]
pub struct Throttles {
    /// Failed sign-ins (passwords, second-factor codes) per account and per peer address,
    /// shared by every replica.
    pub sign_in: SignInBudgets,
    /// Sign-ups per peer address.
    pub signup_peer: Throttle,
    /// Mails per address.
    pub mail_address: Throttle,
    /// Mails per peer address.
    pub mail_peer: Throttle,
    /// Failed service-token requests per peer address.
    pub client_failures: Throttle,
    /// SSO sign-ins started per peer address (rule ID-13).
    pub sso_peer: Throttle,
}

impl Throttles {
    /// Builds the throttles from `limits`.
    pub fn new(limits: &Limits) -> Self {
        let hour = Duration::from_secs(3600);
        Self {
            sign_in: SignInBudgets::new(SignInLimits {
                per_peer: limits.login_failures_per_peer,
                per_account: limits.login_failures_per_account,
                window: limits.login_window,
            }),
            signup_peer: Throttle::new(limits.signups_per_peer, hour),
            mail_address: Throttle::new(limits.mails_per_address, hour),
            mail_peer: Throttle::new(limits.mails_per_address.saturating_mul(10), hour),
            client_failures: Throttle::new(10, Duration::from_secs(60)),
            sso_peer: Throttle::new(
                limits.login_failures_per_peer.saturating_mul(10),
                limits.login_window,
            ),
        }
    }
}

/// How often ended sign-in budget windows are deleted.
const SIGN_IN_BUDGET_SWEEP: Duration = Duration::from_secs(60);

/// Deletes ended sign-in budget windows every minute until `shutdown` (rule ID-3); every
/// replica runs it, which is harmless.
pub fn spawn_sign_in_budget_sweep(app: Arc<App>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SIGN_IN_BUDGET_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = app.throttles.sign_in.sweep(&app.db, app.now_ms()).await {
                        tracing::warn!(error = %e.message(), "sweeping sign-in budgets failed");
                    }
                }
            }
        }
    });
}

/// Where mailed links point and who sends them.
#[derive(Debug)]
pub struct MailSettings {
    /// The mail transport.
    pub mailer: Mailer,
    /// The sender.
    pub from: String,
    /// The public base URL of the links.
    pub public_url: String,
}

/// The identity service's use cases; shared by the handlers.
pub struct App {
    pub(crate) db: DatabaseConnection,
    pub(crate) outbox: Outbox,
    pub(crate) audit: AuditLogWriter,
    pub(crate) keys: KeyStore,
    pub(crate) replica: RoleReplica,
    pub(crate) org_events: ConsumerHandle,
    /// The ended sessions the auth layer of this process refuses (fed here, at commit).
    pub(crate) revocations: Arc<SessionRevocations>,
    pub(crate) hasher: PasswordHasherPool,
    pub(crate) mail: MailSettings,
    pub(crate) issuer: String,
    pub(crate) own_account: ServiceAccount,
    /// The configured service accounts by client id.
    pub(crate) service_accounts: HashMap<String, crate::config::ConfiguredAccount>,
    pub(crate) clock: SharedClock,
    pub(crate) page_tokens: PageTokens,
    pub(crate) step_up: chrono::Duration,
    pub(crate) throttles: Throttles,
    /// Whose `x-forwarded-for` names the peer address (rule ID-3).
    pub(crate) trusted_proxies: TrustedProxies,
    /// The workspace service, asked whether a workspace key's workspace is live (rule ID-7).
    pub(crate) workspaces: WorkspaceClient,
    /// The WebAuthn relying party (rule ID-10); `None` when passkeys are not configured.
    pub(crate) passkeys: Option<passkeys::Passkeys>,
    /// Seals second-factor secrets at rest (the signing keys' sealing key).
    pub(crate) sealer: Sealer,
    /// The issuer named in `otpauth://` URIs (rule ID-10).
    pub(crate) totp_issuer: String,
    /// The OpenID Connect relying party of SSO (rule ID-13).
    pub(crate) oidc: Arc<crate::oidc::OidcClient>,
    /// The organization service: domain lookups at sign-up (rule ORG-14), JIT membership
    /// (rule ID-13).
    pub(crate) organizations: orgplane_platform::clients::organization::OrganizationClient,
    /// Held by a SCIM provisioning delivery pass (rule ID-14): one at a time per process, so
    /// one user's owed changes leave in order.
    pub(crate) scim_delivery: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// A new id with `prefix` (`user_…`, `sess_…`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A count for a response field.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `call` as made by user `user_id` themselves: what the audit log records for account actions
/// taken without a token (sign-up, sign-in, mail links), which act on that user's behalf.
fn as_user(call: &Call, user_id: &str) -> Call {
    Call {
        principal: Arc::new(Principal::User(UserPrincipal {
            user_id: user_id.to_owned(),
            session_id: String::new(),
            auth_time: 0,
            token_id: String::new(),
            sign_in: Default::default(),
        })),
        ..call.clone()
    }
}

impl App {
    /// The database (the audit listing reads it).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The audit log of this service.
    pub fn audit(&self) -> &AuditLogWriter {
        &self.audit
    }

    /// The page-token codec.
    pub fn page_tokens(&self) -> &PageTokens {
        &self.page_tokens
    }

    /// The signing keys.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The token issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The organization-events consumer.
    pub fn org_events(&self) -> &ConsumerHandle {
        &self.org_events
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// The client address the per-address budgets count for `call` (rule ID-3): the peer, or
    /// the client a trusted proxy forwarded.
    fn peer_key(&self, call: &Call) -> String {
        self.trusted_proxies
            .client_address(call.peer, call.forwarded_for.as_deref())
            .map(|p| p.to_string())
            .unwrap_or_else(|| "unknown".to_owned())
    }

    /// UNAVAILABLE until the org-role replica has caught up with the organization service once:
    /// decisions that depend on roles or organization state must not come from an empty
    /// replica. (Identity itself reports SERVING without waiting, since every other service,
    /// the organization service included, needs its keys and tokens to start.)
    fn require_roles_synced(&self) -> ApiResult<()> {
        if self.org_events.is_caught_up() {
            return Ok(());
        }
        Err(Error::RolesNotSynced.into())
    }
}
