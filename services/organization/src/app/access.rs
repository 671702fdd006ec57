//! The caller's standing in one organization, read from the database and judged by
//! [`crate::domain::authz`], and the admission of the calling user's sign-in under the
//! organization's security policy (rule ORG-16).

use orgplane_platform::auth::Principal;
use orgplane_platform::policy::DEFAULT_REAUTH_MAX_AGE_SECS;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::organization::v1::{OrgRole, OrganizationState};
use sea_orm::{ConnectionTrait, EntityTrait};

use super::settings::{PolicyLayers, layers, policy_defaults};
use crate::domain::authz::{self, Deleted, OperatorRole, Standing};
use crate::domain::validate::role_of;
use crate::domain::{Error, Result};
use crate::store::{member, organization, security_policy};

/// A caller's access to one visible organization.
#[derive(Debug, Clone)]
pub struct Access {
    /// The organization.
    pub org: organization::Model,
    /// The caller's standing in it.
    pub standing: Standing,
    /// Its own security policy and its operator's (rule ORG-13).
    pub policy: PolicyLayers,
}

impl Access {
    /// Resolves `principal`'s access to `organization_id`, or NOT_FOUND when it may not see it;
    /// UNAUTHENTICATED `MFA_REQUIRED` (or `SSO_REQUIRED`) when the caller is a member whose
    /// sign-in the organization's security policy does not accept (rule ORG-16).
    pub async fn resolve<C: ConnectionTrait>(
        db: &C,
        principal: &Principal,
        organization_id: &str,
        deleted: Deleted,
    ) -> Result<Access> {
        authz::require_caller(principal)?;
        let not_found = || Error::not_found("organization", organization_id);
        let org = organization::Entity::find_by_id(organization_id.to_owned())
            .one(db)
            .await?
            .ok_or_else(not_found)?;
        // A MERGED organization is a tombstone (rule ORG-15): gone for every caller and every
        // RPC; GetOrganization answers its former OWNER before asking here.
        if org.state == OrganizationState::Merged as i32 {
            return Err(not_found());
        }
        let role = match principal {
            Principal::User(u) => member::Entity::find_by_id((org.id.clone(), u.user_id.clone()))
                .one(db)
                .await?
                .map(|m| role_of(m.role)),
            _ => None,
        };
        let is_deleted = org.state == OrganizationState::Deleted as i32;
        let operator = match principal {
            Principal::User(u) => operator_role(db, &org, &u.user_id, role).await?,
            _ => None,
        };
        let standing = authz::standing(principal, &org.id, is_deleted, role, operator, deleted)
            .ok_or_else(not_found)?;
        // Admission judges the policy in force (its operator's ENFORCED or inherited MFA and
        // sign-in methods included, rule ORG-13). The re-authentication age plays no part in
        // admission: the platform's default will do.
        let policy = layers::<security_policy::Model, _>(db, &org).await?;
        policy
            .effective(&policy_defaults(DEFAULT_REAUTH_MAX_AGE_SECS))
            .model
            .policy()
            .admit_principal(&org.id, principal, admission_role(&standing, role))?;
        Ok(Access {
            org,
            standing,
            policy,
        })
    }

    /// For the acts an operator may perform in its children (ORG-13): PERMISSION_DENIED unless
    /// the caller acts as the operator or may perform `action`.
    pub fn require_or_operator(&self, action: OrgAction) -> Result<()> {
        self.standing.require_or_operator(action)
    }

    /// The operator organization when the caller acts as the operator (ORG-13), for
    /// [`orgplane_platform::audit::Entry::as_operator`].
    pub fn acting_operator(&self) -> Option<&str> {
        self.standing.acting_operator()
    }

    /// Whether the caller may perform `action` here.
    pub fn allows(&self, action: OrgAction) -> bool {
        self.standing.allows(action)
    }

    /// PERMISSION_DENIED unless the caller may perform `action`.
    pub fn require(&self, action: OrgAction) -> Result<()> {
        self.standing.require(action)
    }

    /// The calling user's id, when the caller is a member.
    pub fn user_id(&self) -> Option<&str> {
        self.standing.user_id()
    }

    /// The calling user's role, when the caller is a member.
    pub fn role(&self) -> Option<OrgRole> {
        match &self.standing {
            Standing::Member { role, .. } => Some(*role),
            _ => None,
        }
    }
}

/// The role a caller's sign-in is judged as (ORG-16): a member's own role; for the operator acting
/// in a child, its OWNER or ADMIN role in the operator (privileged under
/// REQUIRED_FOR_PRIVILEGED_ROLES, as the child's own admins are).
fn admission_role(standing: &Standing, member_role: Option<OrgRole>) -> Option<OrgRole> {
    match standing {
        Standing::Operator { role, .. } => Some(*role),
        _ => member_role,
    }
}

/// The user's administering role in `org`'s operator (ORG-13): read only for a child whose
/// caller is not already its OWNER or an ADMIN, and only while the operator is ACTIVE.
pub(super) async fn operator_role<C: ConnectionTrait>(
    db: &C,
    org: &organization::Model,
    user_id: &str,
    role: Option<OrgRole>,
) -> Result<Option<OperatorRole>> {
    if org.operator_id.is_empty() || matches!(role, Some(OrgRole::Owner | OrgRole::Admin)) {
        return Ok(None);
    }
    let active = organization::Entity::find_by_id(org.operator_id.clone())
        .one(db)
        .await?
        .is_some_and(|o| o.state == OrganizationState::Active as i32);
    if !active {
        return Ok(None);
    }
    Ok(
        member::Entity::find_by_id((org.operator_id.clone(), user_id.to_owned()))
            .one(db)
            .await?
            .and_then(|m| OperatorRole::administering(&org.operator_id, role_of(m.role))),
    )
}

/// NOT_FOUND of the organization becomes NOT_FOUND of the resource `resource` `id` that led to it
/// (the caller may not know the organization's id); other errors stand.
pub fn as_not_found_of<'a>(
    resource: &'static str,
    id: &'a str,
) -> impl FnOnce(Error) -> Error + 'a {
    move |e| {
        if e.is_not_found() {
            Error::not_found(resource, id)
        } else {
            e
        }
    }
}
