//! The gRPC handlers: decode the request, identify the caller, call [`crate::core::Core`], encode
//! the response. Nothing here decides a rule.

use std::sync::Arc;
use std::time::Duration;

use orgplane_platform::ApiError;
use orgplane_platform::auth::Principal;
use orgplane_platform::context::RequestContext;
use orgplane_proto::identity::v1::identity_service_server::IdentityService;
use orgplane_proto::identity::v1::*;
use tonic::{Request, Response, Status};

use crate::core::{API_KEY_CACHE_TTL, Caller, Core, key_to_proto, user_to_proto};

/// The metadata header that asks to wait for an organization revision.
pub const MIN_ORGANIZATION_REVISION: &str = "x-min-organization-revision";
const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// The IdentityService handlers.
#[derive(Debug, Clone)]
pub struct IdentityApi {
    core: Arc<Core>,
}

impl IdentityApi {
    /// Handlers over `core`.
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The caller of `req`, after waiting for `x-min-organization-revision` when present.
    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, ApiError> {
        if let Some(value) = req.metadata().get(MIN_ORGANIZATION_REVISION) {
            let revision: i64 = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|r| *r >= 0)
                .ok_or_else(|| {
                    ApiError::invalid_argument(MIN_ORGANIZATION_REVISION, "not a revision")
                })?;
            let wait = req
                .metadata()
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_grpc_timeout)
                .map(|d| d.saturating_sub(Duration::from_millis(50)))
                .unwrap_or(DEFAULT_WAIT);
            self.core
                .wait_for_organization_revision(revision, wait)
                .await?;
        }
        Ok(Caller {
            principal: Principal::of(req),
            ctx: RequestContext::of(req),
            peer: self
                .core
                .trusted_proxies
                .client_address(req.remote_addr().map(|a| a.ip()), req.metadata()),
        })
    }
}

fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn paths(mask: Option<prost_types::FieldMask>) -> Vec<String> {
    mask.map(|m| m.paths).unwrap_or_default()
}

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn sign_up(&self, req: Request<SignUpRequest>) -> R<SignUpResponse> {
        let caller = self.caller(&req).await?;
        let r = req.into_inner();
        let user = self
            .core
            .sign_up(
                &caller,
                &r.email,
                &r.password,
                &r.display_name,
                r.account_type,
                &r.request_id,
            )
            .await?;
        Ok(Response::new(SignUpResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn verify_email(&self, req: Request<VerifyEmailRequest>) -> R<VerifyEmailResponse> {
        let caller = self.caller(&req).await?;
        let (user, revision) = self
            .core
            .verify_email(&caller, &req.get_ref().token)
            .await?;
        Ok(Response::new(VerifyEmailResponse {
            user: Some(user_to_proto(&user)),
            revision,
        }))
    }

    async fn resend_verification(
        &self,
        req: Request<ResendVerificationRequest>,
    ) -> R<ResendVerificationResponse> {
        let caller = self.caller(&req).await?;
        self.core
            .mail_link(&caller, &req.get_ref().email, false)
            .await?;
        Ok(Response::new(ResendVerificationResponse {}))
    }

    async fn login(&self, req: Request<LoginRequest>) -> R<LoginResponse> {
        let caller = self.caller(&req).await?;
        let r = req.into_inner();
        let (tokens, user) = self.core.login(&caller, &r.email, &r.password).await?;
        Ok(Response::new(LoginResponse {
            tokens: Some(tokens),
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn refresh(&self, req: Request<RefreshRequest>) -> R<RefreshResponse> {
        let caller = self.caller(&req).await?;
        let tokens = self
            .core
            .refresh(&caller, &req.get_ref().refresh_token)
            .await?;
        Ok(Response::new(RefreshResponse {
            tokens: Some(tokens),
        }))
    }

    async fn logout(&self, req: Request<LogoutRequest>) -> R<LogoutResponse> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        let ended = self
            .core
            .logout(&caller, &r.refresh_token, r.all_sessions)
            .await?;
        Ok(Response::new(LogoutResponse {
            ended_session_count: ended,
        }))
    }

    async fn reauthenticate(
        &self,
        req: Request<ReauthenticateRequest>,
    ) -> R<ReauthenticateResponse> {
        let caller = self.caller(&req).await?;
        let tokens = self
            .core
            .reauthenticate(&caller, &req.get_ref().password)
            .await?;
        Ok(Response::new(ReauthenticateResponse {
            tokens: Some(tokens),
        }))
    }

    async fn get_jwks(&self, _req: Request<GetJwksRequest>) -> R<GetJwksResponse> {
        let keys = self
            .core
            .keys
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
            issuer: self.core.issuer.clone(),
        }))
    }

    async fn get_user(&self, req: Request<GetUserRequest>) -> R<GetUserResponse> {
        let caller = self.caller(&req).await?;
        let user = self
            .core
            .get_user(&caller.principal, &req.get_ref().user_id)
            .await?;
        Ok(Response::new(GetUserResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn batch_get_users(
        &self,
        req: Request<BatchGetUsersRequest>,
    ) -> R<BatchGetUsersResponse> {
        let caller = self.caller(&req).await?;
        let (users, missing) = self
            .core
            .batch_get_users(&caller.principal, &req.get_ref().user_ids)
            .await?;
        Ok(Response::new(BatchGetUsersResponse {
            users: users.iter().map(user_to_proto).collect(),
            missing_user_ids: missing,
        }))
    }

    async fn update_user(&self, req: Request<UpdateUserRequest>) -> R<UpdateUserResponse> {
        let caller = self.caller(&req).await?;
        let r = req.into_inner();
        let patch = r
            .user
            .ok_or_else(|| ApiError::invalid_argument("user", "required"))?;
        let user = self
            .core
            .update_user(&caller, &patch, &paths(r.update_mask), &r.etag)
            .await?;
        Ok(Response::new(UpdateUserResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn delete_user(&self, req: Request<DeleteUserRequest>) -> R<DeleteUserResponse> {
        let caller = self.caller(&req).await?;
        let revision = self
            .core
            .delete_user(&caller, &req.get_ref().user_id)
            .await?;
        Ok(Response::new(DeleteUserResponse { revision }))
    }

    async fn request_password_reset(
        &self,
        req: Request<RequestPasswordResetRequest>,
    ) -> R<RequestPasswordResetResponse> {
        let caller = self.caller(&req).await?;
        self.core
            .mail_link(&caller, &req.get_ref().email, true)
            .await?;
        Ok(Response::new(RequestPasswordResetResponse {}))
    }

    async fn reset_password(&self, req: Request<ResetPasswordRequest>) -> R<ResetPasswordResponse> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        let ended = self
            .core
            .reset_password(&caller, &r.token, &r.new_password)
            .await?;
        Ok(Response::new(ResetPasswordResponse {
            ended_session_count: ended,
        }))
    }

    async fn admin_reset_password(
        &self,
        req: Request<AdminResetPasswordRequest>,
    ) -> R<AdminResetPasswordResponse> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        let ended = self
            .core
            .admin_reset_password(&caller, &r.organization_id, &r.user_id)
            .await?;
        Ok(Response::new(AdminResetPasswordResponse {
            ended_session_count: ended,
        }))
    }

    async fn admin_reset_mfa(
        &self,
        req: Request<AdminResetMfaRequest>,
    ) -> R<AdminResetMfaResponse> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        let removed = self
            .core
            .admin_reset_mfa(&caller, &r.organization_id, &r.user_id)
            .await?;
        Ok(Response::new(AdminResetMfaResponse {
            removed_factor_count: removed,
        }))
    }

    async fn create_api_key(&self, req: Request<CreateApiKeyRequest>) -> R<CreateApiKeyResponse> {
        let caller = self.caller(&req).await?;
        let r = req.into_inner();
        let spec = r.api_key.unwrap_or_default();
        let (key, secret) = self
            .core
            .create_api_key(&caller, &r.organization_id, &spec, &r.request_id)
            .await?;
        Ok(Response::new(CreateApiKeyResponse {
            api_key: Some(key_to_proto(&key)),
            secret,
        }))
    }

    async fn get_api_key(&self, req: Request<GetApiKeyRequest>) -> R<GetApiKeyResponse> {
        let caller = self.caller(&req).await?;
        let key = self
            .core
            .get_api_key(&caller.principal, &req.get_ref().api_key_id)
            .await?;
        Ok(Response::new(GetApiKeyResponse {
            api_key: Some(key_to_proto(&key)),
        }))
    }

    async fn list_api_keys(&self, req: Request<ListApiKeysRequest>) -> R<ListApiKeysResponse> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        let (keys, next) = self
            .core
            .list_api_keys(
                &caller.principal,
                &r.organization_id,
                r.page_size,
                &r.page_token,
                r.status,
                r.kind,
                r.workspace_id.as_deref(),
            )
            .await?;
        Ok(Response::new(ListApiKeysResponse {
            api_keys: keys.iter().map(key_to_proto).collect(),
            next_page_token: next,
        }))
    }

    async fn update_api_key(&self, req: Request<UpdateApiKeyRequest>) -> R<UpdateApiKeyResponse> {
        let caller = self.caller(&req).await?;
        let r = req.into_inner();
        let patch = r
            .api_key
            .ok_or_else(|| ApiError::invalid_argument("api_key", "required"))?;
        let key = self
            .core
            .update_api_key(&caller, &patch, &paths(r.update_mask), &r.etag)
            .await?;
        Ok(Response::new(UpdateApiKeyResponse {
            api_key: Some(key_to_proto(&key)),
        }))
    }

    async fn authenticate_api_key(
        &self,
        req: Request<AuthenticateApiKeyRequest>,
    ) -> R<AuthenticateApiKeyResponse> {
        let caller = self.caller(&req).await?;
        let key = self
            .core
            .authenticate_api_key(&caller.principal, &req.get_ref().key)
            .await?;
        Ok(Response::new(AuthenticateApiKeyResponse {
            api_key: Some(key_to_proto(&key)),
            cache_ttl: Some(prost_types::Duration {
                seconds: API_KEY_CACHE_TTL.as_secs() as i64,
                nanos: 0,
            }),
        }))
    }

    async fn issue_service_token(
        &self,
        req: Request<IssueServiceTokenRequest>,
    ) -> R<IssueServiceTokenResponse> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        let (token, exp) = self
            .core
            .issue_service_token(&caller, &r.client_id, &r.client_secret)
            .await?;
        Ok(Response::new(IssueServiceTokenResponse {
            access_token: token,
            expire_time: Some(prost_types::Timestamp {
                seconds: exp,
                nanos: 0,
            }),
        }))
    }

    async fn list_audit_events(
        &self,
        req: Request<ListAuditEventsRequest>,
    ) -> R<ListAuditEventsResponse> {
        let caller = self.caller(&req).await?;
        let r = req.get_ref();
        let (audit_events, next_page_token) = self
            .core
            .list_audit_events(
                &caller.principal,
                &r.organization_id,
                &r.filter.clone().unwrap_or_default(),
                r.page_size,
                &r.page_token,
            )
            .await?;
        Ok(Response::new(ListAuditEventsResponse {
            audit_events,
            next_page_token,
        }))
    }
}
