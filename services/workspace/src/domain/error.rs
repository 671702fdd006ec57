//! The service's refusals: one variant per reason, each reason string written once, and the one
//! mapping to the wire ([`ApiError`]). Messages speak the caller's language; the rules they
//! enforce are cited here, not in the messages.

use orgplane_platform::convert::etag_mismatch;
use orgplane_platform::error::{ApiError, Code};

use super::model::Refusal;
use orgplane_platform::error::Reason;

/// A refusal of the workspace service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// NOT_FOUND: no such workspace, or the caller may not know it exists (ORG-2).
    #[error("workspace {0} not found")]
    WorkspaceNotFound(String),
    /// NOT_FOUND: no such member of the workspace (`<workspace>/<user>`).
    #[error("workspace member {0} not found")]
    MemberNotFound(String),
    /// FAILED_PRECONDITION `WORKSPACE_ARCHIVED` (WS-2): archived workspaces are read-only.
    #[error("the workspace is archived and read-only")]
    Archived(String),
    /// ALREADY_EXISTS `WORKSPACE_NAME_TAKEN` (WS-1).
    #[error("an active workspace is already named {0:?}")]
    NameTaken(String),
    /// RESOURCE_EXHAUSTED `WORKSPACE_LIMIT_REACHED` (WS-1).
    #[error("an organization has at most {limit} active workspaces; archive one first")]
    LimitReached {
        /// The organization.
        organization_id: String,
        /// Its limit.
        limit: i64,
    },
    /// ALREADY_EXISTS `WORKSPACE_MEMBER_EXISTS`.
    #[error("the user already has a direct role here; use UpdateWorkspaceMember")]
    MemberExists,
    /// INVALID_ARGUMENT `WORKSPACE_BILLING_NOT_ASSIGNABLE` (WS-4).
    #[error("WORKSPACE_BILLING comes only from the organization's BILLING role")]
    BillingNotAssignable,
    /// INVALID_ARGUMENT on `role`: no role, or not one that can be assigned.
    #[error("must be WORKSPACE_ROLE_ADMIN, WORKSPACE_ROLE_DEVELOPER or WORKSPACE_ROLE_USER")]
    RoleRequired,
    /// FAILED_PRECONDITION `NOT_ORGANIZATION_MEMBER`.
    #[error("the user is not a member of the workspace's organization")]
    NotOrganizationMember(String),
    /// FAILED_PRECONDITION `ROLE_INHERITED_FROM_ORGANIZATION` (WS-7).
    #[error(
        "the member's organization role fixes their workspace role; change the organization role"
    )]
    InheritedFromOrganization(String),
    /// PERMISSION_DENIED `INSUFFICIENT_ROLE`.
    #[error("your organization role does not allow this")]
    LacksRole,
    /// PERMISSION_DENIED `WORKSPACE_API_KEY_NOT_ALLOWED`.
    #[error("workspace API keys may only call CheckAccess")]
    WorkspaceKeyNotAllowed,
    /// PERMISSION_DENIED `CHECK_OWN_ACCESS_ONLY` (WS-10).
    #[error("users and API keys may only check their own access")]
    CheckOwnAccessOnly,
    /// ABORTED `CONCURRENT_REQUEST` (AIP-155).
    #[error("the same request_id is being processed; retry")]
    ConcurrentRequest,
    /// ABORTED `ETAG_MISMATCH`: the resource (`workspace`, `workspace_member`) changed since it
    /// was read, on any replica.
    #[error("the {0} changed since it was read")]
    Stale(&'static str),
    /// UNAVAILABLE `REVISION_NOT_YET_APPLIED` (WS-10): this service's own state version.
    #[error("workspace revision {wanted} is not applied here yet; retry")]
    WorkspaceRevisionNotApplied {
        /// The revision asked for.
        wanted: i64,
        /// The revision the memory reflects.
        applied: i64,
    },
}

impl Error {
    /// The error of a refused direct-role change of `user_id` in `workspace_id`.
    pub fn refused(r: Refusal, user_id: &str, workspace_id: &str) -> Self {
        match r {
            Refusal::BillingNotAssignable => Error::BillingNotAssignable,
            Refusal::RoleRequired => Error::RoleRequired,
            Refusal::NotOrganizationMember => Error::NotOrganizationMember(user_id.to_owned()),
            Refusal::InheritedFromOrganization => {
                Error::InheritedFromOrganization(user_id.to_owned())
            }
            Refusal::NoDirectRole => Error::MemberNotFound(format!("{workspace_id}/{user_id}")),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::WorkspaceNotFound(id) => ApiError::not_found("workspace", &id),
            Error::MemberNotFound(id) => ApiError::not_found("workspace_member", &id),
            Error::Archived(id) => {
                ApiError::failed_precondition(Reason::WorkspaceArchived, &id, message)
            }
            Error::NameTaken(_) => ApiError::already_exists(Reason::WorkspaceNameTaken, message),
            Error::LimitReached {
                organization_id,
                limit,
            } => ApiError::quota_exceeded(
                Reason::WorkspaceLimitReached,
                &format!("organizations/{organization_id}/active_workspaces"),
                message,
            )
            .with_metadata("limit", limit.to_string()),
            Error::MemberExists => ApiError::already_exists(Reason::WorkspaceMemberExists, message),
            Error::BillingNotAssignable => ApiError::new(
                Code::InvalidArgument,
                Reason::WorkspaceBillingNotAssignable,
                message,
            )
            .violation("role", "WORKSPACE_BILLING cannot be assigned by hand"),
            Error::RoleRequired => ApiError::invalid_argument("role", message),
            Error::NotOrganizationMember(user) => {
                ApiError::failed_precondition(Reason::NotOrganizationMember, &user, message)
            }
            Error::InheritedFromOrganization(user) => {
                ApiError::failed_precondition(Reason::RoleInheritedFromOrganization, &user, message)
            }
            Error::LacksRole => orgplane_platform::roles::insufficient_role(message),
            Error::WorkspaceKeyNotAllowed => {
                ApiError::permission_denied(Reason::WorkspaceApiKeyNotAllowed, message)
            }
            Error::CheckOwnAccessOnly => {
                ApiError::permission_denied(Reason::CheckOwnAccessOnly, message)
            }
            Error::ConcurrentRequest => ApiError::aborted(Reason::ConcurrentRequest, message),
            Error::Stale(resource) => etag_mismatch(resource),
            Error::WorkspaceRevisionNotApplied { wanted, applied } => {
                ApiError::unavailable(Reason::RevisionNotYetApplied, message)
                    .with_metadata("min_revision", wanted.to_string())
                    .with_metadata("applied_revision", applied.to_string())
                    .retry_after(std::time::Duration::from_millis(100))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cite_no_internal_rule_numbers() {
        let all = [
            Error::BillingNotAssignable,
            Error::InheritedFromOrganization("u".into()),
            Error::NotOrganizationMember("u".into()),
            Error::Archived("w".into()),
            Error::Stale("workspace"),
        ];
        for e in all {
            let api = ApiError::from(e);
            assert!(
                !api.message().contains("WS-") && !api.message().contains("ORG-"),
                "{}",
                api.message()
            );
        }
    }
}
