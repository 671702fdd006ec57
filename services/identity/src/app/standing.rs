//! What a caller may do in an organization or with a user, as the org-role replica says: the
//! checks every organization-scoped use case starts with.

use orgplane_platform::auth::{ApiKeyKind as PrincipalKeyKind, Capability, Principal};
use orgplane_platform::policy::{StepUp, require_recent_sign_in};
use orgplane_platform::roles::{OrgAction, admin_key_allows, allows};
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::organization::v1::OrgRole;

use super::{App, ME};
use crate::domain::Error;

/// What the caller may do in an organization, as resolved from the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgStanding {
    /// A member with this role.
    Member(OrgRole),
    /// An admin API key of this organization.
    AdminKey,
    /// A service principal holding `read-api-keys`: it reads the organization's API keys
    /// (the workspace service's key replica, billing's key facts) and nothing else here.
    Service,
}

impl OrgStanding {
    /// Whether this standing allows `action`.
    pub fn allows(self, action: OrgAction) -> bool {
        match self {
            OrgStanding::Member(role) => allows(role, action),
            OrgStanding::AdminKey => admin_key_allows(action),
            OrgStanding::Service => action == OrgAction::ManageApiKeys,
        }
    }
}

impl App {
    /// The caller's standing in `org`: NOT_FOUND for outsiders, PERMISSION_DENIED for workspace
    /// keys.
    pub(crate) fn standing(&self, principal: &Principal, org: &str) -> ApiResult<OrgStanding> {
        self.standing_or(principal, org, || ApiError::not_found("organization", org))
    }

    /// [`Self::standing`], answering `hidden()` where an outsider would learn of `org`.
    pub(crate) fn standing_or(
        &self,
        principal: &Principal,
        org: &str,
        hidden: impl Fn() -> ApiError,
    ) -> ApiResult<OrgStanding> {
        principal.require_authenticated()?;
        if let Principal::Service(s) = principal {
            s.require(Capability::ReadApiKeys)?;
        }
        self.require_roles_synced()?;
        match principal {
            // Refused above.
            Principal::Anonymous => Err(hidden()),
            Principal::Service(_) => Ok(OrgStanding::Service),
            Principal::ApiKey(k) => {
                if k.kind != PrincipalKeyKind::Admin {
                    return Err(Error::WorkspaceKeyRefused.into());
                }
                let active = self
                    .replica
                    .with_organization(org, |o| o.is_active())
                    .unwrap_or(false);
                if k.organization_id != org || !active {
                    return Err(hidden());
                }
                Ok(OrgStanding::AdminKey)
            }
            // The organization's security policy judges the sign-in (rule ORG-16).
            Principal::User(u) => self
                .replica
                .admitted_role(org, u)?
                .map(OrgStanding::Member)
                .ok_or_else(hidden),
        }
    }

    /// The signed-in OWNER or ADMIN of `org` (admitted by its policy), after a recent enough
    /// sign-in when `step_up` (rules ID-6, ID-12, ORG-16): who manages how people reach an
    /// organization (SSO connections, SCIM tokens and settings). NOT_FOUND for outsiders;
    /// `refusal` tells other members which roles may. Answers the caller's role.
    pub(crate) fn require_org_manager(
        &self,
        call: &Call,
        org: &str,
        step_up: bool,
        refusal: &'static str,
    ) -> ApiResult<OrgRole> {
        let user = call.principal.require_user()?;
        self.require_roles_synced()?;
        let role = self
            .replica
            .admitted_role(org, user)?
            .ok_or_else(|| ApiError::not_found("organization", org))?;
        if !matches!(role, OrgRole::Owner | OrgRole::Admin) {
            return Err(Error::InsufficientRole(refusal).into());
        }
        if step_up {
            self.require_org_step_up(call, org, role)?;
        }
        Ok(role)
    }

    /// The caller, holding `role` in `org`, signed in recently and safely enough for a
    /// sensitive action there (rules ID-6, ID-12): the platform's one step-up check under the
    /// organization's policy, whose re-authentication age this deployment's
    /// `--step-up-max-age-secs` bounds.
    pub(crate) fn require_org_step_up(
        &self,
        call: &Call,
        org: &str,
        role: OrgRole,
    ) -> ApiResult<()> {
        let mut policy = self.replica.policy(org);
        policy.reauth_max_age_secs = policy.reauth_max_age_secs.min(self.step_up.num_seconds());
        require_recent_sign_in(
            &call.principal,
            StepUp {
                policy: &policy,
                role: Some(role),
                organization_id: Some(org),
            },
            chrono::Utc::now().timestamp(),
        )?;
        Ok(())
    }

    /// Resolves `me` and the caller's own id.
    pub(crate) fn resolve_user_id(
        &self,
        principal: &Principal,
        user_id: &str,
    ) -> ApiResult<String> {
        if user_id.is_empty() {
            return Err(ApiError::invalid_argument("user_id", "required"));
        }
        if user_id == ME {
            return match principal {
                Principal::User(u) => Ok(u.user_id.clone()),
                Principal::Anonymous => Err(principal
                    .require_authenticated()
                    .err()
                    .unwrap_or_else(|| ApiError::invalid_argument("user_id", "`me` needs a user"))),
                _ => Err(ApiError::invalid_argument(
                    "user_id",
                    "`me` is only for signed-in users",
                )),
            };
        }
        Ok(user_id.to_owned())
    }

    /// Whether `principal` may see user `target` (self, co-member, admin key of an org the user
    /// is in, service).
    pub(crate) fn may_see(
        &self,
        principal: &Principal,
        target: &str,
        my_orgs: &[(String, OrgRole)],
    ) -> bool {
        match principal {
            Principal::Service(_) => true,
            Principal::User(u) => {
                u.user_id == target
                    || my_orgs
                        .iter()
                        .any(|(org, _)| self.replica.role(org, target).is_some())
            }
            Principal::ApiKey(k) => {
                k.kind == PrincipalKeyKind::Admin
                    && self.replica.role(&k.organization_id, target).is_some()
            }
            Principal::Anonymous => false,
        }
    }

    /// The organizations of a user principal (none for others).
    pub(crate) fn orgs_of(&self, principal: &Principal) -> Vec<(String, OrgRole)> {
        match principal {
            Principal::User(u) => self.replica.organizations_of(&u.user_id),
            _ => Vec::new(),
        }
    }

    /// Users, admin keys and services with `read-users` may read users; workspace keys may
    /// not.
    pub(crate) fn require_reader(principal: &Principal) -> ApiResult<()> {
        principal.require_authenticated()?;
        match principal {
            Principal::ApiKey(k) if k.kind != PrincipalKeyKind::Admin => {
                Err(Error::WorkspaceKeyRefused.into())
            }
            Principal::Service(s) => s.require(Capability::ReadUsers),
            _ => Ok(()),
        }
    }

    /// The organizations `user_id` owns (rule ID-9).
    pub(crate) fn owned_organizations(&self, user_id: &str) -> Vec<String> {
        self.replica
            .organizations_of(user_id)
            .into_iter()
            .filter(|(_, role)| *role == OrgRole::Owner)
            .map(|(org, _)| org)
            .collect()
    }

    /// Whether the replica knows `org` (refusals are audited only in a known organization).
    pub(crate) fn knows_organization(&self, org: &str) -> bool {
        self.replica.with_organization(org, |_| ()).is_some()
    }
}
