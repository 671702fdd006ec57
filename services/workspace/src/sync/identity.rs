//! The consumer of the identity service's events: the API-key replica CheckAccess reads, a
//! deleted user's direct roles (ID-9), and ended sessions (ID-4).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::auth::ServiceTokenSource;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::events::EventHandler;
use orgplane_platform::replica::org_row;
use orgplane_platform::revocation::{self, SessionRevocations};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{Event, Producer};
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::{ApiKeyKind, ApiKeyStatus, ListApiKeysRequest};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use tonic::transport::Channel;

use super::{note, refresh_touched, reload_all, remove_members};
use crate::store::entity::{api_key, member};
use crate::store::memory::{KeyView, Memory};

/// The consumer of the identity service's events.
pub struct IdentityEvents {
    db: DatabaseConnection,
    revocations: Arc<SessionRevocations>,
    memory: Memory,
    audit: AuditLogWriter,
    identity: Channel,
    tokens: Arc<dyn ServiceTokenSource>,
    touched: Mutex<HashSet<String>>,
}

impl IdentityEvents {
    /// A handler keeping the API-key replica and the session revocations (in `db` and
    /// `revocations`); re-syncs list keys from identity over `identity`.
    pub fn new(
        db: DatabaseConnection,
        revocations: Arc<SessionRevocations>,
        memory: Memory,
        audit: AuditLogWriter,
        identity: Channel,
        tokens: Arc<dyn ServiceTokenSource>,
    ) -> Self {
        Self {
            db,
            revocations,
            memory,
            audit,
            identity,
            tokens,
            touched: Mutex::new(HashSet::new()),
        }
    }
}

async fn upsert_key<C: ConnectionTrait>(txn: &C, id: &str, key: &KeyView) -> ApiResult<()> {
    api_key::Entity::insert(api_key::ActiveModel {
        api_key_id: sea_orm::Set(id.to_owned()),
        organization_id: sea_orm::Set(key.organization_id.clone()),
        workspace_id: sea_orm::Set(key.workspace_id.clone()),
        admin: sea_orm::Set(key.admin),
        active: sea_orm::Set(key.active),
    })
    .on_conflict(
        OnConflict::column(api_key::Column::ApiKeyId)
            .update_columns([
                api_key::Column::OrganizationId,
                api_key::Column::WorkspaceId,
                api_key::Column::Admin,
                api_key::Column::Active,
            ])
            .to_owned(),
    )
    .exec(txn)
    .await?;
    Ok(())
}

impl EventHandler for IdentityEvents {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            match &event.payload {
                Some(Payload::ApiKeyCreated(e)) => {
                    let key = KeyView {
                        organization_id: e.organization_id.clone(),
                        workspace_id: e.workspace_id.clone(),
                        admin: e.admin,
                        active: e.active,
                    };
                    upsert_key(txn, &e.api_key_id, &key).await?;
                }
                Some(Payload::ApiKeyStatusChanged(e)) => {
                    api_key::Entity::update_many()
                        .col_expr(api_key::Column::Active, Expr::value(e.active))
                        .filter(api_key::Column::ApiKeyId.eq(&e.api_key_id))
                        .exec(txn)
                        .await?;
                }
                Some(Payload::UserDeleted(e)) => {
                    let filter =
                        sea_orm::Condition::all().add(member::Column::UserId.eq(&e.user_id));
                    for org in remove_members(txn, &self.audit, filter, "user_deleted").await? {
                        note(&self.touched, &org);
                    }
                }
                Some(Payload::SessionsRevoked(_)) => revocation::apply(txn, event).await?,
                _ => {}
            }
            Ok(())
        })
    }

    fn resync<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move {
            // Every event after `through` is replayed after this snapshot; they are assignments,
            // so replaying them over a newer snapshot ends in the same state.
            let through = orgplane_platform::events::consumer::compacted_through(
                &self.identity,
                self.tokens.as_ref(),
                Producer::Identity,
            )
            .await?;
            let mut client = IdentityServiceClient::new(self.identity.clone());
            let mut keys = Vec::new();
            let orgs: Vec<String> = org_row::Entity::find()
                .all(txn)
                .await?
                .into_iter()
                .map(|o| o.organization_id)
                .collect();
            for org in orgs {
                let mut page_token = String::new();
                loop {
                    let token = self.tokens.token().await?;
                    let page = client
                        .list_api_keys(orgplane_platform::auth::outgoing(
                            ListApiKeysRequest {
                                organization_id: org.clone(),
                                page_size: 1000,
                                page_token: page_token.clone(),
                                ..Default::default()
                            },
                            Some(&token),
                            None,
                        ))
                        .await
                        .map_err(|s| {
                            ApiError::unavailable(
                                "SNAPSHOT_UNAVAILABLE",
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
                        break;
                    }
                    page_token = page.next_page_token;
                }
            }
            api_key::Entity::delete_many().exec(txn).await?;
            for (id, key) in &keys {
                upsert_key(txn, id, key).await?;
            }
            Ok(through)
        })
    }

    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.revocations.committed(&self.db, events, resynced).await;
            if resynced {
                reload_all(&self.memory, &self.touched).await;
                return;
            }
            for event in events {
                match &event.payload {
                    Some(Payload::ApiKeyCreated(e)) => self.memory.put_key(
                        &e.api_key_id,
                        Some(KeyView {
                            organization_id: e.organization_id.clone(),
                            workspace_id: e.workspace_id.clone(),
                            admin: e.admin,
                            active: e.active,
                        }),
                    ),
                    Some(Payload::ApiKeyStatusChanged(e)) => {
                        self.memory.set_key_active(&e.api_key_id, e.active)
                    }
                    _ => {}
                }
            }
            refresh_touched(&self.memory, &self.touched).await;
        })
    }
}
