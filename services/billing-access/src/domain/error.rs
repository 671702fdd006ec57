//! The service's refusals: one enum, each reason string named once, in the one mapping to the
//! API's errors ([`ApiError`], which adds the google.rpc details). Messages speak the caller's
//! language; rule numbers stay in the doc comments.

use orgplane_platform::convert::etag_mismatch;
use orgplane_platform::error::ApiError;
use orgplane_platform::roles::insufficient_role;

use crate::domain::accounts::RESOURCE as ACCOUNT;
use orgplane_platform::error::Reason;

/// Results of the service's use cases.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the service refuses a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed request: one `(field, description)` per problem (never empty).
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<(String, String)>),
    /// The organization is unknown here, or the caller is not in it (ORG-2: outsiders cannot
    /// tell the two apart).
    #[error("organization {0:?} not found")]
    OrganizationNotFound(String),
    /// The organization has no billing account (any more).
    #[error("billing account {0:?} not found")]
    AccountNotFound(String),
    /// The managed account is unknown here or of another organization (rule BILL-6: other
    /// tenants' accounts cannot be probed).
    #[error("account {0:?} not found")]
    ManagedAccountNotFound(String),
    /// A subaccount has no billing account of its own: it is billed to its parent (rule BILL-6).
    #[error("account {0:?} is a subaccount, billed to its parent account")]
    AccountIsSubaccount(String),
    /// The managed account is closed: its billing account no longer changes (rule BILL-6).
    #[error("account {0:?} is closed")]
    AccountClosed(String),
    /// A service principal called an RPC for people and admin keys.
    #[error("this call is for users and admin API keys")]
    UserOrAdminKeyRequired,
    /// A workspace API key called billing (BILL-1).
    #[error("workspace API keys cannot use billing")]
    AdminApiKeyRequired,
    /// The member's role may not view or manage billing (BILL-1).
    #[error("only OWNER, ADMIN and BILLING members may view and manage billing")]
    BillingRoleRequired,
    /// The member's role may not read the audit log (ORG-10).
    #[error("only OWNER and ADMIN members may read the audit log")]
    AuditRoleRequired,
    /// A user or API key asked about someone else's access.
    #[error("users and API keys may only check their own access")]
    SubjectNotCaller,
    /// The account changed since the caller read it, or a concurrent update won.
    #[error("the billing account changed since it was read")]
    EtagMismatch,
    /// The price table lacks a model that has usage (BILL-4).
    #[error("the price table has no price for model {0:?}")]
    ModelPriceMissing(String),
    /// An amount does not fit the decimal type.
    #[error("cost overflows the decimal range")]
    CostOverflow,
    /// Identity could not answer a lookup in time.
    #[error("{0}")]
    IdentityUnavailable(String),
    /// The workspace service could not give its snapshot.
    #[error("ListWorkspaces failed: {0}")]
    SnapshotUnavailable(String),
    /// A refusal of the shared layers (credentials, revision waits, page tokens, database).
    #[error(transparent)]
    Api(#[from] ApiError),
}

fn describe(violations: &[(String, String)]) -> String {
    violations
        .iter()
        .map(|(field, why)| format!("{field}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// One field violation.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![(field.to_owned(), description.into())])
    }

    /// Whether the transaction behind this error lost a race with another and kept nothing
    /// (see [`orgplane_platform::db::is_lost_race`]): running it again is safe.
    pub fn is_lost_race(&self) -> bool {
        matches!(self, Error::Api(e) if e.error_reason() == orgplane_platform::error::Reason::ConcurrentRetry)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::InvalidArgument(violations) => {
                let mut violations = violations.into_iter();
                let Some((field, why)) = violations.next() else {
                    return ApiError::invalid_argument("request", "invalid");
                };
                violations.fold(ApiError::invalid_argument(&field, why), |e, (f, why)| {
                    e.violation(&f, why)
                })
            }
            Error::OrganizationNotFound(id) => ApiError::not_found("organization", &id),
            Error::AccountNotFound(id) => ApiError::not_found(ACCOUNT, &id),
            Error::ManagedAccountNotFound(id) => ApiError::not_found("account", &id),
            Error::AccountIsSubaccount(id) => {
                ApiError::failed_precondition(Reason::AccountIsSubaccount, &id, message)
                    .with_metadata("account_id", id)
            }
            Error::AccountClosed(id) => {
                ApiError::failed_precondition(Reason::AccountClosed, &id, message)
                    .with_metadata("account_id", id)
            }
            Error::UserOrAdminKeyRequired => {
                ApiError::permission_denied(Reason::UserOrAdminKeyRequired, message)
            }
            Error::AdminApiKeyRequired => {
                ApiError::permission_denied(Reason::AdminApiKeyRequired, message)
            }
            Error::BillingRoleRequired | Error::AuditRoleRequired => insufficient_role(message),
            Error::SubjectNotCaller => {
                ApiError::permission_denied(Reason::SubjectNotCaller, message)
            }
            Error::EtagMismatch => etag_mismatch(ACCOUNT),
            Error::ModelPriceMissing(model) => {
                ApiError::failed_precondition(Reason::ModelPriceMissing, &model, message)
            }
            Error::CostOverflow => ApiError::internal(message),
            Error::IdentityUnavailable(_) => {
                ApiError::unavailable(Reason::IdentityUnavailable, message)
                    .retry_after(std::time::Duration::from_millis(500))
            }
            Error::SnapshotUnavailable(_) => {
                ApiError::unavailable(Reason::SnapshotUnavailable, message)
            }
            Error::Api(e) => e,
        }
    }
}
