//! The identity service's refusals: one enum, each reason string named once, and one mapping to
//! the wire ([`ApiError`]). Messages speak to the person using the API; reasons are for code.

use std::time::Duration;

use orgplane_platform::ApiError;
use orgplane_platform::error::Reason;
use orgplane_platform::roles::insufficient_role;

/// Which mailed link a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// An email-verification link (rule ID-2).
    Verification,
    /// A password-reset link (rules ID-8, ID-3).
    PasswordReset,
}

impl LinkKind {
    fn invalid(self) -> Reason {
        match self {
            LinkKind::Verification => Reason::VerificationTokenInvalid,
            LinkKind::PasswordReset => Reason::PasswordResetTokenInvalid,
        }
    }

    fn expired(self) -> Reason {
        match self {
            LinkKind::Verification => Reason::VerificationTokenExpired,
            LinkKind::PasswordReset => Reason::PasswordResetTokenExpired,
        }
    }
}

/// A refusal of the identity service.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Sign-in with an unknown address or a wrong password: one answer for both (rule ID-3).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Reauthenticate with a wrong password (rule ID-6): the account is known, no email is sent.
    #[error("the password is not correct")]
    WrongPassword,
    /// Another account has this address.
    #[error("an account with this email address exists")]
    EmailTaken,
    /// A mailed link that is unknown or was already used.
    #[error("the link is unknown or was already used")]
    LinkInvalid(LinkKind),
    /// A mailed link older than 24 hours (rules ID-2, ID-8).
    #[error("the link has expired; ask for a new one")]
    LinkExpired(LinkKind),
    /// A refresh token that is unknown, expired, or of an ended session.
    #[error("the refresh token is invalid or expired; sign in again")]
    RefreshTokenInvalid,
    /// A rotated refresh token came back: its session has ended (rule ID-4).
    #[error("the refresh token was already used; the session has ended, sign in again")]
    RefreshTokenReused,
    /// The access token's session has ended.
    #[error("the session has ended; sign in again")]
    SessionEnded,
    /// A wrong, stale or reused TOTP code or recovery code (rule ID-10).
    #[error("the code is not correct, or was already used; use a current code")]
    InvalidMfaCode,
    /// A factor proof from a user without such a factor (rule ID-10).
    #[error("{0}")]
    MfaNotEnrolled(&'static str),
    /// The user has as many factors as allowed (rule ID-10).
    #[error("at most {0} second factors per user; remove one first")]
    MfaFactorLimit(usize),
    /// An MFA challenge that is unknown, expired, used or ended by wrong proofs (rule ID-11).
    #[error("the sign-in challenge is unknown, expired or used; sign in again")]
    MfaChallengeInvalid,
    /// The organization replica has not caught up yet.
    #[error("organization roles are still being synchronized; retry shortly")]
    RolesNotSynced,
    /// A workspace API key where only user tokens or admin keys are accepted.
    #[error("workspace API keys are for product services; use an admin key or a user token")]
    WorkspaceKeyRefused,
    /// The caller's role does not allow the action; the message says which roles do.
    #[error("{0}")]
    InsufficientRole(&'static str),
    /// An ADMIN (or admin key) tried to reset the OWNER's credentials (rule ID-8).
    #[error("only the OWNER may reset the OWNER's credentials")]
    OwnerProtected,
    /// A service principal tried to reset a member's credentials (rule ID-8).
    #[error("a person or an admin API key must do this")]
    MemberCredentialsRequired,
    /// A user acting on another user's account; the message says what.
    #[error("{0}")]
    NotAccountOwner(&'static str),
    /// The user owns live organizations and cannot delete their account (rule ID-9).
    #[error("you own {count} organization(s); transfer ownership or delete them first")]
    OwnershipTransferRequired {
        /// One of the organizations.
        organization_id: String,
        /// How many the user owns.
        count: usize,
    },
    /// A BUSINESS account cannot become PERSONAL.
    #[error("a business account cannot become personal")]
    AccountTypeDowngrade {
        /// The user.
        user_id: String,
    },
    /// A repeated CreateApiKey: the key exists but its secret is never shown again (rule ID-7).
    #[error("this request already created a key; its secret cannot be shown again")]
    SecretAlreadyReturned {
        /// The key the first request created.
        api_key_id: String,
    },
    /// A workspace key for an archived workspace (rule ID-7).
    #[error("the workspace is archived; API keys need an active workspace")]
    WorkspaceArchived {
        /// The workspace.
        workspace_id: String,
    },
    /// IssueServiceToken with an unknown client or a wrong secret.
    #[error("unknown client or wrong secret")]
    InvalidClientCredentials,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let message = e.to_string();
        match e {
            Error::InvalidCredentials | Error::WrongPassword => {
                ApiError::unauthenticated(Reason::InvalidCredentials, message)
            }
            Error::EmailTaken => ApiError::already_exists(Reason::EmailAlreadyRegistered, message),
            Error::LinkInvalid(kind) => {
                ApiError::failed_precondition(kind.invalid(), "token", message)
            }
            Error::LinkExpired(kind) => {
                ApiError::failed_precondition(kind.expired(), "token", message)
            }
            Error::RefreshTokenInvalid => {
                ApiError::unauthenticated(Reason::RefreshTokenInvalid, message)
            }
            Error::RefreshTokenReused => {
                ApiError::unauthenticated(Reason::RefreshTokenReused, message)
            }
            Error::SessionEnded => ApiError::unauthenticated(Reason::SessionEnded, message),
            Error::InvalidMfaCode => ApiError::unauthenticated(Reason::InvalidMfaCode, message),
            Error::MfaNotEnrolled(_) => {
                ApiError::failed_precondition(Reason::MfaNotEnrolled, "mfa_factor", message)
            }
            Error::MfaFactorLimit(_) => {
                ApiError::quota_exceeded(Reason::MfaFactorLimit, "mfa_factors", message)
            }
            Error::MfaChallengeInvalid => {
                ApiError::unauthenticated(Reason::MfaChallengeInvalid, message)
            }
            Error::RolesNotSynced => ApiError::unavailable(Reason::RolesNotSynced, message)
                .retry_after(Duration::from_secs(1)),
            Error::WorkspaceKeyRefused => {
                ApiError::permission_denied(Reason::WorkspaceKeyNotAllowed, message)
            }
            Error::InsufficientRole(_) => insufficient_role(message),
            Error::OwnerProtected => ApiError::permission_denied(Reason::OwnerProtected, message),
            Error::MemberCredentialsRequired => {
                ApiError::permission_denied(Reason::MemberCredentialsRequired, message)
            }
            Error::NotAccountOwner(_) => {
                ApiError::permission_denied(Reason::NotAccountOwner, message)
            }
            Error::OwnershipTransferRequired {
                organization_id, ..
            } => ApiError::failed_precondition(
                Reason::OwnershipTransferRequired,
                &organization_id,
                message,
            )
            .with_metadata("organization_id", organization_id.clone()),
            Error::AccountTypeDowngrade { user_id } => ApiError::failed_precondition(
                Reason::AccountTypeDowngradeNotAllowed,
                &user_id,
                message,
            ),
            Error::SecretAlreadyReturned { api_key_id } => {
                ApiError::already_exists(Reason::SecretAlreadyReturned, message)
                    .with_metadata("api_key_id", api_key_id)
            }
            Error::WorkspaceArchived { workspace_id } => {
                ApiError::failed_precondition(Reason::WorkspaceArchived, &workspace_id, message)
            }
            Error::InvalidClientCredentials => {
                ApiError::unauthenticated(Reason::InvalidClientCredentials, message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_messages_reach_the_wire() {
        let e = ApiError::from(Error::LinkExpired(LinkKind::PasswordReset));
        assert_eq!(e.reason(), "PASSWORD_RESET_TOKEN_EXPIRED");
        let e = ApiError::from(Error::WrongPassword);
        assert_eq!(e.reason(), "INVALID_CREDENTIALS");
        assert!(!e.message().contains("email"));
        let e = ApiError::from(Error::InsufficientRole("only an OWNER may"));
        assert_eq!(e.reason(), "INSUFFICIENT_ROLE");
        assert_eq!(e.message(), "only an OWNER may");
    }
}
