//! Second factors and the MFA challenge (rules ID-10, ID-11): StartTotpEnrollment,
//! ConfirmTotpEnrollment, ListMfaFactors, DeleteMfaFactor, RegenerateRecoveryCodes,
//! VerifyMfaChallenge.

use orgplane_proto::identity::v1::*;
use tonic::{Request, Response};

use super::{IdentityApi, R};
use crate::app::challenge::ChallengeAnswer;

pub(super) async fn start_totp_enrollment(
    api: &IdentityApi,
    req: Request<StartTotpEnrollmentRequest>,
) -> R<StartTotpEnrollmentResponse> {
    let call = api.call(&req).await?;
    let started = api
        .app
        .start_totp_enrollment(&call, &req.get_ref().display_name)
        .await?;
    Ok(Response::new(StartTotpEnrollmentResponse {
        factor: Some(MfaFactor::from(&started.factor)),
        secret: started.secret,
        otpauth_uri: started.otpauth_uri,
    }))
}

pub(super) async fn confirm_totp_enrollment(
    api: &IdentityApi,
    req: Request<ConfirmTotpEnrollmentRequest>,
) -> R<ConfirmTotpEnrollmentResponse> {
    let call = api.call(&req).await?;
    let r = req.get_ref();
    let confirmed = api
        .app
        .confirm_totp_enrollment(&call, &r.factor_id, &r.code)
        .await?;
    Ok(Response::new(ConfirmTotpEnrollmentResponse {
        factor: Some(MfaFactor::from(&confirmed.factor)),
        recovery_codes: confirmed.recovery_codes,
        tokens: Some(confirmed.tokens.into()),
    }))
}

pub(super) async fn list_mfa_factors(
    api: &IdentityApi,
    req: Request<ListMfaFactorsRequest>,
) -> R<ListMfaFactorsResponse> {
    let call = api.call(&req).await?;
    let (factors, remaining) = api.app.list_mfa_factors(&call).await?;
    Ok(Response::new(ListMfaFactorsResponse {
        factors: factors.iter().map(MfaFactor::from).collect(),
        remaining_recovery_codes: remaining,
    }))
}

pub(super) async fn delete_mfa_factor(
    api: &IdentityApi,
    req: Request<DeleteMfaFactorRequest>,
) -> R<DeleteMfaFactorResponse> {
    let call = api.call(&req).await?;
    let left = api
        .app
        .delete_mfa_factor(&call, &req.get_ref().factor_id)
        .await?;
    Ok(Response::new(DeleteMfaFactorResponse {
        remaining_factor_count: left,
    }))
}

pub(super) async fn regenerate_recovery_codes(
    api: &IdentityApi,
    req: Request<RegenerateRecoveryCodesRequest>,
) -> R<RegenerateRecoveryCodesResponse> {
    let call = api.call(&req).await?;
    let codes = api.app.regenerate_recovery_codes(&call).await?;
    Ok(Response::new(RegenerateRecoveryCodesResponse {
        recovery_codes: codes,
    }))
}

pub(super) async fn verify_mfa_challenge(
    api: &IdentityApi,
    req: Request<VerifyMfaChallengeRequest>,
) -> R<VerifyMfaChallengeResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let answer = ChallengeAnswer {
        challenge_id: r.challenge_id,
        totp_code: r.totp_code,
        recovery_code: r.recovery_code,
        passkey_assertion_json: r.passkey_assertion_json,
    };
    let (tokens, user) = api.app.verify_mfa_challenge(&call, &answer).await?;
    Ok(Response::new(VerifyMfaChallengeResponse {
        tokens: Some(tokens.into()),
        user: Some(User::from(&user)),
    }))
}
