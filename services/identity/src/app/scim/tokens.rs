//! PLACEHOLDER signatures (replaced in this change): SCIM bearer tokens.

use orgplane_platform::{ApiError, ApiResult};

use super::ScimPrincipal;
use crate::app::App;

/// The principal of an `opscim_…` secret: UNAUTHENTICATED when unknown or DISABLED.
pub async fn authenticate(_app: &App, _secret: &str) -> ApiResult<ScimPrincipal> {
    Err(ApiError::unauthenticated(
        "SCIM_TOKEN_INVALID",
        "SCIM tokens are being built",
    ))
}
