//! Who may do what (rule BILL-1), answered from the organization-role replica in memory, and the
//! read-your-writes wait behind `min_organization_revision` / `x-min-organization-revision`.

use orgplane_platform::Call;
use orgplane_platform::audit::Attempt;
use orgplane_platform::auth::{ApiKeyKind, Principal};
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::roles::{OrgAction, admin_key_allows, allows};
use orgplane_proto::organization::v1::OrgRole;

use crate::Core;

impl Core {
    /// The organization role behind `principal` in `organization_id`: the member's role for a
    /// user, ADMIN for an admin API key of that organization, `None` otherwise (non-members,
    /// workspace keys, keys of other organizations, inactive organizations).
    pub fn role_of(&self, principal: &Principal, organization_id: &str) -> Option<OrgRole> {
        match principal {
            Principal::User(u) => self.replica.role(organization_id, &u.user_id),
            Principal::ApiKey(k) => {
                let active = self
                    .replica
                    .organization(organization_id)
                    .is_some_and(|o| o.is_active());
                (active && k.organization_id == organization_id && k.kind == ApiKeyKind::Admin)
                    .then_some(OrgRole::Admin)
            }
            _ => None,
        }
    }

    /// Passes a mutation's `result` through unchanged, recording it first as OUTCOME_FAILURE
    /// when it is a refusal the audit log keeps and the attempt's organization (its scope) is
    /// known here (ORG-10).
    pub async fn audited<T>(
        &self,
        call: &Call,
        attempt: Attempt<String>,
        result: ApiResult<T>,
    ) -> ApiResult<T> {
        self.audit
            .audited(&self.db, call, result, || async {
                self.replica
                    .with_organization(&attempt.scope, |_| ())
                    .map(|()| attempt.entry(&attempt.scope))
            })
            .await
    }

    /// Authorizes `principal` for `action` in `organization_id`: UNAUTHENTICATED without
    /// credentials, PERMISSION_DENIED for service principals, workspace API keys and members
    /// without the role, NOT_FOUND for callers outside the organization (rule BILL-1, ORG-2).
    pub fn authorize(
        &self,
        principal: &Principal,
        organization_id: &str,
        action: OrgAction,
    ) -> ApiResult<()> {
        let not_found = || ApiError::not_found("organization", organization_id);
        match principal {
            Principal::Anonymous => {
                principal.require_authenticated()?;
                Err(not_found())
            }
            Principal::Service(_) => Err(ApiError::permission_denied(
                "USER_OR_ADMIN_KEY_REQUIRED",
                "this call is for users and admin API keys",
            )),
            Principal::User(u) => match self.replica.role(organization_id, &u.user_id) {
                None => Err(not_found()),
                Some(role) if allows(role, action) => Ok(()),
                Some(_) => Err(denied(action)),
            },
            Principal::ApiKey(k) => {
                let active = self
                    .replica
                    .organization(organization_id)
                    .is_some_and(|o| o.is_active());
                if !active || k.organization_id != organization_id {
                    return Err(not_found());
                }
                match k.kind {
                    ApiKeyKind::Admin if admin_key_allows(action) => Ok(()),
                    ApiKeyKind::Admin => Err(denied(action)),
                    ApiKeyKind::Workspace => Err(ApiError::permission_denied(
                        "ADMIN_API_KEY_REQUIRED",
                        "workspace API keys cannot use billing",
                    )),
                }
            }
        }
    }
}

fn denied(action: OrgAction) -> ApiError {
    orgplane_platform::roles::insufficient_role(match action {
        OrgAction::ReadAuditLog => "only OWNER and ADMIN members may read the audit log",
        _ => "only OWNER, ADMIN and BILLING members may view and manage billing",
    })
}
