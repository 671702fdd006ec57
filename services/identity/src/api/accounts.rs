//! Sign-up and mailed links: SignUp, VerifyEmail, ResendVerification, RequestPasswordReset,
//! ResetPassword.

use orgplane_proto::identity::v1::*;
use tonic::{Request, Response};

use super::{IdentityApi, R};
use crate::app::signup::SignUp;
use crate::domain::error::LinkKind;

pub(super) async fn sign_up(api: &IdentityApi, req: Request<SignUpRequest>) -> R<SignUpResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let user = api
        .app
        .sign_up(
            &call,
            SignUp {
                email: r.email,
                password: r.password,
                display_name: r.display_name,
                account_type: r.account_type,
                request_id: r.request_id,
            },
        )
        .await?;
    Ok(Response::new(SignUpResponse {
        user: Some(User::from(&user)),
    }))
}

pub(super) async fn verify_email(
    api: &IdentityApi,
    req: Request<VerifyEmailRequest>,
) -> R<VerifyEmailResponse> {
    let call = api.call(&req).await?;
    let verified = api.app.verify_email(&call, &req.get_ref().token).await?;
    Ok(Response::new(VerifyEmailResponse {
        user: Some(User::from(&verified.user)),
        revision: verified.revision,
    }))
}

pub(super) async fn resend_verification(
    api: &IdentityApi,
    req: Request<ResendVerificationRequest>,
) -> R<ResendVerificationResponse> {
    let call = api.call(&req).await?;
    api.app
        .mail_link(&call, &req.get_ref().email, LinkKind::Verification)
        .await?;
    Ok(Response::new(ResendVerificationResponse {}))
}

pub(super) async fn request_password_reset(
    api: &IdentityApi,
    req: Request<RequestPasswordResetRequest>,
) -> R<RequestPasswordResetResponse> {
    let call = api.call(&req).await?;
    api.app
        .mail_link(&call, &req.get_ref().email, LinkKind::PasswordReset)
        .await?;
    Ok(Response::new(RequestPasswordResetResponse {}))
}

pub(super) async fn reset_password(
    api: &IdentityApi,
    req: Request<ResetPasswordRequest>,
) -> R<ResetPasswordResponse> {
    let call = api.call(&req).await?;
    let r = req.get_ref();
    let ended = api
        .app
        .reset_password(&call, &r.token, &r.new_password)
        .await?;
    Ok(Response::new(ResetPasswordResponse {
        ended_session_count: ended,
    }))
}
