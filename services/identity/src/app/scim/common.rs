//! What the SCIM resource use cases ([`super::users`], [`super::groups`]) share: rows read by
//! organization, writes at a version (VERSION_MISMATCH when it moved), membership links and
//! audit records.

use orgplane_platform::audit::Entry;
use orgplane_platform::{ApiError, ApiResult, Call};
use sea_orm::QuerySelect;
use sea_orm::entity::prelude::*;
use serde_json::Value;

use super::ScimPrincipal;
use super::users::version_mismatch;
use crate::app::App;
use crate::store::entity::{scim_group, scim_group_member, scim_user};

/// A table of SCIM resources: rows of one organization, each written at a version.
pub(super) trait ScimTable: EntityTrait {
    /// The `id` column.
    const ID: Self::Column;
    /// The `organization_id` column.
    const ORGANIZATION_ID: Self::Column;
    /// The `version` column.
    const VERSION: Self::Column;
    /// The resource type of its audit records.
    const AUDIT_TYPE: &'static str;
    /// A row's version.
    fn version(row: &Self::Model) -> i64;
    /// The error for an `id` the organization does not have.
    fn not_found(id: &str) -> ApiError;
}

impl ScimTable for scim_user::Entity {
    const ID: scim_user::Column = scim_user::Column::Id;
    const ORGANIZATION_ID: scim_user::Column = scim_user::Column::OrganizationId;
    const VERSION: scim_user::Column = scim_user::Column::Version;
    const AUDIT_TYPE: &'static str = "scim_user";
    fn version(row: &scim_user::Model) -> i64 {
        row.version
    }
    fn not_found(id: &str) -> ApiError {
        ApiError::not_found("User", id)
    }
}

impl ScimTable for scim_group::Entity {
    const ID: scim_group::Column = scim_group::Column::Id;
    const ORGANIZATION_ID: scim_group::Column = scim_group::Column::OrganizationId;
    const VERSION: scim_group::Column = scim_group::Column::Version;
    const AUDIT_TYPE: &'static str = "scim_group";
    fn version(row: &scim_group::Model) -> i64 {
        row.version
    }
    fn not_found(id: &str) -> ApiError {
        ApiError::not_found("Group", id)
    }
}

/// The row `id` of the principal's organization; NOT_FOUND when it has none.
pub(super) async fn org_row<E: ScimTable, C: ConnectionTrait>(
    db: &C,
    p: &ScimPrincipal,
    id: &str,
) -> ApiResult<E::Model> {
    E::find()
        .filter(E::ID.eq(id))
        .filter(E::ORGANIZATION_ID.eq(&p.organization_id))
        .one(db)
        .await?
        .ok_or_else(|| E::not_found(id))
}

/// [`org_row`], when its version is `expected` (when given); else VERSION_MISMATCH.
pub(super) async fn org_row_at<E: ScimTable, C: ConnectionTrait>(
    db: &C,
    p: &ScimPrincipal,
    id: &str,
    expected: Option<i64>,
) -> ApiResult<E::Model> {
    let row = org_row::<E, C>(db, p, id).await?;
    if expected.is_some_and(|v| v != E::version(&row)) {
        return Err(version_mismatch());
    }
    Ok(row)
}

/// Writes `am` to row `id` while its version is still `version`; VERSION_MISMATCH when it
/// moved. `db_error` maps what the store refuses (a unique key, say).
pub(super) async fn update_at<E, A, C>(
    db: &C,
    am: A,
    id: &str,
    version: i64,
    db_error: impl FnOnce(DbErr) -> ApiError,
) -> ApiResult<()>
where
    E: ScimTable,
    A: ActiveModelTrait<Entity = E>,
    C: ConnectionTrait,
{
    let updated = E::update_many()
        .set(am)
        .filter(E::ID.eq(id))
        .filter(E::VERSION.eq(version))
        .exec(db)
        .await
        .map_err(db_error)?;
    if updated.rows_affected == 0 {
        return Err(version_mismatch());
    }
    Ok(())
}

/// Deletes row `id` while its version is still `version`; VERSION_MISMATCH when it moved.
pub(super) async fn delete_at<E: ScimTable, C: ConnectionTrait>(
    db: &C,
    id: &str,
    version: i64,
) -> ApiResult<()> {
    let deleted = E::delete_many()
        .filter(E::ID.eq(id))
        .filter(E::VERSION.eq(version))
        .exec(db)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(version_mismatch());
    }
    Ok(())
}

/// The `select` ids of the group memberships whose `by` is `id` (a user's groups, a group's
/// members).
pub(super) async fn linked<C: ConnectionTrait>(
    db: &C,
    select: scim_group_member::Column,
    by: scim_group_member::Column,
    id: &str,
) -> ApiResult<Vec<String>> {
    Ok(scim_group_member::Entity::find()
        .select_only()
        .column(select)
        .filter(by.eq(id))
        .into_tuple()
        .all(db)
        .await?)
}

impl App {
    /// Writes the audit record `action` of the SCIM resource `id` of table `E`, in `db`.
    pub(super) async fn scim_audit<E: ScimTable, C: ConnectionTrait>(
        &self,
        db: &C,
        call: &Call,
        p: &ScimPrincipal,
        action: &str,
        id: &str,
        details: Value,
    ) -> ApiResult<()> {
        self.audit
            .write(
                db,
                call,
                Entry::new(&p.organization_id, action, E::AUDIT_TYPE, id).with_details(details),
            )
            .await
    }
}
