//! Who may do what to an organization: the one place in this crate that decides, by asking the
//! shared role matrix ([`orgplane_platform::roles`]). Handlers resolve the caller's [`Access`] to
//! an organization (NOT_FOUND when the caller may not know it exists, rule ORG-2) and then
//! [`Access::require`] the action they are about to perform.

use orgplane_platform::auth::{ApiKeyKind, Principal};
use orgplane_platform::roles::{OrgAction, admin_key_allows, allows};
use orgplane_platform::{ApiError, ApiResult};
use orgplane_proto::organization::v1::{OrgRole, OrganizationState};
use sea_orm::{ConnectionTrait, EntityTrait};

use crate::store::{member, organization};

/// Whether a DELETED organization may be reached (by its OWNER or a service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// A DELETED organization is NOT_FOUND (every RPC but the ones below).
    Hidden,
    /// Its OWNER (and services) still see it: GetOrganization, UndeleteOrganization.
    VisibleToOwner,
}

/// Who the caller is, in relation to one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A signed-in member with their role.
    Member {
        /// The member's user id.
        user_id: String,
        /// Their role.
        role: OrgRole,
    },
    /// An admin API key of this organization.
    AdminKey {
        /// The key's id.
        key_id: String,
    },
    /// An Orgplane service (reads only).
    Service,
}

/// A caller's access to one visible organization.
#[derive(Debug, Clone)]
pub struct Access {
    /// The organization.
    pub org: organization::Model,
    /// The caller.
    pub caller: Caller,
}

/// PERMISSION_DENIED for workspace API keys, which never manage organizations.
pub fn workspace_key_refused() -> ApiError {
    ApiError::permission_denied(
        "ADMIN_API_KEY_REQUIRED",
        "workspace API keys cannot call the organization service; use an admin API key or a user token",
    )
}

/// Refuses anonymous callers and workspace keys: the first check of every org-scoped RPC.
pub fn require_caller(principal: &Principal) -> ApiResult<()> {
    principal.require_authenticated()?;
    match principal {
        Principal::ApiKey(k) if k.kind == ApiKeyKind::Workspace => Err(workspace_key_refused()),
        _ => Ok(()),
    }
}

impl Access {
    /// Resolves `principal`'s access to `organization_id`, or NOT_FOUND when it may not see it.
    pub async fn resolve<C: ConnectionTrait>(
        db: &C,
        principal: &Principal,
        organization_id: &str,
        deleted: Deleted,
    ) -> ApiResult<Access> {
        require_caller(principal)?;
        let not_found = || ApiError::not_found("organization", organization_id);
        let org = organization::Entity::find_by_id(organization_id.to_owned())
            .one(db)
            .await?
            .ok_or_else(not_found)?;
        let is_deleted = org.state == OrganizationState::Deleted as i32;
        let caller = match principal {
            Principal::User(u) => {
                let m = member::Entity::find_by_id((org.id.clone(), u.user_id.clone()))
                    .one(db)
                    .await?
                    .ok_or_else(not_found)?;
                let role = OrgRole::try_from(m.role).unwrap_or(OrgRole::Unspecified);
                if is_deleted && !(deleted == Deleted::VisibleToOwner && role == OrgRole::Owner) {
                    return Err(not_found());
                }
                Caller::Member {
                    user_id: u.user_id.clone(),
                    role,
                }
            }
            Principal::ApiKey(k) => {
                if k.organization_id != org.id || is_deleted {
                    return Err(not_found());
                }
                Caller::AdminKey {
                    key_id: k.key_id.clone(),
                }
            }
            Principal::Service(_) => {
                if is_deleted && deleted == Deleted::Hidden {
                    return Err(not_found());
                }
                Caller::Service
            }
            Principal::Anonymous => return Err(not_found()),
        };
        Ok(Access { org, caller })
    }

    /// Whether the caller may perform `action` here (the role matrix of `rules.md`).
    pub fn allows(&self, action: OrgAction) -> bool {
        match &self.caller {
            Caller::Member { role, .. } => allows(*role, action),
            Caller::AdminKey { .. } => admin_key_allows(action),
            Caller::Service => action == OrgAction::Read,
        }
    }

    /// PERMISSION_DENIED unless the caller may perform `action`.
    pub fn require(&self, action: OrgAction) -> ApiResult<()> {
        if self.allows(action) {
            return Ok(());
        }
        let needed = match action {
            OrgAction::OwnerOnly => "only the organization's OWNER may do this",
            OrgAction::ReadAuditLog | OrgAction::ManageOrganization => {
                "this needs the OWNER or ADMIN role in the organization"
            }
            _ => "your role in the organization does not allow this",
        };
        Err(orgplane_platform::roles::insufficient_role(needed))
    }

    /// The calling user's id, when the caller is a member.
    pub fn user_id(&self) -> Option<&str> {
        match &self.caller {
            Caller::Member { user_id, .. } => Some(user_id),
            _ => None,
        }
    }

    /// True when the caller is an API key (ORG-5: API keys cannot remove ADMIN members).
    pub fn is_api_key(&self) -> bool {
        matches!(self.caller, Caller::AdminKey { .. })
    }
}
