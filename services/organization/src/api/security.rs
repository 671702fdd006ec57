//! Handlers of the security policy RPCs (ORG-16).

use orgplane_platform::Call;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response};

use super::convert::security_policy;
use super::{Reply, paths, wire};
use crate::app::security::{PolicyFields, UpdateSecurityPolicy};
use crate::app::{App, Attempt, Scope};

pub(super) async fn get(
    app: &App,
    request: Request<GetSecurityPolicyRequest>,
) -> Reply<GetSecurityPolicyResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let policy = wire(app.get_security_policy(&call, &req.organization_id).await)?;
    Ok(Response::new(GetSecurityPolicyResponse {
        security_policy: Some(security_policy(&policy)),
    }))
}

pub(super) async fn update(
    app: &App,
    request: Request<UpdateSecurityPolicyRequest>,
) -> Reply<UpdateSecurityPolicyResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let id = req
        .security_policy
        .as_ref()
        .map(|p| p.organization_id.clone())
        .unwrap_or_default();
    let attempt = Attempt::new(
        Scope::Organization(id.clone()),
        "security_policy.update",
        "security_policy",
        &id,
    );
    let cmd = UpdateSecurityPolicy {
        policy: req.security_policy.map(|p| PolicyFields {
            organization_id: p.organization_id,
            mfa_requirement: p.mfa_requirement,
            reauthentication_max_age: p.reauthentication_max_age,
            allowed_sign_in_methods: p.allowed_sign_in_methods,
            restrict_invites_to_verified_domains: p.restrict_invites_to_verified_domains,
            enforced_fields: p.enforced_fields,
        }),
        paths: paths(req.update_mask),
        etag: req.etag,
    };
    let result = wire(app.update_security_policy(&call, cmd).await);
    let updated = app.audited(&call, attempt, result).await?;
    Ok(Response::new(UpdateSecurityPolicyResponse {
        security_policy: Some(security_policy(&updated.value)),
        revision: updated.revision,
    }))
}
