//! CheckAccess (WS-10): the hot path. It reads only memory — the org-role replica, the mirror of
//! workspaces and direct roles, and the API-key replica — after waiting, when asked, until the
//! organization events have reached a revision and the mirror reflects this service's state
//! version (`workspace_revision`), whichever replica wrote it.

use orgplane_platform::Call;
use orgplane_platform::auth::{Capability, Principal, UserPrincipal};
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::{
    AccessDenialReason, Permission, WorkspaceRole, WorkspaceRoleSource, WorkspaceState,
};

use super::Core;
use crate::domain::Error;
use crate::domain::model::{default_workspace_role, effective, grants};

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

/// CheckAccess: whose access to which workspace, for which permission, after which revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckAccess {
    /// The organization.
    pub organization_id: String,
    /// The workspace; empty for the Default Workspace.
    pub workspace_id: String,
    /// Whose access.
    pub subject: Subject,
    /// The permission asked for.
    pub permission: Permission,
    /// The organization revision to wait for (besides the call's header).
    pub min_organization_revision: i64,
    /// This service's state version to wait for.
    pub min_workspace_revision: i64,
}

impl Core {
    /// CheckAccess (WS-10): who may ask (services about anyone, a user or API key about
    /// itself), then the waits, then the answer from memory.
    ///
    /// The organization's security policy (rule ORG-16) judges the caller's sign-in, so it
    /// applies when a user's own token asks about that user: a sign-in the policy refuses is
    /// UNAUTHENTICATED `MFA_REQUIRED` (or `SSO_REQUIRED`), as on every other RPC about the
    /// organization. When a product backend (a service principal) asks about a user, the
    /// answer is about that user's permissions: the backend's call is not the user's sign-in,
    /// and the user's own calls to Orgplane meet the policy wherever they go. API keys carry no
    /// sign-in and are never judged by it.
    pub async fn check_access(&self, call: &Call, cmd: CheckAccess) -> ApiResult<Answer> {
        let caller = match (&*call.principal, &cmd.subject) {
            (Principal::Service(s), _) => {
                s.require(Capability::CheckAccess)?;
                None
            }
            (Principal::User(u), Subject::User(s)) if &u.user_id == s => Some(u),
            (Principal::ApiKey(k), Subject::ApiKey(s)) if &k.key_id == s => None,
            _ => return Err(Error::CheckOwnAccessOnly.into()),
        };
        if cmd.organization_id.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required"));
        }
        if cmd.permission == Permission::Unspecified {
            return Err(ApiError::invalid_argument("permission", "required"));
        }
        for (field, value) in [
            ("min_organization_revision", cmd.min_organization_revision),
            ("min_workspace_revision", cmd.min_workspace_revision),
        ] {
            if value < 0 {
                return Err(ApiError::invalid_argument(
                    field,
                    "revisions must not be negative",
                ));
            }
        }
        self.wait_for(
            call,
            cmd.min_organization_revision,
            cmd.min_workspace_revision,
        )
        .await?;
        self.answer_now(
            &cmd.organization_id,
            &cmd.workspace_id,
            &cmd.subject,
            cmd.permission,
            caller,
        )
    }

    /// Waits until the org replica has applied `min_organization` (or the call's header, the
    /// larger) and memory reflects this service's state version `min_workspace` (re-reading the
    /// database at once if behind), or UNAVAILABLE at the call's deadline.
    pub async fn wait_for(
        &self,
        call: &Call,
        min_organization: i64,
        min_workspace: i64,
    ) -> ApiResult<()> {
        call.wait_for(&self.org_events, min_organization).await?;
        if min_workspace > self.memory.reflected_version()
            && !self
                .memory
                .wait_reflected(min_workspace, call.remaining())
                .await
        {
            return Err(Error::WorkspaceRevisionNotApplied {
                wanted: min_workspace,
                applied: self.memory.reflected_version(),
            }
            .into());
        }
        Ok(())
    }

    /// The answer from memory as it is now. With `caller` (the subject user asking about
    /// themselves), the organization's security policy first admits their sign-in (ORG-16).
    pub fn answer_now(
        &self,
        organization_id: &str,
        workspace_id: &str,
        subject: &Subject,
        permission: Permission,
        caller: Option<&UserPrincipal>,
    ) -> ApiResult<Answer> {
        let organization_revision = self.org_events.applied_revision();
        let workspace_revision = self.memory.reflected_version();
        let mut answer = self.answer(organization_id, workspace_id, subject, permission, caller)?;
        answer.organization_revision = organization_revision;
        answer.workspace_revision = workspace_revision;
        Ok(answer)
    }

    fn answer(
        &self,
        organization_id: &str,
        workspace_id: &str,
        subject: &Subject,
        permission: Permission,
        caller: Option<&UserPrincipal>,
    ) -> ApiResult<Answer> {
        use AccessDenialReason as D;
        // Read under the replica's lock without copying the organization (O(members)); the
        // policy is a small copy.
        let looked_up = self.replica.with_organization(organization_id, |o| {
            let member = match subject {
                Subject::User(user_id) => o.members.get(user_id).copied(),
                Subject::ApiKey(_) => None,
            };
            (o.is_active(), o.is_merged(), member, o.policy)
        });
        let Some((active, merged, member_role, policy)) = looked_up else {
            return Ok(Answer::denied(D::NotFound));
        };
        // A merged organization (rule ORG-15) is gone for everyone, as if it never existed.
        if merged {
            return Ok(Answer::denied(D::NotFound));
        }
        if !active {
            return Ok(Answer::denied(D::OrganizationDeleted));
        }
        if let (Some(user), Some(role)) = (caller, member_role) {
            policy.admit(organization_id, user, Some(role))?;
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
                    .and_then(|m| m.get(user_id.as_str()))
                    .copied(),
                _ => None,
            };
            (state, direct)
        });
        if !workspace_id.is_empty() {
            match ws_state {
                Some(WorkspaceState::Active) => {}
                Some(_) => return Ok(Answer::denied(D::WorkspaceArchived)),
                None => return Ok(Answer::denied(D::NotFound)),
            }
        }
        let (role, source, org_role) = match subject {
            Subject::User(_) => {
                let Some(org_role) = member_role else {
                    return Ok(Answer::denied(D::NotFound));
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
                        return Ok(a);
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
                    return Ok(Answer::denied(D::NotFound));
                };
                if !active {
                    return Ok(Answer::denied(D::ApiKeyInactive));
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
                    return Ok(Answer::denied(D::NoRole));
                }
            }
        };
        let allowed = grants(role, permission);
        Ok(Answer {
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
        })
    }
}
