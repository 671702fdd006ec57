//! Passkey enrollment (rule ID-10): StartPasskeyEnrollment and ConfirmPasskeyEnrollment.

use orgplane_platform::convert::timestamp_ms;
use orgplane_proto::identity::v1::*;
use tonic::{Request, Response};

use super::{IdentityApi, R};
use crate::app::passkeys::KIND;
use crate::store::entity::mfa_factor;

/// The wire form of a factor row (never its sealed material).
fn factor(m: &mfa_factor::Model) -> MfaFactor {
    MfaFactor {
        id: m.id.clone(),
        r#type: match m.kind.as_str() {
            KIND => MfaFactorType::Passkey,
            "totp" => MfaFactorType::Totp,
            _ => MfaFactorType::Unspecified,
        } as i32,
        display_name: m.display_name.clone(),
        state: m.state,
        create_time: Some(timestamp_ms(m.create_time_ms)),
        last_used_time: m.last_used_time_ms.map(timestamp_ms),
        expire_time: m.expire_time_ms.map(timestamp_ms),
    }
}

pub(super) async fn start_passkey_enrollment(
    api: &IdentityApi,
    req: Request<StartPasskeyEnrollmentRequest>,
) -> R<StartPasskeyEnrollmentResponse> {
    let call = api.call(&req).await?;
    let started = api
        .app
        .start_passkey_enrollment(&call, &req.get_ref().display_name)
        .await?;
    Ok(Response::new(StartPasskeyEnrollmentResponse {
        factor: Some(factor(&started.factor)),
        creation_options_json: started.creation_options_json,
    }))
}

pub(super) async fn confirm_passkey_enrollment(
    api: &IdentityApi,
    req: Request<ConfirmPasskeyEnrollmentRequest>,
) -> R<ConfirmPasskeyEnrollmentResponse> {
    let call = api.call(&req).await?;
    let r = req.get_ref();
    let confirmed = api
        .app
        .confirm_passkey_enrollment(&call, &r.factor_id, &r.credential_json)
        .await?;
    Ok(Response::new(ConfirmPasskeyEnrollmentResponse {
        factor: Some(factor(&confirmed.factor)),
        recovery_codes: confirmed.recovery_codes,
        tokens: Some(confirmed.tokens.into()),
    }))
}
