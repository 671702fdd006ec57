//! SCIM error bodies (RFC 7644 §3.12) and ETags (§3.14): every failure of the adapter answers
//! `{"schemas":[Error],"status":"<code>","scimType":…,"detail":…}` as `application/scim+json`;
//! an [`ApiError`] of the application becomes the HTTP status its canonical code stands for,
//! never exposing an internal message.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use orgplane_platform::ApiError;
use orgplane_platform::error::Code;
use serde_json::json;

use super::{ERROR_SCHEMA, SCIM_MEDIA_TYPE};
use orgplane_platform::error::Reason;

/// FAILED_PRECONDITION reasons that are conflicts with the resource's state rather than bad
/// input: HTTP 409 instead of 400.
pub const CONFLICT_REASONS: &[Reason] = &[
    Reason::OwnershipTransferRequired,
    Reason::OwnerRoleImmutable,
    Reason::DomainClaimed,
];

/// A SCIM error: an HTTP status, an optional `scimType`, and a `detail` for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    /// The HTTP status.
    pub status: StatusCode,
    /// RFC 7644 `scimType` (`invalidFilter`, `invalidValue`, `uniqueness`, …).
    pub scim_type: Option<&'static str>,
    /// A sentence for people.
    pub detail: String,
    /// When to retry (`Retry-After`), for 429 and 503.
    pub retry_after: Option<Duration>,
}

impl ScimError {
    /// An error with `status`, no `scimType`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A 400 with a `scimType`.
    pub fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self {
            scim_type: Some(scim_type),
            ..Self::new(StatusCode::BAD_REQUEST, detail)
        }
    }

    /// 400 `invalidFilter`: the filter is malformed or over a limit.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad_request("invalidFilter", detail)
    }

    /// 400 `tooMany`: more results than the server answers at once.
    pub fn too_many(detail: impl Into<String>) -> Self {
        Self::bad_request("tooMany", detail)
    }

    /// 409 `uniqueness`: a unique attribute's value is taken.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self {
            scim_type: Some("uniqueness"),
            ..Self::new(StatusCode::CONFLICT, detail)
        }
    }

    /// 400 `mutability`: the request changes an attribute that cannot change.
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad_request("mutability", detail)
    }

    /// 400 `invalidSyntax`: the request body is not what the operation takes.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request("invalidSyntax", detail)
    }

    /// 400 `invalidPath`: a PATCH path is malformed or names nothing.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad_request("invalidPath", detail)
    }

    /// 400 `noTarget`: a PATCH path selects nothing.
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::bad_request("noTarget", detail)
    }

    /// 400 `invalidValue`: a value is missing, of the wrong type or refused.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request("invalidValue", detail)
    }

    /// 400 `invalidVers`: the SCIM protocol version is not served.
    pub fn invalid_vers(detail: impl Into<String>) -> Self {
        Self::bad_request("invalidVers", detail)
    }

    /// 403 `sensitive`: the request put sensitive data (a secret) in the URL.
    pub fn sensitive(detail: impl Into<String>) -> Self {
        Self {
            scim_type: Some("sensitive"),
            ..Self::new(StatusCode::FORBIDDEN, detail)
        }
    }

    /// 401: no valid bearer token.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 403: the token may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// A 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409 without `scimType`: the request conflicts with the resource's state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// 412: `If-Match` names another version.
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, detail)
    }

    /// 413: the body is larger than the server takes.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
    }

    /// 429: too many requests; retry after `retry_after` when known.
    pub fn too_many_requests(detail: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self {
            retry_after,
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, detail)
        }
    }

    /// 500 with a generic detail; `cause` is logged, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "scim internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    /// 501: the operation is not implemented (bulk, password change).
    pub fn not_implemented(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, detail)
    }

    /// 503: try again later.
    pub fn unavailable(detail: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self {
            retry_after,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
        }
    }

    /// The error body (RFC 7644 §3.12).
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(scim_type), Some(map)) = (self.scim_type, body.as_object_mut()) {
            map.insert("scimType".into(), scim_type.into());
        }
        body
    }
}

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        let detail = e.message().to_owned();
        match e.code() {
            Code::InvalidArgument | Code::OutOfRange => Self::invalid_value(detail),
            Code::NotFound => Self::not_found(detail),
            Code::AlreadyExists => Self::uniqueness(detail),
            Code::FailedPrecondition if CONFLICT_REASONS.contains(&e.error_reason()) => {
                Self::conflict(detail)
            }
            Code::FailedPrecondition => Self::new(StatusCode::BAD_REQUEST, detail),
            Code::Aborted => Self::precondition_failed(detail),
            Code::PermissionDenied => Self::forbidden(detail),
            Code::Unauthenticated => Self::unauthorized(detail),
            Code::ResourceExhausted => Self::too_many_requests(detail, e.retry_delay()),
            Code::Unavailable => Self::unavailable(detail, e.retry_delay()),
            Code::Unimplemented => Self::not_implemented(detail),
            // Internal messages are generic already; anything else is not for clients.
            _ => Self::internal(format!("{e}")),
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_MEDIA_TYPE),
        );
        if let Some(delay) = self.retry_after {
            // Whole seconds, rounded up: a client retrying early is refused again.
            let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The weak ETag of a resource at `version`: `W/"<version>"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The opaque value of one entity tag (`W/"3"` and `"3"` both give `3`), or `None` when it is
/// not a quoted tag.
fn opaque(tag: &str) -> Option<&str> {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')?.strip_suffix('"')
}

/// Checks `If-Match` (RFC 7232 §3.1 with weak comparison, as SCIM's weak ETags need) against
/// the resource's `version`: absent or `*` passes; a list passes when one tag names `version`;
/// otherwise 412.
pub fn check_if_match(headers: &HeaderMap, version: i64) -> Result<(), ScimError> {
    let mut values = headers.get_all(header::IF_MATCH).iter().peekable();
    if values.peek().is_none() {
        return Ok(());
    }
    let current = version.to_string();
    let mut seen = Vec::new();
    for value in values {
        let Ok(text) = value.to_str() else {
            return Err(ScimError::precondition_failed(
                "If-Match is not a list of entity tags",
            ));
        };
        for tag in text.split(',') {
            let tag = tag.trim();
            if tag == "*" || opaque(tag) == Some(current.as_str()) {
                return Ok(());
            }
            seen.push(tag.to_owned());
        }
    }
    Err(ScimError::precondition_failed(format!(
        "the resource is at version {}, not {}",
        etag(version),
        seen.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn if_match(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::IF_MATCH, HeaderValue::from_str(v).expect("header"));
        }
        headers
    }

    #[test]
    fn id_14_error_body_has_scim_schema_status_string_and_scim_type() {
        let response = ScimError::invalid_filter("at byte 3: nope").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static(SCIM_MEDIA_TYPE))
        );
        let body = ScimError::invalid_filter("at byte 3: nope").body();
        assert_eq!(
            body,
            json!({"schemas": [ERROR_SCHEMA], "status": "400", "scimType": "invalidFilter", "detail": "at byte 3: nope"})
        );
        let body = ScimError::not_found("User \"x\" not found").body();
        assert!(body.get("scimType").is_none());
        assert_eq!(body["status"], json!("404"));
    }

    #[test]
    fn id_14_error_api_errors_map_to_http_statuses() {
        let cases: Vec<(ApiError, u16, Option<&str>)> = vec![
            (
                ApiError::invalid_argument("userName", "bad"),
                400,
                Some("invalidValue"),
            ),
            (ApiError::not_found("User", "u1"), 404, None),
            (
                ApiError::already_exists(Reason::EmailAlreadyRegistered, "taken"),
                409,
                Some("uniqueness"),
            ),
            (
                ApiError::failed_precondition(Reason::EmailDomainNotVerified, "x", "no"),
                400,
                None,
            ),
            (
                ApiError::failed_precondition(Reason::OwnershipTransferRequired, "x", "owner"),
                409,
                None,
            ),
            (ApiError::aborted(Reason::EtagMismatch, "stale"), 412, None),
            (
                ApiError::permission_denied(Reason::InsufficientRole, "no"),
                403,
                None,
            ),
            (
                ApiError::unauthenticated(Reason::InvalidToken, "no"),
                401,
                None,
            ),
            (
                ApiError::unavailable(Reason::DatabaseUnavailable, "down"),
                503,
                None,
            ),
            (
                ApiError::new(Code::Unimplemented, Reason::Internal, "no"),
                501,
                None,
            ),
        ];
        for (api, status, scim_type) in cases {
            let e = ScimError::from(api);
            assert_eq!(
                (e.status.as_u16(), e.scim_type),
                (status, scim_type),
                "{e:?}"
            );
        }
    }

    #[test]
    fn id_14_error_rate_limit_sends_retry_after_and_internal_hides_detail() {
        let e = ScimError::from(ApiError::rate_limited(
            Reason::RateLimited,
            "slow",
            Duration::from_millis(1500),
        ));
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("2"))
        );
        let e = ScimError::from(ApiError::new(
            Code::DataLoss,
            Reason::Internal,
            "table users at /var/secret",
        ));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.detail.contains("secret"));
    }

    #[test]
    fn id_14_error_if_match_weak_strong_lists_and_star() {
        assert_eq!(etag(7), "W/\"7\"");
        assert!(check_if_match(&HeaderMap::new(), 7).is_ok());
        for ok in [
            vec!["W/\"7\""],
            vec!["\"7\""],
            vec!["*"],
            vec!["W/\"6\", W/\"7\""],
            vec!["\"1\"", " W/\"7\" "],
        ] {
            assert!(check_if_match(&if_match(&ok), 7).is_ok(), "{ok:?}");
        }
        for stale in [vec!["W/\"6\""], vec!["7"], vec!["W/\"70\", \"\""], vec![""]] {
            let e = check_if_match(&if_match(&stale), 7).err();
            assert_eq!(
                e.map(|e| e.status),
                Some(StatusCode::PRECONDITION_FAILED),
                "{stale:?}"
            );
        }
    }
}
