//! CheckAccess (WS-10): the hot path. It reads only memory — the org-role replica, the mirror of
//! workspaces and direct roles, and the API-key replica — after waiting, when asked, until the
//! organization events have reached a revision and the mirror reflects this service's state
//! version (`workspace_revision`), whichever replica wrote it.

use std::time::{Duration, Instant};

use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::{
    AccessDenialReason, Permission, WorkspaceRole, WorkspaceRoleSource, WorkspaceState,
};

use crate::model::{default_workspace_role, effective, grants};
use crate::service::Core;

/// Whose access is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A user.
    User(String),
    /// An API key.
    ApiKey(String),
}

/// CheckAccess's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Allowed.
    pub allowed: bool,
    /// Effective role.
    pub role: WorkspaceRole,
    /// Its source.
    pub source: WorkspaceRoleSource,
    /// The user's org role.
    pub org_role: OrgRole,
    /// Why denied.
    pub denial: AccessDenialReason,
    /// Organization revision reflected.
    pub organization_revision: i64,
    /// This service's state version reflected.
    pub workspace_revision: i64,
}

impl Answer {
    fn denied(denial: AccessDenialReason) -> Self {
        Self {
            allowed: false,
            role: WorkspaceRole::Unspecified,
            source: WorkspaceRoleSource::Unspecified,
            org_role: OrgRole::Unspecified,
            denial,
            organization_revision: 0,
            workspace_revision: 0,
        }
    }
}

fn not_reached(which: &str, revision: i64, applied: i64) -> ApiError {
    ApiError::unavailable(
        "REVISION_NOT_YET_APPLIED",
        format!("{which} revision {revision} is not applied here yet; retry"),
    )
    .with_metadata("min_revision", revision.to_string())
    .with_metadata("applied_revision", applied.to_string())
    .retry_after(Duration::from_millis(100))
}

impl Core {
    /// Waits until the org replica has applied `min_organization` and memory reflects this
    /// service's state version `min_workspace` (re-reading the database at once if behind), or
    /// UNAVAILABLE at `deadline`.
    pub async fn wait_for(
        &self,
        min_organization: i64,
        min_workspace: i64,
        deadline: Instant,
    ) -> ApiResult<()> {
        if min_organization > self.org_events.applied_revision() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.org_events
                .wait_for(min_organization, left)
                .await
                .map_err(|_| {
                    not_reached(
                        "organization",
                        min_organization,
                        self.org_events.applied_revision(),
                    )
                })?;
        }
        if min_workspace > self.memory.reflected_version() {
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.memory.wait_reflected(min_workspace, left).await {
                return Err(not_reached(
                    "workspace",
                    min_workspace,
                    self.memory.reflected_version(),
                ));
            }
        }
        Ok(())
    }

    /// The answer from memory as it is now.
    pub fn check_access(
        &self,
        organization_id: &str,
        workspace_id: &str,
        subject: &Subject,
        permission: Permission,
    ) -> Answer {
        let organization_revision = self.org_events.applied_revision();
        let workspace_revision = self.memory.reflected_version();
        let mut answer = self.answer(organization_id, workspace_id, subject, permission);
        answer.organization_revision = organization_revision;
        answer.workspace_revision = workspace_revision;
        answer
    }

    fn answer(
        &self,
        organization_id: &str,
        workspace_id: &str,
        subject: &Subject,
        permission: Permission,
    ) -> Answer {
        use AccessDenialReason as D;
        // Read under the replica's lock without copying the organization (O(members)).
        let looked_up = self.replica.with_organization(organization_id, |o| {
            let member = match subject {
                Subject::User(user_id) => o.members.get(user_id).copied(),
                Subject::ApiKey(_) => None,
            };
            (o.is_active(), member)
        });
        let Some((active, member_role)) = looked_up else {
            return Answer::denied(D::NotFound);
        };
        if !active {
            return Answer::denied(D::OrganizationDeleted);
        }
        // One read of the mirror, nothing copied: the workspace's state and the user's direct
        // role in it.
        let (ws_state, direct) = self.memory.read(|v| {
            if workspace_id.is_empty() {
                return (None, None);
            }
            let state = v
                .workspaces
                .get(workspace_id)
                .filter(|w| w.organization_id == organization_id)
                .map(|w| w.state);
            let direct = match subject {
                Subject::User(user_id) if state.is_some() => v
                    .members
                    .get(workspace_id)
                    .and_then(|m| m.get(user_id))
                    .copied(),
                _ => None,
            };
            (state, direct)
        });
        if !workspace_id.is_empty() {
            match ws_state {
                Some(WorkspaceState::Active) => {}
                Some(_) => return Answer::denied(D::WorkspaceArchived),
                None => return Answer::denied(D::NotFound),
            }
        }
        let (role, source, org_role) = match subject {
            Subject::User(_) => {
                let Some(org_role) = member_role else {
                    return Answer::denied(D::NotFound);
                };
                let found = if workspace_id.is_empty() {
                    default_workspace_role(org_role).map(|r| (r, WorkspaceRoleSource::OrgRole))
                } else {
                    effective(Some(org_role), direct).map(|e| (e.role, e.source))
                };
                match found {
                    Some((role, source)) => (role, source, org_role),
                    None => {
                        let mut a = Answer::denied(D::NoRole);
                        a.org_role = org_role;
                        return a;
                    }
                }
            }
            Subject::ApiKey(key_id) => {
                // (active, admin, of this workspace), read without copying the key.
                let key = self.memory.read(|v| {
                    v.keys
                        .get(key_id)
                        .filter(|k| k.organization_id == organization_id)
                        .map(|k| (k.active, k.admin, k.workspace_id == workspace_id))
                });
                let Some((active, admin, this_workspace)) = key else {
                    return Answer::denied(D::NotFound);
                };
                if !active {
                    return Answer::denied(D::ApiKeyInactive);
                }
                if admin {
                    (
                        WorkspaceRole::Admin,
                        WorkspaceRoleSource::ApiKey,
                        OrgRole::Unspecified,
                    )
                } else if this_workspace {
                    (
                        WorkspaceRole::Developer,
                        WorkspaceRoleSource::ApiKey,
                        OrgRole::Unspecified,
                    )
                } else {
                    return Answer::denied(D::NoRole);
                }
            }
        };
        let allowed = grants(role, permission);
        Answer {
            allowed,
            role,
            source,
            org_role,
            denial: if allowed {
                D::Unspecified
            } else {
                D::InsufficientRole
            },
            organization_revision: 0,
            workspace_revision: 0,
        }
    }
}
