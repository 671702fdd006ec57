//! Who may do what (rule BILL-1), answered from the organization-role replica in memory, and the
//! read-your-writes wait behind `min_organization_revision` / `x-min-organization-revision`.

use std::time::{Duration, Instant};

use orgplane_platform::audit::Attempt;
use orgplane_platform::auth::{ApiKeyKind, Principal};
use orgplane_platform::context::RequestContext;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::roles::{OrgAction, admin_key_allows, allows};
use orgplane_proto::organization::v1::OrgRole;
use tonic::metadata::MetadataMap;

use crate::Core;

/// The metadata header carrying the organization revision a request must observe.
pub const MIN_REVISION_HEADER: &str = "x-min-organization-revision";

/// How long a revision wait lasts when the caller sent no deadline.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// Kept back from the caller's deadline so that the UNAVAILABLE answer still reaches it.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);

/// The caller's `grpc-timeout`, if it sent a valid one.
pub fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The `x-min-organization-revision` header: 0 when absent, INVALID_ARGUMENT when malformed.
pub fn header_revision(metadata: &MetadataMap) -> ApiResult<i64> {
    let Some(value) = metadata.get(MIN_REVISION_HEADER) else {
        return Ok(0);
    };
    value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::invalid_argument(MIN_REVISION_HEADER, "must be a non-negative integer")
        })
}

impl Core {
    /// Waits until the organization replica has applied the larger of `explicit` and the
    /// request's header revision, within what is left of the call's deadline; UNAVAILABLE
    /// (`REVISION_NOT_YET_APPLIED`) otherwise. Returns the applied revision.
    pub async fn reach_revision(
        &self,
        metadata: &MetadataMap,
        explicit: i64,
        started: Instant,
    ) -> ApiResult<i64> {
        if explicit < 0 {
            return Err(ApiError::invalid_argument(
                "min_organization_revision",
                "must not be negative",
            ));
        }
        let wanted = header_revision(metadata)?.max(explicit);
        if wanted == 0 {
            return Ok(self.org_events.applied_revision());
        }
        let budget = grpc_timeout(metadata)
            .unwrap_or(DEFAULT_WAIT)
            .saturating_sub(started.elapsed())
            .saturating_sub(DEADLINE_MARGIN);
        self.org_events.wait_for(wanted, budget).await
    }

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
        principal: &Principal,
        ctx: &RequestContext,
        attempt: Attempt<String>,
        result: ApiResult<T>,
    ) -> ApiResult<T> {
        self.audit
            .outcome(&self.db, principal, ctx, result, || async {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        let mut m = MetadataMap::new();
        assert_eq!(grpc_timeout(&m), None);
        m.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(grpc_timeout(&m), Some(Duration::from_millis(250)));
        m.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(grpc_timeout(&m), Some(Duration::from_secs(3)));
        m.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(grpc_timeout(&m), None);
    }

    #[test]
    fn revision_header_must_be_a_number() {
        let mut m = MetadataMap::new();
        assert_eq!(header_revision(&m).unwrap(), 0);
        m.insert(MIN_REVISION_HEADER, "42".parse().unwrap());
        assert_eq!(header_revision(&m).unwrap(), 42);
        m.insert(MIN_REVISION_HEADER, "-1".parse().unwrap());
        assert!(header_revision(&m).is_err());
    }
}
