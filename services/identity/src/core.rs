//! The identity domain: accounts, sessions and tokens, mail links, authorization against the
//! org-role replica, and API keys. Handlers in [`crate::grpc`] decode requests and call these
//! methods; everything here speaks in plain values and [`ApiError`]s.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use orgplane_platform::audit::{AuditLogWriter, Entry};
use orgplane_platform::auth::{
    ApiKeyKind as PrincipalKeyKind, Claims, Principal, SERVICE_AUDIENCE, ServiceTokenSource,
    USER_AUDIENCE, UserPrincipal,
};
use orgplane_platform::clock::SharedClock;
use orgplane_platform::context::RequestContext;
use orgplane_platform::events::{ConsumerHandle, Outbox};
use orgplane_platform::mail::{Mail, Mailer};
use orgplane_platform::pagination::{PageTokens, page_size};
use orgplane_platform::replica::RoleReplica;
use orgplane_platform::revocation::{self, SessionRevocations};
use orgplane_platform::roles::{OrgAction, admin_key_allows, allows};
use orgplane_platform::runtime::ServiceAccount;
use orgplane_platform::{ApiError, ApiResult};
use orgplane_proto::audit::v1::{AuditEvent, AuditEventFilter};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{
    ApiKeyCreated, ApiKeyStatusChanged, SessionsRevoked, UserDeleted, UserEmailVerified,
};
use orgplane_proto::identity::v1::{
    AccountType, ApiKey, ApiKeyKind, ApiKeyStatus, SessionTokens, User,
};
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;
use orgplane_proto::workspace::v1::{
    CheckAccessRequest, GetWorkspaceRequest, Permission, WorkspaceState, check_access_request,
};
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, ConnectionTrait, DatabaseConnection, QueryOrder, QuerySelect, Set};
use tonic::transport::Channel;

use crate::crypto::{self, PasswordHasherPool, sha256_hex};
use crate::entity::{api_key, mail_token, mfa_factor, refresh_token, session, user};
use crate::keys::KeyStore;
use crate::throttle::{KnownAddresses, Throttle, TrustedProxies};

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

const VERIFY: &str = "verify";
const RESET: &str = "reset";
const MAX_TOKEN_INPUT: usize = 512;

/// Budgets of the throttles (rule ID-3).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Failed sign-ins per account per `login_window`.
    pub login_failures_per_account: u32,
    /// Failed sign-ins per peer address per `login_window`.
    pub login_failures_per_peer: u32,
    /// How long a failed sign-in counts against those budgets (15 minutes by default).
    pub login_window: Duration,
    /// Sign-ups per peer address per hour.
    pub signups_per_peer: u32,
    /// Verification or reset mails per address per hour.
    pub mails_per_address: u32,
}

/// The identity domain; shared by the handlers and the event consumer.
pub struct Core {
    pub(crate) db: DatabaseConnection,
    pub(crate) outbox: Outbox,
    pub(crate) audit: AuditLogWriter,
    pub(crate) keys: KeyStore,
    pub(crate) replica: RoleReplica,
    pub(crate) org_events: ConsumerHandle,
    /// The ended sessions the auth layer of this process refuses (fed here, at commit).
    pub(crate) revocations: Arc<SessionRevocations>,
    pub(crate) hasher: PasswordHasherPool,
    pub(crate) mailer: Mailer,
    pub(crate) mail_from: String,
    pub(crate) public_url: String,
    pub(crate) issuer: String,
    pub(crate) own_account: ServiceAccount,
    /// client id → hex SHA-256 of its secret.
    pub(crate) service_accounts: HashMap<String, String>,
    pub(crate) clock: SharedClock,
    pub(crate) page_tokens: PageTokens,
    pub(crate) step_up: chrono::Duration,
    pub(crate) login_account: Throttle,
    pub(crate) login_peer: Throttle,
    pub(crate) signup_peer: Throttle,
    pub(crate) mail_address: Throttle,
    pub(crate) mail_peer: Throttle,
    pub(crate) client_failures: Throttle,
    /// Whose `x-forwarded-for` names the peer address (rule ID-3).
    pub(crate) trusted_proxies: TrustedProxies,
    /// Where each account signed in from lately: those addresses keep a budget of their own.
    pub(crate) known_addresses: KnownAddresses,
    /// The workspace service, asked whether a workspace key's workspace is live (rule ID-7).
    pub(crate) workspaces: Channel,
    /// This service's token for those calls.
    pub(crate) service_tokens: Arc<dyn ServiceTokenSource>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

impl Core {
    /// Builds the throttles from `limits`.
    pub(crate) fn throttles(limits: &Limits) -> [Throttle; 6] {
        let hour = Duration::from_secs(3600);
        [
            Throttle::new(limits.login_failures_per_account, limits.login_window),
            Throttle::new(limits.login_failures_per_peer, limits.login_window),
            Throttle::new(limits.signups_per_peer, hour),
            Throttle::new(limits.mails_per_address, hour),
            Throttle::new(limits.mails_per_address.saturating_mul(10), hour),
            Throttle::new(10, Duration::from_secs(60)),
        ]
    }
}

/// Who sent a request and from where.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated principal.
    pub principal: Principal,
    /// Request id for audit and events.
    pub ctx: RequestContext,
    /// The peer address, when known.
    pub peer: Option<IpAddr>,
}

impl Caller {
    fn peer_key(&self) -> String {
        self.peer
            .map(|p| p.to_string())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

fn self_principal(user_id: &str) -> Principal {
    Principal::User(UserPrincipal {
        user_id: user_id.to_owned(),
        session_id: String::new(),
        auth_time: 0,
        token_id: String::new(),
    })
}

fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn ts_secs(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

/// The proto form of a user row.
pub fn user_to_proto(u: &user::Model) -> User {
    User {
        id: u.id.clone(),
        email: u.email.clone(),
        email_verified: u.email_verified,
        display_name: u.display_name.clone(),
        account_type: u.account_type,
        create_time: Some(ts(u.create_time_ms)),
        update_time: Some(ts(u.update_time_ms)),
        etag: format!("v{}", u.version),
    }
}

/// The proto form of an API-key row (never its secret).
pub fn key_to_proto(k: &api_key::Model) -> ApiKey {
    ApiKey {
        id: k.id.clone(),
        organization_id: k.organization_id.clone(),
        workspace_id: k.workspace_id.clone(),
        kind: k.kind,
        name: k.name.clone(),
        status: k.status,
        partial_key_hint: k.hint.clone(),
        creator_user_id: k.creator_user_id.clone(),
        create_time: Some(ts(k.create_time_ms)),
        update_time: Some(ts(k.update_time_ms)),
        last_used_time: k.last_used_time_ms.map(ts),
        etag: format!("v{}", k.version),
    }
}

fn user_audit(u: &user::Model) -> serde_json::Value {
    serde_json::json!({
        "email": u.email,
        "email_verified": u.email_verified,
        "display_name": u.display_name,
        "account_type": u.account_type,
    })
}

fn key_audit(k: &api_key::Model) -> serde_json::Value {
    serde_json::json!({
        "name": k.name,
        "kind": k.kind,
        "status": k.status,
        "workspace_id": k.workspace_id,
        "hint": k.hint,
    })
}

/// Normalizes an email address (trimmed, domain lower-cased) and validates it; returns the
/// address and its lower-case key.
pub fn normalize_email(field: &str, raw: &str) -> ApiResult<(String, String)> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid_argument(field, "required"));
    }
    let bad = || ApiError::invalid_argument(field, "not a valid email address");
    if trimmed.len() > 254 || trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = trimmed.rsplit_once('@').ok_or_else(bad)?;
    let domain = domain.to_ascii_lowercase();
    if local.is_empty()
        || local.len() > 64
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    let email = format!("{local}@{domain}");
    email.parse::<lettre::Address>().map_err(|_| bad())?;
    let key = email.to_lowercase();
    Ok((email, key))
}

fn check_display_name(field: &str, name: &str) -> ApiResult<String> {
    let trimmed = name.trim();
    let len = trimmed.chars().count();
    if len == 0 {
        return Err(ApiError::invalid_argument(field, "required"));
    }
    if len > 100 {
        return Err(ApiError::invalid_argument(field, "at most 100 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid_argument(field, "no control characters"));
    }
    Ok(trimmed.to_owned())
}

fn check_token_input(field: &str, token: &str) -> ApiResult<()> {
    if token.is_empty() {
        return Err(ApiError::invalid_argument(field, "required"));
    }
    if token.len() > MAX_TOKEN_INPUT || !token.is_ascii() {
        return Err(ApiError::invalid_argument(field, "malformed"));
    }
    Ok(())
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthenticated("INVALID_CREDENTIALS", "invalid email or password")
}

fn refresh_invalid() -> ApiError {
    ApiError::unauthenticated(
        "REFRESH_TOKEN_INVALID",
        "the refresh token is invalid or expired; sign in again",
    )
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// What the caller may do in an organization, as resolved from the replica.
enum OrgStanding {
    /// A member with this role.
    Member(OrgRole),
    /// An admin API key of this organization.
    AdminKey,
    /// A service principal.
    Service,
}

impl Core {
    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// Waits until the org-role replica has applied `revision` (header
    /// `x-min-organization-revision`), or UNAVAILABLE `REVISION_NOT_YET_APPLIED` (the shared
    /// consumer's answer, the same in every service).
    pub async fn wait_for_organization_revision(
        &self,
        revision: i64,
        timeout: Duration,
    ) -> ApiResult<()> {
        self.org_events
            .wait_for(revision, timeout)
            .await
            .map(|_| ())
    }

    /// UNAVAILABLE until the org-role replica has caught up with the organization service once:
    /// decisions that depend on roles or organization state must not come from an empty
    /// replica. (Identity itself reports SERVING without waiting, since every other service,
    /// the organization service included, needs its keys and tokens to start.)
    fn require_roles_synced(&self) -> ApiResult<()> {
        if self.org_events.is_caught_up() {
            return Ok(());
        }
        Err(ApiError::unavailable(
            "ROLES_NOT_SYNCED",
            "organization roles are still being synchronized; retry shortly",
        )
        .retry_after(Duration::from_secs(1)))
    }

    // ----- accounts -------------------------------------------------------------------------

    /// SignUp.
    pub async fn sign_up(
        &self,
        caller: &Caller,
        email: &str,
        password: &str,
        display_name: &str,
        account_type: i32,
        request_id: &str,
    ) -> ApiResult<user::Model> {
        let mut violations: Vec<ApiError> = Vec::new();
        let email = normalize_email("email", email)
            .map_err(|e| violations.push(e))
            .ok();
        let _ = crypto::check_password_policy("password", password).map_err(|e| violations.push(e));
        let name = check_display_name("display_name", display_name)
            .map_err(|e| violations.push(e))
            .ok();
        let kind = AccountType::try_from(account_type).unwrap_or(AccountType::Unspecified);
        if kind == AccountType::Unspecified {
            violations.push(ApiError::invalid_argument(
                "account_type",
                "ACCOUNT_TYPE_BUSINESS or ACCOUNT_TYPE_PERSONAL required",
            ));
        }
        if request_id.len() > 128 {
            violations.push(ApiError::invalid_argument(
                "request_id",
                "at most 128 characters",
            ));
        }
        if let Some(first) = violations.first() {
            return Err(merge_violations(first, &violations));
        }
        let (Some((email, email_key)), Some(name)) = (email, name) else {
            return Err(ApiError::invalid_argument("email", "required"));
        };
        if let Some(first) = self.signed_up_by(request_id, &email_key).await? {
            return Ok(first);
        }
        self.signup_peer.hit(&caller.peer_key())?;
        if user::Entity::find()
            .filter(user::Column::EmailKey.eq(&email_key))
            .one(&self.db)
            .await?
            .is_some()
        {
            // A copy of this request may have created the account meanwhile (AIP-155).
            return match self.signed_up_by(request_id, &email_key).await? {
                Some(first) => Ok(first),
                None => Err(email_taken()),
            };
        }
        let hash = self.hasher.hash(password).await?;
        let now = self.now_ms();
        let id = new_id("user");
        let row = user::Model {
            id: id.clone(),
            email: email.clone(),
            email_key,
            email_verified: false,
            display_name: name,
            account_type: kind as i32,
            password_hash: hash,
            version: 1,
            create_time_ms: now,
            update_time_ms: now,
            signup_request_id: (!request_id.is_empty()).then(|| request_id.to_owned()),
        };
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let inserted = user::ActiveModel::from(row.clone()).insert(&txn).await;
        if let Err(e) = inserted {
            if !orgplane_platform::db::is_unique_violation(&e) {
                return Err(e.into());
            }
            drop(txn);
            return match self.signed_up_by(request_id, &row.email_key).await? {
                Some(first) => Ok(first),
                None => Err(email_taken()),
            };
        }
        let token = self.new_mail_token(&txn, &id, VERIFY, &email).await?;
        self.audit
            .record(
                &txn,
                &self_principal(&id),
                &caller.ctx,
                Entry::new("", "user.create", "user", &id)
                    .with_change(None, Some(user_audit(&row))),
            )
            .await?;
        txn.commit().await?;
        self.send_link(&email, "Verify your email address", "verify-email", &token)
            .await
            .unwrap_or_else(
                |e| tracing::warn!(user_id = %id, error = %e, "verification mail not sent"),
            );
        Ok(row)
    }

    /// The account an earlier SignUp with `request_id` created for `email_key`, if any: a retried
    /// or duplicated SignUp answers with it instead of EMAIL_ALREADY_REGISTERED.
    async fn signed_up_by(
        &self,
        request_id: &str,
        email_key: &str,
    ) -> ApiResult<Option<user::Model>> {
        if request_id.is_empty() {
            return Ok(None);
        }
        Ok(user::Entity::find()
            .filter(user::Column::SignupRequestId.eq(request_id))
            .one(&self.db)
            .await?
            .filter(|u| u.email_key == email_key))
    }

    async fn new_mail_token<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        purpose: &str,
        email: &str,
    ) -> ApiResult<String> {
        mail_token::Entity::update_many()
            .col_expr(mail_token::Column::Used, Expr::value(true))
            .filter(mail_token::Column::UserId.eq(user_id))
            .filter(mail_token::Column::Purpose.eq(purpose))
            .filter(mail_token::Column::Used.eq(false))
            .exec(txn)
            .await?;
        let token = crypto::random_token("");
        let now = self.now_ms();
        mail_token::ActiveModel {
            token_hash: Set(sha256_hex(&token)),
            user_id: Set(user_id.to_owned()),
            purpose: Set(purpose.to_owned()),
            email: Set(email.to_owned()),
            create_time_ms: Set(now),
            expire_time_ms: Set(now + MAIL_TOKEN_TTL.num_milliseconds()),
            used: Set(false),
        }
        .insert(txn)
        .await?;
        Ok(token)
    }

    async fn send_link(&self, to: &str, subject: &str, path: &str, token: &str) -> ApiResult<()> {
        let link = format!(
            "{}/{path}?token={token}",
            self.public_url.trim_end_matches('/')
        );
        let body = format!(
            "Hello,\n\nopen this link within 24 hours:\n\n{link}\n\nIf you did not ask for it, ignore this message.\n\n-- Orgplane\n"
        );
        self.mailer
            .send(
                &self.mail_from,
                Mail {
                    to: to.to_owned(),
                    subject: subject.to_owned(),
                    body,
                },
            )
            .await
    }

    /// Looks up an unused mail token; the error reasons are `<prefix>_INVALID` / `_EXPIRED`.
    async fn find_mail_token(
        &self,
        token: &str,
        purpose: &str,
        reason_prefix: &str,
    ) -> ApiResult<mail_token::Model> {
        let invalid = || {
            ApiError::failed_precondition(
                &format!("{reason_prefix}_INVALID"),
                "token",
                "the link is unknown or was already used",
            )
        };
        let row = mail_token::Entity::find_by_id(sha256_hex(token))
            .one(&self.db)
            .await?
            .filter(|t| t.purpose == purpose && !t.used)
            .ok_or_else(invalid)?;
        if row.expire_time_ms <= self.now_ms() {
            return Err(ApiError::failed_precondition(
                &format!("{reason_prefix}_EXPIRED"),
                "token",
                "the link has expired; ask for a new one",
            ));
        }
        Ok(row)
    }

    async fn consume_mail_token<C: ConnectionTrait>(
        &self,
        txn: &C,
        row: &mail_token::Model,
        reason: &str,
    ) -> ApiResult<()> {
        let done = mail_token::Entity::update_many()
            .col_expr(mail_token::Column::Used, Expr::value(true))
            .filter(mail_token::Column::TokenHash.eq(&row.token_hash))
            .filter(mail_token::Column::Used.eq(false))
            .exec(txn)
            .await?;
        if done.rows_affected != 1 {
            return Err(ApiError::failed_precondition(
                reason,
                "token",
                "the link is unknown or was already used",
            ));
        }
        Ok(())
    }

    /// VerifyEmail: returns the user and the revision of `UserEmailVerified`.
    pub async fn verify_email(
        &self,
        caller: &Caller,
        token: &str,
    ) -> ApiResult<(user::Model, i64)> {
        check_token_input("token", token)?;
        let row = self
            .find_mail_token(token, VERIFY, "VERIFICATION_TOKEN")
            .await?;
        let invalid = || {
            ApiError::failed_precondition(
                "VERIFICATION_TOKEN_INVALID",
                "token",
                "the link is unknown or was already used",
            )
        };
        let before = user::Entity::find_by_id(row.user_id.clone())
            .one(&self.db)
            .await?
            .filter(|u| u.email == row.email)
            .ok_or_else(invalid)?;
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        self.consume_mail_token(&txn, &row, "VERIFICATION_TOKEN_INVALID")
            .await?;
        let mut after = before.clone();
        after.email_verified = true;
        after.version += 1;
        after.update_time_ms = self.now_ms();
        let mut am: user::ActiveModel = before.clone().into();
        am.email_verified = Set(true);
        am.version = Set(after.version);
        am.update_time_ms = Set(after.update_time_ms);
        am.update(&txn).await?;
        self.audit
            .record(
                &txn,
                &self_principal(&before.id),
                &caller.ctx,
                Entry::new("", "user.verify_email", "user", &before.id)
                    .with_change(Some(user_audit(&before)), Some(user_audit(&after))),
            )
            .await?;
        let revision = self
            .outbox
            .append(
                &txn,
                Payload::UserEmailVerified(UserEmailVerified {
                    user_id: after.id.clone(),
                    email: after.email.clone(),
                }),
                &caller.ctx.request_id,
            )
            .await?;
        txn.commit().await?;
        self.outbox.committed(revision);
        Ok((after, revision))
    }

    /// ResendVerification and RequestPasswordReset: mails a link when the account exists (and,
    /// for verification, is unverified); answers the same either way.
    pub async fn mail_link(&self, caller: &Caller, email: &str, reset: bool) -> ApiResult<()> {
        let (_, key) = normalize_email("email", email)?;
        self.mail_peer.hit(&caller.peer_key())?;
        self.mail_address.hit(&key)?;
        let Some(u) = user::Entity::find()
            .filter(user::Column::EmailKey.eq(&key))
            .one(&self.db)
            .await?
        else {
            return Ok(());
        };
        if !reset && u.email_verified {
            return Ok(());
        }
        let (purpose, action, subject, path) = if reset {
            (
                RESET,
                "user.request_password_reset",
                "Reset your password",
                "reset-password",
            )
        } else {
            (
                VERIFY,
                "user.resend_verification",
                "Verify your email address",
                "verify-email",
            )
        };
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let token = self.new_mail_token(&txn, &u.id, purpose, &u.email).await?;
        self.audit
            .record(
                &txn,
                &caller.principal,
                &caller.ctx,
                Entry::new("", action, "user", &u.id),
            )
            .await?;
        txn.commit().await?;
        if let Err(e) = self.send_link(&u.email, subject, path, &token).await {
            tracing::warn!(user_id = %u.id, error = %e, "mail not sent");
        }
        Ok(())
    }

    /// ResetPassword: returns the number of sessions ended.
    pub async fn reset_password(
        &self,
        caller: &Caller,
        token: &str,
        new_password: &str,
    ) -> ApiResult<i32> {
        check_token_input("token", token)?;
        crypto::check_password_policy("new_password", new_password)?;
        let row = self
            .find_mail_token(token, RESET, "PASSWORD_RESET_TOKEN")
            .await?;
        let u = user::Entity::find_by_id(row.user_id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| {
                ApiError::failed_precondition(
                    "PASSWORD_RESET_TOKEN_INVALID",
                    "token",
                    "the link is unknown or was already used",
                )
            })?;
        let hash = self.hasher.hash(new_password).await?;
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        self.consume_mail_token(&txn, &row, "PASSWORD_RESET_TOKEN_INVALID")
            .await?;
        let mut am: user::ActiveModel = u.clone().into();
        am.password_hash = Set(hash);
        am.version = Set(u.version + 1);
        am.update_time_ms = Set(self.now_ms());
        am.update(&txn).await?;
        let ended = self.revoke_sessions(&txn, &u.id, None).await?;
        self.audit
            .record(
                &txn,
                &self_principal(&u.id),
                &caller.ctx,
                Entry::new("", "user.reset_password", "user", &u.id),
            )
            .await?;
        let count = count(&ended);
        let published = self
            .publish_revoked(&txn, &u.id, ended, &caller.ctx.request_id)
            .await?;
        txn.commit().await?;
        self.announce_revoked(published);
        self.login_account.clear(&u.email_key);
        Ok(count)
    }

    // ----- sessions -------------------------------------------------------------------------

    /// The ids of the user's sessions not yet ended (all, or only `only`).
    async fn active_sessions<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        only: Option<&str>,
    ) -> ApiResult<Vec<String>> {
        let mut q = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::RevokedTimeMs.is_null());
        if let Some(id) = only {
            q = q.filter(session::Column::Id.eq(id));
        }
        Ok(q.into_tuple().all(txn).await?)
    }

    /// Ends the user's sessions (all, or only `only`); returns the ids of those that were still
    /// active, for [`Self::publish_revoked`].
    async fn revoke_sessions<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        only: Option<&str>,
    ) -> ApiResult<Vec<String>> {
        let ended = self.active_sessions(txn, user_id, only).await?;
        // By id: a session started concurrently is not ended by a revocation it did not see.
        for chunk in ended.chunks(500) {
            session::Entity::update_many()
                .col_expr(session::Column::RevokedTimeMs, Expr::value(self.now_ms()))
                .filter(session::Column::Id.is_in(chunk.iter().cloned()))
                .filter(session::Column::RevokedTimeMs.is_null())
                .exec(txn)
                .await?;
        }
        let mut del =
            refresh_token::Entity::delete_many().filter(refresh_token::Column::UserId.eq(user_id));
        if let Some(id) = only {
            del = del.filter(refresh_token::Column::SessionId.eq(id));
        } else {
            // Keep nothing for a user whose sessions all ended.
        }
        // Rotated tokens of a revoked session are kept so that reuse is still recognised;
        // unrotated ones are useless once the session ended.
        del.filter(refresh_token::Column::Rotated.eq(false))
            .exec(txn)
            .await?;
        Ok(ended)
    }

    /// Records the end of `session_ids` for every verifier (rule ID-4): revocation rows and
    /// `SessionsRevoked`, in `txn`, the transaction that ended them. Call it after the
    /// transaction's other writes; pass the result to [`Self::announce_revoked`] after the commit.
    async fn publish_revoked<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        session_ids: Vec<String>,
        request_id: &str,
    ) -> ApiResult<Option<(i64, SessionsRevoked)>> {
        if session_ids.is_empty() {
            return Ok(None);
        }
        let event = revocation::sessions_revoked(user_id, session_ids);
        revocation::record(txn, &event).await?;
        let revision = self
            .outbox
            .append(txn, Payload::SessionsRevoked(event.clone()), request_id)
            .await?;
        Ok(Some((revision, event)))
    }

    /// After the commit of [`Self::publish_revoked`]'s transaction: this process refuses the
    /// sessions' tokens at once, and watchers wake.
    fn announce_revoked(&self, published: Option<(i64, SessionsRevoked)>) {
        if let Some((revision, event)) = published {
            self.revocations.remember(&event);
            self.outbox.committed(revision);
        }
    }

    async fn issue_refresh<C: ConnectionTrait>(
        &self,
        txn: &C,
        s: &session::Model,
    ) -> ApiResult<(String, i64)> {
        let token = crypto::random_token("opr_");
        let now = self.now_ms();
        let expire = (now + REFRESH_TOKEN_TTL.num_milliseconds()).min(s.expire_time_ms);
        refresh_token::ActiveModel {
            token_hash: Set(sha256_hex(&token)),
            session_id: Set(s.id.clone()),
            user_id: Set(s.user_id.clone()),
            create_time_ms: Set(now),
            expire_time_ms: Set(expire),
            rotated: Set(false),
        }
        .insert(txn)
        .await?;
        Ok((token, expire))
    }

    fn access_token(&self, s: &session::Model) -> ApiResult<(String, i64)> {
        let now = chrono::Utc::now().timestamp();
        let exp = now + ACCESS_TOKEN_TTL_SECS;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: s.user_id.clone(),
            aud: USER_AUDIENCE.to_owned(),
            exp,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            auth_time: Some(s.auth_time),
            sid: Some(s.id.clone()),
        };
        Ok((self.keys.signer().sign(&claims)?, exp))
    }

    async fn tokens_for<C: ConnectionTrait>(
        &self,
        txn: &C,
        s: &session::Model,
    ) -> ApiResult<SessionTokens> {
        let (refresh, refresh_exp) = self.issue_refresh(txn, s).await?;
        let (access, access_exp) = self.access_token(s)?;
        Ok(SessionTokens {
            access_token: access,
            access_token_expire_time: Some(ts_secs(access_exp)),
            refresh_token: refresh,
            refresh_token_expire_time: Some(ts(refresh_exp)),
            session_id: s.id.clone(),
        })
    }

    /// Takes one attempt from the peer's and the account's sign-in budgets before the password
    /// is checked (rule ID-3): attempts in flight count, so that a burst of concurrent guesses
    /// cannot all pass the check before the first failure is recorded. From an address the
    /// account signed in from lately, the account's budget is that address's own, so that
    /// guesses from elsewhere do not lock the owner out. A successful sign-in gives the attempts
    /// back ([`Self::login_succeeded`]).
    fn check_login_budget(&self, caller: &Caller, account: &str) -> ApiResult<()> {
        let peer = caller.peer_key();
        self.login_peer.hit(&peer)?;
        if let Err(e) = self.login_account.hit(&self.account_budget(account, &peer)) {
            self.login_peer.release(&peer);
            return Err(e);
        }
        Ok(())
    }

    /// The key of `account`'s sign-in budget for attempts from `peer`.
    fn account_budget(&self, account: &str, peer: &str) -> String {
        if self.known_addresses.contains(account, peer) {
            format!("{account} from {peer}")
        } else {
            account.to_owned()
        }
    }

    /// Gives back the attempts of the budget the sign-in used (so an owner signing in from a
    /// known address does not refill the budget that strangers share), and remembers the
    /// address.
    fn login_succeeded(&self, caller: &Caller, account: &str) {
        let peer = caller.peer_key();
        self.login_peer.release(&peer);
        self.login_account
            .clear(&self.account_budget(account, &peer));
        self.known_addresses.remember(account, &peer);
    }

    /// Login.
    pub async fn login(
        &self,
        caller: &Caller,
        email: &str,
        password: &str,
    ) -> ApiResult<(SessionTokens, user::Model)> {
        if email.trim().is_empty() {
            return Err(ApiError::invalid_argument("email", "required"));
        }
        if password.is_empty() {
            return Err(ApiError::invalid_argument("password", "required"));
        }
        let key = normalize_email("email", email)
            .map(|(_, k)| k)
            .unwrap_or_else(|_| email.trim().to_lowercase());
        self.check_login_budget(caller, &key)?;
        let found = user::Entity::find()
            .filter(user::Column::EmailKey.eq(&key))
            .one(&self.db)
            .await?;
        let hash = found
            .as_ref()
            .map(|u| u.password_hash.as_str())
            .unwrap_or("");
        // Oversized passwords are never hashed; they cannot be right.
        let ok = if password.len() > crypto::MAX_PASSWORD_BYTES {
            false
        } else {
            self.hasher.verify(password, hash).await?
        };
        let Some(u) = found.filter(|_| ok) else {
            return Err(invalid_credentials());
        };
        self.login_succeeded(caller, &key);
        let now = self.clock.now();
        let s = session::Model {
            id: new_id("sess"),
            user_id: u.id.clone(),
            auth_time: chrono::Utc::now().timestamp(),
            create_time_ms: now.timestamp_millis(),
            expire_time_ms: (now + SESSION_TTL).timestamp_millis(),
            revoked_time_ms: None,
        };
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        session::ActiveModel::from(s.clone()).insert(&txn).await?;
        let tokens = self.tokens_for(&txn, &s).await?;
        self.audit
            .record(
                &txn,
                &self_principal(&u.id),
                &caller.ctx,
                Entry::new("", "session.create", "session", &s.id),
            )
            .await?;
        txn.commit().await?;
        Ok((tokens, u))
    }

    /// Refresh.
    pub async fn refresh(&self, caller: &Caller, token: &str) -> ApiResult<SessionTokens> {
        check_token_input("refresh_token", token)?;
        let hash = sha256_hex(token);
        let row = refresh_token::Entity::find_by_id(hash.clone())
            .one(&self.db)
            .await?
            .ok_or_else(refresh_invalid)?;
        if row.rotated {
            return Err(self.refresh_reused(caller, &row).await);
        }
        let now = self.now_ms();
        if row.expire_time_ms <= now {
            return Err(refresh_invalid());
        }
        let s = session::Entity::find_by_id(row.session_id.clone())
            .one(&self.db)
            .await?
            .filter(|s| s.revoked_time_ms.is_none() && s.expire_time_ms > now)
            .ok_or_else(refresh_invalid)?;
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let rotated = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::Rotated, Expr::value(true))
            .filter(refresh_token::Column::TokenHash.eq(&hash))
            .filter(refresh_token::Column::Rotated.eq(false))
            .exec(&txn)
            .await?;
        if rotated.rows_affected != 1 {
            txn.rollback().await?;
            return Err(self.refresh_reused(caller, &row).await);
        }
        let tokens = self.tokens_for(&txn, &s).await?;
        self.audit
            .record(
                &txn,
                &self_principal(&s.user_id),
                &caller.ctx,
                Entry::new("", "session.refresh", "session", &s.id),
            )
            .await?;
        txn.commit().await?;
        Ok(tokens)
    }

    /// A rotated refresh token came back: end its session (rule ID-4).
    async fn refresh_reused(&self, caller: &Caller, row: &refresh_token::Model) -> ApiError {
        let revoke = async {
            let txn = orgplane_platform::db::begin_write(&self.db).await?;
            let ended = self
                .revoke_sessions(&txn, &row.user_id, Some(&row.session_id))
                .await?;
            self.audit
                .record(
                    &txn,
                    &caller.principal,
                    &caller.ctx,
                    Entry::new("", "session.revoke_on_reuse", "session", &row.session_id),
                )
                .await?;
            let published = self
                .publish_revoked(&txn, &row.user_id, ended, &caller.ctx.request_id)
                .await?;
            txn.commit().await?;
            self.announce_revoked(published);
            Ok::<(), ApiError>(())
        };
        if let Err(e) = revoke.await {
            return e;
        }
        tracing::warn!(session_id = %row.session_id, "refresh token reused; session revoked");
        ApiError::unauthenticated(
            "REFRESH_TOKEN_REUSED",
            "the refresh token was already used; the session has ended, sign in again",
        )
    }

    /// Logout: returns the number of sessions ended.
    pub async fn logout(&self, caller: &Caller, refresh: &str, all: bool) -> ApiResult<i32> {
        let (user_id, session_id) = if refresh.is_empty() {
            let u = caller.principal.require_user()?;
            (u.user_id.clone(), u.session_id.clone())
        } else {
            check_token_input("refresh_token", refresh)?;
            let row = refresh_token::Entity::find_by_id(sha256_hex(refresh))
                .one(&self.db)
                .await?
                .ok_or_else(refresh_invalid)?;
            (row.user_id, row.session_id)
        };
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let ended = self
            .revoke_sessions(&txn, &user_id, (!all).then_some(session_id.as_str()))
            .await?;
        self.audit
            .record(
                &txn,
                &self_principal(&user_id),
                &caller.ctx,
                Entry::new(
                    "",
                    if all {
                        "session.revoke_all"
                    } else {
                        "session.revoke"
                    },
                    "session",
                    if all { &user_id } else { &session_id },
                ),
            )
            .await?;
        let count = count(&ended);
        let published = self
            .publish_revoked(&txn, &user_id, ended, &caller.ctx.request_id)
            .await?;
        txn.commit().await?;
        self.announce_revoked(published);
        Ok(count)
    }

    /// Reauthenticate (rule ID-6).
    pub async fn reauthenticate(
        &self,
        caller: &Caller,
        password: &str,
    ) -> ApiResult<SessionTokens> {
        let principal = caller.principal.require_user()?.clone();
        if password.is_empty() {
            return Err(ApiError::invalid_argument("password", "required"));
        }
        let account = format!("user:{}", principal.user_id);
        self.check_login_budget(caller, &account)?;
        let u = user::Entity::find_by_id(principal.user_id.clone())
            .one(&self.db)
            .await?;
        let hash = u.as_ref().map(|u| u.password_hash.as_str()).unwrap_or("");
        let ok = password.len() <= crypto::MAX_PASSWORD_BYTES
            && self.hasher.verify(password, hash).await?;
        if !ok || u.is_none() {
            return Err(invalid_credentials());
        }
        let now = self.now_ms();
        let s = session::Entity::find_by_id(principal.session_id.clone())
            .one(&self.db)
            .await?
            .filter(|s| {
                s.user_id == principal.user_id
                    && s.revoked_time_ms.is_none()
                    && s.expire_time_ms > now
            })
            .ok_or_else(|| {
                ApiError::unauthenticated("SESSION_ENDED", "the session has ended; sign in again")
            })?;
        let mut fresh = s.clone();
        fresh.auth_time = chrono::Utc::now().timestamp();
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let mut am: session::ActiveModel = s.into();
        am.auth_time = Set(fresh.auth_time);
        am.update(&txn).await?;
        refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::SessionId.eq(&fresh.id))
            .filter(refresh_token::Column::Rotated.eq(false))
            .exec(&txn)
            .await?;
        let tokens = self.tokens_for(&txn, &fresh).await?;
        self.audit
            .record(
                &txn,
                &caller.principal,
                &caller.ctx,
                Entry::new("", "session.reauthenticate", "session", &fresh.id),
            )
            .await?;
        txn.commit().await?;
        self.login_succeeded(caller, &account);
        Ok(tokens)
    }

    /// IssueServiceToken: the token and its expiry (Unix seconds).
    pub async fn issue_service_token(
        &self,
        caller: &Caller,
        client_id: &str,
        secret: &str,
    ) -> ApiResult<(String, i64)> {
        if client_id.is_empty() || client_id.len() > 128 {
            return Err(ApiError::invalid_argument(
                "client_id",
                "required, at most 128 characters",
            ));
        }
        if secret.is_empty() || secret.len() > 512 {
            return Err(ApiError::invalid_argument(
                "client_secret",
                "required, at most 512 bytes",
            ));
        }
        let peer = format!("peer:{}", caller.peer_key());
        self.client_failures.check(&peer)?;
        let own = constant_eq_own(&self.own_account, client_id, secret);
        let configured = self
            .service_accounts
            .get(client_id)
            .is_some_and(|hash| crypto::constant_time_eq(hash, &sha256_hex(secret)));
        if !(own || configured) {
            self.client_failures.record(&peer);
            tracing::warn!(client_id, "service token refused");
            return Err(ApiError::unauthenticated(
                "INVALID_CLIENT_CREDENTIALS",
                "unknown client or wrong secret",
            ));
        }
        let now = chrono::Utc::now().timestamp();
        let exp = now + SERVICE_TOKEN_TTL_SECS;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: client_id.to_owned(),
            aud: SERVICE_AUDIENCE.to_owned(),
            exp,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            auth_time: None,
            sid: None,
        };
        Ok((self.keys.signer().sign(&claims)?, exp))
    }

    // ----- users ----------------------------------------------------------------------------

    /// Resolves `me` and the caller's own id.
    fn resolve_user_id(&self, principal: &Principal, user_id: &str) -> ApiResult<String> {
        if user_id.is_empty() {
            return Err(ApiError::invalid_argument("user_id", "required"));
        }
        if user_id == ME {
            return match principal {
                Principal::User(u) => Ok(u.user_id.clone()),
                Principal::Anonymous => Err(principal
                    .require_authenticated()
                    .err()
                    .unwrap_or_else(|| ApiError::invalid_argument("user_id", "`me` needs a user"))),
                _ => Err(ApiError::invalid_argument(
                    "user_id",
                    "`me` is only for signed-in users",
                )),
            };
        }
        Ok(user_id.to_owned())
    }

    /// Whether `principal` may see user `target` (self, co-member, admin key of an org the user
    /// is in, service).
    fn may_see(&self, principal: &Principal, target: &str, my_orgs: &[(String, OrgRole)]) -> bool {
        match principal {
            Principal::Service(_) => true,
            Principal::User(u) => {
                u.user_id == target
                    || my_orgs
                        .iter()
                        .any(|(org, _)| self.replica.role(org, target).is_some())
            }
            Principal::ApiKey(k) => {
                k.kind == PrincipalKeyKind::Admin
                    && self.replica.role(&k.organization_id, target).is_some()
            }
            Principal::Anonymous => false,
        }
    }

    fn orgs_of(&self, principal: &Principal) -> Vec<(String, OrgRole)> {
        match principal {
            Principal::User(u) => self.replica.organizations_of(&u.user_id),
            _ => Vec::new(),
        }
    }

    fn require_reader(principal: &Principal) -> ApiResult<()> {
        principal.require_authenticated()?;
        if let Principal::ApiKey(k) = principal
            && k.kind != PrincipalKeyKind::Admin
        {
            return Err(workspace_key_refused());
        }
        Ok(())
    }

    /// GetUser.
    pub async fn get_user(&self, principal: &Principal, user_id: &str) -> ApiResult<user::Model> {
        Self::require_reader(principal)?;
        let id = self.resolve_user_id(principal, user_id)?;
        let my_orgs = self.orgs_of(principal);
        if !self.may_see(principal, &id, &my_orgs) {
            return Err(ApiError::not_found("user", &id));
        }
        user::Entity::find_by_id(id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("user", &id))
    }

    /// BatchGetUsers: the visible users in request order and the missing ids.
    pub async fn batch_get_users(
        &self,
        principal: &Principal,
        ids: &[String],
    ) -> ApiResult<(Vec<user::Model>, Vec<String>)> {
        Self::require_reader(principal)?;
        if ids.is_empty() {
            return Err(ApiError::invalid_argument("user_ids", "at least one id"));
        }
        if ids.len() > 1000 {
            return Err(ApiError::invalid_argument("user_ids", "at most 1000 ids"));
        }
        if ids.iter().any(|i| i.is_empty()) {
            return Err(ApiError::invalid_argument(
                "user_ids",
                "ids must not be empty",
            ));
        }
        let mut wanted: Vec<String> = Vec::with_capacity(ids.len());
        let mut seen = std::collections::HashSet::new();
        for raw in ids {
            let id = self.resolve_user_id(principal, raw)?;
            if seen.insert(id.clone()) {
                wanted.push(id);
            }
        }
        let my_orgs = self.orgs_of(principal);
        let visible: Vec<String> = wanted
            .iter()
            .filter(|id| self.may_see(principal, id, &my_orgs))
            .cloned()
            .collect();
        let mut found: HashMap<String, user::Model> = HashMap::new();
        for chunk in visible.chunks(500) {
            for u in user::Entity::find()
                .filter(user::Column::Id.is_in(chunk.to_vec()))
                .all(&self.db)
                .await?
            {
                found.insert(u.id.clone(), u);
            }
        }
        let mut users = Vec::new();
        let mut missing = Vec::new();
        for id in wanted {
            match found.remove(&id) {
                Some(u) => users.push(u),
                None => missing.push(id),
            }
        }
        Ok((users, missing))
    }

    /// UpdateUser: `display_name`, `account_type` (PERSONAL → BUSINESS) and `email` (which
    /// needs verifying again).
    pub async fn update_user(
        &self,
        caller: &Caller,
        patch: &User,
        paths: &[String],
        etag: &str,
    ) -> ApiResult<user::Model> {
        let me = caller.principal.require_user()?.user_id.clone();
        if patch.id.is_empty() {
            return Err(ApiError::invalid_argument("user.id", "required"));
        }
        if paths.is_empty() {
            return Err(ApiError::invalid_argument(
                "update_mask",
                "name at least one field",
            ));
        }
        let id = self.resolve_user_id(&caller.principal, &patch.id)?;
        if id != me {
            return Err(ApiError::permission_denied(
                "NOT_ACCOUNT_OWNER",
                "users may change only their own profile",
            ));
        }
        let before = user::Entity::find_by_id(id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("user", &id))?;
        if !etag.is_empty() && etag != format!("v{}", before.version) {
            return Err(ApiError::aborted(
                "ETAG_MISMATCH",
                "the user changed; read it again",
            ));
        }
        let mut after = before.clone();
        let mut new_email = None;
        for path in paths {
            match path.as_str() {
                "display_name" => {
                    after.display_name =
                        check_display_name("user.display_name", &patch.display_name)?;
                }
                "account_type" => {
                    let to = AccountType::try_from(patch.account_type)
                        .unwrap_or(AccountType::Unspecified);
                    if to == AccountType::Unspecified {
                        return Err(ApiError::invalid_argument("user.account_type", "required"));
                    }
                    if before.account_type == AccountType::Business as i32
                        && to == AccountType::Personal
                    {
                        return Err(ApiError::failed_precondition(
                            "ACCOUNT_TYPE_DOWNGRADE_NOT_ALLOWED",
                            &id,
                            "a business account cannot become personal",
                        ));
                    }
                    after.account_type = to as i32;
                }
                "email" => {
                    let (email, key) = normalize_email("user.email", &patch.email)?;
                    if key != before.email_key {
                        if user::Entity::find()
                            .filter(user::Column::EmailKey.eq(&key))
                            .one(&self.db)
                            .await?
                            .is_some()
                        {
                            return Err(email_taken());
                        }
                        after.email_key = key;
                        after.email_verified = false;
                        new_email = Some(email.clone());
                    }
                    after.email = email;
                }
                other => {
                    return Err(ApiError::invalid_argument(
                        "update_mask",
                        format!("{other:?} cannot be updated"),
                    ));
                }
            }
        }
        after.version = before.version + 1;
        after.update_time_ms = self.now_ms();
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let mut am: user::ActiveModel = before.clone().into();
        am.display_name = Set(after.display_name.clone());
        am.account_type = Set(after.account_type);
        am.email = Set(after.email.clone());
        am.email_key = Set(after.email_key.clone());
        am.email_verified = Set(after.email_verified);
        am.version = Set(after.version);
        am.update_time_ms = Set(after.update_time_ms);
        let updated = user::Entity::update_many()
            .set(am)
            .filter(user::Column::Id.eq(&id))
            .filter(user::Column::Version.eq(before.version))
            .exec(&txn)
            .await;
        match updated {
            Ok(r) if r.rows_affected == 1 => {}
            Ok(_) => {
                return Err(ApiError::aborted(
                    "ETAG_MISMATCH",
                    "the user changed; read it again",
                ));
            }
            Err(e) if orgplane_platform::db::is_unique_violation(&e) => return Err(email_taken()),
            Err(e) => return Err(e.into()),
        }
        let token = match &new_email {
            Some(email) => Some(self.new_mail_token(&txn, &id, VERIFY, email).await?),
            None => None,
        };
        self.audit
            .record(
                &txn,
                &caller.principal,
                &caller.ctx,
                Entry::new("", "user.update", "user", &id)
                    .with_change(Some(user_audit(&before)), Some(user_audit(&after))),
            )
            .await?;
        txn.commit().await?;
        if let (Some(email), Some(token)) = (new_email, token)
            && let Err(e) = self
                .send_link(&email, "Verify your email address", "verify-email", &token)
                .await
        {
            tracing::warn!(user_id = %id, error = %e, "verification mail not sent");
        }
        Ok(after)
    }

    /// DeleteUser (rule ID-9): returns the revision of `UserDeleted`.
    pub async fn delete_user(&self, caller: &Caller, user_id: &str) -> ApiResult<i64> {
        let me = caller.principal.require_user()?.user_id.clone();
        let id = self.resolve_user_id(&caller.principal, user_id)?;
        if id != me {
            return Err(ApiError::permission_denied(
                "NOT_ACCOUNT_OWNER",
                "users may delete only their own account",
            ));
        }
        self.require_roles_synced()?;
        let owned: Vec<String> = self
            .replica
            .organizations_of(&id)
            .into_iter()
            .filter(|(_, role)| *role == OrgRole::Owner)
            .map(|(org, _)| org)
            .collect();
        if let Some(org) = owned.first() {
            return Err(ApiError::failed_precondition(
                "OWNERSHIP_TRANSFER_REQUIRED",
                org,
                format!(
                    "you own {} organization(s); transfer ownership or delete them first",
                    owned.len()
                ),
            )
            .with_metadata("organization_id", org.clone()));
        }
        let before = user::Entity::find_by_id(id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("user", &id))?;
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let ended = self.active_sessions(&txn, &id, None).await?;
        refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::UserId.eq(&id))
            .exec(&txn)
            .await?;
        session::Entity::delete_many()
            .filter(session::Column::UserId.eq(&id))
            .exec(&txn)
            .await?;
        mail_token::Entity::delete_many()
            .filter(mail_token::Column::UserId.eq(&id))
            .exec(&txn)
            .await?;
        mfa_factor::Entity::delete_many()
            .filter(mfa_factor::Column::UserId.eq(&id))
            .exec(&txn)
            .await?;
        user::Entity::delete_by_id(id.clone()).exec(&txn).await?;
        self.audit
            .record(
                &txn,
                &caller.principal,
                &caller.ctx,
                Entry::new("", "user.delete", "user", &id)
                    .with_change(Some(user_audit(&before)), None),
            )
            .await?;
        let published = self
            .publish_revoked(&txn, &id, ended, &caller.ctx.request_id)
            .await?;
        let revision = self
            .outbox
            .append(
                &txn,
                Payload::UserDeleted(UserDeleted {
                    user_id: id.clone(),
                }),
                &caller.ctx.request_id,
            )
            .await?;
        txn.commit().await?;
        self.announce_revoked(published);
        self.outbox.committed(revision);
        Ok(revision)
    }

    // ----- organization-scoped authorization --------------------------------------------------

    /// The caller's standing in `org`: NOT_FOUND for outsiders, PERMISSION_DENIED for workspace
    /// keys.
    fn standing(&self, principal: &Principal, org: &str) -> ApiResult<OrgStanding> {
        if !matches!(principal, Principal::Anonymous) {
            self.require_roles_synced()?;
        }
        match principal {
            Principal::Anonymous => {
                Err(principal.require_authenticated().err().unwrap_or_else(|| {
                    ApiError::unauthenticated("CREDENTIALS_REQUIRED", "credentials required")
                }))
            }
            Principal::Service(_) => Ok(OrgStanding::Service),
            Principal::ApiKey(k) => {
                if k.kind != PrincipalKeyKind::Admin {
                    return Err(workspace_key_refused());
                }
                let active = self
                    .replica
                    .with_organization(org, |o| o.is_active())
                    .unwrap_or(false);
                if k.organization_id != org || !active {
                    return Err(ApiError::not_found("organization", org));
                }
                Ok(OrgStanding::AdminKey)
            }
            Principal::User(u) => self
                .replica
                .role(org, &u.user_id)
                .map(OrgStanding::Member)
                .ok_or_else(|| ApiError::not_found("organization", org)),
        }
    }

    fn standing_allows(standing: &OrgStanding, action: OrgAction) -> bool {
        match standing {
            OrgStanding::Member(role) => allows(*role, action),
            OrgStanding::AdminKey => admin_key_allows(action),
            OrgStanding::Service => true,
        }
    }

    /// Checks that the caller may reset `target`'s credentials in `org` (rule ID-8).
    fn authorize_member_reset(
        &self,
        principal: &Principal,
        org: &str,
        target: &str,
    ) -> ApiResult<()> {
        if org.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        if target.is_empty() {
            return Err(ApiError::invalid_argument("user_id", "required"));
        }
        let standing = self.standing(principal, org)?;
        if matches!(standing, OrgStanding::Service) {
            return Err(ApiError::permission_denied(
                "MEMBER_CREDENTIALS_REQUIRED",
                "a person or an admin API key must do this",
            ));
        }
        if !Self::standing_allows(&standing, OrgAction::ManageOrganization) {
            return Err(orgplane_platform::roles::insufficient_role(
                "only an OWNER or ADMIN may reset a member's credentials",
            ));
        }
        let target_role = self
            .replica
            .role(org, target)
            .ok_or_else(|| ApiError::not_found("member", target))?;
        let caller_is_owner = matches!(standing, OrgStanding::Member(OrgRole::Owner));
        if target_role == OrgRole::Owner && !caller_is_owner {
            return Err(ApiError::permission_denied(
                "OWNER_PROTECTED",
                "only the OWNER may reset the OWNER's credentials",
            ));
        }
        Ok(())
    }

    /// AdminResetPassword (rule ID-8): returns the number of sessions ended; a refusal is
    /// audited.
    pub async fn admin_reset_password(
        &self,
        caller: &Caller,
        org: &str,
        target: &str,
    ) -> ApiResult<i32> {
        let result = self.try_admin_reset_password(caller, org, target).await;
        let entry = Entry::new(org, "user.admin_reset_password", "user", target);
        self.audited(caller, result, entry).await
    }

    async fn try_admin_reset_password(
        &self,
        caller: &Caller,
        org: &str,
        target: &str,
    ) -> ApiResult<i32> {
        self.authorize_member_reset(&caller.principal, org, target)?;
        let u = user::Entity::find_by_id(target.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("member", target))?;
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let mut am: user::ActiveModel = u.clone().into();
        am.password_hash = Set(String::new());
        am.version = Set(u.version + 1);
        am.update_time_ms = Set(self.now_ms());
        am.update(&txn).await?;
        let ended = self.revoke_sessions(&txn, &u.id, None).await?;
        let token = self.new_mail_token(&txn, &u.id, RESET, &u.email).await?;
        self.audit
            .record(
                &txn,
                &caller.principal,
                &caller.ctx,
                Entry::new(org, "user.admin_reset_password", "user", &u.id),
            )
            .await?;
        let count = count(&ended);
        let published = self
            .publish_revoked(&txn, &u.id, ended, &caller.ctx.request_id)
            .await?;
        txn.commit().await?;
        self.announce_revoked(published);
        self.send_link(&u.email, "Choose a new password", "reset-password", &token)
            .await?;
        Ok(count)
    }

    /// AdminResetMfa (rule ID-8): returns the number of factors removed; a refusal is audited.
    pub async fn admin_reset_mfa(
        &self,
        caller: &Caller,
        org: &str,
        target: &str,
    ) -> ApiResult<i32> {
        let result = self.try_admin_reset_mfa(caller, org, target).await;
        let entry = Entry::new(org, "user.admin_reset_mfa", "user", target);
        self.audited(caller, result, entry).await
    }

    async fn try_admin_reset_mfa(
        &self,
        caller: &Caller,
        org: &str,
        target: &str,
    ) -> ApiResult<i32> {
        self.authorize_member_reset(&caller.principal, org, target)?;
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let removed = mfa_factor::Entity::delete_many()
            .filter(mfa_factor::Column::UserId.eq(target))
            .exec(&txn)
            .await?;
        self.audit
            .record(
                &txn,
                &caller.principal,
                &caller.ctx,
                Entry::new(org, "user.admin_reset_mfa", "user", target),
            )
            .await?;
        txn.commit().await?;
        Ok(i32::try_from(removed.rows_affected).unwrap_or(i32::MAX))
    }

    // ----- API keys ---------------------------------------------------------------------------

    /// CreateApiKey (rules ID-6, ID-7): the key and its secret; a refusal is audited.
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        org: &str,
        spec: &ApiKey,
        request_id: &str,
    ) -> ApiResult<(api_key::Model, String)> {
        let result = self.try_create_api_key(caller, org, spec, request_id).await;
        let entry = Entry::new(org, "api_key.create", "api_key", "");
        self.audited(caller, result, entry).await
    }

    async fn try_create_api_key(
        &self,
        caller: &Caller,
        org: &str,
        spec: &ApiKey,
        request_id: &str,
    ) -> ApiResult<(api_key::Model, String)> {
        let user = caller.principal.require_user()?.clone();
        let mut violations = Vec::new();
        if org.is_empty() {
            violations.push(ApiError::invalid_argument("organization_id", "required"));
        }
        let name = check_display_name("api_key.name", &spec.name)
            .map_err(|e| violations.push(e))
            .ok();
        let kind = ApiKeyKind::try_from(spec.kind).unwrap_or(ApiKeyKind::Unspecified);
        if kind == ApiKeyKind::Unspecified {
            violations.push(ApiError::invalid_argument(
                "api_key.kind",
                "API_KEY_KIND_ADMIN or API_KEY_KIND_WORKSPACE required",
            ));
        }
        if kind == ApiKeyKind::Admin && !spec.workspace_id.is_empty() {
            violations.push(ApiError::invalid_argument(
                "api_key.workspace_id",
                "admin keys belong to no workspace",
            ));
        }
        if spec.workspace_id.len() > 128 {
            violations.push(ApiError::invalid_argument(
                "api_key.workspace_id",
                "too long",
            ));
        }
        if request_id.len() > 128 {
            violations.push(ApiError::invalid_argument(
                "request_id",
                "at most 128 characters",
            ));
        }
        if let Some(first) = violations.first() {
            return Err(merge_violations(first, &violations));
        }
        let name = name.unwrap_or_default();
        self.require_roles_synced()?;
        let role = self
            .replica
            .role(org, &user.user_id)
            .ok_or_else(|| ApiError::not_found("organization", org))?;
        let admin = kind == ApiKeyKind::Admin;
        if admin {
            if !allows(role, OrgAction::CreateAdminApiKeys) {
                return Err(orgplane_platform::roles::insufficient_role(
                    "only an OWNER or ADMIN may create admin API keys",
                ));
            }
            let age = chrono::Utc::now().timestamp() - user.auth_time;
            if age > self.step_up.num_seconds() {
                return Err(ApiError::unauthenticated(
                    "REAUTHENTICATION_REQUIRED",
                    "this needs a recent sign-in; call Reauthenticate and retry",
                ));
            }
        } else if !allows(role, OrgAction::ManageApiKeys) {
            return Err(orgplane_platform::roles::insufficient_role(
                "only an OWNER, ADMIN or DEVELOPER may create workspace API keys",
            ));
        }
        if !request_id.is_empty()
            && let Some(existing) = api_key::Entity::find()
                .filter(api_key::Column::CreatorUserId.eq(&user.user_id))
                .filter(api_key::Column::RequestId.eq(request_id))
                .one(&self.db)
                .await?
        {
            return Err(secret_already_returned(&existing.id));
        }
        if !admin && !spec.workspace_id.is_empty() {
            self.require_live_workspace(org, &spec.workspace_id, &caller.ctx)
                .await?;
            // OWNER/ADMIN may develop everywhere; a DEVELOPER only where added (WS-5): a key
            // must not open a workspace its creator cannot enter.
            if !allows(role, OrgAction::ManageWorkspaces) {
                self.require_developer_in(org, &spec.workspace_id, &user.user_id, &caller.ctx)
                    .await?;
            }
        }
        let minted = crypto::mint_api_key(admin);
        let now = self.now_ms();
        let row = api_key::Model {
            id: minted.id.clone(),
            organization_id: org.to_owned(),
            workspace_id: spec.workspace_id.clone(),
            kind: kind as i32,
            name,
            status: ApiKeyStatus::Active as i32,
            secret_hash: sha256_hex(&minted.secret),
            hint: minted.hint,
            creator_user_id: user.user_id.clone(),
            request_id: (!request_id.is_empty()).then(|| request_id.to_owned()),
            create_time_ms: now,
            update_time_ms: now,
            last_used_time_ms: None,
            version: 1,
        };
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        if let Err(e) = api_key::ActiveModel::from(row.clone()).insert(&txn).await {
            if orgplane_platform::db::is_unique_violation(&e) {
                txn.rollback().await?;
                let existing = api_key::Entity::find()
                    .filter(api_key::Column::CreatorUserId.eq(&user.user_id))
                    .filter(api_key::Column::RequestId.eq(request_id))
                    .one(&self.db)
                    .await?;
                return Err(secret_already_returned(
                    &existing.map(|k| k.id).unwrap_or_default(),
                ));
            }
            return Err(e.into());
        }
        self.audit
            .record(
                &txn,
                &caller.principal,
                &caller.ctx,
                Entry::new(org, "api_key.create", "api_key", &row.id)
                    .with_change(None, Some(key_audit(&row))),
            )
            .await?;
        let revision = self
            .outbox
            .append(
                &txn,
                Payload::ApiKeyCreated(ApiKeyCreated {
                    api_key_id: row.id.clone(),
                    organization_id: org.to_owned(),
                    workspace_id: row.workspace_id.clone(),
                    admin,
                    active: true,
                }),
                &caller.ctx.request_id,
            )
            .await?;
        txn.commit().await?;
        self.outbox.committed(revision);
        Ok((row, minted.secret))
    }

    /// Rule ID-7: `workspace_id` must be an ACTIVE workspace of `org`, as the workspace service
    /// says (GetWorkspace with this service's token). Unknown and other organizations'
    /// workspaces answer the same NOT_FOUND; no answer is UNAVAILABLE, never a silent pass.
    async fn require_live_workspace(
        &self,
        org: &str,
        workspace_id: &str,
        ctx: &RequestContext,
    ) -> ApiResult<()> {
        let unavailable = |detail: &str| {
            tracing::warn!(workspace_id, detail, "GetWorkspace failed");
            ApiError::unavailable(
                "WORKSPACE_SERVICE_UNAVAILABLE",
                "cannot check the workspace now; retry",
            )
        };
        let request = self
            .workspace_request(
                GetWorkspaceRequest {
                    workspace_id: workspace_id.to_owned(),
                },
                ctx,
            )
            .await?;
        let workspace = match WorkspaceServiceClient::new(self.workspaces.clone())
            .get_workspace(request)
            .await
        {
            Ok(response) => response.into_inner().workspace,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                return Err(ApiError::invalid_argument(
                    "api_key.workspace_id",
                    s.message().to_owned(),
                ));
            }
            Err(s) => return Err(unavailable(s.message())),
        };
        match workspace {
            Some(w) if w.organization_id == org => {
                if w.state == WorkspaceState::Archived as i32 {
                    Err(ApiError::failed_precondition(
                        "WORKSPACE_ARCHIVED",
                        workspace_id,
                        "the workspace is archived; API keys need an active workspace",
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Err(ApiError::not_found("workspace", workspace_id)),
        }
    }

    /// `message` for the workspace service: this service's token, the caller's request id and
    /// trace, and a 5 s deadline (CreateApiKey waits on it).
    async fn workspace_request<T>(
        &self,
        message: T,
        ctx: &RequestContext,
    ) -> ApiResult<tonic::Request<T>> {
        let token = self.service_tokens.token().await?;
        let mut request = orgplane_platform::auth::outgoing(message, Some(&token), Some(ctx));
        request.set_timeout(Duration::from_secs(5));
        Ok(request)
    }

    /// Rule ID-7 with WS-5: `user_id` may develop in `workspace_id`, as the workspace service's
    /// CheckAccess says (with this service's token); otherwise PERMISSION_DENIED
    /// `INSUFFICIENT_ROLE`.
    async fn require_developer_in(
        &self,
        org: &str,
        workspace_id: &str,
        user_id: &str,
        ctx: &RequestContext,
    ) -> ApiResult<()> {
        let request = self
            .workspace_request(
                CheckAccessRequest {
                    organization_id: org.to_owned(),
                    workspace_id: workspace_id.to_owned(),
                    subject: Some(check_access_request::Subject::UserId(user_id.to_owned())),
                    permission: Permission::Develop as i32,
                    ..Default::default()
                },
                ctx,
            )
            .await?;
        let allowed = WorkspaceServiceClient::new(self.workspaces.clone())
            .check_access(request)
            .await
            .map_err(|s| {
                tracing::warn!(workspace_id, detail = s.message(), "CheckAccess failed");
                ApiError::unavailable(
                    "WORKSPACE_SERVICE_UNAVAILABLE",
                    "cannot check the workspace now; retry",
                )
            })?
            .into_inner()
            .allowed;
        if allowed {
            Ok(())
        } else {
            Err(orgplane_platform::roles::insufficient_role(
                "a DEVELOPER may create keys only for workspaces they may develop in",
            ))
        }
    }

    async fn visible_key(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ApiResult<(api_key::Model, OrgStanding)> {
        if id.is_empty() {
            return Err(ApiError::invalid_argument("api_key_id", "required"));
        }
        principal.require_authenticated()?;
        let row = api_key::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("api_key", id))?;
        let standing = self
            .standing(principal, &row.organization_id)
            .map_err(|e| {
                if e.code() == tonic::Code::NotFound {
                    ApiError::not_found("api_key", id)
                } else {
                    e
                }
            })?;
        if !Self::standing_allows(&standing, OrgAction::ManageApiKeys) {
            return Err(orgplane_platform::roles::insufficient_role(
                "only an OWNER, ADMIN or DEVELOPER may manage API keys",
            ));
        }
        Ok((row, standing))
    }

    /// GetApiKey.
    pub async fn get_api_key(&self, principal: &Principal, id: &str) -> ApiResult<api_key::Model> {
        Ok(self.visible_key(principal, id).await?.0)
    }

    /// ListApiKeys: a page of keys, newest first, and the next page token.
    #[allow(clippy::too_many_arguments)]
    pub async fn list_api_keys(
        &self,
        principal: &Principal,
        org: &str,
        requested_size: i32,
        page_token: &str,
        status: i32,
        kind: i32,
        workspace: Option<&str>,
    ) -> ApiResult<(Vec<api_key::Model>, String)> {
        if org.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        let size = page_size(requested_size)?;
        let standing = self.standing(principal, org)?;
        if !Self::standing_allows(&standing, OrgAction::ManageApiKeys) {
            return Err(orgplane_platform::roles::insufficient_role(
                "only an OWNER, ADMIN or DEVELOPER may list API keys",
            ));
        }
        let status = ApiKeyStatus::try_from(status)
            .map_err(|_| ApiError::invalid_argument("status", "unknown status"))?;
        let kind = ApiKeyKind::try_from(kind)
            .map_err(|_| ApiError::invalid_argument("kind", "unknown kind"))?;
        let scope = format!(
            "ListApiKeys|{org}|{}|{}|{}",
            status as i32,
            kind as i32,
            serde_json::json!(workspace)
        );
        let after: Option<(i64, String)> = self.page_tokens.decode(&scope, page_token)?;
        let mut q = api_key::Entity::find().filter(api_key::Column::OrganizationId.eq(org));
        if status != ApiKeyStatus::Unspecified {
            q = q.filter(api_key::Column::Status.eq(status as i32));
        }
        if kind != ApiKeyKind::Unspecified {
            q = q.filter(api_key::Column::Kind.eq(kind as i32));
        }
        if let Some(ws) = workspace {
            q = q.filter(api_key::Column::WorkspaceId.eq(ws));
        }
        if let Some((ms, id)) = after {
            q = q.filter(
                Condition::any()
                    .add(api_key::Column::CreateTimeMs.lt(ms))
                    .add(
                        Condition::all()
                            .add(api_key::Column::CreateTimeMs.eq(ms))
                            .add(api_key::Column::Id.lt(id)),
                    ),
            );
        }
        let rows = q
            .order_by_desc(api_key::Column::CreateTimeMs)
            .order_by_desc(api_key::Column::Id)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        Ok(self
            .page_tokens
            .page(&scope, rows, size, |k| (k.create_time_ms, k.id.clone())))
    }

    /// UpdateApiKey: renames or (de)activates a key; publishes `ApiKeyStatusChanged`; a refusal
    /// is audited in the key's organization.
    pub async fn update_api_key(
        &self,
        caller: &Caller,
        patch: &ApiKey,
        paths: &[String],
        etag: &str,
    ) -> ApiResult<api_key::Model> {
        let result = self.try_update_api_key(caller, patch, paths, etag).await;
        self.audit
            .outcome(&self.db, &caller.principal, &caller.ctx, result, || async {
                let key = api_key::Entity::find_by_id(patch.id.clone())
                    .one(&self.db)
                    .await
                    .inspect_err(|e| {
                        tracing::warn!(error = %e, "could not read the key of a refused update");
                    })
                    .ok()
                    .flatten()?;
                Some(Entry::new(
                    &key.organization_id,
                    "api_key.update",
                    "api_key",
                    &key.id,
                ))
            })
            .await
    }

    async fn try_update_api_key(
        &self,
        caller: &Caller,
        patch: &ApiKey,
        paths: &[String],
        etag: &str,
    ) -> ApiResult<api_key::Model> {
        if patch.id.is_empty() {
            return Err(ApiError::invalid_argument("api_key.id", "required"));
        }
        if paths.is_empty() {
            return Err(ApiError::invalid_argument(
                "update_mask",
                "name at least one field",
            ));
        }
        let (before, standing) = self.visible_key(&caller.principal, &patch.id).await?;
        if before.kind == ApiKeyKind::Admin as i32
            && !Self::standing_allows(&standing, OrgAction::CreateAdminApiKeys)
        {
            return Err(orgplane_platform::roles::insufficient_role(
                "only an OWNER or ADMIN may change admin API keys",
            ));
        }
        if !etag.is_empty() && etag != format!("v{}", before.version) {
            return Err(ApiError::aborted(
                "ETAG_MISMATCH",
                "the key changed; read it again",
            ));
        }
        let mut after = before.clone();
        for path in paths {
            match path.as_str() {
                "name" => after.name = check_display_name("api_key.name", &patch.name)?,
                "status" => {
                    let s =
                        ApiKeyStatus::try_from(patch.status).unwrap_or(ApiKeyStatus::Unspecified);
                    if s == ApiKeyStatus::Unspecified {
                        return Err(ApiError::invalid_argument(
                            "api_key.status",
                            "ACTIVE or INACTIVE required",
                        ));
                    }
                    after.status = s as i32;
                }
                other => {
                    return Err(ApiError::invalid_argument(
                        "update_mask",
                        format!("{other:?} cannot be updated"),
                    ));
                }
            }
        }
        after.version += 1;
        after.update_time_ms = self.now_ms();
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let done = api_key::Entity::update_many()
            .col_expr(api_key::Column::Name, Expr::value(after.name.clone()))
            .col_expr(api_key::Column::Status, Expr::value(after.status))
            .col_expr(api_key::Column::Version, Expr::value(after.version))
            .col_expr(
                api_key::Column::UpdateTimeMs,
                Expr::value(after.update_time_ms),
            )
            .filter(api_key::Column::Id.eq(&before.id))
            .filter(api_key::Column::Version.eq(before.version))
            .exec(&txn)
            .await?;
        if done.rows_affected != 1 {
            txn.rollback().await?;
            return Err(ApiError::aborted(
                "ETAG_MISMATCH",
                "the key changed; read it again",
            ));
        }
        self.audit
            .record(
                &txn,
                &caller.principal,
                &caller.ctx,
                Entry::new(
                    &before.organization_id,
                    "api_key.update",
                    "api_key",
                    &before.id,
                )
                .with_change(Some(key_audit(&before)), Some(key_audit(&after))),
            )
            .await?;
        if after.status != before.status {
            let revision = self
                .outbox
                .append(
                    &txn,
                    Payload::ApiKeyStatusChanged(ApiKeyStatusChanged {
                        api_key_id: after.id.clone(),
                        organization_id: after.organization_id.clone(),
                        active: after.status == ApiKeyStatus::Active as i32,
                    }),
                    &caller.ctx.request_id,
                )
                .await?;
            txn.commit().await?;
            self.revocations
                .key_status_changed(&after.id, after.status == ApiKeyStatus::Active as i32);
            self.outbox.committed(revision);
        } else {
            txn.commit().await?;
        }
        Ok(after)
    }

    // ----- the organization's audit log (rule ORG-10) -----------------------------------------

    /// ListAuditEvents: a page of `org`'s records, newest first, and the next page token. Records
    /// of a user's own account carry no organization and are never listed.
    pub async fn list_audit_events(
        &self,
        principal: &Principal,
        org: &str,
        filter: &AuditEventFilter,
        requested_size: i32,
        page_token: &str,
    ) -> ApiResult<(Vec<AuditEvent>, String)> {
        if org.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        if let (Some(s), Some(e)) = (&filter.start_time, &filter.end_time)
            && (e.seconds, e.nanos) <= (s.seconds, s.nanos)
        {
            return Err(ApiError::invalid_argument(
                "filter.end_time",
                "must be after filter.start_time",
            ));
        }
        let standing = self.standing(principal, org)?;
        if matches!(standing, OrgStanding::Service)
            || !Self::standing_allows(&standing, OrgAction::ReadAuditLog)
        {
            return Err(orgplane_platform::roles::insufficient_role(
                "only an OWNER or ADMIN may read the audit log",
            ));
        }
        self.audit
            .list(
                &self.db,
                &self.page_tokens,
                org,
                filter,
                requested_size,
                page_token,
            )
            .await
    }

    /// Passes an organization-scoped mutation's `result` through, recording it first as
    /// OUTCOME_FAILURE in `entry`'s organization when it is a refusal the audit log keeps
    /// ([`orgplane_platform::audit::audits_failure`]) and the replica knows that organization.
    async fn audited<T>(
        &self,
        caller: &Caller,
        result: ApiResult<T>,
        entry: Entry,
    ) -> ApiResult<T> {
        self.audit
            .outcome(&self.db, &caller.principal, &caller.ctx, result, || async {
                self.replica
                    .with_organization(&entry.organization_id, |_| ())
                    .map(|()| entry)
            })
            .await
    }

    /// AuthenticateApiKey: the active key behind `secret`.
    pub async fn authenticate_api_key(
        &self,
        principal: &Principal,
        secret: &str,
    ) -> ApiResult<api_key::Model> {
        principal.require_service()?;
        let invalid = orgplane_platform::auth::invalid_api_key;
        if secret.is_empty() {
            return Err(ApiError::invalid_argument("key", "required"));
        }
        if secret.len() > 256 {
            return Err(invalid());
        }
        let (id, admin) = crypto::parse_api_key(secret).ok_or_else(invalid)?;
        let row = api_key::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(invalid)?;
        if !crypto::constant_time_eq(&row.secret_hash, &sha256_hex(secret))
            || admin != (row.kind == ApiKeyKind::Admin as i32)
        {
            return Err(invalid());
        }
        self.require_roles_synced()?;
        let org_live = self
            .replica
            .with_organization(&row.organization_id, |o| o.is_active())
            .unwrap_or(false);
        if row.status != ApiKeyStatus::Active as i32 || !org_live {
            return Err(orgplane_platform::auth::inactive_api_key());
        }
        let now = self.now_ms();
        if row.last_used_time_ms.is_none_or(|t| now - t > 60_000) {
            // Coarse on purpose: at most one write per key and minute.
            let r = api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedTimeMs, Expr::value(now))
                .filter(api_key::Column::Id.eq(&row.id))
                .exec(&self.db)
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "recording API key use failed");
            }
        }
        Ok(row)
    }
}

fn constant_eq_own(own: &ServiceAccount, client_id: &str, secret: &str) -> bool {
    // Both comparisons always run.
    let id_ok = crypto::constant_time_eq(&own.client_id, client_id);
    let secret_ok = crypto::constant_time_eq(&own.client_secret, secret);
    id_ok & secret_ok & !own.client_secret.is_empty()
}

/// The `ended_session_count` of a response.
fn count(ended: &[String]) -> i32 {
    i32::try_from(ended.len()).unwrap_or(i32::MAX)
}

fn email_taken() -> ApiError {
    ApiError::already_exists(
        "EMAIL_ALREADY_REGISTERED",
        "an account with this email address exists",
    )
}

fn secret_already_returned(id: &str) -> ApiError {
    ApiError::already_exists(
        "SECRET_ALREADY_RETURNED",
        "this request already created a key; its secret cannot be shown again",
    )
    .with_metadata("api_key_id", id.to_owned())
}

fn workspace_key_refused() -> ApiError {
    ApiError::permission_denied(
        "WORKSPACE_KEY_NOT_ALLOWED",
        "workspace API keys are for product services; use an admin key or a user token",
    )
}

/// One INVALID_ARGUMENT listing every violation (the first error's message).
fn merge_violations(first: &ApiError, all: &[ApiError]) -> ApiError {
    let mut merged = ApiError::new(
        tonic::Code::InvalidArgument,
        "INVALID_ARGUMENT",
        first.message(),
    );
    for e in all {
        let msg = e.message();
        // "invalid <field>: <why>"
        let (field, why) = msg
            .strip_prefix("invalid ")
            .and_then(|m| m.split_once(": "))
            .unwrap_or(("request", msg));
        merged = merged.violation(field, why);
    }
    merged
}

/// The shared domain handle.
pub type SharedCore = Arc<Core>;
