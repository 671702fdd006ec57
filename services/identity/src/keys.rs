//! Token-signing keys: Ed25519 keys persisted in the identity database with their seed sealed by
//! the configured encryption key, rotated on a period, and kept in `GetJwks` after rotation until
//! every token they signed has expired (rule ID-5). The current signer lives in memory; a
//! background task rotates and reloads, so that every replica picks up a rotation.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use futures::future::BoxFuture;
use orgplane_platform::auth::{KeySource, PublicKey, Signer};
use orgplane_platform::clock::SharedClock;
use orgplane_platform::{ApiError, ApiResult};
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseConnection, QueryOrder, Set};

use crate::crypto::Sealer;
use crate::entity::signing_key;

struct KeyState {
    current: Arc<Signer>,
    published: Vec<PublicKey>,
}

/// The signing keys; cheap to clone.
#[derive(Clone)]
pub struct KeyStore {
    db: DatabaseConnection,
    sealer: Sealer,
    clock: SharedClock,
    rotation: Duration,
    retain: Duration,
    state: Arc<RwLock<KeyState>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl KeyStore {
    /// Loads the keys from `db`, creating the first one (or rotating an overdue one). Retired keys
    /// stay published for `retain` (the longest token lifetime plus leeway).
    pub async fn open(
        db: DatabaseConnection,
        sealer: Sealer,
        clock: SharedClock,
        rotation: Duration,
        retain: Duration,
    ) -> ApiResult<Self> {
        let (current, published) =
            Self::rotate_and_load(&db, &sealer, &clock, rotation, retain).await?;
        Ok(Self {
            db,
            sealer,
            clock,
            rotation,
            retain,
            state: Arc::new(RwLock::new(KeyState {
                current: Arc::new(current),
                published,
            })),
        })
    }

    /// The key new tokens are signed with.
    pub fn signer(&self) -> Arc<Signer> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .current
            .clone()
    }

    /// The published keys, current first.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .published
            .clone()
    }

    /// Rotates when the current key is due and reloads the keys (also picking up another
    /// replica's rotation).
    pub async fn refresh(&self) -> ApiResult<()> {
        let (current, published) = Self::rotate_and_load(
            &self.db,
            &self.sealer,
            &self.clock,
            self.rotation,
            self.retain,
        )
        .await?;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.current.kid() != current.kid() {
            tracing::info!(kid = %current.kid(), "signing key rotated");
        }
        *state = KeyState {
            current: Arc::new(current),
            published,
        };
        Ok(())
    }

    /// Refreshes every `every` until `shutdown`.
    pub fn spawn_rotation(
        &self,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {},
                }
                if let Err(e) = store.refresh().await {
                    tracing::warn!(error = %e, "refreshing the signing keys failed");
                }
            }
        });
    }

    async fn rotate_and_load(
        db: &DatabaseConnection,
        sealer: &Sealer,
        clock: &SharedClock,
        rotation: Duration,
        retain: Duration,
    ) -> ApiResult<(Signer, Vec<PublicKey>)> {
        let now = clock.now();
        let current = signing_key::Entity::find()
            .filter(signing_key::Column::RetireTimeMs.is_null())
            .order_by_desc(signing_key::Column::CreateTimeMs)
            .one(db)
            .await?;
        let due = match &current {
            None => true,
            Some(k) => k.create_time_ms + rotation.num_milliseconds() <= ms(now),
        };
        if due {
            let txn = orgplane_platform::db::begin_write(db).await?;
            let mut won = true;
            if let Some(old) = &current {
                let retired = signing_key::Entity::update_many()
                    .col_expr(signing_key::Column::RetireTimeMs, Expr::value(ms(now)))
                    .col_expr(
                        signing_key::Column::ExpireTimeMs,
                        Expr::value(ms(now + retain)),
                    )
                    .filter(signing_key::Column::Kid.eq(&old.kid))
                    .filter(signing_key::Column::RetireTimeMs.is_null())
                    .exec(&txn)
                    .await?;
                won = retired.rows_affected == 1;
            }
            if won {
                let kid = format!("k{}", uuid::Uuid::now_v7().simple());
                let signer = Signer::generate(kid.clone())?;
                let sealed = sealer.seal(&signer.seed(), &kid)?;
                signing_key::ActiveModel {
                    kid: Set(kid),
                    sealed_seed: Set(sealed),
                    public_x: Set(signer.public_key().x),
                    create_time_ms: Set(ms(now)),
                    retire_time_ms: Set(None),
                    expire_time_ms: Set(None),
                }
                .insert(&txn)
                .await?;
                signing_key::Entity::delete_many()
                    .filter(signing_key::Column::ExpireTimeMs.lt(ms(now)))
                    .exec(&txn)
                    .await?;
                txn.commit().await?;
            } else {
                txn.rollback().await?;
            }
        }
        let rows = signing_key::Entity::find()
            .order_by_desc(signing_key::Column::CreateTimeMs)
            .all(db)
            .await?;
        let mut current = None;
        let mut published = Vec::new();
        for row in rows {
            let live = row.retire_time_ms.is_none();
            if !live && row.expire_time_ms.is_some_and(|t| t <= ms(now)) {
                continue;
            }
            if live && current.is_none() {
                let seed = sealer
                    .open(&row.sealed_seed, &row.kid)
                    .map_err(|e| ApiError::internal(format!("signing key {}: {e}", row.kid)))?;
                let seed: [u8; 32] = seed
                    .try_into()
                    .map_err(|_| ApiError::internal("signing key seed has the wrong length"))?;
                let signer = Signer::from_seed(row.kid.clone(), &seed)?;
                if URL_SAFE_NO_PAD.encode(
                    URL_SAFE_NO_PAD
                        .decode(&row.public_x)
                        .map_err(ApiError::internal)?,
                ) != signer.public_key().x
                {
                    return Err(ApiError::internal(
                        "signing key does not match its public key",
                    ));
                }
                current = Some(signer);
            }
            published.push(PublicKey {
                kid: row.kid,
                x: row.public_x,
            });
        }
        let current = current.ok_or_else(|| ApiError::internal("no current signing key"))?;
        // Current key first.
        published.sort_by_key(|k| k.kid != current.kid());
        Ok((current, published))
    }
}

impl KeySource for KeyStore {
    fn fetch(&self) -> BoxFuture<'_, ApiResult<Vec<PublicKey>>> {
        let keys = self.public_keys();
        Box::pin(async move { Ok(keys) })
    }
}
