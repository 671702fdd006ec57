//! What this service asks other services, with its own service token: identity for members'
//! profiles and other API keys' facts ([`IdentityDirectory`]), and the workspace service for its
//! snapshot when the workspace consumer re-syncs ([`WorkspaceSnapshots`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use orgplane_platform::Call;
use orgplane_platform::clients::ServiceChannel;
use orgplane_platform::clients::identity::Users;
use orgplane_platform::clients::workspace::all_workspaces;
use orgplane_platform::clients::{ServiceTokenSource, outgoing};
use orgplane_platform::convert::millis_of;
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::{ApiKeyKind, ApiKeyStatus, GetApiKeyRequest};

use crate::app::{Directory, Profile};
use crate::domain::access::KeyFacts;
use crate::domain::{Error, Result};
use crate::store::entity::workspace;
use crate::sync::workspace::Snapshots;

/// How long an identity lookup may take before it is given up.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The identity service as billing's [`Directory`].
#[derive(Clone)]
pub struct IdentityDirectory {
    channel: ServiceChannel,
    tokens: Arc<dyn ServiceTokenSource>,
    users: Users,
}

impl IdentityDirectory {
    /// Lookups over `channel` with `tokens`.
    pub fn new(channel: impl Into<ServiceChannel>, tokens: Arc<dyn ServiceTokenSource>) -> Self {
        let channel: ServiceChannel = channel.into();
        let users = Users::new(channel.clone(), tokens.clone());
        Self {
            channel,
            tokens,
            users,
        }
    }

    async fn fetch_profiles(&self, user_ids: &[String]) -> Result<HashMap<String, Profile>> {
        let users = self.users.batch(user_ids, &Call::system()).await?;
        Ok(users
            .into_values()
            .map(|u| (u.id, (u.email, u.display_name)))
            .collect())
    }

    async fn fetch_api_key(&self, api_key_id: &str) -> Result<Option<KeyFacts>> {
        let token = self.tokens.token().await?;
        let mut client = IdentityServiceClient::new(self.channel.clone());
        match client
            .get_api_key(outgoing(
                GetApiKeyRequest {
                    api_key_id: api_key_id.to_owned(),
                },
                token.as_deref(),
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
            Err(s) => Err(Error::IdentityUnavailable(format!(
                "looking up the API key failed: {}",
                s.message()
            ))),
        }
    }
}

impl Directory for IdentityDirectory {
    fn profiles<'a>(&'a self, user_ids: &'a [String]) -> BoxFuture<'a, HashMap<String, Profile>> {
        Box::pin(async move {
            if user_ids.is_empty() {
                return HashMap::new();
            }
            match tokio::time::timeout(LOOKUP_TIMEOUT, self.fetch_profiles(user_ids)).await {
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
        })
    }

    fn api_key<'a>(&'a self, api_key_id: &'a str) -> BoxFuture<'a, Result<Option<KeyFacts>>> {
        Box::pin(async move {
            tokio::time::timeout(LOOKUP_TIMEOUT, self.fetch_api_key(api_key_id))
                .await
                .map_err(|_| {
                    Error::IdentityUnavailable("looking up the API key timed out".into())
                })?
        })
    }
}

/// The workspace service's `ListWorkspaces` over every organization, as the workspace
/// consumer's snapshot.
#[derive(Clone)]
pub struct WorkspaceSnapshots {
    channel: ServiceChannel,
    tokens: Arc<dyn ServiceTokenSource>,
}

impl WorkspaceSnapshots {
    /// Snapshots over `channel` with `tokens`.
    pub fn new(channel: impl Into<ServiceChannel>, tokens: Arc<dyn ServiceTokenSource>) -> Self {
        let channel: ServiceChannel = channel.into();
        Self { channel, tokens }
    }

    async fn fetch(&self) -> Result<(i64, Vec<workspace::Model>)> {
        let (revision, workspaces) = all_workspaces(&self.channel, &self.tokens).await?;
        let rows = workspaces
            .into_iter()
            .map(|w| workspace::Model {
                archive_time_ms: w.archive_time.as_ref().and_then(millis_of),
                workspace_id: w.id,
                organization_id: w.organization_id,
                name: w.name,
            })
            .collect();
        Ok((revision, rows))
    }
}

impl Snapshots for WorkspaceSnapshots {
    fn workspaces(&self) -> BoxFuture<'_, Result<(i64, Vec<workspace::Model>)>> {
        Box::pin(self.fetch())
    }
}
