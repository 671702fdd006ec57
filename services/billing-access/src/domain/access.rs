//! Who may see billing (rule BILL-1), decided from what the organization replica says about the
//! caller: pure functions of the principal and its standing.

use orgplane_platform::auth::{ApiKeyKind, Capability, Principal};
use orgplane_platform::roles::{OrgAction, admin_key_allows, allows};
use orgplane_proto::organization::v1::OrgRole;

use crate::domain::error::{Error, Result};

/// What the replica knows about an organization for one caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The organization is known and ACTIVE.
    pub active: bool,
    /// The calling user's role while the organization is ACTIVE, once its security policy
    /// admitted their sign-in (rule ORG-16).
    pub role: Option<OrgRole>,
}

/// Whom a CheckBillingAccess asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A user, by id.
    User(String),
    /// An API key, by id.
    ApiKey(String),
}

/// An API key as far as billing access cares (from identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// The key's organization.
    pub organization_id: String,
    /// Admin key.
    pub admin: bool,
    /// Accepted.
    pub active: bool,
}

/// The organization role behind `principal` in `organization_id`: the member's role for a user,
/// ADMIN for an admin API key of that (active) organization, `None` otherwise.
pub fn role_of(
    principal: &Principal,
    organization_id: &str,
    standing: Standing,
) -> Option<OrgRole> {
    match principal {
        Principal::User(_) => standing.role,
        Principal::ApiKey(k) => {
            (standing.active && k.organization_id == organization_id && k.kind == ApiKeyKind::Admin)
                .then_some(OrgRole::Admin)
        }
        _ => None,
    }
}

/// The role another API key holds in `organization_id`: ADMIN for an active admin key of that
/// active organization.
pub fn key_role(
    facts: Option<&KeyFacts>,
    organization_id: &str,
    active_org: bool,
) -> Option<OrgRole> {
    facts
        .filter(|k| active_org && k.active && k.admin && k.organization_id == organization_id)
        .map(|_| OrgRole::Admin)
}

/// Authorizes `principal` (already authenticated) for `action` in `organization_id`:
/// PERMISSION_DENIED for service principals, workspace API keys and members without the role,
/// NOT_FOUND for callers outside the organization (rule BILL-1, ORG-2).
pub fn authorize(
    principal: &Principal,
    organization_id: &str,
    standing: Standing,
    action: OrgAction,
) -> Result<()> {
    let not_found = || Error::OrganizationNotFound(organization_id.to_owned());
    match principal {
        Principal::Anonymous => Err(not_found()),
        Principal::Service(_) => Err(Error::UserOrAdminKeyRequired),
        Principal::User(_) => match standing.role {
            None => Err(not_found()),
            Some(role) if allows(role, action) => Ok(()),
            Some(_) => Err(denied(action)),
        },
        Principal::ApiKey(k) => {
            if !standing.active || k.organization_id != organization_id {
                return Err(not_found());
            }
            match k.kind {
                ApiKeyKind::Admin if admin_key_allows(action) => Ok(()),
                ApiKeyKind::Admin => Err(denied(action)),
                ApiKeyKind::Workspace => Err(Error::AdminApiKeyRequired),
            }
        }
    }
}

fn denied(action: OrgAction) -> Error {
    match action {
        OrgAction::ReadAuditLog => Error::AuditRoleRequired,
        _ => Error::BillingRoleRequired,
    }
}

/// Whether `subject` is the caller itself (services with `check-access` may ask about anyone);
/// SUBJECT_NOT_CALLER for a user or API key asking about someone else.
pub fn asks_about_itself(principal: &Principal, subject: &Subject) -> Result<bool> {
    match (principal, subject) {
        (Principal::Service(s), _) => {
            s.require(Capability::CheckAccess)?;
            Ok(false)
        }
        (Principal::User(u), Subject::User(id)) if &u.user_id == id => Ok(true),
        (Principal::ApiKey(k), Subject::ApiKey(id)) if &k.key_id == id => Ok(true),
        _ => Err(Error::SubjectNotCaller),
    }
}

/// Whether `role` may view and manage billing.
pub fn may_manage_billing(role: Option<OrgRole>) -> bool {
    role.is_some_and(|r| allows(r, OrgAction::ManageBilling))
}

#[cfg(test)]
mod tests {
    use orgplane_platform::auth::{ApiKeyPrincipal, ServicePrincipal, UserPrincipal};

    use super::*;

    fn standing(role: Option<OrgRole>) -> Standing {
        Standing { active: true, role }
    }

    #[test]
    fn bill_1_owner_admin_billing_manage_billing_others_are_denied() {
        let user = Principal::User(UserPrincipal {
            user_id: "u".into(),
            session_id: "s".into(),
            auth_time: 0,
            token_id: "t".into(),
            sign_in: Default::default(),
        });
        for role in [OrgRole::Owner, OrgRole::Admin, OrgRole::Billing] {
            assert!(authorize(&user, "o", standing(Some(role)), OrgAction::ManageBilling).is_ok());
        }
        for role in [OrgRole::Developer, OrgRole::User] {
            let err = authorize(&user, "o", standing(Some(role)), OrgAction::ManageBilling);
            assert!(matches!(err, Err(Error::BillingRoleRequired)), "{role:?}");
        }
        assert!(matches!(
            authorize(&user, "o", standing(None), OrgAction::ManageBilling),
            Err(Error::OrganizationNotFound(_))
        ));
        let service = Principal::Service(ServicePrincipal {
            name: "product".into(),
            capabilities: orgplane_platform::auth::Capabilities::all(),
        });
        assert!(matches!(
            authorize(&service, "o", standing(None), OrgAction::ManageBilling),
            Err(Error::UserOrAdminKeyRequired)
        ));
    }

    #[test]
    fn bill_1_admin_keys_act_as_admin_in_their_own_active_organization_only() {
        let key = |kind| {
            Principal::ApiKey(ApiKeyPrincipal {
                key_id: "k".into(),
                organization_id: "o".into(),
                workspace_id: None,
                kind,
            })
        };
        let admin = key(ApiKeyKind::Admin);
        assert!(authorize(&admin, "o", standing(None), OrgAction::ManageBilling).is_ok());
        assert_eq!(role_of(&admin, "o", standing(None)), Some(OrgRole::Admin));
        assert_eq!(role_of(&admin, "other", standing(None)), None);
        let inactive = Standing {
            active: false,
            role: None,
        };
        assert!(authorize(&admin, "o", inactive, OrgAction::ManageBilling).is_err());
        assert!(matches!(
            authorize(
                &key(ApiKeyKind::Workspace),
                "o",
                standing(None),
                OrgAction::ManageBilling
            ),
            Err(Error::AdminApiKeyRequired)
        ));
    }
}
