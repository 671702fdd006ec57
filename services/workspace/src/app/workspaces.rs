//! Workspaces (WS-1 … WS-3): create (quota, unique active names, `request_id` idempotency),
//! read, list, update and archive. Every change runs in one [`WriteUnit`] with its audit record,
//! its event and the state-version bump; memory follows right after the commit.

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::auth::Capability;
use orgplane_platform::convert::check_etag;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::pagination::page_size;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{WorkspaceArchived, WorkspaceCreated, WorkspaceUpdated};
use orgplane_proto::workspace::v1::WorkspaceState;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, QueryOrder, QuerySelect};

use super::{Core, Revisions, Standing, head_revision, now_ms, validate_request_id};
use crate::domain::Error;
use crate::domain::model;
use crate::store::entity::{counter, member, request, workspace};
use crate::store::memory::{bump_version, current_version};

/// CreateWorkspace.
#[derive(Debug, Clone, Default)]
pub struct CreateWorkspace {
    /// The organization.
    pub organization_id: String,
    /// The name.
    pub name: String,
    /// The unit; empty for none.
    pub unit_id: String,
    /// The idempotency key (AIP-155); empty for none.
    pub request_id: String,
}

/// ListWorkspaces.
#[derive(Debug, Clone, Default)]
pub struct ListWorkspaces {
    /// The organization; `-` for every organization (services only).
    pub organization_id: String,
    /// Archived ones too.
    pub include_archived: bool,
    /// Only those of this unit; empty for all.
    pub unit_id: String,
    /// The requested page size.
    pub page_size: i32,
    /// The page token.
    pub page_token: String,
}

/// UpdateWorkspace: the fields named in `paths` take their new values.
#[derive(Debug, Clone, Default)]
pub struct UpdateWorkspace {
    /// The workspace.
    pub workspace_id: String,
    /// The update mask's paths (`name`, `unit_id`).
    pub paths: Vec<String>,
    /// The new name.
    pub name: String,
    /// The new unit.
    pub unit_id: String,
    /// The etag read; empty for "whatever is current".
    pub etag: String,
}

/// ArchiveWorkspace.
#[derive(Debug, Clone, Default)]
pub struct ArchiveWorkspace {
    /// The workspace.
    pub workspace_id: String,
    /// The etag read; empty for "whatever is current".
    pub etag: String,
}

/// A page of workspaces.
#[derive(Debug)]
pub struct WorkspacePage {
    /// The workspaces.
    pub workspaces: Vec<workspace::Model>,
    /// The next token.
    pub next_page_token: String,
    /// The head revision of the first page.
    pub revision: i64,
}

/// Checks a `unit_id`: empty, or a unit id.
pub fn validate_unit(unit_id: &str) -> ApiResult<()> {
    if unit_id.is_empty() {
        return Ok(());
    }
    if !unit_id.starts_with("unit_") || unit_id.len() > 100 {
        return Err(ApiError::invalid_argument(
            "unit_id",
            "must be empty or a unit id (`unit_…`)",
        ));
    }
    Ok(())
}

/// A requested unit and the organization it belongs to, asked of the organization service
/// before the write's transaction (rule ORG-9).
struct UnitPlacement {
    unit_id: String,
    /// `None` when the unit does not exist.
    organization_id: Option<String>,
}

impl UnitPlacement {
    /// NOT_FOUND unless the unit is empty or belongs to `organization_id`: another
    /// organization's unit id is not visible to this one.
    fn require_in(&self, organization_id: &str) -> ApiResult<()> {
        if self.unit_id.is_empty() || self.organization_id.as_deref() == Some(organization_id) {
            Ok(())
        } else {
            Err(ApiError::not_found("unit", &self.unit_id))
        }
    }
}

fn validate_name(name: &str) -> ApiResult<String> {
    model::validate_name(name).map_err(|why| ApiError::invalid_argument("workspace.name", why))
}

/// The error of a write that met the active-name index: the name is taken.
fn name_clash(e: DbErr, name: &str) -> ApiError {
    if orgplane_platform::db::is_unique_violation(&e) {
        Error::NameTaken(name.to_owned()).into()
    } else {
        e.into()
    }
}

/// The audit entry of `action` on `after` (and `before`), as proto images.
fn entry(action: &str, before: Option<&workspace::Model>, after: &workspace::Model) -> Entry {
    Entry::new(&after.organization_id, action, "workspace", &after.id).change(before, Some(after))
}

impl Core {
    /// Where `unit_id` (checked with [`validate_unit`]) belongs.
    async fn unit_placement(&self, call: &Call, unit_id: &str) -> ApiResult<UnitPlacement> {
        let organization_id = if unit_id.is_empty() {
            None
        } else {
            self.organizations.unit_organization(call, unit_id).await?
        };
        Ok(UnitPlacement {
            unit_id: unit_id.to_owned(),
            organization_id,
        })
    }

    /// Commits `unit`, which bumped the state version to `bumped` in `organization_id`, and
    /// brings memory in step.
    async fn finish(
        &self,
        unit: WriteUnit,
        organization_id: &str,
        bumped: i64,
    ) -> ApiResult<Revisions> {
        let revision = unit.commit_at_revision().await?;
        self.memory.after_write(organization_id, bumped).await?;
        Ok(Revisions {
            revision,
            workspace_revision: bumped,
        })
    }

    /// CreateWorkspace (WS-1).
    pub async fn create_workspace(
        &self,
        call: &Call,
        cmd: CreateWorkspace,
    ) -> ApiResult<(workspace::Model, Revisions)> {
        let principal = call.principal.require_authenticated()?;
        if cmd.organization_id.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        self.standing(principal, &cmd.organization_id)?
            .require(OrgAction::ManageWorkspaces)?;
        let name = validate_name(&cmd.name)?;
        validate_unit(&cmd.unit_id)?;
        validate_request_id(&cmd.request_id)?;
        self.unit_placement(call, &cmd.unit_id)
            .await?
            .require_in(&cmd.organization_id)?;
        let cmd = CreateWorkspace { name, ..cmd };
        if cmd.request_id.is_empty() {
            return self.create_once(call, &cmd, None).await;
        }
        let key = Self::request_key(
            "CreateWorkspace",
            &cmd.organization_id,
            principal,
            &cmd.request_id,
        );
        if let Some(done) = self.created_before(&self.db, &key).await? {
            return Ok(done);
        }
        let first = self.create_once(call, &cmd, Some(&key)).await;
        // AIP-155 for duplicates in flight, on this replica or another: a copy that failed
        // because the first one committed meanwhile (its name, its quota slot or its request key
        // — each decided by the database) gets the first result. Other failures stand.
        match first {
            Err(e) => match self.created_before(&self.db, &key).await {
                Ok(Some(done)) => Ok(done),
                _ => Err(e),
            },
            ok => ok,
        }
    }

    /// The workspace and revisions an earlier CreateWorkspace with the request key `key`
    /// produced; the state version is today's, which covers that commit.
    async fn created_before<C: ConnectionTrait>(
        &self,
        db: &C,
        key: &str,
    ) -> ApiResult<Option<(workspace::Model, Revisions)>> {
        let Some(done) = request::Entity::find_by_id(key).one(db).await? else {
            return Ok(None);
        };
        let Some(w) = workspace::Entity::find_by_id(&done.resource_id)
            .one(db)
            .await?
        else {
            return Ok(None);
        };
        let revisions = Revisions {
            revision: done.revision,
            workspace_revision: current_version(db).await?,
        };
        Ok(Some((w, revisions)))
    }

    /// One attempt at CreateWorkspace's write unit; `key` is its request key, if any.
    async fn create_once(
        &self,
        call: &Call,
        cmd: &CreateWorkspace,
        key: Option<&str>,
    ) -> ApiResult<(workspace::Model, Revisions)> {
        let organization_id = cmd.organization_id.as_str();
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        // On SQLite writers are serialized: a duplicate that waited its turn sees the first
        // call's key here.
        if let Some(key) = key
            && let Some(done) = self.created_before(&*unit, key).await?
        {
            return Ok(done);
        }
        let name_key = model::name_key(&cmd.name);
        let taken = workspace::Entity::find()
            .filter(workspace::Column::OrganizationId.eq(organization_id))
            .filter(workspace::Column::NameKey.eq(&name_key))
            .filter(workspace::Column::State.eq(WorkspaceState::Active as i32))
            .one(&*unit)
            .await?;
        if taken.is_some() {
            return Err(Error::NameTaken(cmd.name.clone()).into());
        }
        counter::Entity::insert(counter::ActiveModel {
            organization_id: sea_orm::Set(organization_id.to_owned()),
            active_count: sea_orm::Set(0),
        })
        .on_conflict(
            OnConflict::column(counter::Column::OrganizationId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&*unit)
        .await?;
        let limit = self.limits.max_active_per_org;
        let counted = counter::Entity::update_many()
            .col_expr(
                counter::Column::ActiveCount,
                Expr::col(counter::Column::ActiveCount).add(1),
            )
            .filter(counter::Column::OrganizationId.eq(organization_id))
            .filter(counter::Column::ActiveCount.lt(limit))
            .exec(&*unit)
            .await?;
        if counted.rows_affected == 0 {
            return Err(Error::LimitReached {
                organization_id: organization_id.to_owned(),
                limit,
            }
            .into());
        }
        let now = now_ms();
        let row = workspace::Model {
            id: format!("wrkspc_{}", uuid::Uuid::now_v7().simple()),
            organization_id: organization_id.to_owned(),
            name: cmd.name.clone(),
            name_key,
            unit_id: cmd.unit_id.clone(),
            state: WorkspaceState::Active as i32,
            create_time_ms: now,
            update_time_ms: now,
            archive_time_ms: None,
            version: 1,
        };
        workspace::ActiveModel::from(row.clone())
            .insert(&*unit)
            .await
            .map_err(|e| name_clash(e, &cmd.name))?;
        self.audit
            .write(&*unit, call, entry("workspace.create", None, &row))
            .await?;
        let bumped = bump_version(&*unit).await?;
        let revision = unit
            .append(Payload::WorkspaceCreated(WorkspaceCreated {
                organization_id: organization_id.to_owned(),
                workspace_id: row.id.clone(),
                name: row.name.clone(),
                unit_id: row.unit_id.clone(),
            }))
            .await?;
        if let Some(key) = key {
            Self::remember_request(&unit, key, organization_id, &row.id, revision).await?;
        }
        let revisions = self.finish(unit, organization_id, bumped).await?;
        Ok((row, revisions))
    }

    /// GetWorkspace.
    pub async fn get_workspace(
        &self,
        call: &Call,
        workspace_id: &str,
    ) -> ApiResult<workspace::Model> {
        Ok(self
            .visible_workspace(&self.db, &call.principal, workspace_id)
            .await?
            .1)
    }

    /// ListWorkspaces (WS-2).
    pub async fn list_workspaces(
        &self,
        call: &Call,
        cmd: ListWorkspaces,
    ) -> ApiResult<WorkspacePage> {
        let principal = call.principal.require_authenticated()?;
        let organization_id = cmd.organization_id.as_str();
        if organization_id.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        let all_orgs = organization_id == "-";
        let standing = if all_orgs {
            principal.require_capability(Capability::WatchWorkspace)?;
            Standing::Service
        } else {
            self.standing(principal, organization_id)?
        };
        standing.require(OrgAction::Read)?;
        let size = page_size(cmd.page_size)?;
        let viewer = match &standing {
            Standing::Member { user_id, .. } if !standing.sees_all() => user_id.clone(),
            _ => String::new(),
        };
        let scope = format!(
            "ListWorkspaces|{organization_id}|{}|{}|{viewer}",
            cmd.include_archived, cmd.unit_id
        );
        let cursor: Option<(String, i64)> =
            self.runtime.page_tokens.decode(&scope, &cmd.page_token)?;
        let revision = match &cursor {
            Some((_, r)) => *r,
            None => head_revision(&self.db).await?,
        };
        let mut query = workspace::Entity::find();
        if !all_orgs {
            query = query.filter(workspace::Column::OrganizationId.eq(organization_id));
        }
        if !cmd.include_archived {
            query = query.filter(workspace::Column::State.eq(WorkspaceState::Active as i32));
        }
        if !cmd.unit_id.is_empty() {
            query = query.filter(workspace::Column::UnitId.eq(cmd.unit_id.as_str()));
        }
        if !viewer.is_empty() {
            query = query.filter(
                workspace::Column::Id.in_subquery(
                    Query::select()
                        .column(member::Column::WorkspaceId)
                        .from(member::Entity)
                        .and_where(member::Column::UserId.eq(viewer.as_str()))
                        .and_where(member::Column::OrganizationId.eq(organization_id))
                        .to_owned(),
                ),
            );
        }
        if let Some((after, _)) = &cursor {
            query = query.filter(workspace::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(workspace::Column::Id)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let (workspaces, next_page_token) =
            self.runtime
                .page_tokens
                .page(&scope, rows, size, |w| (w.id.clone(), revision));
        Ok(WorkspacePage {
            workspaces,
            next_page_token,
            revision,
        })
    }

    /// UpdateWorkspace: `name` and/or `unit_id`.
    pub async fn update_workspace(
        &self,
        call: &Call,
        cmd: UpdateWorkspace,
    ) -> ApiResult<(workspace::Model, Revisions)> {
        call.principal.require_authenticated()?;
        if cmd.paths.is_empty() {
            return Err(ApiError::invalid_argument(
                "update_mask",
                "name the fields to change: name, unit_id",
            ));
        }
        let mut new_name = None;
        let mut new_unit = None;
        for path in &cmd.paths {
            match path.as_str() {
                "name" => new_name = Some(validate_name(&cmd.name)?),
                "unit_id" => {
                    validate_unit(&cmd.unit_id)?;
                    new_unit = Some(cmd.unit_id.clone());
                }
                other => {
                    return Err(ApiError::invalid_argument(
                        "update_mask",
                        format!("{other:?} is not a mutable field (name, unit_id)"),
                    ));
                }
            }
        }
        let workspace_id = cmd.workspace_id.as_str();
        let placement = match &new_unit {
            Some(u) => Some(self.unit_placement(call, u).await?),
            None => None,
        };
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        let (_, before) = self
            .manageable_workspace(&*unit, &call.principal, workspace_id)
            .await?;
        if let Some(placement) = &placement {
            placement.require_in(&before.organization_id)?;
        }
        if before.state == WorkspaceState::Archived as i32 {
            return Err(Error::Archived(workspace_id.to_owned()).into());
        }
        check_etag(&cmd.etag, before.version, "workspace")?;
        let mut after = before.clone();
        if let Some(n) = new_name {
            let key = model::name_key(&n);
            let taken = workspace::Entity::find()
                .filter(workspace::Column::OrganizationId.eq(&before.organization_id))
                .filter(workspace::Column::NameKey.eq(&key))
                .filter(workspace::Column::State.eq(WorkspaceState::Active as i32))
                .filter(workspace::Column::Id.ne(workspace_id))
                .one(&*unit)
                .await?;
            if taken.is_some() {
                return Err(Error::NameTaken(n).into());
            }
            after.name = n;
            after.name_key = key;
        }
        if let Some(u) = new_unit {
            after.unit_id = u;
        }
        after.update_time_ms = now_ms();
        after.version = before.version + 1;
        // The database decides between concurrent writers on any replica: only the one whose
        // read is still current matches (the active-name index decides name clashes).
        let updated = workspace::Entity::update_many()
            .col_expr(workspace::Column::Name, Expr::value(after.name.clone()))
            .col_expr(
                workspace::Column::NameKey,
                Expr::value(after.name_key.clone()),
            )
            .col_expr(
                workspace::Column::UnitId,
                Expr::value(after.unit_id.clone()),
            )
            .col_expr(
                workspace::Column::UpdateTimeMs,
                Expr::value(after.update_time_ms),
            )
            .col_expr(workspace::Column::Version, Expr::value(after.version))
            .filter(workspace::Column::Id.eq(workspace_id))
            .filter(workspace::Column::Version.eq(before.version))
            .filter(workspace::Column::State.eq(WorkspaceState::Active as i32))
            .exec(&*unit)
            .await
            .map_err(|e| name_clash(e, &after.name))?;
        if updated.rows_affected == 0 {
            return Err(Error::Stale("workspace").into());
        }
        self.audit
            .write(
                &*unit,
                call,
                entry("workspace.update", Some(&before), &after),
            )
            .await?;
        let bumped = bump_version(&*unit).await?;
        unit.append(Payload::WorkspaceUpdated(WorkspaceUpdated {
            organization_id: after.organization_id.clone(),
            workspace_id: after.id.clone(),
            name: after.name.clone(),
            unit_id: after.unit_id.clone(),
        }))
        .await?;
        let revisions = self.finish(unit, &after.organization_id, bumped).await?;
        Ok((after, revisions))
    }

    /// ArchiveWorkspace (WS-2): one-way.
    pub async fn archive_workspace(
        &self,
        call: &Call,
        cmd: ArchiveWorkspace,
    ) -> ApiResult<(workspace::Model, Revisions)> {
        call.principal.require_authenticated()?;
        let workspace_id = cmd.workspace_id.as_str();
        let mut unit = WriteUnit::begin(&self.outbox, call).await?;
        let (_, before) = self
            .manageable_workspace(&*unit, &call.principal, workspace_id)
            .await?;
        if before.state == WorkspaceState::Archived as i32 {
            return Err(Error::Archived(workspace_id.to_owned()).into());
        }
        check_etag(&cmd.etag, before.version, "workspace")?;
        let now = now_ms();
        let mut after = before.clone();
        after.state = WorkspaceState::Archived as i32;
        after.archive_time_ms = Some(now);
        after.update_time_ms = now;
        after.version = before.version + 1;
        // Only the archive whose read is still current matches: the counter is decremented and
        // the event written once, whichever replicas race.
        let updated = workspace::Entity::update_many()
            .col_expr(workspace::Column::State, Expr::value(after.state))
            .col_expr(
                workspace::Column::ArchiveTimeMs,
                Expr::value(after.archive_time_ms),
            )
            .col_expr(workspace::Column::UpdateTimeMs, Expr::value(now))
            .col_expr(workspace::Column::Version, Expr::value(after.version))
            .filter(workspace::Column::Id.eq(workspace_id))
            .filter(workspace::Column::Version.eq(before.version))
            .filter(workspace::Column::State.eq(WorkspaceState::Active as i32))
            .exec(&*unit)
            .await?;
        if updated.rows_affected == 0 {
            return Err(Error::Stale("workspace").into());
        }
        counter::Entity::update_many()
            .col_expr(
                counter::Column::ActiveCount,
                Expr::col(counter::Column::ActiveCount).sub(1),
            )
            .filter(counter::Column::OrganizationId.eq(&after.organization_id))
            .filter(counter::Column::ActiveCount.gt(0))
            .exec(&*unit)
            .await?;
        self.audit
            .write(
                &*unit,
                call,
                entry("workspace.archive", Some(&before), &after),
            )
            .await?;
        let bumped = bump_version(&*unit).await?;
        unit.append(Payload::WorkspaceArchived(WorkspaceArchived {
            organization_id: after.organization_id.clone(),
            workspace_id: after.id.clone(),
        }))
        .await?;
        let revisions = self.finish(unit, &after.organization_id, bumped).await?;
        Ok((after, revisions))
    }
}
