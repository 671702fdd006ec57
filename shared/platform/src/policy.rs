//! An organization's security policy (rule ORG-16) and the one step-up check (rules ID-6,
//! ID-12), enforced the same way by every service for the organization a call is about.
//!
//! The organization service owns the policy and publishes it (`SecurityPolicyChanged`, and in its
//! `ListRoleAssignments` snapshot); the other services keep it in their role replica
//! ([`crate::replica`]). Where a service resolves a user's role in an organization it calls
//! [`SecurityPolicy::admit`]: a token that does not satisfy the policy is refused
//! (UNAUTHENTICATED `MFA_REQUIRED` or `SSO_REQUIRED`) in that organization only. Sensitive
//! actions call [`require_recent_sign_in`], which weighs the sign-in's age against the policy's
//! re-authentication age and the risk signals identity recorded in the token.

use orgplane_proto::organization::v1 as proto;
use orgplane_proto::organization::v1::OrgRole;

use crate::auth::{Principal, UserPrincipal};
use crate::error::Reason;
use crate::error::{ApiError, ApiResult};

/// UNAUTHENTICATED reason: the organization requires a second factor this sign-in lacks.
pub const MFA_REQUIRED: Reason = Reason::MfaRequired;
/// UNAUTHENTICATED reason: the organization allows only single sign-on.
pub const SSO_REQUIRED: Reason = Reason::SsoRequired;
/// UNAUTHENTICATED reason: a sensitive action needs a fresh (or safer) sign-in.
pub const REAUTHENTICATION_REQUIRED: Reason = Reason::ReauthenticationRequired;

/// The re-authentication age of rule ID-6 when nothing else is configured.
pub const DEFAULT_REAUTH_MAX_AGE_SECS: i64 = 5 * 60;
/// The shortest re-authentication age a policy may set.
pub const MIN_REAUTH_MAX_AGE_SECS: i64 = 60;
/// The longest re-authentication age a policy may set (one day).
pub const MAX_REAUTH_MAX_AGE_SECS: i64 = 24 * 60 * 60;

/// RFC 8176 `amr` values Orgplane issues.
pub mod amr {
    /// A password.
    pub const PASSWORD: &str = "pwd";
    /// A one-time code (TOTP, or a recovery code).
    pub const OTP: &str = "otp";
    /// A proof of possession of a hardware-bound key (a passkey).
    pub const HARDWARE_KEY: &str = "hwk";
    /// More than one factor.
    pub const MFA: &str = "mfa";
    /// A federated sign-in (SSO).
    pub const EXTERNAL: &str = "ext";
}

/// The risk signals of rule ID-12, as identity records them in the token's `risk` claim and as
/// [`require_recent_sign_in`] names them in its error's `signals` metadata.
pub mod signal {
    /// The sign-in is older than the re-authentication age.
    pub const STALE_SIGN_IN: &str = "stale_sign_in";
    /// The sign-in came from an address not seen for this account in 30 days.
    pub const NEW_ADDRESS: &str = "new_address";
    /// The account had repeated failed sign-in attempts in the hour before.
    pub const RECENT_FAILURES: &str = "recent_failures";
    /// A second factor is required for the action and the sign-in has none.
    pub const SECOND_FACTOR_MISSING: &str = "second_factor_missing";
}

/// When an organization requires second factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MfaRequirement {
    /// The members' choice.
    #[default]
    Optional,
    /// Every member.
    Required,
    /// OWNER, ADMIN and BILLING.
    RequiredForPrivilegedRoles,
}

/// An organization's security policy, as every service enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityPolicy {
    /// When second factors are required.
    pub mfa: MfaRequirement,
    /// The longest a sign-in may be for sensitive actions, in seconds.
    pub reauth_max_age_secs: i64,
    /// Whether members may sign in with a password.
    pub password_allowed: bool,
    /// Whether members may sign in through SSO.
    pub sso_allowed: bool,
}

impl Default for SecurityPolicy {
    fn default() -> Self {
        Self {
            mfa: MfaRequirement::Optional,
            reauth_max_age_secs: DEFAULT_REAUTH_MAX_AGE_SECS,
            password_allowed: true,
            sso_allowed: true,
        }
    }
}

/// Bits of [`SecurityPolicy::methods_bits`].
const METHOD_PASSWORD: i32 = 1;
const METHOD_SSO: i32 = 2;

impl SecurityPolicy {
    /// The default policy with `reauth_max_age_secs` as its re-authentication age.
    pub fn with_reauth_max_age(reauth_max_age_secs: i64) -> Self {
        Self {
            reauth_max_age_secs,
            ..Self::default()
        }
    }

    /// The policy a user's own account carries for changes to its credentials (rule ID-10): a
    /// user with an active second factor must have used one.
    pub fn own_account(user: &UserPrincipal, reauth_max_age_secs: i64) -> Self {
        Self {
            mfa: if user.sign_in.mfa_enrolled {
                MfaRequirement::Required
            } else {
                MfaRequirement::Optional
            },
            ..Self::with_reauth_max_age(reauth_max_age_secs)
        }
    }

    /// Whether a member holding `role` must have signed in with a second factor.
    pub fn requires_mfa(&self, role: Option<OrgRole>) -> bool {
        match self.mfa {
            MfaRequirement::Optional => false,
            MfaRequirement::Required => true,
            MfaRequirement::RequiredForPrivilegedRoles => matches!(
                role,
                Some(OrgRole::Owner | OrgRole::Admin | OrgRole::Billing)
            ),
        }
    }

    /// UNAUTHENTICATED `MFA_REQUIRED` (or `SSO_REQUIRED`) when `user`, holding `role` in
    /// `organization_id`, signed in in a way this policy does not accept; `Ok` otherwise (rule
    /// ORG-16). Only user tokens are judged: API keys and services carry no sign-in.
    pub fn admit(
        &self,
        organization_id: &str,
        user: &UserPrincipal,
        role: Option<OrgRole>,
    ) -> ApiResult<()> {
        if !enforced() {
            return Ok(());
        }
        let federated = user.sign_in.has(amr::EXTERNAL);
        if !self.password_allowed && !federated {
            return Err(ApiError::unauthenticated(
                SSO_REQUIRED,
                "this organization requires signing in through its single sign-on",
            )
            .with_metadata("organization_id", organization_id));
        }
        if self.requires_mfa(role) && !user.sign_in.has_second_factor() {
            return Err(mfa_required(organization_id, user));
        }
        Ok(())
    }

    /// [`Self::admit`] for any principal: API keys and services pass.
    pub fn admit_principal(
        &self,
        organization_id: &str,
        principal: &Principal,
        role: Option<OrgRole>,
    ) -> ApiResult<()> {
        match principal {
            Principal::User(u) => self.admit(organization_id, u, role),
            _ => Ok(()),
        }
    }

    /// The allowed sign-in methods as a bit set (storage of replicas).
    pub fn methods_bits(&self) -> i32 {
        (if self.password_allowed {
            METHOD_PASSWORD
        } else {
            0
        }) | (if self.sso_allowed { METHOD_SSO } else { 0 })
    }

    /// A policy from its stored parts (see [`Self::methods_bits`]).
    pub fn from_parts(mfa: i32, reauth_max_age_secs: i64, methods_bits: i32) -> Self {
        Self {
            mfa: mfa_of(mfa),
            reauth_max_age_secs,
            password_allowed: methods_bits & METHOD_PASSWORD != 0,
            sso_allowed: methods_bits & METHOD_SSO != 0,
        }
    }

    /// The policy a published message describes; unset parts take the defaults.
    pub fn from_proto(p: &proto::SecurityPolicy) -> Self {
        let methods: Vec<proto::SignInMethod> = p
            .allowed_sign_in_methods
            .iter()
            .filter_map(|m| proto::SignInMethod::try_from(*m).ok())
            .collect();
        let default = Self::default();
        Self {
            mfa: mfa_of(p.mfa_requirement),
            reauth_max_age_secs: p
                .reauthentication_max_age
                .as_ref()
                .map(|d| d.seconds)
                .filter(|s| *s > 0)
                .unwrap_or(default.reauth_max_age_secs),
            password_allowed: methods.is_empty()
                || methods.contains(&proto::SignInMethod::Password),
            sso_allowed: methods.is_empty() || methods.contains(&proto::SignInMethod::Sso),
        }
    }

    /// The message for this policy: the admission fields; output-only fields and settings only
    /// the organization service applies (the invite restriction) are left unset.
    pub fn to_proto(&self, organization_id: &str) -> proto::SecurityPolicy {
        let mut methods = Vec::new();
        if self.password_allowed {
            methods.push(proto::SignInMethod::Password as i32);
        }
        if self.sso_allowed {
            methods.push(proto::SignInMethod::Sso as i32);
        }
        proto::SecurityPolicy {
            organization_id: organization_id.to_owned(),
            mfa_requirement: match self.mfa {
                MfaRequirement::Optional => proto::MfaRequirement::Optional,
                MfaRequirement::Required => proto::MfaRequirement::Required,
                MfaRequirement::RequiredForPrivilegedRoles => {
                    proto::MfaRequirement::RequiredForPrivilegedRoles
                }
            } as i32,
            reauthentication_max_age: Some(prost_types::Duration {
                seconds: self.reauth_max_age_secs,
                nanos: 0,
            }),
            allowed_sign_in_methods: methods,
            ..Default::default()
        }
    }
}

fn mfa_of(v: i32) -> MfaRequirement {
    match proto::MfaRequirement::try_from(v) {
        Ok(proto::MfaRequirement::Required) => MfaRequirement::Required,
        Ok(proto::MfaRequirement::RequiredForPrivilegedRoles) => {
            MfaRequirement::RequiredForPrivilegedRoles
        }
        _ => MfaRequirement::Optional,
    }
}

/// UNAUTHENTICATED `MFA_REQUIRED` for `user` in `organization_id`, with metadata saying whether
/// the user must enroll a factor first.
pub fn mfa_required(organization_id: &str, user: &UserPrincipal) -> ApiError {
    let enrolled = user.sign_in.mfa_enrolled;
    let message = if enrolled {
        "this organization requires a second factor: sign in again with it (or call Reauthenticate with a code)"
    } else {
        "this organization requires a second factor: enroll one (StartTotpEnrollment), then use it"
    };
    ApiError::unauthenticated(MFA_REQUIRED, message)
        .with_metadata("organization_id", organization_id)
        .with_metadata("enrollment_required", (!enrolled).to_string())
}

/// What a sensitive action asks of the sign-in: the policy it is judged by, the caller's role
/// under it, and the organization (for the error's metadata).
#[derive(Debug, Clone, Copy)]
pub struct StepUp<'a> {
    /// The policy in force.
    pub policy: &'a SecurityPolicy,
    /// The caller's role in the organization, when the action is about one.
    pub role: Option<OrgRole>,
    /// The organization the action is about; `None` for a user's own account.
    pub organization_id: Option<&'a str>,
}

/// The user, when `principal` signed in recently enough and safely enough for a sensitive action
/// (rules ID-6, ID-12); otherwise UNAUTHENTICATED `REAUTHENTICATION_REQUIRED` with metadata
/// `required` (`password` or `second_factor`), `max_age_seconds` and `signals` (comma-separated,
/// see [`signal`]). Callers other than users get PERMISSION_DENIED `USER_CREDENTIALS_REQUIRED`.
pub fn require_recent_sign_in<'p>(
    principal: &'p Principal,
    step_up: StepUp<'_>,
    now_secs: i64,
) -> ApiResult<&'p UserPrincipal> {
    let user = principal.require_user()?;
    let signals = risk_signals(user, &step_up, now_secs);
    if signals.is_empty() {
        return Ok(user);
    }
    let second_factor = user.sign_in.mfa_enrolled || step_up.policy.requires_mfa(step_up.role);
    let required = if second_factor {
        "second_factor"
    } else {
        "password"
    };
    let message = if second_factor {
        "this action needs a recent sign-in with a second factor: call Reauthenticate with a code (or a passkey) and retry"
    } else {
        "this action needs a recent sign-in: call Reauthenticate with the password and retry"
    };
    let mut err = ApiError::unauthenticated(REAUTHENTICATION_REQUIRED, message)
        .with_metadata("required", required)
        .with_metadata(
            "max_age_seconds",
            step_up.policy.reauth_max_age_secs.to_string(),
        )
        .with_metadata("signals", signals.join(","));
    if let Some(org) = step_up.organization_id {
        err = err.with_metadata("organization_id", org);
    }
    Err(err)
}

/// The signals of rule ID-12 that fire for `user` (empty: the sign-in will do).
pub fn risk_signals(
    user: &UserPrincipal,
    step_up: &StepUp<'_>,
    now_secs: i64,
) -> Vec<&'static str> {
    let mut signals = Vec::new();
    if now_secs - user.auth_time > step_up.policy.reauth_max_age_secs {
        signals.push(signal::STALE_SIGN_IN);
    }
    for recorded in [signal::NEW_ADDRESS, signal::RECENT_FAILURES] {
        if user.sign_in.risk.iter().any(|r| r == recorded) {
            signals.push(recorded);
        }
    }
    if step_up.policy.requires_mfa(step_up.role) && !user.sign_in.has_second_factor() {
        signals.push(signal::SECOND_FACTOR_MISSING);
    }
    signals
}

static ENFORCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether [`SecurityPolicy::admit`] refuses anything. Always true in a deployment.
pub fn enforced() -> bool {
    ENFORCED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Switches policy enforcement off in this process: only the control arm of the tests that prove
/// enforcement (a test must be able to fail) calls this.
#[doc(hidden)]
pub fn disable_enforcement_for_control_arm() {
    ENFORCED.store(false, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
