//! The organization service's refusals: one enum, each reason named once, and the one mapping
//! onto the wire ([`ApiError`]: canonical code, `ErrorInfo` reason, details). Errors of the
//! platform (database, page tokens, revision waits, identity being down) pass through as
//! [`Error::Api`]. The mapping of the account (ACC-1 … ACC-5) and merge (ORG-15) refusals is in
//! the child module `accounts_and_merges`.

mod accounts_and_merges;

pub use accounts_and_merges::{MergeRefusal, conflict_subject, conflict_type};

use orgplane_platform::ApiError;
use orgplane_platform::error::Reason;

/// A refusal of the organization service, or a platform error passed through.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// INVALID_ARGUMENT: `field` is malformed (`why` says how).
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The request field.
        field: String,
        /// What is wrong with it.
        why: String,
    },
    /// NOT_FOUND: the resource does not exist or the caller may not know it does (ORG-2).
    #[error("{resource} {id:?} not found")]
    NotFound {
        /// `organization`, `member`, `invite`, `unit`.
        resource: &'static str,
        /// The id the request named.
        id: String,
    },
    /// ALREADY_EXISTS `ORGANIZATION_NAME_TAKEN` (ORG-1).
    #[error("you already created an organization with this name")]
    NameTaken,
    /// ABORTED `CONCURRENT_RETRY`: a call with the same request id is in flight (AIP-155).
    #[error("a call with the same request_id is in progress; retry")]
    ConcurrentRetry,
    /// FAILED_PRECONDITION `USER_NOT_FOUND`: identity does not know the calling user.
    #[error("the identity service does not know the calling user")]
    UserNotFound {
        /// The caller's user id.
        user_id: String,
    },
    /// FAILED_PRECONDITION `BUSINESS_ACCOUNT_REQUIRED` (ID-1).
    #[error("only business accounts may create organizations")]
    BusinessAccountRequired {
        /// The caller's user id.
        user_id: String,
    },
    /// FAILED_PRECONDITION `EMAIL_NOT_VERIFIED`: the caller must verify their email before
    /// `before` ("creating an organization", "accepting an invite").
    #[error("verify your email address before {before}")]
    EmailNotVerified {
        /// The caller's user id.
        user_id: String,
        /// What the verification must precede.
        before: &'static str,
    },
    /// PERMISSION_DENIED `ADMIN_API_KEY_REQUIRED`: GetMyOrganization without an admin key.
    #[error("GetMyOrganization answers only to an admin API key")]
    AdminKeyRequired,
    /// PERMISSION_DENIED `ADMIN_API_KEY_REQUIRED`: a workspace key called this service.
    #[error(
        "workspace API keys cannot call the organization service; use an admin API key or a user token"
    )]
    WorkspaceKeyRefused,
    /// PERMISSION_DENIED `USER_CREDENTIALS_REQUIRED` (ORG-5): with an API key, no one may be
    /// removed from, demoted from or promoted to the ADMIN role (nor invited as one).
    #[error(
        "only a person signed in with their own account may give, take or remove the ADMIN role; an API key may not"
    )]
    AdminRoleNeedsAPerson,
    /// FAILED_PRECONDITION `MFA_ENROLLMENT_REQUIRED` (ORG-16): the new security policy would
    /// require a second factor of the caller, whose sign-in has none.
    #[error(
        "this policy would require a second factor of you, and your sign-in has none: enroll one (StartTotpEnrollment), sign in with it, then change the policy"
    )]
    MfaEnrollmentRequired {
        /// The organization.
        organization_id: String,
    },
    /// FAILED_PRECONDITION `SSO_SIGN_IN_REQUIRED` (ORG-16): the new security policy would
    /// refuse password sign-ins, and the caller signed in with a password.
    #[error(
        "this policy would refuse password sign-ins, and you signed in with a password: sign in through the organization's single sign-on, then change the policy"
    )]
    SsoSignInRequired {
        /// The organization.
        organization_id: String,
    },
    /// INVALID_ARGUMENT `CONFIRM_NAME_MISMATCH` (ORG-7).
    #[error("invalid confirm_name: type the organization's exact name to delete it")]
    ConfirmNameMismatch,
    /// FAILED_PRECONDITION `ORGANIZATION_NOT_DELETED`: undelete of an active organization.
    #[error("the organization is not deleted")]
    NotDeleted {
        /// The organization.
        organization_id: String,
    },
    /// INVALID_ARGUMENT `OWNER_ROLE_NOT_ASSIGNABLE` (ORG-4): OWNER is given by transfer only.
    #[error("invalid {field}: OWNER is given only by TransferOwnership")]
    OwnerNotAssignable {
        /// The request field.
        field: &'static str,
    },
    /// FAILED_PRECONDITION `OWNER_ROLE_IMMUTABLE` (ORG-4).
    #[error("the OWNER's role cannot be changed; use TransferOwnership")]
    OwnerRoleImmutable {
        /// The OWNER.
        user_id: String,
    },
    /// FAILED_PRECONDITION `OWNERSHIP_TRANSFER_REQUIRED` (ORG-4).
    #[error("the OWNER cannot be removed; transfer ownership first")]
    OwnershipTransferRequired {
        /// The OWNER.
        user_id: String,
    },
    /// ALREADY_EXISTS `ALREADY_A_MEMBER` (ORG-6): `message` says whose membership.
    #[error("{message}")]
    AlreadyAMember {
        /// "a member of the organization has this email" or "you are already a member".
        message: &'static str,
    },
    /// ALREADY_EXISTS `INVITE_ALREADY_PENDING` (ORG-6).
    #[error("a pending invite for this email exists")]
    InviteAlreadyPending,
    /// FAILED_PRECONDITION `INVITE_NOT_PENDING`.
    #[error("the invite was already accepted or withdrawn")]
    InviteNotPending {
        /// The invite.
        invite_id: String,
    },
    /// FAILED_PRECONDITION `INVITE_EXPIRED` (ORG-6).
    #[error("the invite expired; ask for a new one")]
    InviteExpired {
        /// The invite.
        invite_id: String,
    },
    /// FAILED_PRECONDITION `INVITE_EMAIL_MISMATCH` (ORG-6).
    #[error("the invite was sent to another email address")]
    InviteEmailMismatch {
        /// The invite.
        invite_id: String,
    },
    /// FAILED_PRECONDITION `UNIT_DEPTH_EXCEEDED` (ORG-9).
    #[error("units may be nested at most {max} levels deep")]
    UnitTooDeep {
        /// The parent the unit would sit under.
        parent_unit_id: String,
        /// The deepest level.
        max: i32,
    },
    /// FAILED_PRECONDITION `UNIT_CYCLE`.
    #[error("a unit cannot be moved under itself or its descendants")]
    UnitCycle {
        /// The parent asked for.
        parent_unit_id: String,
    },
    /// FAILED_PRECONDITION `UNIT_HAS_CHILDREN` (ORG-9).
    #[error("delete or move the unit's child units first")]
    UnitHasChildren {
        /// The unit.
        unit_id: String,
    },
    /// FAILED_PRECONDITION `UNIT_HAS_WORKSPACES` (ORG-9).
    #[error("workspaces belong to this unit; move them first")]
    UnitHasWorkspaces {
        /// The unit.
        unit_id: String,
    },
    /// ALREADY_EXISTS `DOMAIN_ALREADY_REGISTERED` (ORG-14): the organization registered it.
    #[error("the organization registered {domain_name} already")]
    DomainAlreadyRegistered {
        /// The domain.
        domain_name: String,
    },
    /// RESOURCE_EXHAUSTED `DOMAIN_LIMIT` (ORG-14).
    #[error("an organization may register at most {max} domains; delete one first")]
    DomainLimit {
        /// The organization.
        organization_id: String,
        /// The limit.
        max: u64,
    },
    /// FAILED_PRECONDITION `DOMAIN_CLAIMED` (ORG-14): another organization holds the domain
    /// VERIFIED with an enforcing policy.
    #[error(
        "another organization holds {domain_name} verified with an enforcing policy (RESTRICTED or AUTO_ENROLL); use policy NONE or BLOCKED"
    )]
    DomainClaimed {
        /// The domain.
        domain_name: String,
    },
    /// FAILED_PRECONDITION `DOMAIN_EXPIRED` (ORG-14).
    #[error("the domain was not verified before its expire time; delete it and register it again")]
    DomainExpired {
        /// The domain's id.
        domain_id: String,
    },
    /// RESOURCE_EXHAUSTED `RATE_LIMITED` (ORG-14): the domain was checked moments ago.
    #[error("the domain was checked moments ago; retry in {} ms", retry.as_millis())]
    CheckedTooOften {
        /// When to retry.
        retry: std::time::Duration,
    },
    /// FAILED_PRECONDITION `EMAIL_DOMAIN_NOT_VERIFIED` (ORG-6): the organization invites only
    /// addresses of its VERIFIED domains.
    #[error(
        "the organization invites only addresses of its verified domains, and {domain} is not one"
    )]
    EmailDomainNotVerified {
        /// The address's domain.
        domain: String,
    },
    /// FAILED_PRECONDITION `EMAIL_DOMAIN_BLOCKED` (ORG-14): the organization holds the
    /// address's domain VERIFIED with policy BLOCKED.
    #[error("addresses of {domain} cannot join this organization (its domain policy is BLOCKED)")]
    EmailDomainBlocked {
        /// The address's domain.
        domain: String,
    },
    /// FAILED_PRECONDITION `ORGANIZATION_DELETED`.
    #[error("the organization is deleted")]
    OrganizationDeleted {
        /// The organization.
        organization_id: String,
    },
    /// UNAVAILABLE `SNAPSHOT_UNAVAILABLE`: a producer's snapshot RPC failed during a re-sync.
    #[error("{what}")]
    SnapshotUnavailable {
        /// What failed.
        what: String,
    },
    /// An error of the platform (database, page token, role matrix, …), passed through.
    /// FAILED_PRECONDITION `SETTING_ENFORCED_BY_OPERATOR` (ORG-13): the organization's operator
    /// ENFORCED the field.
    #[error(
        "the operator of this organization enforces {field}; it cannot be changed here (ask the operator)"
    )]
    SettingEnforcedByOperator {
        /// The field, as the request names it.
        field: String,
        /// The operator.
        operator_organization_id: String,
    },
    /// FAILED_PRECONDITION `NOT_AN_OPERATOR` (ORG-13): child organizations and ENFORCED fields
    /// belong to organizations of kind OPERATOR.
    #[error(
        "the organization is not an operator: only an organization created with kind OPERATOR has child organizations and enforced settings"
    )]
    NotAnOperator {
        /// The organization.
        organization_id: String,
    },
    /// PERMISSION_DENIED `INSUFFICIENT_ROLE` (ORG-13): an operator acting in a child may read,
    /// edit, delete and undelete it, invite its first owner and set its branding and security
    /// policy; nothing else.
    #[error(
        "as the operator of this organization you may read it, edit it, delete or restore it, invite its first owner and set its branding and security policy; this needs a role in the organization itself"
    )]
    OperatorMayNot,
    /// FAILED_PRECONDITION `ORGANIZATION_HAS_OWNER` (ORG-13): an OWNER invite of a child
    /// organization is accepted only while the child has no owner.
    #[error(
        "the organization already has an owner; this invite can no longer make you its owner (ask for a new invite)"
    )]
    OrganizationHasOwner {
        /// The invite.
        invite_id: String,
    },
    /// FAILED_PRECONDITION `OPERATOR_HAS_CHILDREN` (ORG-13): an operator is deleted only once
    /// its child organizations are purged.
    #[error(
        "the organization is the operator of child organizations that are not purged yet; delete them first and retry once they are purged"
    )]
    OperatorHasChildren {
        /// The operator.
        organization_id: String,
    },
    /// RESOURCE_EXHAUSTED `ACCOUNT_LIMIT_REACHED` (ACC-1).
    #[error("the organization holds {max} open accounts, as many as it may; close one first")]
    AccountLimitReached {
        /// The organization.
        organization_id: String,
        /// The limit.
        max: u64,
    },
    /// RESOURCE_EXHAUSTED `SUBACCOUNT_LIMIT_REACHED` (ACC-4).
    #[error("the account has {max} open subaccounts, as many as it may; close one first")]
    SubaccountLimitReached {
        /// The parent account.
        account_id: String,
        /// The limit.
        max: u64,
    },
    /// FAILED_PRECONDITION `ACCOUNT_OWNER_NOT_MANAGED` (ACC-3): the owner must be a member.
    #[error("an account's owner must be a member of its organization, and this user is not")]
    AccountOwnerNotManaged {
        /// The user.
        user_id: String,
    },
    /// FAILED_PRECONDITION `ACCOUNT_NOT_MANAGED` (ACC-2): INDEPENDENT or PENDING here.
    #[error("the account is {kind} here; only its home organization may change or close it")]
    AccountNotManaged {
        /// The account.
        account_id: String,
        /// `INDEPENDENT` or `PENDING`.
        kind: &'static str,
    },
    /// FAILED_PRECONDITION `ACCOUNT_CLOSED`.
    #[error("the account is closed")]
    AccountClosed {
        /// The account.
        account_id: String,
    },
    /// FAILED_PRECONDITION `ACCOUNT_HAS_SUBACCOUNTS` (ACC-4).
    #[error("the account still has open subaccounts; close them first")]
    AccountHasSubaccounts {
        /// The account.
        account_id: String,
    },
    /// FAILED_PRECONDITION `ACCOUNT_ALREADY_IN_ORGANIZATION` (ACC-2).
    #[error("the account is already in this organization's list (as {kind})")]
    AccountAlreadyInOrganization {
        /// The account.
        account_id: String,
        /// Its type there.
        kind: &'static str,
    },
    /// FAILED_PRECONDITION `ACCOUNT_IS_SUBACCOUNT` (ACC-4): not imported, never nested.
    #[error("{what}")]
    AccountIsSubaccount {
        /// The account.
        account_id: String,
        /// What is refused, for people.
        what: &'static str,
    },
    /// FAILED_PRECONDITION `ACCOUNT_IMPORT_NOT_PENDING` (ACC-2).
    #[error("there is no pending import of this account into this organization")]
    AccountImportNotPending {
        /// The account.
        account_id: String,
        /// The importing organization.
        organization_id: String,
    },
    /// ALREADY_EXISTS `ACCOUNT_MEMBER_EXISTS`.
    #[error("the member already has access to the account")]
    AccountMemberExists {
        /// The account.
        account_id: String,
        /// The member.
        user_id: String,
    },
    /// FAILED_PRECONDITION `NOT_ORGANIZATION_MEMBER`: the user is not a member.
    #[error("the user is not a member of the organization")]
    NotOrganizationMember {
        /// The user.
        user_id: String,
    },
    /// FAILED_PRECONDITION `EMAIL_DOMAIN_NOT_VERIFIED` (ACC-2): a MANAGED import needs the
    /// account owner's email in a VERIFIED domain of the importing organization. The owner's
    /// domain is not named: the account may belong to another tenant.
    #[error(
        "a managed import needs the account owner's email address in a verified domain of the organization; verify the owner's domain first, or import the account as INDEPENDENT"
    )]
    AccountOwnerDomainNotVerified {
        /// The account.
        account_id: String,
    },
    /// A merge refusal (rule ORG-15).
    #[error(transparent)]
    Merge(#[from] MergeRefusal),
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Shorthand for the use cases' results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// INVALID_ARGUMENT for `field`.
    pub fn invalid(field: &str, why: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.to_owned(),
            why: why.into(),
        }
    }

    /// NOT_FOUND for `resource` `id`.
    pub fn not_found(resource: &'static str, id: &str) -> Self {
        Error::NotFound {
            resource,
            id: id.to_owned(),
        }
    }

    /// Whether this is a NOT_FOUND (of any resource).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound { .. } => true,
            Error::Api(e) => e.reason() == "NOT_FOUND",
            _ => false,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Invalid { field, why } => ApiError::invalid_argument(&field, why),
            Error::NotFound { resource, id } => ApiError::not_found(resource, &id),
            Error::NameTaken => ApiError::already_exists(Reason::OrganizationNameTaken, message),
            Error::ConcurrentRetry => ApiError::aborted(Reason::ConcurrentRetry, message),
            Error::UserNotFound { user_id } => {
                ApiError::failed_precondition(Reason::UserNotFound, &user_id, message)
            }
            Error::BusinessAccountRequired { user_id } => {
                ApiError::failed_precondition(Reason::BusinessAccountRequired, &user_id, message)
            }
            Error::EmailNotVerified { user_id, .. } => {
                ApiError::failed_precondition(Reason::EmailNotVerified, &user_id, message)
            }
            Error::AdminKeyRequired | Error::WorkspaceKeyRefused => {
                ApiError::permission_denied(Reason::AdminApiKeyRequired, message)
            }
            Error::AdminRoleNeedsAPerson => {
                ApiError::permission_denied(Reason::UserCredentialsRequired, message)
            }
            Error::MfaEnrollmentRequired { organization_id } => ApiError::failed_precondition(
                Reason::MfaEnrollmentRequired,
                &organization_id,
                message,
            ),
            Error::SsoSignInRequired { organization_id } => {
                ApiError::failed_precondition(Reason::SsoSignInRequired, &organization_id, message)
            }
            Error::ConfirmNameMismatch => invalid_with_reason(
                Reason::ConfirmNameMismatch,
                "confirm_name",
                "type the organization's exact name to delete it",
            ),
            Error::NotDeleted { organization_id } => ApiError::failed_precondition(
                Reason::OrganizationNotDeleted,
                &organization_id,
                message,
            ),
            Error::OwnerNotAssignable { field } => invalid_with_reason(
                Reason::OwnerRoleNotAssignable,
                field,
                "OWNER is given only by TransferOwnership",
            ),
            Error::OwnerRoleImmutable { user_id } => {
                ApiError::failed_precondition(Reason::OwnerRoleImmutable, &user_id, message)
            }
            Error::OwnershipTransferRequired { user_id } => {
                ApiError::failed_precondition(Reason::OwnershipTransferRequired, &user_id, message)
            }
            Error::AlreadyAMember { .. } => {
                ApiError::already_exists(Reason::AlreadyAMember, message)
            }
            Error::InviteAlreadyPending => {
                ApiError::already_exists(Reason::InviteAlreadyPending, message)
            }
            Error::InviteNotPending { invite_id } => {
                ApiError::failed_precondition(Reason::InviteNotPending, &invite_id, message)
            }
            Error::InviteExpired { invite_id } => {
                ApiError::failed_precondition(Reason::InviteExpired, &invite_id, message)
            }
            Error::InviteEmailMismatch { invite_id } => {
                ApiError::failed_precondition(Reason::InviteEmailMismatch, &invite_id, message)
            }
            Error::UnitTooDeep { parent_unit_id, .. } => {
                ApiError::failed_precondition(Reason::UnitDepthExceeded, &parent_unit_id, message)
            }
            Error::UnitCycle { parent_unit_id } => {
                ApiError::failed_precondition(Reason::UnitCycle, &parent_unit_id, message)
            }
            Error::UnitHasChildren { unit_id } => {
                ApiError::failed_precondition(Reason::UnitHasChildren, &unit_id, message)
            }
            Error::UnitHasWorkspaces { unit_id } => {
                ApiError::failed_precondition(Reason::UnitHasWorkspaces, &unit_id, message)
            }
            Error::DomainAlreadyRegistered { .. } => {
                ApiError::already_exists(Reason::DomainAlreadyRegistered, message)
            }
            Error::DomainLimit {
                organization_id, ..
            } => ApiError::quota_exceeded(Reason::DomainLimit, &organization_id, message),
            Error::DomainClaimed { domain_name } => {
                ApiError::failed_precondition(Reason::DomainClaimed, &domain_name, message)
                    .with_metadata("domain_name", domain_name)
            }
            Error::DomainExpired { domain_id } => {
                ApiError::failed_precondition(Reason::DomainExpired, &domain_id, message)
            }
            Error::CheckedTooOften { retry } => {
                ApiError::rate_limited(Reason::RateLimited, message, retry)
            }
            Error::EmailDomainNotVerified { domain } => {
                ApiError::failed_precondition(Reason::EmailDomainNotVerified, &domain, message)
                    .with_metadata("domain", domain)
            }
            Error::EmailDomainBlocked { domain } => {
                ApiError::failed_precondition(Reason::EmailDomainBlocked, &domain, message)
                    .with_metadata("domain", domain)
            }
            Error::OrganizationDeleted { organization_id } => ApiError::failed_precondition(
                Reason::OrganizationDeleted,
                &organization_id,
                message,
            ),
            Error::SnapshotUnavailable { .. } => {
                ApiError::unavailable(Reason::SnapshotUnavailable, message)
            }
            Error::SettingEnforcedByOperator {
                field,
                operator_organization_id,
            } => ApiError::failed_precondition(Reason::SettingEnforcedByOperator, &field, message)
                .with_metadata("field", field)
                .with_metadata("operator_organization_id", operator_organization_id),
            Error::NotAnOperator { organization_id } => {
                ApiError::failed_precondition(Reason::NotAnOperator, &organization_id, message)
            }
            Error::OperatorMayNot => ApiError::permission_denied(Reason::InsufficientRole, message),
            Error::OrganizationHasOwner { invite_id } => {
                ApiError::failed_precondition(Reason::OrganizationHasOwner, &invite_id, message)
            }
            Error::OperatorHasChildren { organization_id } => ApiError::failed_precondition(
                Reason::OperatorHasChildren,
                &organization_id,
                message,
            ),
            e @ (Error::AccountLimitReached { .. }
            | Error::SubaccountLimitReached { .. }
            | Error::AccountOwnerNotManaged { .. }
            | Error::AccountNotManaged { .. }
            | Error::AccountClosed { .. }
            | Error::AccountHasSubaccounts { .. }
            | Error::AccountAlreadyInOrganization { .. }
            | Error::AccountIsSubaccount { .. }
            | Error::AccountImportNotPending { .. }
            | Error::AccountMemberExists { .. }
            | Error::NotOrganizationMember { .. }
            | Error::AccountOwnerDomainNotVerified { .. }) => {
                accounts_and_merges::to_api(e, message)
            }
            Error::Merge(m) => accounts_and_merges::merge_to_api(m, message),
            Error::Api(e) => e,
        }
    }
}

/// INVALID_ARGUMENT with a reason of its own and one field violation.
fn invalid_with_reason(reason: Reason, field: &str, why: &str) -> ApiError {
    ApiError::invalid_argument_because(reason, field, why)
}
