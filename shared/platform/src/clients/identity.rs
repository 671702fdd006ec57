//! How a service reaches identity for authentication: its signing keys (`GetJwks`) for local
//! token verification, API-key resolution (`AuthenticateApiKey`), and this service's own service
//! token (`IssueServiceToken`, cached until shortly before it expires).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::{
    ApiKeyKind as ProtoKind, AuthenticateApiKeyRequest, GetJwksRequest, IssueServiceTokenRequest,
};
use tonic::transport::Channel;

use crate::auth::{
    API_KEY_INACTIVE, ApiKeyKind, ApiKeyPrincipal, ApiKeyResolver, KeySource, PublicKey,
    inactive_api_key, invalid_api_key,
};
use crate::clients::{ServiceTokenSource, outgoing};
use crate::error::{ApiError, ApiResult};

fn unavailable(what: &str, status: &tonic::Status) -> ApiError {
    tracing::warn!(code = ?status.code(), message = status.message(), "{what} failed");
    ApiError::unavailable("IDENTITY_UNAVAILABLE", format!("{what} failed; retry"))
}

/// Signing keys from identity's `GetJwks`.
#[derive(Clone, Debug)]
pub struct RemoteKeys {
    channel: Channel,
}

impl RemoteKeys {
    /// Keys fetched over `channel`.
    pub fn new(channel: Channel) -> Self {
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
    channel: Channel,
    tokens: Arc<dyn ServiceTokenSource>,
}

impl RemoteApiKeys {
    /// A resolver calling identity over `channel` as the holder of `tokens`.
    pub fn new(channel: Channel, tokens: Arc<dyn ServiceTokenSource>) -> Self {
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
                    Some(&token),
                    None,
                ))
                .await
                .map_err(|s| match s.code() {
                    tonic::Code::Unauthenticated
                        if crate::error::reason_of(&s).as_deref() == Some(API_KEY_INACTIVE) =>
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
    channel: Channel,
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
    pub fn new(channel: Channel, client_id: String, client_secret: String) -> Self {
        Self {
            channel,
            client_id,
            client_secret,
            cached: tokio::sync::Mutex::new(None),
        }
    }
}

impl ServiceTokenSource for IdentityServiceTokens {
    fn token(&self) -> BoxFuture<'_, ApiResult<String>> {
        Box::pin(async move {
            let mut cached = self.cached.lock().await;
            if let Some((token, renew_at)) = cached.as_ref()
                && Instant::now() < *renew_at
            {
                return Ok(token.clone());
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
            Ok(response.access_token)
        })
    }
}
