//! How an organization's SCIM groups become organization roles (rule ID-14): the stored
//! settings ([`load`], what provisioning applies), GetScimSettings and UpdateScimSettings. An
//! organization that never changed them has no row and the defaults: no mappings, USER.

use orgplane_platform::audit::Entry;
use orgplane_platform::convert::{check_etag, etag_mismatch};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::organization::v1::OrgRole;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, Set};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::domain::Error;
use crate::domain::scim_admin::{check_mappings, check_provisioned_role, group_key};
use crate::domain::validation::Violations;
use crate::store::entity::scim_settings;

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

/// An organization's settings as stored and answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimSettings {
    /// The organization.
    pub organization_id: String,
    /// (group `displayName` as the administrator wrote it, role), in order.
    pub mappings: Vec<(String, OrgRole)>,
    /// The role of a member of no mapped group.
    pub default_role: OrgRole,
    /// 0 while never changed; the etag.
    pub version: i64,
    /// When last changed; `None` while never.
    pub update_time_ms: Option<i64>,
}

impl ScimSettings {
    /// The rules provisioning applies: group names lower-cased for comparison.
    pub fn rules(&self) -> RoleRules {
        RoleRules {
            mappings: self
                .mappings
                .iter()
                .map(|(group, role)| (group_key(group), *role))
                .collect(),
            default_role: self.default_role,
        }
    }
}

/// An UpdateScimSettings request: the fields named in `paths` take their values from here.
#[derive(Debug, Clone, Default)]
pub struct UpdateScimSettings {
    /// The organization.
    pub organization_id: String,
    /// New mappings (path `group_mappings`, the whole list): (group name, `OrgRole` number).
    pub mappings: Vec<(String, i32)>,
    /// New default role (path `default_role`), the wire enum's number.
    pub default_role: i32,
    /// The update mask.
    pub paths: Vec<String>,
    /// The etag the caller read (empty: whatever is current).
    pub etag: String,
}

/// One mapping in the `mappings` column.
#[derive(Debug, Serialize, Deserialize)]
struct StoredMapping {
    group: String,
    role: i32,
}

/// A stored role number as a role SCIM may give; a corrupt row is an internal error.
fn stored_role(role: i32) -> ApiResult<OrgRole> {
    match OrgRole::try_from(role) {
        Ok(OrgRole::Owner | OrgRole::Unspecified) | Err(_) => Err(ApiError::internal(format!(
            "stored SCIM role {role} cannot be given"
        ))),
        Ok(r) => Ok(r),
    }
}

/// The settings of `organization_id` (the defaults when it never changed them).
async fn stored(db: &impl ConnectionTrait, organization_id: &str) -> ApiResult<ScimSettings> {
    let Some(row) = scim_settings::Entity::find_by_id(organization_id.to_owned())
        .one(db)
        .await?
    else {
        return Ok(ScimSettings {
            organization_id: organization_id.to_owned(),
            mappings: Vec::new(),
            default_role: OrgRole::User,
            version: 0,
            update_time_ms: None,
        });
    };
    let mappings: Vec<StoredMapping> =
        serde_json::from_str(&row.mappings).map_err(ApiError::internal)?;
    Ok(ScimSettings {
        organization_id: row.organization_id,
        mappings: mappings
            .into_iter()
            .map(|m| Ok((m.group, stored_role(m.role)?)))
            .collect::<ApiResult<_>>()?,
        default_role: stored_role(row.default_role)?,
        version: row.version,
        update_time_ms: Some(row.update_time_ms),
    })
}

/// The rules of `organization_id` (the defaults when it never changed them).
pub async fn load(db: &impl ConnectionTrait, organization_id: &str) -> ApiResult<RoleRules> {
    Ok(stored(db, organization_id).await?.rules())
}

impl App {
    /// GetScimSettings: OWNER, ADMIN (or an admin key) of the organization.
    pub async fn get_scim_settings(&self, call: &Call, org: &str) -> ApiResult<ScimSettings> {
        if org.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        let standing = self.standing(&call.principal, org)?;
        if !standing.allows(OrgAction::ManageOrganization) {
            return Err(
                Error::InsufficientRole("only an OWNER or ADMIN may read SCIM settings").into(),
            );
        }
        stored(&self.db, org).await
    }

    /// UpdateScimSettings, then the roles of the provisioned members the change moves
    /// ([`App::reapply_scim_roles`]); answers the settings and how many roles moved. A refusal
    /// is audited in a known organization.
    pub async fn update_scim_settings(
        &self,
        call: &Call,
        cmd: UpdateScimSettings,
    ) -> ApiResult<(ScimSettings, i32)> {
        let result = self.try_update_scim_settings(call, &cmd).await;
        let org = &cmd.organization_id;
        let settings = self
            .audit
            .audited(&self.db, call, result, || async {
                self.knows_organization(org)
                    .then(|| Entry::new(org, "scim_settings.updated", "scim_settings", org))
            })
            .await?;
        let moved = self.reapply_scim_roles(call, org).await?;
        Ok((settings, moved))
    }

    async fn try_update_scim_settings(
        &self,
        call: &Call,
        cmd: &UpdateScimSettings,
    ) -> ApiResult<ScimSettings> {
        let org = cmd.organization_id.as_str();
        if org.is_empty() {
            return Err(ApiError::invalid_argument(
                "scim_settings.organization_id",
                "required",
            ));
        }
        if cmd.paths.is_empty() {
            return Err(ApiError::invalid_argument(
                "update_mask",
                "name at least one field",
            ));
        }
        let before = stored(&self.db, org).await?;
        let mut after = before.clone();
        let mut v = Violations::default();
        for path in &cmd.paths {
            match path.as_str() {
                "group_mappings" => after.mappings = check_mappings(&mut v, &cmd.mappings),
                "default_role" => {
                    after.default_role = check_provisioned_role(
                        &mut v,
                        "scim_settings.default_role",
                        cmd.default_role,
                    );
                }
                other => v.add("update_mask", &format!("{other:?} cannot be updated")),
            }
        }
        v.finish()?;
        self.require_org_manager(
            call,
            org,
            true,
            "only an OWNER or ADMIN may change SCIM settings",
        )?;
        check_etag(&cmd.etag, before.version, "scim_settings")?;
        let now = self.now_ms();
        after.version = before.version + 1;
        after.update_time_ms = Some(now);
        let mappings = serde_json::to_string(
            &after
                .mappings
                .iter()
                .map(|(group, role)| StoredMapping {
                    group: group.clone(),
                    role: *role as i32,
                })
                .collect::<Vec<_>>(),
        )
        .map_err(ApiError::internal)?;
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        if before.version == 0 {
            let inserted = scim_settings::ActiveModel {
                organization_id: Set(org.to_owned()),
                default_role: Set(after.default_role as i32),
                mappings: Set(mappings),
                version: Set(after.version),
                update_time_ms: Set(now),
            }
            .insert(&*unit)
            .await;
            match inserted {
                Ok(_) => {}
                // Another change created the row since we read the defaults.
                Err(e) if orgplane_platform::db::is_unique_violation(&e) => {
                    return Err(etag_mismatch("scim_settings"));
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            let done = scim_settings::Entity::update_many()
                .col_expr(
                    scim_settings::Column::DefaultRole,
                    Expr::value(after.default_role as i32),
                )
                .col_expr(scim_settings::Column::Mappings, Expr::value(mappings))
                .col_expr(scim_settings::Column::Version, Expr::value(after.version))
                .col_expr(scim_settings::Column::UpdateTimeMs, Expr::value(now))
                .filter(scim_settings::Column::OrganizationId.eq(org))
                .filter(scim_settings::Column::Version.eq(before.version))
                .exec(&*unit)
                .await?;
            if done.rows_affected != 1 {
                return Err(etag_mismatch("scim_settings"));
            }
        }
        self.audit
            .write(
                &*unit,
                call,
                Entry::new(org, "scim_settings.updated", "scim_settings", org)
                    .change(Some(&before), Some(&after)),
            )
            .await?;
        unit.commit().await?;
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_14_the_first_mapping_in_order_decides_else_the_default() {
        let settings = ScimSettings {
            organization_id: "org_1".into(),
            mappings: vec![
                ("Admins".into(), OrgRole::Admin),
                ("Engineers".into(), OrgRole::Developer),
            ],
            default_role: OrgRole::User,
            version: 1,
            update_time_ms: Some(1),
        };
        let rules = settings.rules();
        assert_eq!(rules.role_for(["engineers", "admins"]), OrgRole::Admin);
        assert_eq!(rules.role_for(["engineers"]), OrgRole::Developer);
        assert_eq!(rules.role_for(["sales"]), OrgRole::User);
        assert_eq!(rules.role_for([]), OrgRole::User);
    }
}
