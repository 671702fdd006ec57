//! PLACEHOLDER (replaced in this change): the SCIM routes and bearer-token authentication.

use std::sync::Arc;

use crate::app::App;

/// The SCIM routes under `/scim/v2`, over `app`.
pub fn router(_app: Arc<App>) -> axum::Router {
    axum::Router::new()
}
