//! What this service asks the identity service, with its own service token: members' emails and
//! names for ListBillingMembers (best effort), and an API key's organization and kind for
//! CheckBillingAccess about a key other than the caller's own.

use std::collections::HashMap;
use std::time::Duration;

use orgplane_platform::auth::outgoing;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::{
    ApiKeyKind, ApiKeyStatus, BatchGetUsersRequest, GetApiKeyRequest,
};

use crate::Core;

/// How long a lookup may take before it is given up.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// An API key as far as billing access cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// The key's organization.
    pub organization_id: String,
    /// Admin key.
    pub admin: bool,
    /// Accepted.
    pub active: bool,
}

impl Core {
    /// Emails and display names of `user_ids` by user id. Best effort: when identity cannot be
    /// reached the map is empty (the member list still answers, without the profile fields).
    pub async fn profiles(&self, user_ids: &[String]) -> HashMap<String, (String, String)> {
        if user_ids.is_empty() {
            return HashMap::new();
        }
        let fetch = async {
            let token = self.runtime.service_tokens.token().await?;
            let mut client = IdentityServiceClient::new(self.runtime.endpoints.identity.clone());
            let users = client
                .batch_get_users(outgoing(
                    BatchGetUsersRequest {
                        user_ids: user_ids.to_vec(),
                    },
                    Some(&token),
                    None,
                ))
                .await
                .map_err(|s| ApiError::unavailable("IDENTITY_UNAVAILABLE", s.message().to_owned()))?
                .into_inner()
                .users;
            Ok::<_, ApiError>(
                users
                    .into_iter()
                    .map(|u| (u.id, (u.email, u.display_name)))
                    .collect(),
            )
        };
        match tokio::time::timeout(LOOKUP_TIMEOUT, fetch).await {
            Ok(Ok(map)) => map,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "member profiles unavailable");
                HashMap::new()
            }
            Err(_) => {
                tracing::warn!("member profiles timed out");
                HashMap::new()
            }
        }
    }

    /// The facts of API key `api_key_id` from identity; `None` when identity does not know it.
    pub async fn api_key(&self, api_key_id: &str) -> ApiResult<Option<KeyFacts>> {
        let fetch = async {
            let token = self.runtime.service_tokens.token().await?;
            let mut client = IdentityServiceClient::new(self.runtime.endpoints.identity.clone());
            match client
                .get_api_key(outgoing(
                    GetApiKeyRequest {
                        api_key_id: api_key_id.to_owned(),
                    },
                    Some(&token),
                    None,
                ))
                .await
            {
                Ok(r) => Ok(r.into_inner().api_key.map(|k| KeyFacts {
                    organization_id: k.organization_id,
                    admin: k.kind == ApiKeyKind::Admin as i32,
                    active: k.status == ApiKeyStatus::Active as i32,
                })),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
                Err(s) => Err(ApiError::unavailable(
                    "IDENTITY_UNAVAILABLE",
                    format!("looking up the API key failed: {}", s.message()),
                )
                .retry_after(Duration::from_millis(500))),
            }
        };
        tokio::time::timeout(LOOKUP_TIMEOUT, fetch)
            .await
            .map_err(|_| {
                ApiError::unavailable("IDENTITY_UNAVAILABLE", "looking up the API key timed out")
                    .retry_after(Duration::from_millis(500))
            })?
    }
}
