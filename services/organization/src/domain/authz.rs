//! Who may do what to an organization: the one place in this crate that decides, by asking the
//! shared role matrix ([`orgplane_platform::roles`]). The use cases resolve the caller's
//! standing in an organization (NOT_FOUND when the caller may not know it exists, rule ORG-2),
//! then require the action they are about to perform.

use orgplane_platform::auth::{ApiKeyKind, Capability, Principal};
use orgplane_platform::roles::{OrgAction, admin_key_allows, allows};
use orgplane_proto::organization::v1::OrgRole;

use super::{Error, Result};

/// Whether a DELETED organization may be reached (by its OWNER or a service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// A DELETED organization is NOT_FOUND (every RPC but the ones below).
    Hidden,
    /// Its OWNER (and services) still see it: GetOrganization, UndeleteOrganization.
    VisibleToOwner,
}

/// Who the caller is in relation to one organization: its standing there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
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
    /// The OWNER or an ADMIN of the organization's operator, acting in this child (rule ORG-13):
    /// reads everything, and performs the operator's acts the use cases allow with
    /// [`Standing::require_or_operator`].
    Operator {
        /// The acting user's id.
        user_id: String,
        /// The operator organization.
        operator_id: String,
        /// The user's role in the operator (OWNER or ADMIN).
        role: OrgRole,
    },
}

/// The calling user's standing in an organization's operator, when they are its OWNER or an
/// ADMIN (rule ORG-13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRole {
    /// The operator organization.
    pub operator_id: String,
    /// The user's role there.
    pub role: OrgRole,
}

impl OperatorRole {
    /// The role if it administers children (OWNER or ADMIN), else `None`.
    pub fn administering(operator_id: &str, role: OrgRole) -> Option<Self> {
        matches!(role, OrgRole::Owner | OrgRole::Admin).then(|| Self {
            operator_id: operator_id.to_owned(),
            role,
        })
    }
}

/// Refuses anonymous callers, workspace keys and service accounts without
/// `read-organizations`: the first check of every org-scoped RPC.
pub fn require_caller(principal: &Principal) -> Result<()> {
    principal.require_authenticated()?;
    match principal {
        Principal::ApiKey(k) if k.kind == ApiKeyKind::Workspace => Err(Error::WorkspaceKeyRefused),
        Principal::Service(s) => Ok(s.require(Capability::ReadOrganizations)?),
        _ => Ok(()),
    }
}

/// The caller's standing in organization `organization_id` (deleted or not), given the
/// caller's membership `role` there and, for a child, their administering role in its operator
/// (users only); `None` when the caller may not see it. A member who is also the OWNER or an
/// ADMIN of the operator acts as the operator unless they are the child's OWNER or an ADMIN of
/// it (ORG-13).
pub fn standing(
    principal: &Principal,
    organization_id: &str,
    is_deleted: bool,
    role: Option<OrgRole>,
    operator: Option<OperatorRole>,
    deleted: Deleted,
) -> Option<Standing> {
    match principal {
        Principal::User(u) => {
            let administers = matches!(role, Some(OrgRole::Owner | OrgRole::Admin));
            if let (false, Some(op)) = (administers, operator) {
                // The operator stands where the OWNER would: a DELETED child stays visible to it
                // for GetOrganization and UndeleteOrganization.
                if is_deleted && deleted == Deleted::Hidden {
                    return None;
                }
                return Some(Standing::Operator {
                    user_id: u.user_id.clone(),
                    operator_id: op.operator_id,
                    role: op.role,
                });
            }
            let role = role?;
            if is_deleted && !(deleted == Deleted::VisibleToOwner && role == OrgRole::Owner) {
                return None;
            }
            Some(Standing::Member {
                user_id: u.user_id.clone(),
                role,
            })
        }
        Principal::ApiKey(k) => {
            (k.organization_id == organization_id && !is_deleted).then(|| Standing::AdminKey {
                key_id: k.key_id.clone(),
            })
        }
        Principal::Service(_) => {
            (!(is_deleted && deleted == Deleted::Hidden)).then_some(Standing::Service)
        }
        Principal::Anonymous => None,
    }
}

impl Standing {
    /// Whether the caller may perform `action` (the role matrix of `rules.md`).
    pub fn allows(&self, action: OrgAction) -> bool {
        match self {
            Standing::Member { role, .. } => allows(*role, action),
            Standing::AdminKey { .. } => admin_key_allows(action),
            Standing::Service => action == OrgAction::Read,
            Standing::Operator { .. } => {
                matches!(action, OrgAction::Read | OrgAction::ReadAuditLog)
            }
        }
    }

    /// PERMISSION_DENIED unless the caller may perform `action`. An operator gets
    /// [`Error::OperatorMayNot`] for what only the child's own members may do.
    pub fn require(&self, action: OrgAction) -> Result<()> {
        if self.allows(action) {
            return Ok(());
        }
        if matches!(self, Standing::Operator { .. }) {
            return Err(Error::OperatorMayNot);
        }
        let needed = match action {
            OrgAction::OwnerOnly => "only the organization's OWNER may do this",
            OrgAction::ReadAuditLog | OrgAction::ManageOrganization => {
                "this needs the OWNER or ADMIN role in the organization"
            }
            _ => "your role in the organization does not allow this",
        };
        Err(orgplane_platform::roles::insufficient_role(needed).into())
    }

    /// For the use cases an operator may perform in its children (rule ORG-13: edit, delete,
    /// undelete, invite the first owner, branding, security policy): the operator is allowed;
    /// anyone else must be allowed `action`.
    pub fn require_or_operator(&self, action: OrgAction) -> Result<()> {
        match self {
            Standing::Operator { .. } => Ok(()),
            _ => self.require(action),
        }
    }

    /// The operator organization when the caller acts as the operator (ORG-13): audit records
    /// name it ([`orgplane_platform::audit::Entry::as_operator`]).
    pub fn acting_operator(&self) -> Option<&str> {
        match self {
            Standing::Operator { operator_id, .. } => Some(operator_id),
            _ => None,
        }
    }

    /// The calling user's id, when the caller is a member.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Standing::Member { user_id, .. } => Some(user_id),
            _ => None,
        }
    }

    /// True when the caller is an API key.
    pub fn is_api_key(&self) -> bool {
        matches!(self, Standing::AdminKey { .. })
    }

    /// ORG-5: with an API key, no one may be removed from, demoted from or promoted to the
    /// ADMIN role (nor invited as ADMIN), so that a leaked key can neither remove the admins
    /// nor mint new ones. `from` is the member's role before (none for an invite), `to` after
    /// (none for a removal).
    pub fn require_person_for_admin(
        &self,
        from: Option<OrgRole>,
        to: Option<OrgRole>,
    ) -> Result<()> {
        let touches_admin = from == Some(OrgRole::Admin) || to == Some(OrgRole::Admin);
        if self.is_api_key() && touches_admin {
            return Err(Error::AdminRoleNeedsAPerson);
        }
        Ok(())
    }
}

/// `user_id`, with `me` meaning the calling user.
pub fn resolve_me(principal: &Principal, user_id: &str) -> Result<String> {
    if user_id != "me" {
        return Ok(user_id.to_owned());
    }
    match principal {
        Principal::User(u) => Ok(u.user_id.clone()),
        _ => Err(Error::invalid(
            "user_id",
            "`me` needs a user's access token",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_5_only_a_person_gives_takes_or_removes_the_admin_role() {
        let key = Standing::AdminKey {
            key_id: "key_1".into(),
        };
        let admin = Standing::Member {
            user_id: "user_a".into(),
            role: OrgRole::Admin,
        };
        let (a, u, d) = (OrgRole::Admin, OrgRole::User, OrgRole::Developer);
        for (from, to) in [
            (Some(a), Some(u)),
            (Some(u), Some(a)),
            (Some(a), Some(a)),
            (Some(a), None),
            (None, Some(a)),
        ] {
            assert!(matches!(
                key.require_person_for_admin(from, to),
                Err(Error::AdminRoleNeedsAPerson)
            ));
            assert!(admin.require_person_for_admin(from, to).is_ok());
        }
        for (from, to) in [(Some(u), Some(d)), (Some(d), None), (None, Some(u))] {
            assert!(key.require_person_for_admin(from, to).is_ok());
        }
    }
}
