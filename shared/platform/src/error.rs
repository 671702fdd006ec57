//! The one way Orgplane builds a failed `tonic::Status`: a canonical code, a message for people,
//! and google.rpc details for code — always an `ErrorInfo` with a stable `reason` and the domain
//! `orgplane.dev`, plus `BadRequest`, `PreconditionFailure`, `QuotaFailure`, `RetryInfo` or
//! `ResourceInfo` where they apply.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Orgplane error.
pub const ERROR_DOMAIN: &str = "orgplane.dev";

/// A request that failed, ready to become a `tonic::Status` with structured details. Boxed so
/// that `Result<T, ApiError>` stays one pointer wide on the happy path.
#[derive(Debug, Clone)]
pub struct ApiError(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    code: Code,
    reason: String,
    message: String,
    metadata: HashMap<String, String>,
    details: ErrorDetails,
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with `code`, a stable machine-readable `reason` (UPPER_SNAKE) and a message.
    pub fn new(code: Code, reason: &str, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            code,
            reason: reason.to_owned(),
            message: message.into(),
            metadata: HashMap::new(),
            details: ErrorDetails::new(),
        }))
    }

    /// INVALID_ARGUMENT with one `BadRequest` field violation; chain [`Self::violation`] for more.
    pub fn invalid_argument(field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        Self::new(
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
            format!("invalid {field}: {description}"),
        )
        .violation(field, description)
    }

    /// Adds a `BadRequest` field violation.
    pub fn violation(mut self, field: &str, description: impl Into<String>) -> Self {
        self.0.details.add_bad_request_violation(field, description);
        self
    }

    /// NOT_FOUND for a resource the caller may not see, whether or not it exists.
    pub fn not_found(resource_type: &str, id: &str) -> Self {
        let mut err = Self::new(
            Code::NotFound,
            "NOT_FOUND",
            format!("{resource_type} {id:?} not found"),
        );
        err.0.details.set_resource_info(resource_type, id, "", "");
        err
    }

    /// FAILED_PRECONDITION: a rule forbids this in the current state. `reason` names the rule.
    pub fn failed_precondition(reason: &str, subject: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut err = Self::new(Code::FailedPrecondition, reason, message.clone());
        err.0
            .details
            .add_precondition_failure_violation(reason, subject, message);
        err
    }

    /// PERMISSION_DENIED: the caller is known but lacks the role.
    pub fn permission_denied(reason: &str, message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, reason, message)
    }

    /// UNAUTHENTICATED: missing or invalid credentials.
    pub fn unauthenticated(reason: &str, message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, reason, message)
    }

    /// ALREADY_EXISTS.
    pub fn already_exists(reason: &str, message: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, reason, message)
    }

    /// ABORTED for a stale etag or a lost concurrent race; the caller re-reads and retries.
    pub fn aborted(reason: &str, message: impl Into<String>) -> Self {
        Self::new(Code::Aborted, reason, message)
    }

    /// RESOURCE_EXHAUSTED with a `QuotaFailure` naming the exhausted quota.
    pub fn quota_exceeded(reason: &str, subject: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        let mut err = Self::new(Code::ResourceExhausted, reason, description.clone());
        err.0
            .details
            .add_quota_failure_violation(subject, description);
        err
    }

    /// UNAVAILABLE: try again later (a dependency or the database is unreachable).
    pub fn unavailable(reason: &str, message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, reason, message)
    }

    /// INTERNAL. The detail is logged here; the caller sees only a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(Code::Internal, "INTERNAL", "internal error")
    }

    /// Adds `RetryInfo` telling the caller when to retry.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.0.details.set_retry_info(Some(delay));
        self
    }

    /// Adds a key to the `ErrorInfo` metadata.
    pub fn with_metadata(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.metadata.insert(key.to_owned(), value.into());
        self
    }

    /// The canonical code.
    pub fn code(&self) -> Code {
        self.0.code
    }

    /// The stable reason.
    pub fn reason(&self) -> &str {
        &self.0.reason
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}: {}", self.0.code, self.0.reason, self.0.message)
    }
}

impl std::error::Error for ApiError {}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        let Inner {
            code,
            reason,
            message,
            metadata,
            mut details,
        } = *err.0;
        details.set_error_info(reason, ERROR_DOMAIN, metadata);
        Status::with_error_details(code, message, details)
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::db::is_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable");
            ApiError::unavailable("DATABASE_UNAVAILABLE", "the database is unavailable; retry")
                .retry_after(Duration::from_secs(1))
        } else {
            ApiError::internal(err)
        }
    }
}

impl From<sea_orm::TransactionError<ApiError>> for ApiError {
    fn from(err: sea_orm::TransactionError<ApiError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(api) => api,
        }
    }
}

/// Reads the `ErrorInfo.reason` of a status produced by [`ApiError`] (for clients and tests).
pub fn reason_of(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_carries_error_info_with_reason_and_domain() {
        let status: Status = ApiError::failed_precondition(
            "EMAIL_NOT_VERIFIED",
            "user_1",
            "verify your email address first",
        )
        .into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "EMAIL_NOT_VERIFIED");
        assert_eq!(info.domain, ERROR_DOMAIN);
        let pre = details
            .precondition_failure()
            .expect("precondition failure");
        assert_eq!(pre.violations[0].subject, "user_1");
    }

    #[test]
    fn invalid_argument_lists_every_field_violation() {
        let status: Status = ApiError::invalid_argument("name", "must not be empty")
            .violation("primary_email", "not an email address")
            .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request");
        let fields: Vec<_> = bad
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["name", "primary_email"]);
        assert_eq!(reason_of(&status).as_deref(), Some("INVALID_ARGUMENT"));
    }

    #[test]
    fn quota_and_retry_details_survive_the_round_trip() {
        let status: Status = ApiError::quota_exceeded(
            "WORKSPACE_LIMIT_REACHED",
            "org_1",
            "at most 100 active workspaces",
        )
        .retry_after(Duration::from_secs(3))
        .into();
        let details = status.get_error_details();
        assert_eq!(
            details.quota_failure().expect("quota").violations[0].subject,
            "org_1"
        );
        assert_eq!(
            details.retry_info().expect("retry").retry_delay,
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let status: Status = ApiError::internal("disk on fire at /secret/path").into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }
}
