//! The gRPC adapter of the identity service: each handler builds the [`Call`], decodes the
//! request into an [`crate::app`] command, and encodes the outcome. Nothing here decides a rule.
//! Handlers are grouped by concern: `accounts` (sign-up, mail links), `sessions` (tokens),
//! `users` (profiles, member resets), `api_keys`, `audit`, `mfa` (second factors); [`convert`] holds the proto
//! conversion.

mod accounts;
mod api_keys;
mod audit;
pub mod convert;
mod mfa;
mod passkeys;
pub mod scim;
mod scim_convert;
mod scim_tokens;
mod sessions;
mod sso;
mod users;

use std::sync::Arc;

use orgplane_platform::{ApiResult, Call};
use orgplane_proto::identity::v1::identity_service_server::IdentityService;
use orgplane_proto::identity::v1::*;
use tonic::{Request, Response, Status};

use crate::app::App;

/// Every handler's result.
type R<T> = Result<Response<T>, Status>;

/// The IdentityService handlers.
#[derive(Debug, Clone)]
pub struct IdentityApi {
    app: Arc<App>,
}

impl IdentityApi {
    /// Handlers over `app`.
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// The call of `req`, once the organization revision it names (header
    /// `x-min-organization-revision`) is applied here: role decisions read the replica.
    async fn call<T>(&self, req: &Request<T>) -> ApiResult<Call> {
        let mut call = Call::of(req)?;
        call.forwarded_for = forwarded_for(req);
        call.wait_for(self.app.org_events(), 0).await?;
        Ok(call)
    }
}

/// Every `x-forwarded-for` value of `req`, in order, as one comma-separated list: a proxy may add
/// its hop as a header of its own rather than appending to the client's (rule ID-3 walks the
/// list from its end, so a header the client sent must never hide the proxies' ones).
fn forwarded_for<T>(req: &Request<T>) -> Option<String> {
    let hops: Vec<&str> = req
        .metadata()
        .get_all(orgplane_platform::call::FORWARDED_FOR_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!hops.is_empty()).then(|| hops.join(","))
}

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn sign_up(&self, req: Request<SignUpRequest>) -> R<SignUpResponse> {
        accounts::sign_up(self, req).await
    }

    async fn verify_email(&self, req: Request<VerifyEmailRequest>) -> R<VerifyEmailResponse> {
        accounts::verify_email(self, req).await
    }

    async fn resend_verification(
        &self,
        req: Request<ResendVerificationRequest>,
    ) -> R<ResendVerificationResponse> {
        accounts::resend_verification(self, req).await
    }

    async fn login(&self, req: Request<LoginRequest>) -> R<LoginResponse> {
        sessions::login(self, req).await
    }

    async fn refresh(&self, req: Request<RefreshRequest>) -> R<RefreshResponse> {
        sessions::refresh(self, req).await
    }

    async fn logout(&self, req: Request<LogoutRequest>) -> R<LogoutResponse> {
        sessions::logout(self, req).await
    }

    async fn reauthenticate(
        &self,
        req: Request<ReauthenticateRequest>,
    ) -> R<ReauthenticateResponse> {
        sessions::reauthenticate(self, req).await
    }

    async fn get_jwks(&self, req: Request<GetJwksRequest>) -> R<GetJwksResponse> {
        sessions::get_jwks(self, req).await
    }

    async fn get_user(&self, req: Request<GetUserRequest>) -> R<GetUserResponse> {
        users::get_user(self, req).await
    }

    async fn batch_get_users(
        &self,
        req: Request<BatchGetUsersRequest>,
    ) -> R<BatchGetUsersResponse> {
        users::batch_get_users(self, req).await
    }

    async fn update_user(&self, req: Request<UpdateUserRequest>) -> R<UpdateUserResponse> {
        users::update_user(self, req).await
    }

    async fn delete_user(&self, req: Request<DeleteUserRequest>) -> R<DeleteUserResponse> {
        users::delete_user(self, req).await
    }

    async fn request_password_reset(
        &self,
        req: Request<RequestPasswordResetRequest>,
    ) -> R<RequestPasswordResetResponse> {
        accounts::request_password_reset(self, req).await
    }

    async fn reset_password(&self, req: Request<ResetPasswordRequest>) -> R<ResetPasswordResponse> {
        accounts::reset_password(self, req).await
    }

    async fn admin_reset_password(
        &self,
        req: Request<AdminResetPasswordRequest>,
    ) -> R<AdminResetPasswordResponse> {
        users::admin_reset_password(self, req).await
    }

    async fn admin_reset_mfa(
        &self,
        req: Request<AdminResetMfaRequest>,
    ) -> R<AdminResetMfaResponse> {
        users::admin_reset_mfa(self, req).await
    }

    async fn create_api_key(&self, req: Request<CreateApiKeyRequest>) -> R<CreateApiKeyResponse> {
        api_keys::create_api_key(self, req).await
    }

    async fn get_api_key(&self, req: Request<GetApiKeyRequest>) -> R<GetApiKeyResponse> {
        api_keys::get_api_key(self, req).await
    }

    async fn list_api_keys(&self, req: Request<ListApiKeysRequest>) -> R<ListApiKeysResponse> {
        api_keys::list_api_keys(self, req).await
    }

    async fn update_api_key(&self, req: Request<UpdateApiKeyRequest>) -> R<UpdateApiKeyResponse> {
        api_keys::update_api_key(self, req).await
    }

    async fn authenticate_api_key(
        &self,
        req: Request<AuthenticateApiKeyRequest>,
    ) -> R<AuthenticateApiKeyResponse> {
        api_keys::authenticate_api_key(self, req).await
    }

    async fn issue_service_token(
        &self,
        req: Request<IssueServiceTokenRequest>,
    ) -> R<IssueServiceTokenResponse> {
        sessions::issue_service_token(self, req).await
    }

    async fn list_audit_events(
        &self,
        req: Request<ListAuditEventsRequest>,
    ) -> R<ListAuditEventsResponse> {
        audit::list_audit_events(self, req).await
    }

    async fn start_passkey_enrollment(
        &self,
        req: Request<StartPasskeyEnrollmentRequest>,
    ) -> R<StartPasskeyEnrollmentResponse> {
        passkeys::start_passkey_enrollment(self, req).await
    }

    async fn confirm_passkey_enrollment(
        &self,
        req: Request<ConfirmPasskeyEnrollmentRequest>,
    ) -> R<ConfirmPasskeyEnrollmentResponse> {
        passkeys::confirm_passkey_enrollment(self, req).await
    }

    async fn start_totp_enrollment(
        &self,
        req: Request<StartTotpEnrollmentRequest>,
    ) -> R<StartTotpEnrollmentResponse> {
        mfa::start_totp_enrollment(self, req).await
    }

    async fn confirm_totp_enrollment(
        &self,
        req: Request<ConfirmTotpEnrollmentRequest>,
    ) -> R<ConfirmTotpEnrollmentResponse> {
        mfa::confirm_totp_enrollment(self, req).await
    }

    async fn list_mfa_factors(
        &self,
        req: Request<ListMfaFactorsRequest>,
    ) -> R<ListMfaFactorsResponse> {
        mfa::list_mfa_factors(self, req).await
    }

    async fn delete_mfa_factor(
        &self,
        req: Request<DeleteMfaFactorRequest>,
    ) -> R<DeleteMfaFactorResponse> {
        mfa::delete_mfa_factor(self, req).await
    }

    async fn regenerate_recovery_codes(
        &self,
        req: Request<RegenerateRecoveryCodesRequest>,
    ) -> R<RegenerateRecoveryCodesResponse> {
        mfa::regenerate_recovery_codes(self, req).await
    }

    async fn verify_mfa_challenge(
        &self,
        req: Request<VerifyMfaChallengeRequest>,
    ) -> R<VerifyMfaChallengeResponse> {
        mfa::verify_mfa_challenge(self, req).await
    }

    async fn create_sso_connection(
        &self,
        request: Request<CreateSsoConnectionRequest>,
    ) -> R<CreateSsoConnectionResponse> {
        sso::create_sso_connection(self, request).await
    }

    async fn get_sso_connection(
        &self,
        request: Request<GetSsoConnectionRequest>,
    ) -> R<GetSsoConnectionResponse> {
        sso::get_sso_connection(self, request).await
    }

    async fn list_sso_connections(
        &self,
        request: Request<ListSsoConnectionsRequest>,
    ) -> R<ListSsoConnectionsResponse> {
        sso::list_sso_connections(self, request).await
    }

    async fn update_sso_connection(
        &self,
        request: Request<UpdateSsoConnectionRequest>,
    ) -> R<UpdateSsoConnectionResponse> {
        sso::update_sso_connection(self, request).await
    }

    async fn delete_sso_connection(
        &self,
        request: Request<DeleteSsoConnectionRequest>,
    ) -> R<DeleteSsoConnectionResponse> {
        sso::delete_sso_connection(self, request).await
    }

    async fn test_sso_connection(
        &self,
        request: Request<TestSsoConnectionRequest>,
    ) -> R<TestSsoConnectionResponse> {
        sso::test_sso_connection(self, request).await
    }

    async fn start_sso_login(
        &self,
        request: Request<StartSsoLoginRequest>,
    ) -> R<StartSsoLoginResponse> {
        sso::start_sso_login(self, request).await
    }

    async fn complete_sso_login(
        &self,
        request: Request<CompleteSsoLoginRequest>,
    ) -> R<CompleteSsoLoginResponse> {
        sso::complete_sso_login(self, request).await
    }

    async fn create_scim_token(
        &self,
        request: Request<CreateScimTokenRequest>,
    ) -> R<CreateScimTokenResponse> {
        scim_tokens::create_scim_token(self, request).await
    }

    async fn list_scim_tokens(
        &self,
        request: Request<ListScimTokensRequest>,
    ) -> R<ListScimTokensResponse> {
        scim_tokens::list_scim_tokens(self, request).await
    }

    async fn update_scim_token(
        &self,
        request: Request<UpdateScimTokenRequest>,
    ) -> R<UpdateScimTokenResponse> {
        scim_tokens::update_scim_token(self, request).await
    }

    async fn get_scim_settings(
        &self,
        request: Request<GetScimSettingsRequest>,
    ) -> R<GetScimSettingsResponse> {
        scim_tokens::get_scim_settings(self, request).await
    }

    async fn update_scim_settings(
        &self,
        request: Request<UpdateScimSettingsRequest>,
    ) -> R<UpdateScimSettingsResponse> {
        scim_tokens::update_scim_settings(self, request).await
    }
}
