//! Who is calling: the principal the auth layer puts in every request's extensions, and the
//! guards handlers use to require a kind of caller.

use std::sync::Arc;

use super::{Capabilities, Capability};
use crate::error::Reason;
use crate::error::{ApiError, ApiResult};

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
    /// How the user signed in (rules ID-11, ID-12).
    pub sign_in: SignIn,
}

/// How a user signed in, from the access token's `amr`, `mfa_enrolled` and `risk` claims: what
/// security policies (rule ORG-16) and step-up checks (rule ID-12) judge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignIn {
    /// RFC 8176 authentication methods (`pwd`, `otp`, `hwk`, `mfa`, `ext`).
    pub amr: Vec<String>,
    /// Whether the user had an active second factor when the token was issued.
    pub mfa_enrolled: bool,
    /// The risk signals identity saw at this sign-in (`new_address`, `recent_failures`).
    pub risk: Vec<String>,
}

impl SignIn {
    /// Whether `amr` names `method`.
    pub fn has(&self, method: &str) -> bool {
        self.amr.iter().any(|m| m == method)
    }

    /// Whether the sign-in used a second factor (`amr` has `mfa`).
    pub fn has_second_factor(&self) -> bool {
        self.has(crate::policy::amr::MFA)
    }
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

/// A service account authenticated by a service token: an Orgplane service or a product
/// backend, holding the capabilities its token's `scope` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePrincipal {
    /// The service account's name (the token's `sub`; the audit actor).
    pub name: String,
    /// What the account may do.
    pub capabilities: Capabilities,
}

impl ServicePrincipal {
    /// PERMISSION_DENIED `CAPABILITY_REQUIRED` unless the account holds `cap`.
    pub fn require(&self, cap: Capability) -> ApiResult<()> {
        self.capabilities.require(cap, &self.name)
    }
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
                Reason::UserCredentialsRequired,
                "this call needs a user's access token",
            )),
        }
    }

    /// The service holding `cap`, or UNAUTHENTICATED (no credentials) / PERMISSION_DENIED
    /// (another kind of caller, or a service account without `cap`): the guard of internal
    /// RPCs.
    pub fn require_capability(&self, cap: Capability) -> ApiResult<&ServicePrincipal> {
        let service = self.service()?;
        service.require(cap)?;
        Ok(service)
    }

    /// The service account whatever it holds, or UNAUTHENTICATED / PERMISSION_DENIED; callers
    /// go on to require a capability (Watch, whose capability depends on the request).
    pub(crate) fn service(&self) -> ApiResult<&ServicePrincipal> {
        match self {
            Principal::Service(s) => Ok(s),
            Principal::Anonymous => Err(credentials_required()),
            _ => Err(ApiError::permission_denied(
                Reason::ServicePrincipalRequired,
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

pub(super) fn credentials_required() -> ApiError {
    ApiError::unauthenticated(
        Reason::CredentialsRequired,
        "send an access token (authorization: Bearer …) or an API key (x-api-key)",
    )
}
