//! The one way Orgplane answers a failure: a canonical code, a message for people, and
//! google.rpc details for code — always an `ErrorInfo` with a stable `reason` and the domain
//! `orgplane.dev`, plus `BadRequest`, `PreconditionFailure`, `QuotaFailure`, `RetryInfo` or
//! `ResourceInfo` where they apply. [`ApiError`] is free of the transport: it becomes a
//! `tonic::Status` only at the edge (`From<ApiError> for Status`), so use cases and domain rules
//! can return it without depending on gRPC.

use std::collections::HashMap;
use std::time::Duration;

use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

/// Every `ErrorInfo.reason` Orgplane answers with: the generated `orgplane.errors.v1.ErrorReason`.
/// Errors are made from it, never from free text, so a reason the contract does not list cannot
/// reach the wire; the wire string is the value's name (`Reason::EmailNotVerified` →
/// `"EMAIL_NOT_VERIFIED"`).
pub use orgplane_proto::errors::v1::ErrorReason as Reason;

/// The `ErrorInfo.domain` of every Orgplane error.
pub const ERROR_DOMAIN: &str = "orgplane.dev";

/// The longest message an error carries, in bytes: messages may quote the caller's input, and
/// the status travels in HTTP/2 headers, which clients cap (16 KiB by default). A 50,000-letter
/// id quoted whole made the answer unreadable (an h2 protocol error, seen as INTERNAL).
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The longest text of one error detail (a field's description, a resource name, a metadata
/// value), in bytes, for the same reason.
pub const MAX_DETAIL_BYTES: usize = 256;

/// `s` cut to at most `max` bytes at a character boundary, marked with `…` when cut.
fn clip(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

/// The canonical status codes (google.rpc.Code), as the API answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Not an error.
    Ok,
    /// The operation was cancelled.
    Cancelled,
    /// Unknown error.
    Unknown,
    /// Bad input.
    InvalidArgument,
    /// The deadline passed.
    DeadlineExceeded,
    /// Not found, or not visible to the caller.
    NotFound,
    /// Already exists.
    AlreadyExists,
    /// The caller lacks the permission.
    PermissionDenied,
    /// A quota ran out.
    ResourceExhausted,
    /// A rule forbids it in the current state.
    FailedPrecondition,
    /// A concurrency conflict (stale etag, lost race).
    Aborted,
    /// Out of range.
    OutOfRange,
    /// Not implemented.
    Unimplemented,
    /// An invariant broke inside the service.
    Internal,
    /// Try again later.
    Unavailable,
    /// Data loss.
    DataLoss,
    /// Missing or invalid credentials.
    Unauthenticated,
}

impl Code {
    /// The transport's code.
    pub fn to_tonic(self) -> tonic::Code {
        match self {
            Code::Ok => tonic::Code::Ok,
            Code::Cancelled => tonic::Code::Cancelled,
            Code::Unknown => tonic::Code::Unknown,
            Code::InvalidArgument => tonic::Code::InvalidArgument,
            Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Code::NotFound => tonic::Code::NotFound,
            Code::AlreadyExists => tonic::Code::AlreadyExists,
            Code::PermissionDenied => tonic::Code::PermissionDenied,
            Code::ResourceExhausted => tonic::Code::ResourceExhausted,
            Code::FailedPrecondition => tonic::Code::FailedPrecondition,
            Code::Aborted => tonic::Code::Aborted,
            Code::OutOfRange => tonic::Code::OutOfRange,
            Code::Unimplemented => tonic::Code::Unimplemented,
            Code::Internal => tonic::Code::Internal,
            Code::Unavailable => tonic::Code::Unavailable,
            Code::DataLoss => tonic::Code::DataLoss,
            Code::Unauthenticated => tonic::Code::Unauthenticated,
        }
    }

    /// The code's number (what metrics and audit records name).
    pub fn number(self) -> i32 {
        self.to_tonic() as i32
    }
}

impl From<tonic::Code> for Code {
    fn from(code: tonic::Code) -> Self {
        match code {
            tonic::Code::Ok => Code::Ok,
            tonic::Code::Cancelled => Code::Cancelled,
            tonic::Code::Unknown => Code::Unknown,
            tonic::Code::InvalidArgument => Code::InvalidArgument,
            tonic::Code::DeadlineExceeded => Code::DeadlineExceeded,
            tonic::Code::NotFound => Code::NotFound,
            tonic::Code::AlreadyExists => Code::AlreadyExists,
            tonic::Code::PermissionDenied => Code::PermissionDenied,
            tonic::Code::ResourceExhausted => Code::ResourceExhausted,
            tonic::Code::FailedPrecondition => Code::FailedPrecondition,
            tonic::Code::Aborted => Code::Aborted,
            tonic::Code::OutOfRange => Code::OutOfRange,
            tonic::Code::Unimplemented => Code::Unimplemented,
            tonic::Code::Internal => Code::Internal,
            tonic::Code::Unavailable => Code::Unavailable,
            tonic::Code::DataLoss => Code::DataLoss,
            tonic::Code::Unauthenticated => Code::Unauthenticated,
        }
    }
}

impl PartialEq<tonic::Code> for Code {
    fn eq(&self, other: &tonic::Code) -> bool {
        self.to_tonic() == *other
    }
}

impl PartialEq<Code> for tonic::Code {
    fn eq(&self, other: &Code) -> bool {
        *self == other.to_tonic()
    }
}

/// One google.rpc detail, kept in plain values until the error reaches the transport.
#[derive(Debug, Clone)]
enum Detail {
    BadRequest {
        field: String,
        description: String,
    },
    ResourceInfo {
        resource_type: String,
        name: String,
    },
    PreconditionFailure {
        kind: String,
        subject: String,
        description: String,
    },
    QuotaFailure {
        subject: String,
        description: String,
    },
    RetryInfo(Duration),
}

/// A request that failed, ready to become a `tonic::Status` with structured details. Boxed so
/// that `Result<T, ApiError>` stays one pointer wide on the happy path.
#[derive(Debug, Clone)]
pub struct ApiError(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    code: Code,
    reason: Reason,
    message: String,
    metadata: HashMap<String, String>,
    details: Vec<Detail>,
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with `code`, a stable machine-readable `reason` (UPPER_SNAKE) and a message.
    pub fn new(code: impl Into<Code>, reason: Reason, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            code: code.into(),
            reason,
            message: message.into(),
            metadata: HashMap::new(),
            details: Vec::new(),
        }))
    }

    /// INVALID_ARGUMENT with one `BadRequest` field violation; chain [`Self::violation`] for more.
    pub fn invalid_argument(field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        Self::new(
            Code::InvalidArgument,
            Reason::InvalidArgument,
            format!("invalid {field}: {description}"),
        )
        .violation(field, description)
    }

    /// INVALID_ARGUMENT with a reason of its own (a rule about the input, such as a role that
    /// cannot be assigned) and one `BadRequest` field violation.
    pub fn invalid_argument_because(
        reason: Reason,
        field: &str,
        description: impl Into<String>,
    ) -> Self {
        let description = description.into();
        Self::new(
            Code::InvalidArgument,
            reason,
            format!("invalid {field}: {description}"),
        )
        .violation(field, description)
    }

    /// RESOURCE_EXHAUSTED for a caller that must slow down: `RetryInfo` says when to retry.
    pub fn rate_limited(reason: Reason, message: impl Into<String>, retry: Duration) -> Self {
        Self::new(Code::ResourceExhausted, reason, message).retry_after(retry)
    }

    /// Adds a `BadRequest` field violation.
    pub fn violation(mut self, field: &str, description: impl Into<String>) -> Self {
        self.0.details.push(Detail::BadRequest {
            field: field.to_owned(),
            description: description.into(),
        });
        self
    }

    /// NOT_FOUND for a resource the caller may not see, whether or not it exists.
    pub fn not_found(resource_type: &str, id: &str) -> Self {
        let mut err = Self::new(
            Code::NotFound,
            Reason::NotFound,
            format!("{resource_type} {id:?} not found"),
        );
        err.0.details.push(Detail::ResourceInfo {
            resource_type: resource_type.to_owned(),
            name: id.to_owned(),
        });
        err
    }

    /// FAILED_PRECONDITION: a rule forbids this in the current state. `reason` names the rule.
    pub fn failed_precondition(reason: Reason, subject: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut err = Self::new(Code::FailedPrecondition, reason, message.clone());
        err.0.details.push(Detail::PreconditionFailure {
            kind: reason.as_str_name().to_owned(),
            subject: subject.to_owned(),
            description: message,
        });
        err
    }

    /// PERMISSION_DENIED: the caller is known but lacks the role.
    pub fn permission_denied(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, reason, message)
    }

    /// UNAUTHENTICATED: missing or invalid credentials.
    pub fn unauthenticated(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, reason, message)
    }

    /// ALREADY_EXISTS.
    pub fn already_exists(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, reason, message)
    }

    /// ABORTED for a stale etag or a lost concurrent race; the caller re-reads and retries.
    pub fn aborted(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(Code::Aborted, reason, message)
    }

    /// RESOURCE_EXHAUSTED with a `QuotaFailure` naming the exhausted quota.
    pub fn quota_exceeded(reason: Reason, subject: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        let mut err = Self::new(Code::ResourceExhausted, reason, description.clone());
        err.0.details.push(Detail::QuotaFailure {
            subject: subject.to_owned(),
            description,
        });
        err
    }

    /// UNAVAILABLE: try again later (a dependency or the database is unreachable).
    pub fn unavailable(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, reason, message)
    }

    /// INTERNAL. The detail is logged here; the caller sees only a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(Code::Internal, Reason::Internal, "internal error")
    }

    /// Adds `RetryInfo` telling the caller when to retry.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.0
            .details
            .retain(|d| !matches!(d, Detail::RetryInfo(_)));
        self.0.details.push(Detail::RetryInfo(delay));
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

    /// The stable reason, as it travels (`"EMAIL_NOT_VERIFIED"`).
    pub fn reason(&self) -> &'static str {
        self.0.reason.as_str_name()
    }

    /// The stable reason as the contract's enum, to match on.
    pub fn error_reason(&self) -> Reason {
        self.0.reason
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The `RetryInfo` delay, when the error says when to retry (HTTP adapters send it as
    /// `Retry-After`).
    pub fn retry_delay(&self) -> Option<Duration> {
        self.0.details.iter().find_map(|d| match d {
            Detail::RetryInfo(delay) => Some(*delay),
            _ => None,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {}: {}",
            self.0.code,
            self.0.reason.as_str_name(),
            self.0.message
        )
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
            details: kept,
        } = *err.0;
        let d = |s: String| clip(s, MAX_DETAIL_BYTES);
        let mut details = ErrorDetails::new();
        for detail in kept {
            match detail {
                Detail::BadRequest { field, description } => {
                    details.add_bad_request_violation(d(field), d(description));
                }
                Detail::ResourceInfo {
                    resource_type,
                    name,
                } => {
                    details.set_resource_info(resource_type, d(name), "", "");
                }
                Detail::PreconditionFailure {
                    kind,
                    subject,
                    description,
                } => {
                    details.add_precondition_failure_violation(kind, d(subject), d(description));
                }
                Detail::QuotaFailure {
                    subject,
                    description,
                } => {
                    details.add_quota_failure_violation(d(subject), d(description));
                }
                Detail::RetryInfo(delay) => {
                    details.set_retry_info(Some(delay));
                }
            }
        }
        let metadata: HashMap<String, String> =
            metadata.into_iter().map(|(k, v)| (k, d(v))).collect();
        details.set_error_info(reason.as_str_name(), ERROR_DOMAIN, metadata);
        Status::with_error_details(code.to_tonic(), clip(message, MAX_MESSAGE_BYTES), details)
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::db::is_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable");
            ApiError::unavailable(
                Reason::DatabaseUnavailable,
                "the database is unavailable; retry",
            )
            .retry_after(Duration::from_secs(1))
        } else if crate::db::is_lost_race(&err) {
            tracing::info!(error = %err, "a transaction lost a race and was rolled back");
            ApiError::aborted(
                Reason::ConcurrentRetry,
                "a concurrent write got in the way and nothing was changed; retry",
            )
            .retry_after(Duration::from_millis(50))
        } else if crate::db::is_unstorable_text(&err) {
            ApiError::new(
                Code::InvalidArgument,
                Reason::InvalidCharacters,
                "text fields must not contain NUL characters",
            )
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

/// The `ErrorInfo.reason` of a status as the contract's enum; `None` without an ErrorInfo or for
/// a name this build does not know (a newer peer's).
pub fn error_reason_of(status: &Status) -> Option<Reason> {
    reason_of(status).and_then(|name| Reason::from_str_name(&name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_quoting_a_huge_input_stays_small_enough_for_http2_headers() {
        let id = "é".repeat(25_000);
        let status = Status::from(
            ApiError::not_found("organization", &id).with_metadata("organization_id", id.clone()),
        );
        assert!(
            status.message().len() <= MAX_MESSAGE_BYTES,
            "{}",
            status.message().len()
        );
        assert!(status.message().ends_with('…'));
        // Everything the status puts in headers together, with room to spare under 16 KiB.
        assert!(
            status.details().len() < 2 * 1024,
            "{}",
            status.details().len()
        );
        let info = status.get_details_resource_info().unwrap();
        assert!(info.resource_name.len() <= MAX_DETAIL_BYTES);
        let short = Status::from(ApiError::not_found("organization", "org_1"));
        assert_eq!(short.message(), "organization \"org_1\" not found");
    }

    use super::*;

    #[test]
    fn every_error_carries_error_info_with_reason_and_domain() {
        let status: Status = ApiError::failed_precondition(
            Reason::EmailNotVerified,
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
    fn every_error_reason_travels_as_its_name_and_reads_back() {
        let mut seen = 0;
        for number in 1..1000 {
            let Ok(reason) = Reason::try_from(number) else {
                continue;
            };
            seen += 1;
            let status: Status = ApiError::new(Code::Aborted, reason, "m").into();
            let name = reason_of(&status).expect("an ErrorInfo");
            assert_eq!(name, reason.as_str_name());
            assert!(!name.starts_with("ERROR_REASON_"), "{name}");
            assert_eq!(error_reason_of(&status), Some(reason));
        }
        assert!(seen > 100, "{seen}");
        // A reason this build does not know (a newer peer's) reads as none, not as another.
        let mut details = ErrorDetails::new();
        details.set_error_info("A_NEWER_REASON", ERROR_DOMAIN, HashMap::new());
        let newer = Status::with_error_details(tonic::Code::Aborted, "m", details);
        assert_eq!(reason_of(&newer).as_deref(), Some("A_NEWER_REASON"));
        assert_eq!(error_reason_of(&newer), None);
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
            Reason::WorkspaceLimitReached,
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
