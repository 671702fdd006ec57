//! The workspace operations behind the RPCs: who the caller is in an organization, what they
//! may see and do, and the transactions that change workspaces and direct roles. Free of tonic:
//! handlers decode, call these, and encode.

use std::collections::BTreeMap;
use std::sync::Arc;

use orgplane_platform::audit::{AuditLogWriter, Entry};
use orgplane_platform::auth::{ApiKeyKind, Principal};
use orgplane_platform::context::RequestContext;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::events::outbox::head_row;
use orgplane_platform::events::{ConsumerHandle, Outbox};
use orgplane_platform::pagination::page_size;
use orgplane_platform::replica::RoleReplica;
use orgplane_platform::roles::{OrgAction, admin_key_allows, allows};
use orgplane_platform::runtime::Runtime;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{WorkspaceArchived, WorkspaceCreated, WorkspaceUpdated};
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::{WorkspaceRole, WorkspaceState};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, QueryOrder, QuerySelect};
use tonic::Code;

use crate::entity::{counter, member, request, workspace};
use crate::model::{self, Effective, Refusal, effective, workspace_role};
use crate::state::{Memory, bump_version, current_version};

/// The audit log's service name.
pub const SERVICE: &str = "workspace";

/// Who is calling, within one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A member with their org role.
    User {
        /// The user.
        user_id: String,
        /// Their org role.
        role: OrgRole,
    },
    /// An admin API key of the organization.
    AdminKey,
    /// Another Orgplane service.
    Service,
}

impl Caller {
    /// Whether the caller may perform `action` (the role matrix, never hand-listed here).
    pub fn may(&self, action: OrgAction) -> bool {
        match self {
            Caller::User { role, .. } => allows(*role, action),
            Caller::AdminKey => admin_key_allows(action),
            Caller::Service => action == OrgAction::Read,
        }
    }
}

/// A member of a workspace as shown to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// The workspace.
    pub workspace_id: String,
    /// Its organization.
    pub organization_id: String,
    /// The user.
    pub user_id: String,
    /// Effective role and source.
    pub effective: Effective,
    /// Org role.
    pub org_role: OrgRole,
    /// The direct row, if any.
    pub direct: Option<member::Model>,
}

impl MemberView {
    /// The member's etag: the direct row's, or one derived from the org role.
    pub fn etag(&self) -> String {
        match &self.direct {
            Some(d) => d.etag.clone(),
            None => format!("org-{}", self.org_role as i32),
        }
    }
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

/// Where a committed mutation left this service, as its response reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revisions {
    /// The outbox revision: of the event it published, or the head for member changes (which
    /// publish none); what consumers of this service's events compare.
    pub revision: i64,
    /// The state version its transaction set (or, for a replayed request, one at least as new):
    /// what CheckAccess's `min_workspace_revision` waits for on any replica.
    pub workspace_revision: i64,
}

/// Settings of the service's rules.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most ACTIVE workspaces per organization (WS-1).
    pub max_active_per_org: i64,
}

/// The service's state shared by handlers and background tasks.
#[derive(Clone)]
pub struct Core {
    /// The database.
    pub db: DatabaseConnection,
    /// Shared start-up dependencies.
    pub runtime: Runtime,
    /// The outbox of WorkspaceCreated/Updated/Archived.
    pub outbox: Outbox,
    /// The org-role replica.
    pub replica: RoleReplica,
    /// The in-memory mirror of this service's data.
    pub memory: Memory,
    /// The audit log.
    pub audit: AuditLogWriter,
    /// The rules' limits.
    pub limits: Limits,
    /// The organization events consumer.
    pub org_events: ConsumerHandle,
    /// The identity events consumer.
    pub identity_events: ConsumerHandle,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn new_etag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

fn workspace_not_found(id: &str) -> ApiError {
    ApiError::not_found("workspace", id)
}

fn archived(id: &str) -> ApiError {
    ApiError::failed_precondition(
        "WORKSPACE_ARCHIVED",
        id,
        "the workspace is archived and read-only",
    )
}

fn lacks_role() -> ApiError {
    orgplane_platform::roles::insufficient_role("your organization role does not allow this")
}

/// ABORTED `ETAG_MISMATCH`: the row changed (on any replica) since this call read it; the
/// conditional write matched nothing.
fn stale(what: &str) -> ApiError {
    ApiError::aborted(
        "ETAG_MISMATCH",
        format!("the {what} changed since it was read; read it again"),
    )
}

fn name_taken(name: &str) -> ApiError {
    ApiError::already_exists(
        "WORKSPACE_NAME_TAKEN",
        format!("an active workspace is already named {name:?}"),
    )
}

/// The API error for a refused direct-role change.
pub fn refusal(r: Refusal, user_id: &str, workspace_id: &str) -> ApiError {
    match r {
        Refusal::BillingNotAssignable => ApiError::new(
            Code::InvalidArgument,
            "WORKSPACE_BILLING_NOT_ASSIGNABLE",
            "WORKSPACE_BILLING comes only from the org BILLING role (WS-4)",
        )
        .violation("role", "WORKSPACE_BILLING cannot be assigned by hand"),
        Refusal::RoleRequired => ApiError::invalid_argument(
            "role",
            "must be WORKSPACE_ROLE_ADMIN, WORKSPACE_ROLE_DEVELOPER or WORKSPACE_ROLE_USER",
        ),
        Refusal::NotOrganizationMember => ApiError::failed_precondition(
            "NOT_ORGANIZATION_MEMBER",
            user_id,
            "the user is not a member of the workspace's organization",
        ),
        Refusal::InheritedFromOrganization => ApiError::failed_precondition(
            "ROLE_INHERITED_FROM_ORGANIZATION",
            user_id,
            "the member's organization role fixes their workspace role; change the org role (WS-7)",
        ),
        Refusal::NoDirectRole => {
            ApiError::not_found("workspace_member", &format!("{workspace_id}/{user_id}"))
        }
    }
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

fn workspace_json(w: &workspace::Model) -> serde_json::Value {
    serde_json::json!({
        "id": w.id, "name": w.name, "unit_id": w.unit_id, "state": w.state,
    })
}

fn member_json(m: &member::Model) -> serde_json::Value {
    serde_json::json!({
        "workspace_id": m.workspace_id, "user_id": m.user_id, "role": m.role,
    })
}

async fn head_revision<C: ConnectionTrait>(db: &C) -> ApiResult<i64> {
    Ok(head_row::Entity::find_by_id(1)
        .one(db)
        .await?
        .map(|h| h.revision)
        .unwrap_or(0))
}

impl Core {
    /// The caller's standing in `organization_id`; NOT_FOUND for outsiders (ORG-2).
    pub fn caller(&self, principal: &Principal, organization_id: &str) -> ApiResult<Caller> {
        let not_found = || ApiError::not_found("organization", organization_id);
        match principal.require_authenticated()? {
            Principal::User(u) => self
                .replica
                .role(organization_id, &u.user_id)
                .filter(|r| *r != OrgRole::Unspecified)
                .map(|role| Caller::User {
                    user_id: u.user_id.clone(),
                    role,
                })
                .ok_or_else(not_found),
            Principal::ApiKey(k) if k.kind == ApiKeyKind::Admin => {
                let active = self
                    .replica
                    .with_organization(organization_id, |o| o.is_active())
                    .unwrap_or(false);
                if k.organization_id == organization_id && active {
                    Ok(Caller::AdminKey)
                } else {
                    Err(not_found())
                }
            }
            Principal::ApiKey(_) => Err(ApiError::permission_denied(
                "WORKSPACE_API_KEY_NOT_ALLOWED",
                "workspace API keys may only call CheckAccess",
            )),
            Principal::Service(_) => {
                if self
                    .replica
                    .with_organization(organization_id, |_| ())
                    .is_some()
                {
                    Ok(Caller::Service)
                } else {
                    Err(not_found())
                }
            }
            Principal::Anonymous => Err(ApiError::unauthenticated(
                "CREDENTIALS_REQUIRED",
                "credentials required",
            )),
        }
    }

    /// The direct role of `user_id` in `workspace_id`, from memory.
    pub fn direct_role(&self, workspace_id: &str, user_id: &str) -> Option<WorkspaceRole> {
        self.memory.read(|v| {
            v.members
                .get(workspace_id)
                .and_then(|m| m.get(user_id))
                .copied()
        })
    }

    /// Whether the caller sees every workspace of the organization.
    fn sees_all(caller: &Caller) -> bool {
        match caller {
            Caller::User { role, .. } => {
                allows(*role, OrgAction::Read) && effective(Some(*role), None).is_some()
            }
            Caller::AdminKey => admin_key_allows(OrgAction::Read),
            Caller::Service => true,
        }
    }

    /// Whether the caller may see `workspace_id` (they hold a role in it).
    fn sees(&self, caller: &Caller, workspace_id: &str) -> bool {
        match caller {
            Caller::User { user_id, role } => {
                allows(*role, OrgAction::Read)
                    && effective(Some(*role), self.direct_role(workspace_id, user_id)).is_some()
            }
            other => Self::sees_all(other),
        }
    }

    /// The workspace `workspace_id` if the caller may see it (NOT_FOUND otherwise).
    pub async fn visible_workspace<C: ConnectionTrait>(
        &self,
        db: &C,
        principal: &Principal,
        workspace_id: &str,
    ) -> ApiResult<(Caller, workspace::Model)> {
        principal.require_authenticated()?;
        if workspace_id.is_empty() {
            return Err(ApiError::invalid_argument(
                "workspace_id",
                "required (the Default Workspace has no id and cannot be addressed here)",
            ));
        }
        let row = workspace::Entity::find_by_id(workspace_id)
            .one(db)
            .await?
            .ok_or_else(|| workspace_not_found(workspace_id))?;
        let caller = match self.caller(principal, &row.organization_id) {
            Ok(c) => c,
            Err(e) if e.code() == Code::NotFound => return Err(workspace_not_found(workspace_id)),
            Err(e) => return Err(e),
        };
        if !self.sees(&caller, workspace_id) {
            return Err(workspace_not_found(workspace_id));
        }
        Ok((caller, row))
    }

    async fn manageable_workspace(
        &self,
        txn: &DatabaseTransaction,
        principal: &Principal,
        workspace_id: &str,
    ) -> ApiResult<(Caller, workspace::Model)> {
        let (caller, row) = self.visible_workspace(txn, principal, workspace_id).await?;
        if !caller.may(OrgAction::ManageWorkspaces) {
            return Err(lacks_role());
        }
        Ok((caller, row))
    }

    async fn remember_request<C: ConnectionTrait>(
        txn: &C,
        key: &str,
        organization_id: &str,
        resource_id: &str,
        revision: i64,
    ) -> ApiResult<()> {
        request::Entity::insert(request::ActiveModel {
            request_key: sea_orm::Set(key.to_owned()),
            organization_id: sea_orm::Set(organization_id.to_owned()),
            resource_id: sea_orm::Set(resource_id.to_owned()),
            revision: sea_orm::Set(revision),
            create_time_ms: sea_orm::Set(now_ms()),
        })
        .exec(txn)
        .await
        .map_err(|e| {
            if orgplane_platform::db::is_unique_violation(&e) {
                ApiError::aborted(
                    "CONCURRENT_REQUEST",
                    "the same request_id is being processed; retry",
                )
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    fn request_key(method: &str, org: &str, principal: &Principal, request_id: &str) -> String {
        let (kind, id) = principal.actor();
        format!("{method}|{org}|{kind}:{id}|{request_id}")
    }

    /// Commits `txn`, which appended the outbox event at `revision` and bumped the state version
    /// to `bumped`, and brings memory in step.
    async fn finish(
        &self,
        txn: DatabaseTransaction,
        organization_id: &str,
        bumped: i64,
        revision: i64,
    ) -> ApiResult<Revisions> {
        txn.commit().await?;
        self.outbox.committed(revision);
        self.memory.after_write(organization_id, bumped).await?;
        Ok(Revisions {
            revision,
            workspace_revision: bumped,
        })
    }

    /// [`Self::finish`] for a transaction that changed only one direct membership: memory
    /// refreshes that row, not the organization.
    async fn finish_member(
        &self,
        txn: DatabaseTransaction,
        workspace_id: &str,
        user_id: &str,
        bumped: i64,
        revision: i64,
    ) -> ApiResult<Revisions> {
        txn.commit().await?;
        self.memory
            .after_member_write(workspace_id, user_id, bumped)
            .await?;
        Ok(Revisions {
            revision,
            workspace_revision: bumped,
        })
    }

    /// CreateWorkspace (WS-1).
    pub async fn create_workspace(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
        organization_id: &str,
        name: &str,
        unit_id: &str,
        request_id: &str,
    ) -> ApiResult<(workspace::Model, Revisions)> {
        principal.require_authenticated()?;
        if organization_id.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        let caller = self.caller(principal, organization_id)?;
        if !caller.may(OrgAction::ManageWorkspaces) {
            return Err(lacks_role());
        }
        let name = model::validate_name(name)
            .map_err(|why| ApiError::invalid_argument("workspace.name", why))?;
        validate_unit(unit_id)?;
        if request_id.len() > 100 {
            return Err(ApiError::invalid_argument(
                "request_id",
                "must be at most 100 characters",
            ));
        }
        if request_id.is_empty() {
            return self
                .create_once(principal, ctx, organization_id, &name, unit_id, None)
                .await;
        }
        let key = Self::request_key("CreateWorkspace", organization_id, principal, request_id);
        if let Some(done) = self.created_before(&self.db, &key).await? {
            return Ok(done);
        }
        let first = self
            .create_once(principal, ctx, organization_id, &name, unit_id, Some(&key))
            .await;
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

    /// One attempt at CreateWorkspace's transaction; `key` is its request key, if any.
    async fn create_once(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
        organization_id: &str,
        name: &str,
        unit_id: &str,
        key: Option<&str>,
    ) -> ApiResult<(workspace::Model, Revisions)> {
        let name = name.to_owned();
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        // On SQLite writers are serialized: a duplicate that waited its turn sees the first
        // call's key here.
        if let Some(key) = key
            && let Some(done) = self.created_before(&txn, key).await?
        {
            return Ok(done);
        }
        let name_key = model::name_key(&name);
        let taken = workspace::Entity::find()
            .filter(workspace::Column::OrganizationId.eq(organization_id))
            .filter(workspace::Column::NameKey.eq(&name_key))
            .filter(workspace::Column::State.eq(WorkspaceState::Active as i32))
            .one(&txn)
            .await?;
        if taken.is_some() {
            return Err(name_taken(&name));
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
        .exec_without_returning(&txn)
        .await?;
        let limit = self.limits.max_active_per_org;
        let counted = counter::Entity::update_many()
            .col_expr(
                counter::Column::ActiveCount,
                Expr::col(counter::Column::ActiveCount).add(1),
            )
            .filter(counter::Column::OrganizationId.eq(organization_id))
            .filter(counter::Column::ActiveCount.lt(limit))
            .exec(&txn)
            .await?;
        if counted.rows_affected == 0 {
            return Err(ApiError::quota_exceeded(
                "WORKSPACE_LIMIT_REACHED",
                &format!("organizations/{organization_id}/active_workspaces"),
                format!("an organization has at most {limit} active workspaces; archive one first"),
            )
            .with_metadata("limit", limit.to_string()));
        }
        let now = now_ms();
        let row = workspace::Model {
            id: format!("wrkspc_{}", uuid::Uuid::now_v7().simple()),
            organization_id: organization_id.to_owned(),
            name: name.clone(),
            name_key,
            unit_id: unit_id.to_owned(),
            state: WorkspaceState::Active as i32,
            create_time_ms: now,
            update_time_ms: now,
            archive_time_ms: None,
            etag: new_etag(),
        };
        workspace::ActiveModel::from(row.clone())
            .insert(&txn)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    name_taken(&name)
                } else {
                    e.into()
                }
            })?;
        self.audit
            .record(
                &txn,
                principal,
                ctx,
                Entry::new(organization_id, "workspace.create", "workspace", &row.id)
                    .with_change(None, Some(workspace_json(&row))),
            )
            .await?;
        let bumped = bump_version(&txn).await?;
        let revision = self
            .outbox
            .append(
                &txn,
                Payload::WorkspaceCreated(WorkspaceCreated {
                    organization_id: organization_id.to_owned(),
                    workspace_id: row.id.clone(),
                    name: row.name.clone(),
                    unit_id: row.unit_id.clone(),
                }),
                &ctx.request_id,
            )
            .await?;
        if let Some(key) = key {
            Self::remember_request(&txn, key, organization_id, &row.id, revision).await?;
        }
        let revisions = self.finish(txn, organization_id, bumped, revision).await?;
        Ok((row, revisions))
    }

    /// GetWorkspace.
    pub async fn get_workspace(
        &self,
        principal: &Principal,
        workspace_id: &str,
    ) -> ApiResult<workspace::Model> {
        Ok(self
            .visible_workspace(&self.db, principal, workspace_id)
            .await?
            .1)
    }

    /// ListWorkspaces (WS-2).
    #[allow(clippy::too_many_arguments)]
    pub async fn list_workspaces(
        &self,
        principal: &Principal,
        organization_id: &str,
        include_archived: bool,
        unit_id: &str,
        requested_page_size: i32,
        page_token: &str,
    ) -> ApiResult<WorkspacePage> {
        principal.require_authenticated()?;
        if organization_id.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        let all_orgs = organization_id == "-";
        let caller = if all_orgs {
            principal.require_service()?;
            Caller::Service
        } else {
            self.caller(principal, organization_id)?
        };
        if !caller.may(OrgAction::Read) {
            return Err(lacks_role());
        }
        let size = page_size(requested_page_size)?;
        let viewer = match &caller {
            Caller::User { user_id, .. } if !Self::sees_all(&caller) => user_id.clone(),
            _ => String::new(),
        };
        let scope =
            format!("ListWorkspaces|{organization_id}|{include_archived}|{unit_id}|{viewer}");
        let cursor: Option<(String, i64)> = self.runtime.page_tokens.decode(&scope, page_token)?;
        let revision = match &cursor {
            Some((_, r)) => *r,
            None => head_revision(&self.db).await?,
        };
        let mut query = workspace::Entity::find();
        if !all_orgs {
            query = query.filter(workspace::Column::OrganizationId.eq(organization_id));
        }
        if !include_archived {
            query = query.filter(workspace::Column::State.eq(WorkspaceState::Active as i32));
        }
        if !unit_id.is_empty() {
            query = query.filter(workspace::Column::UnitId.eq(unit_id));
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
    #[allow(clippy::too_many_arguments)]
    pub async fn update_workspace(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
        workspace_id: &str,
        paths: &[String],
        name: &str,
        unit_id: &str,
        etag: &str,
    ) -> ApiResult<(workspace::Model, Revisions)> {
        principal.require_authenticated()?;
        if paths.is_empty() {
            return Err(ApiError::invalid_argument(
                "update_mask",
                "name the fields to change: name, unit_id",
            ));
        }
        let mut new_name = None;
        let mut new_unit = None;
        for path in paths {
            match path.as_str() {
                "name" => {
                    new_name = Some(
                        model::validate_name(name)
                            .map_err(|why| ApiError::invalid_argument("workspace.name", why))?,
                    )
                }
                "unit_id" => {
                    validate_unit(unit_id)?;
                    new_unit = Some(unit_id.to_owned());
                }
                other => {
                    return Err(ApiError::invalid_argument(
                        "update_mask",
                        format!("{other:?} is not a mutable field (name, unit_id)"),
                    ));
                }
            }
        }
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let (_, before) = self
            .manageable_workspace(&txn, principal, workspace_id)
            .await?;
        if before.state == WorkspaceState::Archived as i32 {
            return Err(archived(workspace_id));
        }
        if !etag.is_empty() && etag != before.etag {
            return Err(stale("workspace"));
        }
        let mut after = before.clone();
        if let Some(n) = new_name {
            let key = model::name_key(&n);
            let taken = workspace::Entity::find()
                .filter(workspace::Column::OrganizationId.eq(&before.organization_id))
                .filter(workspace::Column::NameKey.eq(&key))
                .filter(workspace::Column::State.eq(WorkspaceState::Active as i32))
                .filter(workspace::Column::Id.ne(workspace_id))
                .one(&txn)
                .await?;
            if taken.is_some() {
                return Err(name_taken(&n));
            }
            after.name = n;
            after.name_key = key;
        }
        if let Some(u) = new_unit {
            after.unit_id = u;
        }
        after.update_time_ms = now_ms();
        after.etag = new_etag();
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
            .col_expr(workspace::Column::Etag, Expr::value(after.etag.clone()))
            .filter(workspace::Column::Id.eq(workspace_id))
            .filter(workspace::Column::Etag.eq(before.etag.clone()))
            .filter(workspace::Column::State.eq(WorkspaceState::Active as i32))
            .exec(&txn)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    name_taken(&after.name)
                } else {
                    e.into()
                }
            })?;
        if updated.rows_affected == 0 {
            return Err(stale("workspace"));
        }
        self.audit
            .record(
                &txn,
                principal,
                ctx,
                Entry::new(
                    &after.organization_id,
                    "workspace.update",
                    "workspace",
                    workspace_id,
                )
                .with_change(Some(workspace_json(&before)), Some(workspace_json(&after))),
            )
            .await?;
        let bumped = bump_version(&txn).await?;
        let revision = self
            .outbox
            .append(
                &txn,
                Payload::WorkspaceUpdated(WorkspaceUpdated {
                    organization_id: after.organization_id.clone(),
                    workspace_id: after.id.clone(),
                    name: after.name.clone(),
                    unit_id: after.unit_id.clone(),
                }),
                &ctx.request_id,
            )
            .await?;
        let org = after.organization_id.clone();
        let revisions = self.finish(txn, &org, bumped, revision).await?;
        Ok((after, revisions))
    }

    /// ArchiveWorkspace (WS-2): one-way.
    pub async fn archive_workspace(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
        workspace_id: &str,
        etag: &str,
    ) -> ApiResult<(workspace::Model, Revisions)> {
        principal.require_authenticated()?;
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let (_, before) = self
            .manageable_workspace(&txn, principal, workspace_id)
            .await?;
        if before.state == WorkspaceState::Archived as i32 {
            return Err(archived(workspace_id));
        }
        if !etag.is_empty() && etag != before.etag {
            return Err(stale("workspace"));
        }
        let now = now_ms();
        let mut after = before.clone();
        after.state = WorkspaceState::Archived as i32;
        after.archive_time_ms = Some(now);
        after.update_time_ms = now;
        after.etag = new_etag();
        // Only the archive whose read is still current matches: the counter is decremented and
        // the event written once, whichever replicas race.
        let updated = workspace::Entity::update_many()
            .col_expr(workspace::Column::State, Expr::value(after.state))
            .col_expr(
                workspace::Column::ArchiveTimeMs,
                Expr::value(after.archive_time_ms),
            )
            .col_expr(workspace::Column::UpdateTimeMs, Expr::value(now))
            .col_expr(workspace::Column::Etag, Expr::value(after.etag.clone()))
            .filter(workspace::Column::Id.eq(workspace_id))
            .filter(workspace::Column::Etag.eq(before.etag.clone()))
            .filter(workspace::Column::State.eq(WorkspaceState::Active as i32))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(stale("workspace"));
        }
        counter::Entity::update_many()
            .col_expr(
                counter::Column::ActiveCount,
                Expr::col(counter::Column::ActiveCount).sub(1),
            )
            .filter(counter::Column::OrganizationId.eq(&after.organization_id))
            .filter(counter::Column::ActiveCount.gt(0))
            .exec(&txn)
            .await?;
        self.audit
            .record(
                &txn,
                principal,
                ctx,
                Entry::new(
                    &after.organization_id,
                    "workspace.archive",
                    "workspace",
                    workspace_id,
                )
                .with_change(Some(workspace_json(&before)), Some(workspace_json(&after))),
            )
            .await?;
        let bumped = bump_version(&txn).await?;
        let revision = self
            .outbox
            .append(
                &txn,
                Payload::WorkspaceArchived(WorkspaceArchived {
                    organization_id: after.organization_id.clone(),
                    workspace_id: after.id.clone(),
                }),
                &ctx.request_id,
            )
            .await?;
        let org = after.organization_id.clone();
        let revisions = self.finish(txn, &org, bumped, revision).await?;
        Ok((after, revisions))
    }

    /// `user_id`, with `me` meaning the calling user.
    pub(crate) fn resolve_user<'a>(
        principal: &'a Principal,
        user_id: &'a str,
    ) -> ApiResult<&'a str> {
        if user_id.is_empty() {
            return Err(ApiError::invalid_argument("user_id", "required"));
        }
        if user_id == "me" {
            return match principal {
                Principal::User(u) => Ok(u.user_id.as_str()),
                _ => Err(ApiError::invalid_argument(
                    "user_id",
                    "`me` works only with a user's access token",
                )),
            };
        }
        Ok(user_id)
    }

    async fn member_view<C: ConnectionTrait>(
        &self,
        db: &C,
        ws: &workspace::Model,
        user_id: &str,
    ) -> ApiResult<Option<MemberView>> {
        let org_role = self.replica.role(&ws.organization_id, user_id);
        let direct = member::Entity::find_by_id((ws.id.clone(), user_id.to_owned()))
            .one(db)
            .await?;
        let eff = effective(org_role, direct.as_ref().map(|d| workspace_role(d.role)));
        Ok(eff.map(|effective| MemberView {
            workspace_id: ws.id.clone(),
            organization_id: ws.organization_id.clone(),
            user_id: user_id.to_owned(),
            effective,
            org_role: org_role.unwrap_or(OrgRole::Unspecified),
            direct,
        }))
    }

    /// AddWorkspaceMember (WS-4, WS-6, WS-7).
    pub async fn add_member(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
        workspace_id: &str,
        user_id: &str,
        role: i32,
        request_id: &str,
    ) -> ApiResult<(MemberView, Revisions)> {
        let first = self
            .add_member_once(principal, ctx, workspace_id, user_id, role, request_id)
            .await;
        // AIP-155 for duplicates in flight on any replica: a copy that met the first one's row
        // (ALREADY_EXISTS) or request key gets the first result.
        match first {
            Err(e) if !request_id.is_empty() => {
                match self
                    .member_added_before(principal, workspace_id, user_id, request_id)
                    .await
                {
                    Ok(Some(done)) => Ok(done),
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    /// The member and revisions an earlier AddWorkspaceMember with `request_id` produced; the
    /// state version is today's, which covers that commit.
    async fn member_added_before(
        &self,
        principal: &Principal,
        workspace_id: &str,
        user_id: &str,
        request_id: &str,
    ) -> ApiResult<Option<(MemberView, Revisions)>> {
        let (_, ws) = self
            .visible_workspace(&self.db, principal, workspace_id)
            .await?;
        let key = Self::request_key(
            "AddWorkspaceMember",
            &ws.organization_id,
            principal,
            request_id,
        );
        let Some(done) = request::Entity::find_by_id(&key).one(&self.db).await? else {
            return Ok(None);
        };
        if done.resource_id != format!("{workspace_id}/{user_id}") {
            return Ok(None);
        }
        let Some(view) = self.member_view(&self.db, &ws, user_id).await? else {
            return Ok(None);
        };
        let revisions = Revisions {
            revision: done.revision,
            workspace_revision: current_version(&self.db).await?,
        };
        Ok(Some((view, revisions)))
    }

    async fn add_member_once(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
        workspace_id: &str,
        user_id: &str,
        role: i32,
        request_id: &str,
    ) -> ApiResult<(MemberView, Revisions)> {
        principal.require_authenticated()?;
        let role = WorkspaceRole::try_from(role).unwrap_or(WorkspaceRole::Unspecified);
        if user_id.is_empty() {
            return Err(ApiError::invalid_argument("user_id", "required"));
        }
        if matches!(role, WorkspaceRole::Billing | WorkspaceRole::Unspecified) {
            return Err(refusal(
                model::may_assign(None, role)
                    .err()
                    .unwrap_or(Refusal::RoleRequired),
                user_id,
                workspace_id,
            ));
        }
        if request_id.len() > 100 {
            return Err(ApiError::invalid_argument(
                "request_id",
                "must be at most 100 characters",
            ));
        }
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let (_, ws) = self
            .manageable_workspace(&txn, principal, workspace_id)
            .await?;
        let key = Self::request_key(
            "AddWorkspaceMember",
            &ws.organization_id,
            principal,
            request_id,
        );
        if !request_id.is_empty()
            && let Some(done) = request::Entity::find_by_id(&key).one(&txn).await?
            && done.resource_id == format!("{workspace_id}/{user_id}")
            && let Some(view) = self.member_view(&txn, &ws, user_id).await?
        {
            let revisions = Revisions {
                revision: done.revision,
                workspace_revision: current_version(&txn).await?,
            };
            return Ok((view, revisions));
        }
        if ws.state == WorkspaceState::Archived as i32 {
            return Err(archived(workspace_id));
        }
        let org_role = self.replica.role(&ws.organization_id, user_id);
        model::may_assign(org_role, role).map_err(|r| refusal(r, user_id, workspace_id))?;
        let existing = member::Entity::find_by_id((ws.id.clone(), user_id.to_owned()))
            .one(&txn)
            .await?;
        let exists = || {
            ApiError::already_exists(
                "WORKSPACE_MEMBER_EXISTS",
                "the user already has a direct role here; use UpdateWorkspaceMember",
            )
        };
        if existing.is_some() {
            return Err(exists());
        }
        let now = now_ms();
        let row = member::Model {
            workspace_id: ws.id.clone(),
            user_id: user_id.to_owned(),
            organization_id: ws.organization_id.clone(),
            role: role as i32,
            create_time_ms: now,
            update_time_ms: now,
            etag: new_etag(),
        };
        // The primary key decides between concurrent adds on any replica.
        member::ActiveModel::from(row.clone())
            .insert(&txn)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    exists()
                } else {
                    e.into()
                }
            })?;
        self.audit
            .record(
                &txn,
                principal,
                ctx,
                Entry::new(
                    &ws.organization_id,
                    "workspace_member.add",
                    "workspace_member",
                    &format!("{}/{}", ws.id, user_id),
                )
                .with_change(None, Some(member_json(&row))),
            )
            .await?;
        let bumped = bump_version(&txn).await?;
        let revision = head_revision(&txn).await?;
        if !request_id.is_empty() {
            Self::remember_request(
                &txn,
                &key,
                &ws.organization_id,
                &format!("{workspace_id}/{user_id}"),
                revision,
            )
            .await?;
        }
        let view = self
            .member_view(&txn, &ws, user_id)
            .await?
            .ok_or_else(|| ApiError::internal("added member has no role"))?;
        let revisions = self
            .finish_member(txn, &ws.id, user_id, bumped, revision)
            .await?;
        Ok((view, revisions))
    }

    /// GetWorkspaceMember.
    pub async fn get_member(
        &self,
        principal: &Principal,
        workspace_id: &str,
        user_id: &str,
    ) -> ApiResult<MemberView> {
        principal.require_authenticated()?;
        let user_id = Self::resolve_user(principal, user_id)?;
        let (_, ws) = self
            .visible_workspace(&self.db, principal, workspace_id)
            .await?;
        self.member_view(&self.db, &ws, user_id)
            .await?
            .ok_or_else(|| {
                ApiError::not_found("workspace_member", &format!("{workspace_id}/{user_id}"))
            })
    }

    /// ListWorkspaceMembers: direct and inherited members, by user id.
    pub async fn list_members(
        &self,
        principal: &Principal,
        workspace_id: &str,
        role_filter: i32,
        source_filter: i32,
        requested_page_size: i32,
        page_token: &str,
    ) -> ApiResult<(Vec<MemberView>, String)> {
        principal.require_authenticated()?;
        let (_, ws) = self
            .visible_workspace(&self.db, principal, workspace_id)
            .await?;
        let size = page_size(requested_page_size)?;
        let scope = format!("ListWorkspaceMembers|{workspace_id}|{role_filter}|{source_filter}");
        let after: Option<String> = self.runtime.page_tokens.decode(&scope, page_token)?;
        let org = self
            .replica
            .organization(&ws.organization_id)
            .unwrap_or_default();
        let mut direct: BTreeMap<String, member::Model> = member::Entity::find()
            .filter(member::Column::WorkspaceId.eq(workspace_id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| (m.user_id.clone(), m))
            .collect();
        let mut users: Vec<String> = org
            .members
            .iter()
            .filter(|(_, r)| effective(Some(**r), None).is_some())
            .map(|(u, _)| u.clone())
            .chain(direct.keys().cloned())
            .collect();
        users.sort();
        users.dedup();
        let mut views = Vec::new();
        for user in users {
            if after.as_ref().is_some_and(|a| user.as_str() <= a.as_str()) {
                continue;
            }
            let org_role = org.members.get(&user).copied();
            let d = direct.remove(&user);
            let Some(eff) = effective(org_role, d.as_ref().map(|d| workspace_role(d.role))) else {
                continue;
            };
            if role_filter != 0 && eff.role as i32 != role_filter {
                continue;
            }
            if source_filter != 0 && eff.source as i32 != source_filter {
                continue;
            }
            views.push(MemberView {
                workspace_id: ws.id.clone(),
                organization_id: ws.organization_id.clone(),
                user_id: user,
                effective: eff,
                org_role: org_role.unwrap_or(OrgRole::Unspecified),
                direct: d,
            });
            if views.len() as u64 > size {
                break;
            }
        }
        Ok(self
            .runtime
            .page_tokens
            .page(&scope, views, size, |v| v.user_id.clone()))
    }

    /// UpdateWorkspaceMember: the direct role (WS-4, WS-6, WS-7).
    #[allow(clippy::too_many_arguments)]
    pub async fn update_member(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
        workspace_id: &str,
        user_id: &str,
        paths: &[String],
        role: i32,
        etag: &str,
    ) -> ApiResult<(MemberView, Revisions)> {
        principal.require_authenticated()?;
        if paths.is_empty() {
            return Err(ApiError::invalid_argument(
                "update_mask",
                "name the fields to change: role",
            ));
        }
        if let Some(other) = paths.iter().find(|p| p.as_str() != "role") {
            return Err(ApiError::invalid_argument(
                "update_mask",
                format!("{other:?} is not a mutable field (role)"),
            ));
        }
        if user_id.is_empty() {
            return Err(ApiError::invalid_argument(
                "workspace_member.user_id",
                "required",
            ));
        }
        let role = WorkspaceRole::try_from(role).unwrap_or(WorkspaceRole::Unspecified);
        if matches!(role, WorkspaceRole::Billing | WorkspaceRole::Unspecified) {
            return Err(refusal(
                model::may_assign(None, role)
                    .err()
                    .unwrap_or(Refusal::RoleRequired),
                user_id,
                workspace_id,
            ));
        }
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let (_, ws) = self
            .manageable_workspace(&txn, principal, workspace_id)
            .await?;
        let current = self.member_view(&txn, &ws, user_id).await?;
        let Some(current) = current else {
            return Err(ApiError::not_found(
                "workspace_member",
                &format!("{workspace_id}/{user_id}"),
            ));
        };
        if ws.state == WorkspaceState::Archived as i32 {
            return Err(archived(workspace_id));
        }
        let org_role = self.replica.role(&ws.organization_id, user_id);
        model::may_assign(org_role, role).map_err(|r| refusal(r, user_id, workspace_id))?;
        if !etag.is_empty() && etag != current.etag() {
            return Err(stale("member"));
        }
        let now = now_ms();
        let after = match &current.direct {
            Some(d) => {
                let mut a = d.clone();
                a.role = role as i32;
                a.update_time_ms = now;
                a.etag = new_etag();
                // Only the writer whose read is still current matches, on any replica.
                let updated = member::Entity::update_many()
                    .col_expr(member::Column::Role, Expr::value(a.role))
                    .col_expr(member::Column::UpdateTimeMs, Expr::value(now))
                    .col_expr(member::Column::Etag, Expr::value(a.etag.clone()))
                    .filter(member::Column::WorkspaceId.eq(d.workspace_id.clone()))
                    .filter(member::Column::UserId.eq(d.user_id.clone()))
                    .filter(member::Column::Etag.eq(d.etag.clone()))
                    .exec(&txn)
                    .await?;
                if updated.rows_affected == 0 {
                    return Err(stale("member"));
                }
                a
            }
            None => {
                let a = member::Model {
                    workspace_id: ws.id.clone(),
                    user_id: user_id.to_owned(),
                    organization_id: ws.organization_id.clone(),
                    role: role as i32,
                    create_time_ms: now,
                    update_time_ms: now,
                    etag: new_etag(),
                };
                member::ActiveModel::from(a.clone())
                    .insert(&txn)
                    .await
                    .map_err(|e| {
                        if orgplane_platform::db::is_unique_violation(&e) {
                            stale("member")
                        } else {
                            e.into()
                        }
                    })?;
                a
            }
        };
        self.audit
            .record(
                &txn,
                principal,
                ctx,
                Entry::new(
                    &ws.organization_id,
                    "workspace_member.update",
                    "workspace_member",
                    &format!("{}/{}", ws.id, user_id),
                )
                .with_change(
                    current.direct.as_ref().map(member_json),
                    Some(member_json(&after)),
                ),
            )
            .await?;
        let bumped = bump_version(&txn).await?;
        let revision = head_revision(&txn).await?;
        let view = self
            .member_view(&txn, &ws, user_id)
            .await?
            .ok_or_else(|| ApiError::internal("updated member has no role"))?;
        let revisions = self
            .finish_member(txn, &ws.id, user_id, bumped, revision)
            .await?;
        Ok((view, revisions))
    }

    /// RemoveWorkspaceMember (WS-7).
    pub async fn remove_member(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
        workspace_id: &str,
        user_id: &str,
    ) -> ApiResult<Revisions> {
        principal.require_authenticated()?;
        if user_id.is_empty() {
            return Err(ApiError::invalid_argument("user_id", "required"));
        }
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let (_, ws) = self
            .manageable_workspace(&txn, principal, workspace_id)
            .await?;
        let direct = member::Entity::find_by_id((ws.id.clone(), user_id.to_owned()))
            .one(&txn)
            .await?;
        let org_role = self.replica.role(&ws.organization_id, user_id);
        model::may_remove(org_role, direct.is_some())
            .map_err(|r| refusal(r, user_id, workspace_id))?;
        if direct.is_none() {
            return Err(refusal(Refusal::NoDirectRole, user_id, workspace_id));
        }
        if ws.state == WorkspaceState::Archived as i32 {
            return Err(archived(workspace_id));
        }
        // Of concurrent removals on any replica, only one deletes the row and is audited; the
        // record shows the row as it was deleted.
        let Some(direct) = member::Entity::delete_many()
            .filter(member::Column::WorkspaceId.eq(ws.id.clone()))
            .filter(member::Column::UserId.eq(user_id))
            .exec_with_returning(&txn)
            .await?
            .into_iter()
            .next()
        else {
            return Err(refusal(Refusal::NoDirectRole, user_id, workspace_id));
        };
        self.audit
            .record(
                &txn,
                principal,
                ctx,
                Entry::new(
                    &ws.organization_id,
                    "workspace_member.remove",
                    "workspace_member",
                    &format!("{}/{}", ws.id, user_id),
                )
                .with_change(Some(member_json(&direct)), None),
            )
            .await?;
        let bumped = bump_version(&txn).await?;
        let revision = head_revision(&txn).await?;
        self.finish_member(txn, &ws.id, user_id, bumped, revision)
            .await
    }

    /// ListAuditEvents (ORG-10).
    pub async fn list_audit_events(
        &self,
        principal: &Principal,
        organization_id: &str,
        filter: &orgplane_proto::audit::v1::AuditEventFilter,
        requested_page_size: i32,
        page_token: &str,
    ) -> ApiResult<(Vec<orgplane_proto::audit::v1::AuditEvent>, String)> {
        principal.require_authenticated()?;
        if organization_id.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        let caller = self.caller(principal, organization_id)?;
        if !caller.may(OrgAction::ReadAuditLog) {
            return Err(lacks_role());
        }
        self.audit
            .list(
                &self.db,
                &self.runtime.page_tokens,
                organization_id,
                filter,
                requested_page_size,
                page_token,
            )
            .await
    }
}

/// The shared core, as handlers hold it.
pub type SharedCore = Arc<Core>;

/// Where the organization of a mutation's target is found: named by the request, or through
/// the workspace the request names.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The organization id the request names.
    Organization(String),
    /// The organization of this workspace.
    Workspace(String),
}

/// What a mutation RPC of this service aims at (ORG-10).
pub type Attempt = orgplane_platform::audit::Attempt<Scope>;

impl Core {
    /// Passes a mutation's `result` through unchanged, recording it first as OUTCOME_FAILURE
    /// when it is a refusal the audit log keeps and `attempt`'s organization is known here.
    pub async fn audited<T>(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
        attempt: Attempt,
        result: ApiResult<T>,
    ) -> ApiResult<T> {
        self.audit
            .outcome(&self.db, principal, ctx, result, || {
                self.attempt_entry(attempt)
            })
            .await
    }

    /// The audit entry of `attempt`, in its organization; `None` when that is unknown here.
    async fn attempt_entry(&self, attempt: Attempt) -> Option<Entry> {
        let organization_id = match &attempt.scope {
            Scope::Organization(id) => self
                .replica
                .with_organization(id, |_| ())
                .map(|()| id.clone()),
            Scope::Workspace(id) => match workspace::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await
            {
                Ok(w) => w.map(|w| w.organization_id),
                Err(e) => {
                    tracing::warn!(error = %e, action = attempt.action, "could not resolve the organization of a refused mutation");
                    None
                }
            },
        }?;
        Some(attempt.entry(&organization_id))
    }
}
