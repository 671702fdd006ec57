//! The caller's standing in one organization, read from the database and judged by
//! [`crate::domain::authz`], and the admission of the calling user's sign-in under the
//! organization's security policy (rule ORG-16).

use orgplane_platform::auth::Principal;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::organization::v1::{OrgRole, OrganizationState};
use sea_orm::{ConnectionTrait, EntityTrait};

use crate::domain::authz::{self, Deleted, Standing};
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
    /// Its stored security policy; `None` while it has the default one.
    pub policy: Option<security_policy::Model>,
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
        let role = match principal {
            Principal::User(u) => member::Entity::find_by_id((org.id.clone(), u.user_id.clone()))
                .one(db)
                .await?
                .map(|m| role_of(m.role)),
            _ => None,
        };
        let is_deleted = org.state == OrganizationState::Deleted as i32;
        let standing =
            authz::standing(principal, &org.id, is_deleted, role, deleted).ok_or_else(not_found)?;
        let policy = security_policy::Entity::find_by_id(org.id.clone())
            .one(db)
            .await?;
        // The re-authentication age plays no part in admission: the platform's default will do
        // for an organization without a row.
        policy
            .as_ref()
            .map(security_policy::Model::policy)
            .unwrap_or_default()
            .admit_principal(&org.id, principal, role)?;
        Ok(Access {
            org,
            standing,
            policy,
        })
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
