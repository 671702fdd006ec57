//! How a service reaches identity: its signing keys (`GetJwks`) for local token verification,
//! API-key resolution (`AuthenticateApiKey`), this service's own service token
//! (`IssueServiceToken`, cached until shortly before it expires), and the facts it needs about
//! users ([`Users`]: `GetUser`, `BatchGetUsers`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ServiceChannel;
use futures::future::BoxFuture;
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::{
    AccountType, ApiKeyKind as ProtoKind, AuthenticateApiKeyRequest, BatchGetUsersRequest,
    GetJwksRequest, GetUserRequest, IssueServiceTokenRequest, User,
};

use crate::auth::{
    API_KEY_INACTIVE, ApiKeyKind, ApiKeyPrincipal, ApiKeyResolver, KeySource, PublicKey,
    inactive_api_key, invalid_api_key,
};
use crate::call::Call;
use crate::clients::{ServiceTokenSource, outgoing};
use crate::error::Reason;
use crate::error::{ApiError, ApiResult};

fn unavailable(what: &str, status: &tonic::Status) -> ApiError {
    tracing::warn!(code = ?status.code(), message = status.message(), "{what} failed");
    ApiError::unavailable(Reason::IdentityUnavailable, format!("{what} failed; retry"))
}

/// Signing keys from identity's `GetJwks`.
#[derive(Clone, Debug)]
pub struct RemoteKeys {
    channel: ServiceChannel,
}

impl RemoteKeys {
    /// Keys fetched over `channel`.
    pub fn new(channel: impl Into<ServiceChannel>) -> Self {
        let channel: ServiceChannel = channel.into();
        Self { channel }
    }
}

impl KeySource for RemoteKeys {
    fn fetch(&self) -> BoxFuture<'_, ApiResult<Vec<PublicKey>>> {
        Box::pin(async move {
            let mut client = IdentityServiceClient::new(self.channel.clone());
            let response = client
                .get_jwks(outgoing(GetJwksRequest {}, None, None))
                .await
                .map_err(|s| unavailable("GetJwks", &s))?
                .into_inner();
            Ok(response
                .keys
                .into_iter()
                .filter(|k| k.alg == "EdDSA" && k.crv == "Ed25519")
                .map(|k| PublicKey { kid: k.kid, x: k.x })
                .collect())
        })
    }
}

/// API keys resolved by identity's `AuthenticateApiKey`, called with this service's token.
#[derive(Clone)]
pub struct RemoteApiKeys {
    channel: ServiceChannel,
    tokens: Arc<dyn ServiceTokenSource>,
}

impl RemoteApiKeys {
    /// A resolver calling identity over `channel` as the holder of `tokens`.
    pub fn new(channel: impl Into<ServiceChannel>, tokens: Arc<dyn ServiceTokenSource>) -> Self {
        let channel: ServiceChannel = channel.into();
        Self { channel, tokens }
    }
}

impl ApiKeyResolver for RemoteApiKeys {
    fn resolve<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ApiResult<ApiKeyPrincipal>> {
        Box::pin(async move {
            let token = self.tokens.token().await?;
            let mut client = IdentityServiceClient::new(self.channel.clone());
            let response = client
                .authenticate_api_key(outgoing(
                    AuthenticateApiKeyRequest {
                        key: key.to_owned(),
                    },
                    token.as_deref(),
                    None,
                ))
                .await
                .map_err(|s| match s.code() {
                    tonic::Code::Unauthenticated
                        if crate::error::reason_of(&s).as_deref()
                            == Some(API_KEY_INACTIVE.as_str_name()) =>
                    {
                        inactive_api_key()
                    }
                    tonic::Code::Unauthenticated | tonic::Code::InvalidArgument => {
                        invalid_api_key()
                    }
                    _ => unavailable("AuthenticateApiKey", &s),
                })?
                .into_inner();
            let key = response.api_key.ok_or_else(invalid_api_key)?;
            let kind = match ProtoKind::try_from(key.kind) {
                Ok(ProtoKind::Admin) => ApiKeyKind::Admin,
                Ok(ProtoKind::Workspace) => ApiKeyKind::Workspace,
                _ => return Err(invalid_api_key()),
            };
            Ok(ApiKeyPrincipal {
                key_id: key.id,
                organization_id: key.organization_id,
                workspace_id: (!key.workspace_id.is_empty()).then_some(key.workspace_id),
                kind,
            })
        })
    }
}

/// This service's service token, minted by identity from a client id and secret and reused
/// until a minute before it expires.
pub struct IdentityServiceTokens {
    channel: ServiceChannel,
    client_id: String,
    client_secret: String,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for IdentityServiceTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityServiceTokens")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl IdentityServiceTokens {
    /// Tokens for service account `client_id`.
    pub fn new(
        channel: impl Into<ServiceChannel>,
        client_id: String,
        client_secret: String,
    ) -> Self {
        let channel: ServiceChannel = channel.into();
        Self {
            channel,
            client_id,
            client_secret,
            cached: tokio::sync::Mutex::new(None),
        }
    }
}

impl ServiceTokenSource for IdentityServiceTokens {
    fn token(&self) -> BoxFuture<'_, ApiResult<Option<String>>> {
        Box::pin(async move {
            let mut cached = self.cached.lock().await;
            if let Some((token, renew_at)) = cached.as_ref()
                && Instant::now() < *renew_at
            {
                return Ok(Some(token.clone()));
            }
            let mut client = IdentityServiceClient::new(self.channel.clone());
            let response = client
                .issue_service_token(outgoing(
                    IssueServiceTokenRequest {
                        client_id: self.client_id.clone(),
                        client_secret: self.client_secret.clone(),
                    },
                    None,
                    None,
                ))
                .await
                .map_err(|s| unavailable("IssueServiceToken", &s))?
                .into_inner();
            let lifetime = response
                .expire_time
                .map(|t| t.seconds - chrono::Utc::now().timestamp())
                .unwrap_or(60)
                .max(0) as u64;
            let renew_in = Duration::from_secs(lifetime.saturating_sub(60).max(lifetime / 2));
            *cached = Some((response.access_token.clone(), Instant::now() + renew_in));
            Ok(Some(response.access_token))
        })
    }
}

/// How long one call to identity may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The most ids one BatchGetUsers call takes.
const BATCH: usize = 1000;

/// The facts services need about users, from identity's user RPCs (GetUser, BatchGetUsers in
/// chunks) with the caller's service token; identity being unreachable is UNAVAILABLE
/// `IDENTITY_UNAVAILABLE` with a retry hint, never INTERNAL.
#[derive(Clone)]
pub struct Users {
    channel: ServiceChannel,
    tokens: Arc<dyn ServiceTokenSource>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

/// What a service knows of a user from identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    /// The user's id.
    pub id: String,
    /// Their email address.
    pub email: String,
    /// Whether they verified it.
    pub email_verified: bool,
    /// Their display name.
    pub display_name: String,
    /// Whether the account is a BUSINESS account (ID-1).
    pub business: bool,
}

impl From<User> for UserFacts {
    fn from(u: User) -> Self {
        Self {
            business: u.account_type == AccountType::Business as i32,
            id: u.id,
            email: u.email,
            email_verified: u.email_verified,
            display_name: u.display_name,
        }
    }
}

fn identity_unavailable(what: &str, status: &tonic::Status) -> ApiError {
    tracing::warn!(code = ?status.code(), message = status.message(), "{what} failed");
    ApiError::unavailable(
        Reason::IdentityUnavailable,
        format!("the identity service did not answer {what}; retry"),
    )
    .retry_after(Duration::from_secs(1))
}

impl Users {
    /// Users read over `channel` with `tokens`.
    pub fn new(channel: impl Into<ServiceChannel>, tokens: Arc<dyn ServiceTokenSource>) -> Self {
        let channel: ServiceChannel = channel.into();
        Self { channel, tokens }
    }

    async fn token(&self) -> ApiResult<Option<String>> {
        self.tokens.token().await.map_err(|e| {
            tracing::warn!(error = %e, "no service token");
            ApiError::unavailable(
                Reason::IdentityUnavailable,
                "no service token from identity; retry",
            )
            .retry_after(Duration::from_secs(1))
        })
    }

    /// The user `user_id`, or `None` when identity does not know them.
    pub async fn get(&self, user_id: &str, call: &Call) -> ApiResult<Option<UserFacts>> {
        let token = self.token().await?;
        let mut client = IdentityServiceClient::new(self.channel.clone());
        let mut request = outgoing(
            GetUserRequest {
                user_id: user_id.to_owned(),
            },
            token.as_deref(),
            Some(&call.context()),
        );
        request.set_timeout(CALL_TIMEOUT);
        match tokio::time::timeout(CALL_TIMEOUT, client.get_user(request)).await {
            Ok(Ok(r)) => Ok(r.into_inner().user.map(UserFacts::from)),
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(None),
            Ok(Err(s)) => Err(identity_unavailable("GetUser", &s)),
            Err(_) => Err(identity_unavailable(
                "GetUser",
                &tonic::Status::deadline_exceeded("timeout"),
            )),
        }
    }

    /// The users among `user_ids` that identity knows, by id.
    pub async fn batch(
        &self,
        user_ids: &[String],
        call: &Call,
    ) -> ApiResult<HashMap<String, UserFacts>> {
        let mut out = HashMap::new();
        if user_ids.is_empty() {
            return Ok(out);
        }
        let token = self.token().await?;
        let mut client = IdentityServiceClient::new(self.channel.clone())
            .max_decoding_message_size(16 * 1024 * 1024);
        for chunk in user_ids.chunks(BATCH) {
            let mut request = outgoing(
                BatchGetUsersRequest {
                    user_ids: chunk.to_vec(),
                },
                token.as_deref(),
                Some(&call.context()),
            );
            request.set_timeout(CALL_TIMEOUT);
            let response =
                match tokio::time::timeout(CALL_TIMEOUT, client.batch_get_users(request)).await {
                    Ok(Ok(r)) => r.into_inner(),
                    Ok(Err(s)) => return Err(identity_unavailable("BatchGetUsers", &s)),
                    Err(_) => {
                        return Err(identity_unavailable(
                            "BatchGetUsers",
                            &tonic::Status::deadline_exceeded("timeout"),
                        ));
                    }
                };
            for u in response.users {
                out.insert(u.id.clone(), UserFacts::from(u));
            }
        }
        Ok(out)
    }
}
