//! What this service does with other services' events. Organization events go to the shared
//! org-role replica and, in the same transaction, to this service's own data (WS-8 needs nothing:
//! direct roles are kept as they are; WS-9: a removed member loses their direct roles, a purged
//! organization loses its workspaces). Identity events feed the API-key replica, remove a
//! deleted user's direct roles, and record ended sessions (rule ID-4).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use orgplane_platform::audit::{self, AuditLogWriter, Entry};
use orgplane_platform::auth::ServiceTokenSource;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::events::EventHandler;
use orgplane_platform::replica::{RoleReplica, member_row, org_row};
use orgplane_platform::revocation::{self, SessionRevocations};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{Event, Producer};
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::{ApiKeyKind, ApiKeyStatus, ListApiKeysRequest};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use tonic::transport::Channel;

use crate::entity::{api_key, counter, member, request, workspace};
use crate::state::{KeyView, Memory, bump_version};

fn take(set: &Mutex<HashSet<String>>) -> Vec<String> {
    set.lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect()
}

fn note(set: &Mutex<HashSet<String>>, org: &str) {
    set.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(org.to_owned());
}

/// Removes the direct roles matching `filter` and audits each removal as a system action;
/// returns the organizations touched.
async fn remove_members<C: ConnectionTrait>(
    txn: &C,
    audit: &AuditLogWriter,
    filter: sea_orm::Condition,
    why: &str,
) -> ApiResult<HashSet<String>> {
    let rows = member::Entity::find()
        .filter(filter.clone())
        .all(txn)
        .await?;
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    member::Entity::delete_many()
        .filter(filter)
        .exec(txn)
        .await?;
    let mut orgs = HashSet::new();
    for r in rows {
        audit
            .record_system(
                txn,
                Entry::new(
                    &r.organization_id,
                    "workspace_member.remove",
                    "workspace_member",
                    &format!("{}/{}", r.workspace_id, r.user_id),
                )
                .with_change(
                    Some(serde_json::json!({"role": r.role, "reason": why})),
                    None,
                ),
            )
            .await?;
        orgs.insert(r.organization_id);
    }
    bump_version(txn).await?;
    Ok(orgs)
}

/// Removes everything of a purged organization (WS-9, ORG-7).
async fn purge_organization<C: ConnectionTrait>(txn: &C, organization_id: &str) -> ApiResult<()> {
    member::Entity::delete_many()
        .filter(member::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    workspace::Entity::delete_many()
        .filter(workspace::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    counter::Entity::delete_many()
        .filter(counter::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    request::Entity::delete_many()
        .filter(request::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    api_key::Entity::delete_many()
        .filter(api_key::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    audit::row::Entity::delete_many()
        .filter(audit::row::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    bump_version(txn).await?;
    Ok(())
}

/// The consumer of the organization service's events.
pub struct OrgEvents {
    replica: RoleReplica,
    memory: Memory,
    audit: AuditLogWriter,
    touched: Mutex<HashSet<String>>,
}

impl OrgEvents {
    /// A handler applying to `replica` and this service's tables.
    pub fn new(replica: RoleReplica, memory: Memory, audit: AuditLogWriter) -> Self {
        Self {
            replica,
            memory,
            audit,
            touched: Mutex::new(HashSet::new()),
        }
    }
}

impl EventHandler for OrgEvents {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            self.replica.apply(txn, event).await?;
            match &event.payload {
                Some(Payload::MemberRemoved(e)) => {
                    let filter = sea_orm::Condition::all()
                        .add(member::Column::OrganizationId.eq(&e.organization_id))
                        .add(member::Column::UserId.eq(&e.user_id));
                    for org in
                        remove_members(txn, &self.audit, filter, "organization_member_removed")
                            .await?
                    {
                        note(&self.touched, &org);
                    }
                }
                Some(Payload::OrganizationPurged(e)) => {
                    purge_organization(txn, &e.organization_id).await?;
                    note(&self.touched, &e.organization_id);
                }
                _ => {}
            }
            Ok(())
        })
    }

    fn resync<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move {
            let revision = self.replica.resync(txn).await?;
            // Organizations that are gone were purged while the events were compacted.
            let gone: Vec<String> = workspace::Entity::find()
                .filter(
                    workspace::Column::OrganizationId.not_in_subquery(
                        Query::select()
                            .column(org_row::Column::OrganizationId)
                            .from(org_row::Entity)
                            .to_owned(),
                    ),
                )
                .all(txn)
                .await?
                .into_iter()
                .map(|w| w.organization_id)
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            for org in gone {
                purge_organization(txn, &org).await?;
            }
            // Direct roles of people who are no longer members were removed meanwhile.
            let members: HashSet<(String, String)> = member_row::Entity::find()
                .all(txn)
                .await?
                .into_iter()
                .map(|m| (m.organization_id, m.user_id))
                .collect();
            let stale: Vec<member::Model> = member::Entity::find()
                .all(txn)
                .await?
                .into_iter()
                .filter(|m| !members.contains(&(m.organization_id.clone(), m.user_id.clone())))
                .collect();
            for m in stale {
                let filter = sea_orm::Condition::all()
                    .add(member::Column::WorkspaceId.eq(&m.workspace_id))
                    .add(member::Column::UserId.eq(&m.user_id));
                remove_members(txn, &self.audit, filter, "organization_member_removed").await?;
            }
            Ok(revision)
        })
    }

    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if resynced {
                take(&self.touched);
                self.replica.committed(events, true).await;
                let mut guard = self.memory.refresh_lock().await;
                if let Err(e) = self.memory.reload_all(&mut guard).await {
                    tracing::warn!(error = %e, "reloading the workspace memory failed");
                }
                return;
            }
            let orgs = take(&self.touched);
            if !orgs.is_empty() {
                let _guard = self.memory.refresh_lock().await;
                for org in &orgs {
                    if let Err(e) = self.memory.reload_organization(org).await {
                        tracing::warn!(error = %e, "refreshing the workspace memory failed");
                    }
                }
            }
            for event in events {
                if let Some(Payload::OrganizationPurged(e)) = &event.payload {
                    self.memory.forget_keys_of(&e.organization_id);
                }
            }
            self.replica.committed(events, false).await;
        })
    }
}

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
                take(&self.touched);
                let mut guard = self.memory.refresh_lock().await;
                if let Err(e) = self.memory.reload_all(&mut guard).await {
                    tracing::warn!(error = %e, "reloading the workspace memory failed");
                }
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
            let orgs = take(&self.touched);
            if !orgs.is_empty() {
                let _guard = self.memory.refresh_lock().await;
                for org in &orgs {
                    if let Err(e) = self.memory.reload_organization(org).await {
                        tracing::warn!(error = %e, "refreshing the workspace memory failed");
                    }
                }
            }
        })
    }
}
