//! Direct workspace roles (WS-4 … WS-7): add, read, list (direct and inherited members), update
//! and remove. A member change publishes no event; it bumps the state version and answers the
//! outbox head.

use std::collections::BTreeMap;

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::auth::Principal;
use orgplane_platform::convert::{check_etag, etag};
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::pagination::page_size;
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::{WorkspaceRole, WorkspaceState};
use sea_orm::ConnectionTrait;
use sea_orm::entity::prelude::*;

use super::{Core, Revisions, head_revision, now_ms, resolve_user, validate_request_id};
use crate::domain::Error;
use crate::domain::model::{self, Effective, Refusal, effective, workspace_role};
use crate::store::entity::{member, request, workspace};
use crate::store::memory::{bump_version, current_version};

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
    /// The member's row version: the direct row's, or 0 while the role is only inherited.
    pub fn version(&self) -> i64 {
        self.direct.as_ref().map_or(0, |d| d.version)
    }

    /// The member's etag ([`etag`] of [`Self::version`]).
    pub fn etag(&self) -> String {
        etag(self.version())
    }
}

/// AddWorkspaceMember.
#[derive(Debug, Clone, Default)]
pub struct AddMember {
    /// The workspace.
    pub workspace_id: String,
    /// The user (`me`: the caller).
    pub user_id: String,
    /// The direct role (`WorkspaceRole` number).
    pub role: i32,
    /// The idempotency key (AIP-155); empty for none.
    pub request_id: String,
}

/// ListWorkspaceMembers.
#[derive(Debug, Clone, Default)]
pub struct ListMembers {
    /// The workspace.
    pub workspace_id: String,
    /// Only this effective role (`WorkspaceRole` number; 0 for all).
    pub role: i32,
    /// Only this source (`WorkspaceRoleSource` number; 0 for all).
    pub role_source: i32,
    /// The requested page size.
    pub page_size: i32,
    /// The page token.
    pub page_token: String,
}

/// UpdateWorkspaceMember: the direct role.
#[derive(Debug, Clone, Default)]
pub struct UpdateMember {
    /// The workspace.
    pub workspace_id: String,
    /// The user.
    pub user_id: String,
    /// The update mask's paths (`role`).
    pub paths: Vec<String>,
    /// The new role (`WorkspaceRole` number).
    pub role: i32,
    /// The etag read; empty for "whatever is current".
    pub etag: String,
}

/// RemoveWorkspaceMember.
#[derive(Debug, Clone, Default)]
pub struct RemoveMember {
    /// The workspace.
    pub workspace_id: String,
    /// The user (`me`: the caller).
    pub user_id: String,
}

/// The role a request assigns: refused before anything is read when it can never be assigned
/// (WS-4).
fn assignable(role: i32, user_id: &str, workspace_id: &str) -> ApiResult<WorkspaceRole> {
    let role = workspace_role(role);
    if matches!(role, WorkspaceRole::Billing | WorkspaceRole::Unspecified) {
        let why = model::may_assign(None, role)
            .err()
            .unwrap_or(Refusal::RoleRequired);
        return Err(Error::refused(why, user_id, workspace_id).into());
    }
    Ok(role)
}

/// The audit entry of `action` on the member `user_id` of `ws`, as proto images.
fn entry(
    action: &str,
    ws: &workspace::Model,
    user_id: &str,
    before: Option<&MemberView>,
    after: Option<&MemberView>,
) -> Entry {
    Entry::new(
        &ws.organization_id,
        action,
        "workspace_member",
        &format!("{}/{}", ws.id, user_id),
    )
    .change(before, after)
}

impl Core {
    /// Commits `unit`, which changed only the direct role of `user_id` in `workspace_id` and
    /// bumped the state version to `bumped`: memory refreshes that row, not the organization.
    async fn finish_member(
        &self,
        unit: WriteUnit,
        workspace_id: &str,
        user_id: &str,
        bumped: i64,
    ) -> ApiResult<Revisions> {
        let revision = unit.commit_at_revision().await?;
        self.memory
            .after_member_write(workspace_id, user_id, bumped)
            .await?;
        Ok(Revisions {
            revision,
            workspace_revision: bumped,
        })
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

    /// The view of a member just written in `db`.
    async fn written_view<C: ConnectionTrait>(
        &self,
        db: &C,
        ws: &workspace::Model,
        user_id: &str,
    ) -> ApiResult<MemberView> {
        self.member_view(db, ws, user_id)
            .await?
            .ok_or_else(|| ApiError::internal("a member just written has no role"))
    }

    /// AddWorkspaceMember (WS-4, WS-6, WS-7).
    pub async fn add_member(
        &self,
        call: &Call,
        cmd: AddMember,
    ) -> ApiResult<(MemberView, Revisions)> {
        let principal = call.principal.require_authenticated()?;
        let first = self.add_member_once(call, &cmd).await;
        // AIP-155 for duplicates in flight on any replica: a copy that met the first one's row
        // (ALREADY_EXISTS) or request key gets the first result.
        match first {
            Err(e) if !cmd.request_id.is_empty() => {
                match self.member_added_before(principal, &cmd).await {
                    Ok(Some(done)) => Ok(done),
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    /// The member and revisions an earlier AddWorkspaceMember `cmd` produced; the state version
    /// is today's, which covers that commit.
    async fn member_added_before(
        &self,
        principal: &Principal,
        cmd: &AddMember,
    ) -> ApiResult<Option<(MemberView, Revisions)>> {
        let (_, ws) = self
            .visible_workspace(&self.db, principal, &cmd.workspace_id)
            .await?;
        self.added_before(&self.db, principal, &ws, cmd).await
    }

    /// [`Self::member_added_before`] in `db`, for the workspace `ws`.
    async fn added_before<C: ConnectionTrait>(
        &self,
        db: &C,
        principal: &Principal,
        ws: &workspace::Model,
        cmd: &AddMember,
    ) -> ApiResult<Option<(MemberView, Revisions)>> {
        let key = Self::request_key(
            "AddWorkspaceMember",
            &ws.organization_id,
            principal,
            &cmd.request_id,
        );
        let Some(done) = request::Entity::find_by_id(&key).one(db).await? else {
            return Ok(None);
        };
        if done.resource_id != format!("{}/{}", cmd.workspace_id, cmd.user_id) {
            return Ok(None);
        }
        let Some(view) = self.member_view(db, ws, &cmd.user_id).await? else {
            return Ok(None);
        };
        let revisions = Revisions {
            revision: done.revision,
            workspace_revision: current_version(db).await?,
        };
        Ok(Some((view, revisions)))
    }

    async fn add_member_once(
        &self,
        call: &Call,
        cmd: &AddMember,
    ) -> ApiResult<(MemberView, Revisions)> {
        let (workspace_id, user_id) = (cmd.workspace_id.as_str(), cmd.user_id.as_str());
        if user_id.is_empty() {
            return Err(ApiError::invalid_argument("user_id", "required"));
        }
        let role = assignable(cmd.role, user_id, workspace_id)?;
        validate_request_id(&cmd.request_id)?;
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let (_, ws) = self
            .manageable_workspace(&*unit, &call.principal, workspace_id)
            .await?;
        if !cmd.request_id.is_empty()
            && let Some(done) = self.added_before(&*unit, &call.principal, &ws, cmd).await?
        {
            return Ok(done);
        }
        if ws.state == WorkspaceState::Archived as i32 {
            return Err(Error::Archived(workspace_id.to_owned()).into());
        }
        let org_role = self.replica.role(&ws.organization_id, user_id);
        model::may_assign(org_role, role).map_err(|r| Error::refused(r, user_id, workspace_id))?;
        let before = self.member_view(&*unit, &ws, user_id).await?;
        if before.as_ref().is_some_and(|b| b.direct.is_some()) {
            return Err(Error::MemberExists.into());
        }
        let now = now_ms();
        let row = member::Model {
            workspace_id: ws.id.clone(),
            user_id: user_id.to_owned(),
            organization_id: ws.organization_id.clone(),
            role: role as i32,
            create_time_ms: now,
            update_time_ms: now,
            version: 1,
        };
        // The primary key decides between concurrent adds on any replica.
        member::ActiveModel::from(row)
            .insert(&*unit)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    Error::MemberExists.into()
                } else {
                    ApiError::from(e)
                }
            })?;
        let view = self.written_view(&*unit, &ws, user_id).await?;
        self.audit
            .write(
                &*unit,
                call,
                entry(
                    "workspace_member.add",
                    &ws,
                    user_id,
                    before.as_ref(),
                    Some(&view),
                ),
            )
            .await?;
        let bumped = bump_version(&*unit).await?;
        let revision = head_revision(&*unit).await?;
        if !cmd.request_id.is_empty() {
            let key = Self::request_key(
                "AddWorkspaceMember",
                &ws.organization_id,
                &call.principal,
                &cmd.request_id,
            );
            let resource = format!("{workspace_id}/{user_id}");
            Self::remember_request(&unit, &key, &ws.organization_id, &resource, revision).await?;
        }
        unit.commit().await?;
        self.memory
            .after_member_write(&ws.id, user_id, bumped)
            .await?;
        Ok((
            view,
            Revisions {
                revision,
                workspace_revision: bumped,
            },
        ))
    }

    /// GetWorkspaceMember.
    pub async fn get_member(
        &self,
        call: &Call,
        workspace_id: &str,
        user_id: &str,
    ) -> ApiResult<MemberView> {
        let principal = call.principal.require_authenticated()?;
        let user_id = resolve_user(principal, user_id)?;
        let (_, ws) = self
            .visible_workspace(&self.db, principal, workspace_id)
            .await?;
        self.member_view(&self.db, &ws, user_id)
            .await?
            .ok_or_else(|| Error::MemberNotFound(format!("{workspace_id}/{user_id}")).into())
    }

    /// ListWorkspaceMembers: direct and inherited members, by user id.
    pub async fn list_members(
        &self,
        call: &Call,
        cmd: ListMembers,
    ) -> ApiResult<(Vec<MemberView>, String)> {
        let principal = call.principal.require_authenticated()?;
        let workspace_id = cmd.workspace_id.as_str();
        let (_, ws) = self
            .visible_workspace(&self.db, principal, workspace_id)
            .await?;
        let size = page_size(cmd.page_size)?;
        let (role_filter, source_filter) = (cmd.role, cmd.role_source);
        let scope = format!("ListWorkspaceMembers|{workspace_id}|{role_filter}|{source_filter}");
        let after: Option<String> = self.runtime.page_tokens.decode(&scope, &cmd.page_token)?;
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
            .filter(|(_, r)| effective(Some(*r), None).is_some())
            .map(|(u, _)| u.to_owned())
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
    pub async fn update_member(
        &self,
        call: &Call,
        cmd: UpdateMember,
    ) -> ApiResult<(MemberView, Revisions)> {
        call.principal.require_authenticated()?;
        if cmd.paths.is_empty() {
            return Err(ApiError::invalid_argument(
                "update_mask",
                "name the fields to change: role",
            ));
        }
        if let Some(other) = cmd.paths.iter().find(|p| p.as_str() != "role") {
            return Err(ApiError::invalid_argument(
                "update_mask",
                format!("{other:?} is not a mutable field (role)"),
            ));
        }
        let (workspace_id, user_id) = (cmd.workspace_id.as_str(), cmd.user_id.as_str());
        if user_id.is_empty() {
            return Err(ApiError::invalid_argument(
                "workspace_member.user_id",
                "required",
            ));
        }
        let role = assignable(cmd.role, user_id, workspace_id)?;
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let (_, ws) = self
            .manageable_workspace(&*unit, &call.principal, workspace_id)
            .await?;
        let Some(current) = self.member_view(&*unit, &ws, user_id).await? else {
            return Err(Error::MemberNotFound(format!("{workspace_id}/{user_id}")).into());
        };
        if ws.state == WorkspaceState::Archived as i32 {
            return Err(Error::Archived(workspace_id.to_owned()).into());
        }
        let org_role = self.replica.role(&ws.organization_id, user_id);
        model::may_assign(org_role, role).map_err(|r| Error::refused(r, user_id, workspace_id))?;
        check_etag(&cmd.etag, current.version(), "workspace_member")?;
        let now = now_ms();
        match &current.direct {
            Some(d) => {
                // Only the writer whose read is still current matches, on any replica.
                let updated = member::Entity::update_many()
                    .col_expr(member::Column::Role, Expr::value(role as i32))
                    .col_expr(member::Column::UpdateTimeMs, Expr::value(now))
                    .col_expr(member::Column::Version, Expr::value(d.version + 1))
                    .filter(member::Column::WorkspaceId.eq(d.workspace_id.clone()))
                    .filter(member::Column::UserId.eq(d.user_id.clone()))
                    .filter(member::Column::Version.eq(d.version))
                    .exec(&*unit)
                    .await?;
                if updated.rows_affected == 0 {
                    return Err(Error::Stale("workspace_member").into());
                }
            }
            None => {
                let row = member::Model {
                    workspace_id: ws.id.clone(),
                    user_id: user_id.to_owned(),
                    organization_id: ws.organization_id.clone(),
                    role: role as i32,
                    create_time_ms: now,
                    update_time_ms: now,
                    version: 1,
                };
                // Of concurrent first assignments, the primary key lets one through.
                member::ActiveModel::from(row)
                    .insert(&*unit)
                    .await
                    .map_err(|e| {
                        if orgplane_platform::db::is_unique_violation(&e) {
                            Error::Stale("workspace_member").into()
                        } else {
                            ApiError::from(e)
                        }
                    })?;
            }
        }
        let view = self.written_view(&*unit, &ws, user_id).await?;
        self.audit
            .write(
                &*unit,
                call,
                entry(
                    "workspace_member.update",
                    &ws,
                    user_id,
                    Some(&current),
                    Some(&view),
                ),
            )
            .await?;
        let bumped = bump_version(&*unit).await?;
        let revisions = self.finish_member(unit, &ws.id, user_id, bumped).await?;
        Ok((view, revisions))
    }

    /// RemoveWorkspaceMember (WS-7).
    pub async fn remove_member(&self, call: &Call, cmd: RemoveMember) -> ApiResult<Revisions> {
        let principal = call.principal.require_authenticated()?;
        let (workspace_id, user_id) = (cmd.workspace_id.as_str(), cmd.user_id.as_str());
        if user_id.is_empty() {
            return Err(ApiError::invalid_argument("user_id", "required"));
        }
        let unit = WriteUnit::begin(&self.outbox, call).await?;
        let (_, ws) = self
            .manageable_workspace(&*unit, principal, workspace_id)
            .await?;
        let has_direct = member::Entity::find_by_id((ws.id.clone(), user_id.to_owned()))
            .one(&*unit)
            .await?
            .is_some();
        let before = self.member_view(&*unit, &ws, user_id).await?;
        let org_role = self.replica.role(&ws.organization_id, user_id);
        let refused = |r| Error::refused(r, user_id, workspace_id);
        model::may_remove(org_role, has_direct).map_err(refused)?;
        if !has_direct {
            return Err(refused(Refusal::NoDirectRole).into());
        }
        if ws.state == WorkspaceState::Archived as i32 {
            return Err(Error::Archived(workspace_id.to_owned()).into());
        }
        // Of concurrent removals on any replica, only one deletes the row and is audited; the
        // record shows the member as it was when deleted.
        let Some(deleted) = member::Entity::delete_many()
            .filter(member::Column::WorkspaceId.eq(ws.id.clone()))
            .filter(member::Column::UserId.eq(user_id))
            .exec_with_returning(&*unit)
            .await?
            .into_iter()
            .next()
        else {
            return Err(refused(Refusal::NoDirectRole).into());
        };
        let before = before.map(|b| MemberView {
            direct: Some(deleted),
            ..b
        });
        let after = self.member_view(&*unit, &ws, user_id).await?;
        self.audit
            .write(
                &*unit,
                call,
                entry(
                    "workspace_member.remove",
                    &ws,
                    user_id,
                    before.as_ref(),
                    after.as_ref(),
                ),
            )
            .await?;
        let bumped = bump_version(&*unit).await?;
        self.finish_member(unit, &ws.id, user_id, bumped).await
    }
}
