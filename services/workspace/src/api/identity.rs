//! The call this service makes to identity: the API-key snapshot a re-sync of identity's events
//! starts from ([`KeySnapshot`]), read page by page from `ListApiKeys` with this service's token.

use std::sync::Arc;

use futures::future::BoxFuture;
use orgplane_platform::clients::ServiceChannel;
use orgplane_platform::clients::ServiceTokenSource;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_proto::events::v1::Producer;
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::{ApiKeyKind, ApiKeyStatus, ListApiKeysRequest};

use crate::store::memory::KeyView;
use crate::sync::identity::{KeySnapshot, Keys};
use orgplane_platform::error::Reason;

/// [`KeySnapshot`] over identity's gRPC API.
pub struct IdentityKeys {
    identity: ServiceChannel,
    tokens: Arc<dyn ServiceTokenSource>,
}

impl IdentityKeys {
    /// Snapshots read from identity at `identity`, authenticated by `tokens`.
    pub fn new(identity: impl Into<ServiceChannel>, tokens: Arc<dyn ServiceTokenSource>) -> Self {
        let identity: ServiceChannel = identity.into();
        Self { identity, tokens }
    }

    /// Every key of `organization_id`, page by page.
    async fn keys_of(
        &self,
        client: &mut IdentityServiceClient<ServiceChannel>,
        organization_id: &str,
        keys: &mut Vec<(String, KeyView)>,
    ) -> ApiResult<()> {
        let mut page_token = String::new();
        loop {
            let token = self.tokens.token().await?;
            let page = client
                .list_api_keys(orgplane_platform::clients::outgoing(
                    ListApiKeysRequest {
                        organization_id: organization_id.to_owned(),
                        page_size: 1000,
                        page_token: page_token.clone(),
                        ..Default::default()
                    },
                    token.as_deref(),
                    None,
                ))
                .await
                .map_err(|s| {
                    ApiError::unavailable(
                        Reason::SnapshotUnavailable,
                        format!("ListApiKeys failed: {}", s.message()),
                    )
                })?
                .into_inner();
            for k in page.api_keys {
                let view = KeyView {
                    organization_id: k.organization_id.clone(),
                    workspace_id: k.workspace_id.clone(),
                    admin: k.kind == ApiKeyKind::Admin as i32,
                    active: k.status == ApiKeyStatus::Active as i32,
                };
                keys.push((k.id, view));
            }
            if page.next_page_token.is_empty() {
                return Ok(());
            }
            page_token = page.next_page_token;
        }
    }
}

impl KeySnapshot for IdentityKeys {
    fn api_keys<'a>(&'a self, organizations: &'a [String]) -> BoxFuture<'a, ApiResult<Keys>> {
        Box::pin(async move {
            let through = orgplane_platform::events::consumer::compacted_through(
                &self.identity,
                self.tokens.as_ref(),
                Producer::Identity,
            )
            .await?;
            let mut client = IdentityServiceClient::new(self.identity.clone());
            let mut keys = Vec::new();
            for org in organizations {
                self.keys_of(&mut client, org, &mut keys).await?;
            }
            Ok(Keys { through, keys })
        })
    }
}
