//! PLACEHOLDER signatures (replaced in this change): SCIM error bodies (RFC 7644 §3.12) and ETags.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orgplane_platform::ApiError;

/// A SCIM error: an HTTP status, an optional `scimType`, and a `detail` for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    /// The HTTP status.
    pub status: StatusCode,
    /// RFC 7644 `scimType` (`invalidFilter`, `invalidValue`, `uniqueness`, …).
    pub scim_type: Option<&'static str>,
    /// A sentence for people.
    pub detail: String,
}

impl ScimError {
    /// A 400 with a `scimType`.
    pub fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// A 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            scim_type: None,
            detail: detail.into(),
        }
    }
}

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            scim_type: None,
            detail: e.message().to_owned(),
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        (self.status, self.detail).into_response()
    }
}

/// The weak ETag of a resource at `version`: `W/"<version>"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Checks `If-Match` (and refuses `If-None-Match` mismatches) against the resource's `version`:
/// 412 `PreconditionFailed` when it names another version.
pub fn check_if_match(_headers: &HeaderMap, _version: i64) -> Result<(), ScimError> {
    Ok(())
}
