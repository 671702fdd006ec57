//! The use cases behind the RPCs, free of tonic and of prost requests: who the caller is in an
//! organization, what they may see and do, and the write units that change workspaces
//! ([`workspaces`]) and direct roles ([`members`]); CheckAccess ([`access`]) and the audit log
//! ([`audit`]). Each use case takes the [`Call`] and a command, and owns its transaction.

pub mod access;
pub mod audit;
pub mod members;
pub mod workspaces;

use std::sync::Arc;

use orgplane_platform::Call;
use orgplane_platform::audit::{AuditLogWriter, Entry};
use orgplane_platform::auth::{ApiKeyKind, Capability, Principal};
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::events::outbox::head_row;
use orgplane_platform::events::{ConsumerHandle, Outbox, WriteUnit};
use orgplane_platform::replica::RoleReplica;
use orgplane_platform::roles::{OrgAction, admin_key_allows, allows};
use orgplane_platform::runtime::Runtime;
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::WorkspaceRole;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::domain::Error;
use crate::domain::model::effective;
use crate::store::entity::{request, workspace};
use crate::store::memory::Memory;
use orgplane_platform::error::Reason;

pub use members::MemberView;

/// The audit log's service name.
pub const SERVICE: &str = "workspace";

/// The caller's standing within one organization (who they are there, not the RPC: that is
/// the [`Call`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// A member with their org role.
    Member {
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

impl Standing {
    /// Whether the caller may perform `action` (the role matrix, never hand-listed here).
    pub fn may(&self, action: OrgAction) -> bool {
        match self {
            Standing::Member { role, .. } => allows(*role, action),
            Standing::AdminKey => admin_key_allows(action),
            Standing::Service => action == OrgAction::Read,
        }
    }

    /// PERMISSION_DENIED unless the caller may perform `action`.
    pub fn require(&self, action: OrgAction) -> ApiResult<()> {
        if self.may(action) {
            Ok(())
        } else {
            Err(Error::LacksRole.into())
        }
    }

    /// Whether the caller sees every workspace of the organization.
    fn sees_all(&self) -> bool {
        match self {
            Standing::Member { role, .. } => {
                allows(*role, OrgAction::Read) && effective(Some(*role), None).is_some()
            }
            Standing::AdminKey => admin_key_allows(OrgAction::Read),
            Standing::Service => true,
        }
    }
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
    /// Internal calls to the organization service (which organization a unit belongs to).
    pub organizations: orgplane_platform::clients::organization::OrganizationClient,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

/// The shared core, as handlers hold it.
pub type SharedCore = Arc<Core>;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The outbox head as `db` sees it.
async fn head_revision<C: ConnectionTrait>(db: &C) -> ApiResult<i64> {
    Ok(head_row::Entity::find_by_id(1)
        .one(db)
        .await?
        .map(|h| h.revision)
        .unwrap_or(0))
}

/// INVALID_ARGUMENT unless `request_id` is at most 100 characters.
fn validate_request_id(request_id: &str) -> ApiResult<()> {
    if request_id.len() > 100 {
        return Err(ApiError::invalid_argument(
            "request_id",
            "must be at most 100 characters",
        ));
    }
    Ok(())
}

/// `user_id`, with `me` meaning the calling user.
pub fn resolve_user<'a>(principal: &'a Principal, user_id: &'a str) -> ApiResult<&'a str> {
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

impl Core {
    /// The caller's standing in `organization_id`; NOT_FOUND for outsiders (ORG-2).
    pub fn standing(&self, principal: &Principal, organization_id: &str) -> ApiResult<Standing> {
        self.standing_if_member(principal, organization_id)?
            .ok_or_else(|| ApiError::not_found("organization", organization_id))
    }

    /// The caller's standing in `organization_id`, `None` for an outsider. A user's role is
    /// the one the organization's security policy admits (rule ORG-16): a sign-in the policy
    /// refuses is UNAUTHENTICATED `MFA_REQUIRED` (or `SSO_REQUIRED`) here, in that organization
    /// only.
    fn standing_if_member(
        &self,
        principal: &Principal,
        organization_id: &str,
    ) -> ApiResult<Option<Standing>> {
        Ok(match principal.require_authenticated()? {
            Principal::User(u) => self
                .replica
                .admitted_role(organization_id, u)?
                .filter(|r| *r != OrgRole::Unspecified)
                .map(|role| Standing::Member {
                    user_id: u.user_id.clone(),
                    role,
                }),
            Principal::ApiKey(k) if k.kind == ApiKeyKind::Admin => {
                let active = self
                    .replica
                    .with_organization(organization_id, |o| o.is_active())
                    .unwrap_or(false);
                (k.organization_id == organization_id && active).then_some(Standing::AdminKey)
            }
            Principal::ApiKey(_) => return Err(Error::WorkspaceKeyNotAllowed.into()),
            Principal::Service(s) => {
                s.require(Capability::ReadWorkspaces)?;
                // A merged organization (rule ORG-15) is gone, for services too.
                self.replica
                    .with_organization(organization_id, |o| {
                        (!o.is_merged()).then_some(Standing::Service)
                    })
                    .flatten()
            }
            Principal::Anonymous => {
                return Err(ApiError::unauthenticated(
                    Reason::CredentialsRequired,
                    "credentials required",
                ));
            }
        })
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

    /// Whether the caller may see `workspace_id` (they hold a role in it).
    fn sees(&self, standing: &Standing, workspace_id: &str) -> bool {
        match standing {
            Standing::Member { user_id, role } => {
                allows(*role, OrgAction::Read)
                    && effective(Some(*role), self.direct_role(workspace_id, user_id)).is_some()
            }
            other => other.sees_all(),
        }
    }

    /// The workspace `workspace_id` if the caller may see it (NOT_FOUND otherwise).
    pub async fn visible_workspace<C: ConnectionTrait>(
        &self,
        db: &C,
        principal: &Principal,
        workspace_id: &str,
    ) -> ApiResult<(Standing, workspace::Model)> {
        principal.require_authenticated()?;
        if workspace_id.is_empty() {
            return Err(ApiError::invalid_argument(
                "workspace_id",
                "required (the Default Workspace has no id and cannot be addressed here)",
            ));
        }
        let not_found = || ApiError::from(Error::WorkspaceNotFound(workspace_id.to_owned()));
        let row = workspace::Entity::find_by_id(workspace_id)
            .one(db)
            .await?
            .ok_or_else(not_found)?;
        let standing = self
            .standing_if_member(principal, &row.organization_id)?
            .ok_or_else(not_found)?;
        if !self.sees(&standing, workspace_id) {
            return Err(not_found());
        }
        Ok((standing, row))
    }

    /// [`Self::visible_workspace`] for a caller who must also manage workspaces.
    async fn manageable_workspace<C: ConnectionTrait>(
        &self,
        db: &C,
        principal: &Principal,
        workspace_id: &str,
    ) -> ApiResult<(Standing, workspace::Model)> {
        let (standing, row) = self.visible_workspace(db, principal, workspace_id).await?;
        standing.require(OrgAction::ManageWorkspaces)?;
        Ok((standing, row))
    }

    /// The idempotency key of `method` called with `request_id` by `principal` in `org`.
    fn request_key(method: &str, org: &str, principal: &Principal, request_id: &str) -> String {
        let (kind, id) = principal.actor();
        format!("{method}|{org}|{kind}:{id}|{request_id}")
    }

    /// Records in `unit` that the request `key` produced `resource_id` at `revision`.
    async fn remember_request(
        unit: &WriteUnit,
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
        .exec(&**unit)
        .await
        .map_err(|e| {
            if orgplane_platform::db::is_unique_violation(&e) {
                Error::ConcurrentRequest.into()
            } else {
                ApiError::from(e)
            }
        })?;
        Ok(())
    }
}

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
        call: &Call,
        attempt: Attempt,
        result: ApiResult<T>,
    ) -> ApiResult<T> {
        self.audit
            .audited(&self.db, call, result, || self.attempt_entry(call, attempt))
            .await
    }

    /// The audit entry of `attempt`, in its organization; `None` when that is unknown here or
    /// the caller has no standing in it (ORG-10).
    async fn attempt_entry(&self, call: &Call, attempt: Attempt) -> Option<Entry> {
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
        if !self
            .replica
            .has_standing(call.principal.as_ref(), &organization_id)
        {
            return None;
        }
        Some(attempt.entry(&organization_id))
    }
}
