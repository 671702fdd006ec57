//! Organizational units (rule ORG-9): a tree under the organization, at most 5 levels deep; a
//! unit with children or workspaces cannot be deleted.

use std::collections::HashMap;

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::convert::{check_etag, etag_mismatch};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::access::{Access, as_not_found_of};
use super::{App, Page};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::validate::{self, required};
use crate::domain::{Error, MAX_UNIT_DEPTH as MAX_DEPTH, Result};
use crate::store::query::{keyset, new_id};
use crate::store::{unit, unit_workspace};

/// What a request says of a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFields {
    /// The unit's id (updates only).
    pub id: String,
    /// The parent unit, or empty at the top level.
    pub parent_unit_id: String,
    /// Display name.
    pub name: String,
}

/// CreateUnit.
#[derive(Debug, Clone, Default)]
pub struct CreateUnit {
    /// The organization.
    pub organization_id: String,
    /// The new unit (the request's `unit`, if any).
    pub unit: Option<UnitFields>,
    /// The AIP-155 request id, or empty.
    pub request_id: String,
}

/// ListUnits.
#[derive(Debug, Clone, Default)]
pub struct ListUnits {
    /// The organization.
    pub organization_id: String,
    /// Only the children of this unit; empty for every unit.
    pub parent_unit_id: String,
    /// Requested page size.
    pub page_size: i32,
    /// Token of the page to read.
    pub page_token: String,
}

/// UpdateUnit: rename and/or move.
#[derive(Debug, Clone, Default)]
pub struct UpdateUnit {
    /// The new values (the request's `unit`, if any).
    pub unit: Option<UnitFields>,
    /// The update mask's paths.
    pub paths: Vec<String>,
    /// The etag read, or empty.
    pub etag: String,
}

fn too_deep(parent_unit_id: &str) -> Error {
    Error::UnitTooDeep {
        parent_unit_id: parent_unit_id.to_owned(),
        max: MAX_DEPTH,
    }
}

async fn units_of<C: ConnectionTrait>(db: &C, org: &str) -> Result<Vec<unit::Model>> {
    Ok(unit::Entity::find()
        .filter(unit::Column::OrganizationId.eq(org.to_owned()))
        .all(db)
        .await?)
}

impl App {
    /// The unit `unit_id` with the caller's access to its organization; NOT_FOUND for the unit
    /// when either is not visible.
    async fn unit_access(&self, call: &Call, unit_id: &str) -> Result<(unit::Model, Access)> {
        let principal = call.principal.as_ref();
        let not_found = || Error::not_found("unit", unit_id);
        let u = unit::Entity::find_by_id(unit_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(not_found)?;
        let access = Access::resolve(&self.db, principal, &u.organization_id, Deleted::Hidden)
            .await
            .map_err(as_not_found_of("unit", unit_id))?;
        Ok((u, access))
    }

    async fn parent_in(&self, org: &str, parent_unit_id: &str) -> Result<unit::Model> {
        unit::Entity::find_by_id(parent_unit_id.to_owned())
            .one(&self.db)
            .await?
            .filter(|p| p.organization_id == org)
            .ok_or_else(|| Error::not_found("unit", parent_unit_id))
    }

    /// CreateUnit.
    pub async fn create_unit(&self, call: &Call, cmd: CreateUnit) -> Result<unit::Model> {
        let principal = call.principal.as_ref();
        let (_, actor) = principal.actor();
        let key = validate::request_id(&cmd.request_id)
            .ok()
            .flatten()
            .map(|r| format!("CreateUnit|{actor}|{}|{r}", cmd.organization_id));
        let first = self.create_unit_once(call, cmd.clone()).await;
        self.or_created_meanwhile(key.as_deref(), first, || self.create_unit_once(call, cmd))
            .await
    }

    async fn create_unit_once(&self, call: &Call, cmd: CreateUnit) -> Result<unit::Model> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        required("organization_id", &cmd.organization_id)?;
        let input = cmd.unit.ok_or_else(|| Error::invalid("unit", "required"))?;
        let name = validate::name("unit.name", &input.name)?;
        let request_id = validate::request_id(&cmd.request_id)?;
        let access =
            Access::resolve(&self.db, principal, &cmd.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::ManageOrganization)?;
        let org = access.org;
        let (_, actor) = principal.actor();
        let key = request_id.map(|r| format!("CreateUnit|{actor}|{}|{r}", org.id));
        if let Some(id) = self.idempotent(key.as_deref()).await? {
            let u = unit::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await?
                .ok_or_else(|| Error::not_found("unit", &id))?;
            return Ok(u);
        }
        let depth = if input.parent_unit_id.is_empty() {
            1
        } else {
            self.parent_in(&org.id, &input.parent_unit_id).await?.depth + 1
        };
        if depth > MAX_DEPTH {
            return Err(too_deep(&input.parent_unit_id));
        }
        let now = self.now_ms();
        let u = unit::Model {
            id: new_id("unit"),
            organization_id: org.id.clone(),
            parent_unit_id: input.parent_unit_id.clone(),
            name,
            depth,
            create_time_ms: now,
            update_time_ms: now,
            version: 1,
        };
        let txn = WriteUnit::begin(&self.outbox, call).await?;
        unit::Entity::insert(unit::ActiveModel::from(u.clone()))
            .exec(&*txn)
            .await?;
        self.remember(&txn, key.as_deref(), &org.id, &u.id).await?;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&org.id, "unit.create", "unit", &u.id).change(None, Some(&u)),
            )
            .await?;
        txn.commit().await?;
        Ok(u)
    }

    /// GetUnit.
    pub async fn get_unit(&self, call: &Call, unit_id: &str) -> Result<unit::Model> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        required("unit_id", unit_id)?;
        let (u, access) = self.unit_access(call, unit_id).await?;
        access.require(OrgAction::Read)?;
        Ok(u)
    }

    /// ListUnits: parents before children (by depth, then creation).
    pub async fn list_units(&self, call: &Call, cmd: ListUnits) -> Result<Page<unit::Model>> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        required("organization_id", &cmd.organization_id)?;
        let size = orgplane_platform::pagination::page_size(cmd.page_size)?;
        let access =
            Access::resolve(&self.db, principal, &cmd.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::Read)?;
        let org = access.org;
        if !cmd.parent_unit_id.is_empty() {
            self.parent_in(&org.id, &cmd.parent_unit_id).await?;
        }
        let scope = format!("ListUnits|{}|{}", org.id, cmd.parent_unit_id);
        let cursor: Option<(i32, String)> =
            self.runtime.page_tokens.decode(&scope, &cmd.page_token)?;
        let mut query =
            unit::Entity::find().filter(unit::Column::OrganizationId.eq(org.id.clone()));
        if !cmd.parent_unit_id.is_empty() {
            query = query.filter(unit::Column::ParentUnitId.eq(cmd.parent_unit_id.clone()));
        }
        if let Some((d, id)) = cursor {
            query = query.filter(keyset(unit::Column::Depth, d, unit::Column::Id, id, false));
        }
        let rows = query
            .order_by_asc(unit::Column::Depth)
            .order_by_asc(unit::Column::Id)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let (rows, next) = self
            .runtime
            .page_tokens
            .page(&scope, rows, size, |u| (u.depth, u.id.clone()));
        Ok(Page {
            items: rows,
            next_page_token: next,
        })
    }

    /// UpdateUnit: rename, or move with its subtree.
    pub async fn update_unit(&self, call: &Call, cmd: UpdateUnit) -> Result<unit::Model> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        let input = cmd.unit.ok_or_else(|| Error::invalid("unit", "required"))?;
        required("unit.id", &input.id)?;
        let paths = validate::mask_paths(&cmd.paths, &["name", "parent_unit_id"])?;
        let name = if paths.iter().any(|p| p == "name") {
            Some(validate::name("unit.name", &input.name)?)
        } else {
            None
        };
        let (before, access) = self.unit_access(call, &input.id).await?;
        access.require(OrgAction::ManageOrganization)?;
        check_etag(&cmd.etag, before.version, "unit")?;
        let mut after = before.clone();
        if let Some(n) = name {
            after.name = n;
        }
        let now = self.now_ms();
        after.update_time_ms = now;
        after.version += 1;
        let txn = WriteUnit::begin(&self.outbox, call).await?;
        let mut depth_changes: Vec<(String, i32)> = Vec::new();
        if paths.iter().any(|p| p == "parent_unit_id")
            && input.parent_unit_id != before.parent_unit_id
        {
            let all = units_of(&*txn, &before.organization_id).await?;
            let by_id: HashMap<&str, &unit::Model> =
                all.iter().map(|u| (u.id.as_str(), u)).collect();
            let new_depth = if input.parent_unit_id.is_empty() {
                1
            } else {
                let parent = by_id
                    .get(input.parent_unit_id.as_str())
                    .ok_or_else(|| Error::not_found("unit", &input.parent_unit_id))?;
                // The new parent must not be the unit or one of its descendants.
                let mut cursor = Some(*parent);
                while let Some(c) = cursor {
                    if c.id == before.id {
                        return Err(Error::UnitCycle {
                            parent_unit_id: input.parent_unit_id.clone(),
                        });
                    }
                    cursor = by_id.get(c.parent_unit_id.as_str()).copied();
                }
                parent.depth + 1
            };
            // The subtree moves with the unit: every descendant's depth shifts by the same delta.
            let delta = new_depth - before.depth;
            let mut subtree = vec![(before.id.clone(), before.depth)];
            let mut i = 0;
            while i < subtree.len() {
                let id = subtree[i].0.clone();
                for u in all.iter().filter(|u| u.parent_unit_id == id) {
                    subtree.push((u.id.clone(), u.depth));
                }
                i += 1;
            }
            if subtree.iter().any(|(_, d)| d + delta > MAX_DEPTH) {
                return Err(too_deep(&input.parent_unit_id));
            }
            depth_changes = subtree
                .into_iter()
                .skip(1)
                .map(|(id, d)| (id, d + delta))
                .collect();
            after.parent_unit_id = input.parent_unit_id.clone();
            after.depth = new_depth;
        }
        let updated = unit::Entity::update_many()
            .col_expr(unit::Column::Name, Expr::value(after.name.clone()))
            .col_expr(
                unit::Column::ParentUnitId,
                Expr::value(after.parent_unit_id.clone()),
            )
            .col_expr(unit::Column::Depth, Expr::value(after.depth))
            .col_expr(unit::Column::UpdateTimeMs, Expr::value(now))
            .col_expr(unit::Column::Version, Expr::value(after.version))
            .filter(unit::Column::Id.eq(before.id.clone()))
            .filter(unit::Column::Version.eq(before.version))
            .exec(&*txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(etag_mismatch("unit").into());
        }
        for (id, depth) in depth_changes {
            unit::Entity::update_many()
                .col_expr(unit::Column::Depth, Expr::value(depth))
                .col_expr(unit::Column::UpdateTimeMs, Expr::value(now))
                .col_expr(
                    unit::Column::Version,
                    Expr::col(unit::Column::Version).add(1),
                )
                .filter(unit::Column::Id.eq(id))
                .exec(&*txn)
                .await?;
        }
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&before.organization_id, "unit.update", "unit", &before.id)
                    .change(Some(&before), Some(&after)),
            )
            .await?;
        txn.commit().await?;
        Ok(after)
    }

    /// DeleteUnit: only an empty unit.
    pub async fn delete_unit(&self, call: &Call, unit_id: &str, etag: &str) -> Result<()> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        required("unit_id", unit_id)?;
        let (u, access) = self.unit_access(call, unit_id).await?;
        access.require(OrgAction::ManageOrganization)?;
        check_etag(etag, u.version, "unit")?;
        let txn = WriteUnit::begin(&self.outbox, call).await?;
        let children = unit::Entity::find()
            .filter(unit::Column::ParentUnitId.eq(u.id.clone()))
            .count(&*txn)
            .await?;
        if children > 0 {
            return Err(Error::UnitHasChildren {
                unit_id: u.id.clone(),
            });
        }
        // Only the unit's own organization's workspaces count: another tenant's workspace naming
        // this unit id must not block the deletion (ORG-9).
        let workspaces = unit_workspace::Entity::find()
            .filter(unit_workspace::Column::UnitId.eq(u.id.clone()))
            .filter(unit_workspace::Column::OrganizationId.eq(u.organization_id.clone()))
            .count(&*txn)
            .await?;
        if workspaces > 0 {
            return Err(Error::UnitHasWorkspaces {
                unit_id: u.id.clone(),
            });
        }
        let deleted = unit::Entity::delete_many()
            .filter(unit::Column::Id.eq(u.id.clone()))
            .filter(unit::Column::Version.eq(u.version))
            .exec(&*txn)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(etag_mismatch("unit").into());
        }
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&u.organization_id, "unit.delete", "unit", &u.id).change(Some(&u), None),
            )
            .await?;
        txn.commit().await?;
        Ok(())
    }
}
