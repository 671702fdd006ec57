//! PLACEHOLDER signatures (replaced in this change): SCIM User use cases.

use orgplane_platform::{ApiResult, Call};

use crate::app::App;

impl App {
    /// Re-applies the organization role of every active SCIM user of `organization_id` under
    /// the organization's current [`super::settings::RoleRules`], owing one change per user whose
    /// role moves (exactly once); answers how many moved. UpdateScimSettings calls it after
    /// committing the new settings.
    pub async fn reapply_scim_roles(&self, _call: &Call, _organization_id: &str) -> ApiResult<i32> {
        Ok(0)
    }
}
