//! The consumer of the identity service's events: the API-key replica CheckAccess reads, a
//! deleted user's direct roles (ID-9), and ended sessions (ID-4).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::error::ApiResult;
use orgplane_platform::events::EventHandler;
use orgplane_platform::replica::org_row;
use orgplane_platform::revocation::{self, SessionRevocations};
use orgplane_proto::events::v1::Event;
use orgplane_proto::events::v1::event::Payload;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};

use super::{note, refresh_touched, reload_all, remove_members};
use crate::store::entity::{api_key, member};
use crate::store::memory::{KeyView, Memory};

/// Where a re-sync of identity's events starts: every API key of some organizations, and the
/// revision through which identity compacted its events (those after it are replayed over the
/// snapshot). Served by identity's `ListApiKeys`; the gRPC client is in
/// [`crate::api::identity`].
pub trait KeySnapshot: Send + Sync {
    /// The snapshot of `organizations`' keys.
    fn api_keys<'a>(&'a self, organizations: &'a [String]) -> BoxFuture<'a, ApiResult<Keys>>;
}

/// A snapshot of API keys.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// The revision through which identity compacted its events.
    pub through: i64,
    /// `(api key id, key)`.
    pub keys: Vec<(String, KeyView)>,
}

/// The consumer of the identity service's events.
pub struct IdentityEvents {
    db: DatabaseConnection,
    revocations: Arc<SessionRevocations>,
    memory: Memory,
    audit: AuditLogWriter,
    snapshot: Arc<dyn KeySnapshot>,
    touched: Mutex<HashSet<String>>,
}

impl IdentityEvents {
    /// A handler keeping the API-key replica and the session revocations (in `db` and
    /// `revocations`); re-syncs start from `snapshot`.
    pub fn new(
        db: DatabaseConnection,
        revocations: Arc<SessionRevocations>,
        memory: Memory,
        audit: AuditLogWriter,
        snapshot: Arc<dyn KeySnapshot>,
    ) -> Self {
        Self {
            db,
            revocations,
            memory,
            audit,
            snapshot,
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
            let orgs: Vec<String> = org_row::Entity::find()
                .all(txn)
                .await?
                .into_iter()
                .map(|o| o.organization_id)
                .collect();
            // Every event after `through` is replayed after this snapshot; they are assignments,
            // so replaying them over a newer snapshot ends in the same state.
            let Keys { through, keys } = self.snapshot.api_keys(&orgs).await?;
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

#[cfg(test)]
mod tests {
    use orgplane_platform::replica::org_row;
    use orgplane_platform::testkit::TestDb;
    use sea_orm::{EntityTrait, TransactionTrait};

    use super::*;
    use crate::store::migration::Migrator;

    /// Serves a fixed snapshot and records which organizations it was asked for.
    struct FakeKeys(Mutex<Vec<String>>);

    impl KeySnapshot for FakeKeys {
        fn api_keys<'a>(&'a self, organizations: &'a [String]) -> BoxFuture<'a, ApiResult<Keys>> {
            Box::pin(async move {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(organizations.iter().cloned());
                let key = KeyView {
                    organization_id: "o1".into(),
                    workspace_id: String::new(),
                    admin: true,
                    active: true,
                };
                Ok(Keys {
                    through: 7,
                    keys: vec![("key_new".into(), key)],
                })
            })
        }
    }

    /// After compaction of identity's events, a re-sync replaces the API-key replica with the
    /// snapshot of the replicated organizations' keys and answers its revision; memory follows
    /// once committed (ID-7: CheckAccess answers for keys without calling identity).
    #[tokio::test]
    async fn id_7_a_resync_replaces_the_api_key_replica_with_identitys_snapshot() {
        let test_db = TestDb::sqlite();
        let db = test_db.open::<Migrator>().await;
        org_row::Entity::insert(org_row::ActiveModel {
            organization_id: sea_orm::Set("o1".into()),
            name: sea_orm::Set("O1".into()),
            primary_email: sea_orm::Set(String::new()),
            owner_user_id: sea_orm::Set("u1".into()),
            state: sea_orm::Set(1),
        })
        .exec(&db)
        .await
        .unwrap();
        let old = KeyView {
            organization_id: "o1".into(),
            workspace_id: String::new(),
            admin: false,
            active: true,
        };
        upsert_key(&db, "key_old", &old).await.unwrap();
        let memory = Memory::load(db.clone()).await.unwrap();
        let fake = Arc::new(FakeKeys(Mutex::new(Vec::new())));
        let handler = IdentityEvents::new(
            db.clone(),
            SessionRevocations::new(),
            memory.clone(),
            AuditLogWriter::new(crate::app::SERVICE),
            fake.clone(),
        );
        let txn = db.begin().await.unwrap();
        assert_eq!(handler.resync(&txn).await.unwrap(), 7);
        txn.commit().await.unwrap();
        handler.committed(&[], true).await;
        let stored: Vec<String> = api_key::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.api_key_id)
            .collect();
        assert_eq!(stored, ["key_new"]);
        assert_eq!(*fake.0.lock().unwrap(), ["o1"]);
        assert!(memory.read(|v| v.keys.contains_key("key_new") && !v.keys.contains_key("key_old")));
    }
}
