//! Sessions and tokens: Login, Refresh, Logout, Reauthenticate, GetJwks, IssueServiceToken.

use orgplane_platform::convert::timestamp_ms;
use orgplane_proto::identity::v1::*;
use tonic::{Request, Response};

use super::{IdentityApi, R};
use crate::app::reauth::ReauthProof;
use crate::app::sessions::SignInOutcome;

pub(super) async fn login(api: &IdentityApi, req: Request<LoginRequest>) -> R<LoginResponse> {
    let call = api.call(&req).await?;
    let r = req.get_ref();
    let signed_in = api.app.login(&call, &r.email, &r.password).await?;
    let user = Some(User::from(&signed_in.user));
    Ok(Response::new(match signed_in.outcome {
        SignInOutcome::Tokens {
            tokens,
            enrollment_required,
        } => LoginResponse {
            tokens: Some(tokens.into()),
            user,
            mfa_challenge: None,
            mfa_enrollment_required_organization_ids: enrollment_required,
        },
        SignInOutcome::Challenge(challenge) => LoginResponse {
            tokens: None,
            user,
            mfa_challenge: Some(challenge.into()),
            mfa_enrollment_required_organization_ids: Vec::new(),
        },
    }))
}

pub(super) async fn refresh(api: &IdentityApi, req: Request<RefreshRequest>) -> R<RefreshResponse> {
    let call = api.call(&req).await?;
    let tokens = api.app.refresh(&call, &req.get_ref().refresh_token).await?;
    Ok(Response::new(RefreshResponse {
        tokens: Some(tokens.into()),
    }))
}

pub(super) async fn logout(api: &IdentityApi, req: Request<LogoutRequest>) -> R<LogoutResponse> {
    let call = api.call(&req).await?;
    let r = req.get_ref();
    let ended = api
        .app
        .logout(&call, &r.refresh_token, r.all_sessions)
        .await?;
    Ok(Response::new(LogoutResponse {
        ended_session_count: ended,
    }))
}

pub(super) async fn reauthenticate(
    api: &IdentityApi,
    req: Request<ReauthenticateRequest>,
) -> R<ReauthenticateResponse> {
    let call = api.call(&req).await?;
    call.principal.require_user()?;
    let r = req.get_ref();
    let proof = ReauthProof::exactly_one(&r.password, &r.totp_code, &r.recovery_code, r.passkey)?;
    if matches!(proof, ReauthProof::Passkey) {
        let challenge = api.app.start_passkey_step_up(&call).await?;
        return Ok(Response::new(ReauthenticateResponse {
            tokens: None,
            mfa_challenge: Some(challenge.into()),
        }));
    }
    let tokens = api.app.reauthenticate(&call, proof).await?;
    Ok(Response::new(ReauthenticateResponse {
        tokens: Some(tokens.into()),
        ..Default::default()
    }))
}

pub(super) async fn get_jwks(
    api: &IdentityApi,
    _req: Request<GetJwksRequest>,
) -> R<GetJwksResponse> {
    let keys = api
        .app
        .keys()
        .public_keys()
        .into_iter()
        .map(|k| Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: k.x,
            kid: k.kid,
            alg: "EdDSA".into(),
            r#use: "sig".into(),
        })
        .collect();
    Ok(Response::new(GetJwksResponse {
        keys,
        issuer: api.app.issuer().to_owned(),
    }))
}

pub(super) async fn issue_service_token(
    api: &IdentityApi,
    req: Request<IssueServiceTokenRequest>,
) -> R<IssueServiceTokenResponse> {
    let call = api.call(&req).await?;
    let r = req.get_ref();
    let issued = api
        .app
        .issue_service_token(&call, &r.client_id, &r.client_secret)
        .await?;
    Ok(Response::new(IssueServiceTokenResponse {
        access_token: issued.token,
        expire_time: Some(timestamp_ms(issued.expire_secs.saturating_mul(1000))),
    }))
}
