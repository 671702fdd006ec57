//! The workspace role rules, free of transport and storage: effective roles from org roles and
//! direct assignments (WS-5 … WS-8), what each workspace role permits, and which direct
//! assignments the rules allow.

use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::{Permission, WorkspaceRole, WorkspaceRoleSource};

/// The role a member holds in a workspace and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    /// The effective role.
    pub role: WorkspaceRole,
    /// Its source.
    pub source: WorkspaceRoleSource,
}

/// The org role as an enum (unknown numbers are unspecified).
pub fn org_role(v: i32) -> OrgRole {
    OrgRole::try_from(v).unwrap_or(OrgRole::Unspecified)
}

/// The workspace role as an enum (unknown numbers are unspecified).
pub fn workspace_role(v: i32) -> WorkspaceRole {
    WorkspaceRole::try_from(v).unwrap_or(WorkspaceRole::Unspecified)
}

/// The effective role in a (non-default) workspace of a user with org role `org` (None: not a
/// member) and direct role `direct` (WS-5, WS-7, WS-8): org OWNER and ADMIN administer every
/// workspace; org BILLING has WORKSPACE_BILLING everywhere unless upgraded to WORKSPACE_ADMIN by
/// hand; org DEVELOPER and USER have exactly their direct role. A direct role is kept while an
/// org role overrides it, so a demotion falls back to it.
pub fn effective(org: Option<OrgRole>, direct: Option<WorkspaceRole>) -> Option<Effective> {
    let direct = direct.filter(|r| *r != WorkspaceRole::Unspecified);
    match org? {
        OrgRole::Owner | OrgRole::Admin => Some(Effective {
            role: WorkspaceRole::Admin,
            source: WorkspaceRoleSource::OrgRole,
        }),
        OrgRole::Billing => Some(if direct == Some(WorkspaceRole::Admin) {
            Effective {
                role: WorkspaceRole::Admin,
                source: WorkspaceRoleSource::Direct,
            }
        } else {
            Effective {
                role: WorkspaceRole::Billing,
                source: WorkspaceRoleSource::OrgRole,
            }
        }),
        OrgRole::Developer | OrgRole::User => direct.map(|role| Effective {
            role,
            source: WorkspaceRoleSource::Direct,
        }),
        OrgRole::Unspecified => None,
    }
}

/// The role every member has in the Default Workspace (WS-3): the one matching their org role.
pub fn default_workspace_role(org: OrgRole) -> Option<WorkspaceRole> {
    match org {
        OrgRole::Owner | OrgRole::Admin => Some(WorkspaceRole::Admin),
        OrgRole::Billing => Some(WorkspaceRole::Billing),
        OrgRole::Developer => Some(WorkspaceRole::Developer),
        OrgRole::User => Some(WorkspaceRole::User),
        OrgRole::Unspecified => None,
    }
}

/// Whether `role` grants `permission` (the table on `Permission` in the proto).
pub fn grants(role: WorkspaceRole, permission: Permission) -> bool {
    use Permission as P;
    use WorkspaceRole as R;
    match (role, permission) {
        (R::Unspecified, _) | (_, P::Unspecified) => false,
        (R::Admin, _) => true,
        (R::Developer, P::Read | P::Use | P::Develop) => true,
        (R::User, P::Read | P::Use) => true,
        (R::Billing, P::Read | P::Billing) => true,
        _ => false,
    }
}

/// Why a direct role may not be given, changed or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// WORKSPACE_BILLING is never assigned by hand (WS-4).
    BillingNotAssignable,
    /// No role, or not a workspace role.
    RoleRequired,
    /// The user is not a member of the organization.
    NotOrganizationMember,
    /// The org role fixes the workspace role (WS-7).
    InheritedFromOrganization,
    /// There is nothing to change or remove.
    NoDirectRole,
}

/// Whether a user with org role `org` may be given (or changed to) direct role `role` (WS-4,
/// WS-6, WS-7).
pub fn may_assign(org: Option<OrgRole>, role: WorkspaceRole) -> Result<(), Refusal> {
    match role {
        WorkspaceRole::Billing => return Err(Refusal::BillingNotAssignable),
        WorkspaceRole::Unspecified => return Err(Refusal::RoleRequired),
        _ => {}
    }
    match org {
        None | Some(OrgRole::Unspecified) => Err(Refusal::NotOrganizationMember),
        Some(OrgRole::Owner | OrgRole::Admin) => Err(Refusal::InheritedFromOrganization),
        Some(OrgRole::Billing) if role != WorkspaceRole::Admin => {
            Err(Refusal::InheritedFromOrganization)
        }
        Some(_) => Ok(()),
    }
}

/// Whether the direct role of a user with org role `org` may be removed (WS-7): never while
/// they are OWNER or ADMIN; a BILLING member only loses their upgrade.
pub fn may_remove(org: Option<OrgRole>, has_direct: bool) -> Result<(), Refusal> {
    match org {
        Some(OrgRole::Owner | OrgRole::Admin) => Err(Refusal::InheritedFromOrganization),
        Some(OrgRole::Billing) if !has_direct => Err(Refusal::InheritedFromOrganization),
        _ if !has_direct => Err(Refusal::NoDirectRole),
        _ => Ok(()),
    }
}

/// A workspace name: 1-100 characters after trimming, no control characters.
pub fn validate_name(name: &str) -> Result<String, &'static str> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err("must not be empty");
    }
    if trimmed.chars().count() > 100 {
        return Err("must be at most 100 characters");
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(trimmed.to_owned())
}

/// The case-insensitive key names are unique by.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_5_org_roles_imply_workspace_roles() {
        let admin = effective(Some(OrgRole::Admin), None).map(|e| e.role);
        assert_eq!(admin, Some(WorkspaceRole::Admin));
        let billing = effective(Some(OrgRole::Billing), None).map(|e| e.role);
        assert_eq!(billing, Some(WorkspaceRole::Billing));
        assert_eq!(effective(Some(OrgRole::User), None), None);
        assert_eq!(effective(None, Some(WorkspaceRole::Admin)), None);
    }

    #[test]
    fn ws_8_demotion_falls_back_to_the_direct_role() {
        let dev = Some(WorkspaceRole::Developer);
        assert_eq!(
            effective(Some(OrgRole::Admin), dev).map(|e| e.role),
            Some(WorkspaceRole::Admin)
        );
        assert_eq!(
            effective(Some(OrgRole::User), dev).map(|e| (e.role, e.source)),
            Some((WorkspaceRole::Developer, WorkspaceRoleSource::Direct))
        );
    }

    #[test]
    fn ws_4_ws_7_assignments() {
        assert_eq!(
            may_assign(Some(OrgRole::User), WorkspaceRole::Billing),
            Err(Refusal::BillingNotAssignable)
        );
        assert_eq!(
            may_assign(Some(OrgRole::Admin), WorkspaceRole::User),
            Err(Refusal::InheritedFromOrganization)
        );
        assert_eq!(
            may_assign(Some(OrgRole::Billing), WorkspaceRole::Admin),
            Ok(())
        );
        assert_eq!(
            may_assign(Some(OrgRole::Billing), WorkspaceRole::User),
            Err(Refusal::InheritedFromOrganization)
        );
        assert_eq!(
            may_assign(None, WorkspaceRole::User),
            Err(Refusal::NotOrganizationMember)
        );
        assert_eq!(
            may_remove(Some(OrgRole::Billing), false),
            Err(Refusal::InheritedFromOrganization)
        );
        assert_eq!(may_remove(Some(OrgRole::Billing), true), Ok(()));
        assert_eq!(
            may_remove(Some(OrgRole::User), false),
            Err(Refusal::NoDirectRole)
        );
    }

    #[test]
    fn permission_matrix() {
        assert!(grants(WorkspaceRole::Billing, Permission::Billing));
        assert!(!grants(WorkspaceRole::Billing, Permission::Use));
        assert!(grants(WorkspaceRole::Developer, Permission::Develop));
        assert!(!grants(WorkspaceRole::User, Permission::Develop));
        assert!(!grants(WorkspaceRole::Developer, Permission::Admin));
    }
}
