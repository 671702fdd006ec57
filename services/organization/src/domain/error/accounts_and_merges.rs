//! The wire form of the account refusals (rules ACC-1 … ACC-5) and of the merge refusals (rule
//! ORG-15), split from the one mapping of [`super::Error`] to keep each file readable.

use orgplane_platform::ApiError;
use orgplane_platform::error::Reason;
use orgplane_proto::organization::v1::{MergeConflict, MergeConflictKind};

use super::Error;

/// The wire form of an account refusal `e` (whose message is `message`).
pub(super) fn to_api(e: Error, message: String) -> ApiError {
    match e {
        Error::AccountLimitReached {
            organization_id,
            max,
        } => ApiError::quota_exceeded(Reason::AccountLimitReached, &organization_id, message)
            .with_metadata("organization_id", organization_id)
            .with_metadata("limit", max.to_string()),
        Error::SubaccountLimitReached { account_id, max } => {
            ApiError::quota_exceeded(Reason::SubaccountLimitReached, &account_id, message)
                .with_metadata("account_id", account_id)
                .with_metadata("limit", max.to_string())
        }
        Error::AccountOwnerNotManaged { user_id } => {
            ApiError::failed_precondition(Reason::AccountOwnerNotManaged, &user_id, message)
                .with_metadata("user_id", user_id)
        }
        Error::AccountNotManaged { account_id, kind } => {
            ApiError::failed_precondition(Reason::AccountNotManaged, &account_id, message)
                .with_metadata("account_id", account_id)
                .with_metadata("type", kind)
        }
        Error::AccountClosed { account_id } => {
            ApiError::failed_precondition(Reason::AccountClosed, &account_id, message)
                .with_metadata("account_id", account_id)
        }
        Error::AccountHasSubaccounts { account_id } => {
            ApiError::failed_precondition(Reason::AccountHasSubaccounts, &account_id, message)
                .with_metadata("account_id", account_id)
        }
        Error::AccountAlreadyInOrganization { account_id, kind } => ApiError::failed_precondition(
            Reason::AccountAlreadyInOrganization,
            &account_id,
            message,
        )
        .with_metadata("account_id", account_id)
        .with_metadata("type", kind),
        Error::AccountIsSubaccount { account_id, .. } => {
            ApiError::failed_precondition(Reason::AccountIsSubaccount, &account_id, message)
                .with_metadata("account_id", account_id)
        }
        Error::AccountImportNotPending {
            account_id,
            organization_id,
        } => ApiError::failed_precondition(Reason::AccountImportNotPending, &account_id, message)
            .with_metadata("account_id", account_id)
            .with_metadata("organization_id", organization_id),
        Error::AccountMemberExists {
            account_id,
            user_id,
        } => ApiError::already_exists(Reason::AccountMemberExists, message)
            .with_metadata("account_id", account_id)
            .with_metadata("user_id", user_id),
        Error::NotOrganizationMember { user_id } => {
            ApiError::failed_precondition(Reason::NotOrganizationMember, &user_id, message)
                .with_metadata("user_id", user_id)
        }
        Error::AccountOwnerDomainNotVerified { account_id } => {
            ApiError::failed_precondition(Reason::EmailDomainNotVerified, &account_id, message)
                .with_metadata("account_id", account_id)
        }
        other => ApiError::internal(format!("not an account or merge refusal: {other}")),
    }
}

/// A refusal of MergeOrganizations (rule ORG-15).
#[derive(Debug, thiserror::Error)]
pub enum MergeRefusal {
    /// FAILED_PRECONDITION `MERGE_PRIME_DOMAIN_NOT_VERIFIED`.
    #[error(
        "the prime organization holds no verified domain; verify one of its domains before merging into it"
    )]
    PrimeDomainNotVerified {
        /// The prime.
        organization_id: String,
    },
    /// FAILED_PRECONDITION `MERGE_OWNER_NOT_IN_PRIME_DOMAIN`.
    #[error(
        "the candidate's owner's email address is not in a verified domain of the prime organization ({domain_name})"
    )]
    OwnerNotInPrimeDomain {
        /// The email address's domain.
        domain_name: String,
    },
    /// FAILED_PRECONDITION `MERGE_CANDIDATE_HAS_VERIFIED_DOMAIN`.
    #[error("the candidate organization holds the verified domain {domain_name}; delete it first")]
    CandidateHasVerifiedDomain {
        /// The domain.
        domain_name: String,
    },
    /// FAILED_PRECONDITION `MERGE_HIERARCHY_UNSUPPORTED` (rule ORG-13).
    #[error("an operator or a child organization cannot be merged")]
    HierarchyUnsupported {
        /// The operator or child.
        organization_id: String,
    },
    /// FAILED_PRECONDITION `MERGE_CONFLICTS`: the blocking conflicts, each listed.
    #[error(
        "{} blocking merge conflict(s) remain; preview the merge (validate_only) and resolve them",
        conflicts.len()
    )]
    Conflicts {
        /// The blocking conflicts.
        conflicts: Vec<MergeConflict>,
    },
    /// UNAVAILABLE `WORKSPACE_SERVICE_UNAVAILABLE`: the workspace service did not answer.
    #[error("the workspace service could not be asked for the organizations' workspaces; retry")]
    WorkspaceServiceUnavailable,
}

/// The wire form of a merge refusal `e` (whose message is `message`).
pub(super) fn merge_to_api(e: MergeRefusal, message: String) -> ApiError {
    match e {
        MergeRefusal::PrimeDomainNotVerified { organization_id } => ApiError::failed_precondition(
            Reason::MergePrimeDomainNotVerified,
            &organization_id,
            message,
        )
        .with_metadata("organization_id", organization_id),
        MergeRefusal::OwnerNotInPrimeDomain { domain_name } => {
            ApiError::failed_precondition(Reason::MergeOwnerNotInPrimeDomain, &domain_name, message)
                .with_metadata("domain_name", domain_name)
        }
        MergeRefusal::CandidateHasVerifiedDomain { domain_name } => ApiError::failed_precondition(
            Reason::MergeCandidateHasVerifiedDomain,
            &domain_name,
            message,
        )
        .with_metadata("domain_name", domain_name),
        MergeRefusal::HierarchyUnsupported { organization_id } => ApiError::failed_precondition(
            Reason::MergeHierarchyUnsupported,
            &organization_id,
            message,
        )
        .with_metadata("organization_id", organization_id),
        // One PreconditionFailure violation here (the first conflict); the handler lists every
        // conflict in the detail (`ApiError` holds one violation per kind of detail).
        MergeRefusal::Conflicts { conflicts } => {
            let first = conflicts.first();
            let subject = first.map(conflict_subject).unwrap_or_default();
            ApiError::failed_precondition(Reason::MergeConflicts, &subject, message)
                .with_metadata("conflicts", conflicts.len().to_string())
        }
        MergeRefusal::WorkspaceServiceUnavailable => {
            ApiError::unavailable(Reason::WorkspaceServiceUnavailable, message)
        }
    }
}

/// The PreconditionFailure `type` of a merge conflict: its kind's name.
pub fn conflict_type(c: &MergeConflict) -> String {
    MergeConflictKind::try_from(c.kind)
        .unwrap_or(MergeConflictKind::Unspecified)
        .as_str_name()
        .to_owned()
}

/// The PreconditionFailure `subject` of a merge conflict: the candidate's resource, else the
/// prime's, else the name (empty for the limits).
pub fn conflict_subject(c: &MergeConflict) -> String {
    [&c.candidate_resource_id, &c.prime_resource_id, &c.name]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default()
}
