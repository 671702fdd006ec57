//! The organization role matrix of `rules.md`, in one place: every service asks [`allows`]
//! whether a role may do something, instead of spelling out role lists in handlers.

use orgplane_proto::organization::v1::OrgRole;

use crate::error::ApiError;
use crate::error::Reason;

/// The ErrorInfo reason of PERMISSION_DENIED for a member whose organization role does not allow
/// the action: one reason in every service, so that clients handle it once.
pub const INSUFFICIENT_ROLE: Reason = Reason::InsufficientRole;

/// PERMISSION_DENIED `INSUFFICIENT_ROLE`; `message` says which roles may.
pub fn insufficient_role(message: impl Into<String>) -> ApiError {
    ApiError::permission_denied(INSUFFICIENT_ROLE, message)
}

/// What a member may do in an organization (the rows of the matrix in `rules.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgAction {
    /// Read the org, list members, list the workspaces they can access.
    Read,
    /// Update org settings, manage units, invites and members (not the owner).
    ManageOrganization,
    /// Create, update and archive workspaces; manage workspace members.
    ManageWorkspaces,
    /// List, rename and deactivate API keys; create workspace API keys.
    ManageApiKeys,
    /// Create admin API keys.
    CreateAdminApiKeys,
    /// View and manage billing, usage and cost reports.
    ManageBilling,
    /// Read the audit log.
    ReadAuditLog,
    /// Delete or undelete the org, transfer ownership, change security policies.
    OwnerOnly,
}

/// Whether `role` may perform `action`.
pub fn allows(role: OrgRole, action: OrgAction) -> bool {
    use OrgAction::*;
    use OrgRole::*;
    match (role, action) {
        (Unspecified, _) => false,
        (_, Read) => true,
        (Owner, _) => true,
        (Admin, OwnerOnly) => false,
        (Admin, _) => true,
        (Billing, ManageBilling) => true,
        (Developer, ManageApiKeys) => true,
        _ => false,
    }
}

/// Whether an admin API key may perform `action`: it acts with ADMIN rights in its one
/// organization (rules.md), except where a rule says otherwise.
pub fn admin_key_allows(action: OrgAction) -> bool {
    allows(OrgRole::Admin, action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrgAction::*;

    #[test]
    fn the_matrix_of_rules_md() {
        let table = [
            (Read, [true, true, true, true, true]),
            (ManageOrganization, [true, true, false, false, false]),
            (ManageWorkspaces, [true, true, false, false, false]),
            (ManageApiKeys, [true, true, false, true, false]),
            (CreateAdminApiKeys, [true, true, false, false, false]),
            (ManageBilling, [true, true, true, false, false]),
            (ReadAuditLog, [true, true, false, false, false]),
            (OwnerOnly, [true, false, false, false, false]),
        ];
        let roles = [
            OrgRole::Owner,
            OrgRole::Admin,
            OrgRole::Billing,
            OrgRole::Developer,
            OrgRole::User,
        ];
        for (action, expected) in table {
            for (role, want) in roles.iter().zip(expected) {
                assert_eq!(allows(*role, action), want, "{role:?} {action:?}");
            }
            assert!(!allows(OrgRole::Unspecified, action));
        }
    }
}
