//! PLACEHOLDER signatures (replaced in this change): how an organization's SCIM groups become
//! organization roles.

use orgplane_platform::ApiResult;
use orgplane_proto::organization::v1::OrgRole;
use sea_orm::ConnectionTrait;

/// An organization's group-to-role rules, loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRules {
    /// (group `displayName` lower-cased, role), in order.
    pub mappings: Vec<(String, OrgRole)>,
    /// The role of a member of no mapped group.
    pub default_role: OrgRole,
}

impl RoleRules {
    /// The role of a user in the groups whose lower-cased display names are `group_keys`: the
    /// first mapping (in order) naming one of them, else the default.
    pub fn role_for<'a>(&self, group_keys: impl IntoIterator<Item = &'a str> + Clone) -> OrgRole {
        self.mappings
            .iter()
            .find(|(group, _)| group_keys.clone().into_iter().any(|k| k == group))
            .map(|(_, role)| *role)
            .unwrap_or(self.default_role)
    }
}

/// The rules of `organization_id` (the defaults when it never changed them).
pub async fn load(_db: &impl ConnectionTrait, _organization_id: &str) -> ApiResult<RoleRules> {
    Ok(RoleRules {
        mappings: Vec::new(),
        default_role: OrgRole::User,
    })
}
