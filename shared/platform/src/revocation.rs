//! Ended sessions: the access tokens of a session that ended (Logout, reuse of a rotated refresh
//! token, password resets, account deletion) are refused by every service, although tokens are
//! otherwise verified statelessly.
//!
//! Identity writes each revocation into the `session_revocations` table of its own database and
//! publishes `SessionsRevoked` in the same transaction ([`record`]). Every other service applies
//! that event from identity's stream with the shared consumer, writing the same rows into its own
//! database in the transaction that advances its cursor ([`apply`]). At start-up each service
//! loads its rows into the process's [`SessionRevocations`], which the [`crate::auth::Authenticator`]
//! consults after a token's signature (or its cached verification) checked out. A revocation is
//! kept until every access token issued before it has expired, then pruned.
//!
//! Revocations name sessions one by one (a password reset lists every session it ended), so a
//! session started after the revocation is never affected, whatever the clocks' resolution.
//!
//! When identity is unreachable, tokens keep verifying by signature against the revocations
//! already known; the consumer catches up when identity is back.
//!
//! Deactivated API keys travel the same way: identity's `ApiKeyStatusChanged` reaches every
//! consumer of its stream, [`SessionRevocations::committed`] notes the deactivation, and
//! [`crate::auth::CachedApiKeys`] stops using a resolution of that key cached before it (so an
//! INACTIVE key is refused within milliseconds, not when its cache entry expires). Only memory
//! holds these: a cached resolution lives seconds, and a process starts with an empty cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{Event, SessionsRevoked};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::error::ApiResult;
use crate::error::Reason;
use crate::tokens::{ACCESS_TOKEN_TTL_SECS, LEEWAY_SECS};

/// The ErrorInfo reason for an access token whose session ended.
pub const SESSION_REVOKED: Reason = Reason::SessionRevoked;

/// How long after its revocation a session is still remembered: longer than any access token
/// issued up to that moment can live (its lifetime, clock skew both ways, and a margin for a
/// token minted while the revocation committed).
pub const RETAIN_SECS: i64 = ACCESS_TOKEN_TTL_SECS + 2 * LEEWAY_SECS as i64 + 60;

/// Rows of `session_revocations`.
pub mod row {
    use sea_orm::entity::prelude::*;

    /// One ended session.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "session_revocations")]
    pub struct Model {
        /// The session's id (the `sid` of its access tokens).
        #[sea_orm(primary_key, auto_increment = false)]
        pub session_id: String,
        /// Its user.
        pub user_id: String,
        /// When it ended (Unix seconds, wall clock).
        pub revoke_time: i64,
        /// When the row may go: no access token of the session is valid after it (Unix seconds).
        pub expire_time: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use migration::CreateSessionRevocations;

mod migration {
    use sea_orm_migration::prelude::*;

    /// The migration creating `session_revocations`; every service includes it in its migrator.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct CreateSessionRevocations;

    impl MigrationName for CreateSessionRevocations {
        fn name(&self) -> &str {
            "m20261124_000001_create_session_revocations"
        }
    }

    #[derive(DeriveIden)]
    enum SessionRevocationsTable {
        #[sea_orm(iden = "session_revocations")]
        Table,
        SessionId,
        UserId,
        RevokeTime,
        ExpireTime,
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateSessionRevocations {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            use SessionRevocationsTable as T;
            manager
                .create_table(
                    Table::create()
                        .table(T::Table)
                        .if_not_exists()
                        .col(
                            ColumnDef::new(T::SessionId)
                                .string()
                                .not_null()
                                .primary_key(),
                        )
                        .col(ColumnDef::new(T::UserId).string().not_null())
                        .col(ColumnDef::new(T::RevokeTime).big_integer().not_null())
                        .col(ColumnDef::new(T::ExpireTime).big_integer().not_null())
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("idx_session_revocations_expire_time")
                        .table(T::Table)
                        .col(T::ExpireTime)
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(
                    Table::drop()
                        .table(SessionRevocationsTable::Table)
                        .to_owned(),
                )
                .await
        }
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn revoke_secs(event: &SessionsRevoked) -> i64 {
    event
        .revoke_time
        .as_ref()
        .map(|t| t.seconds)
        .unwrap_or_else(now_secs)
}

/// A `SessionsRevoked` for `session_ids` of `user_id`, ending now (wall clock, like the `iat` of
/// access tokens).
pub fn sessions_revoked(user_id: &str, session_ids: Vec<String>) -> SessionsRevoked {
    SessionsRevoked {
        user_id: user_id.to_owned(),
        session_ids,
        revoke_time: Some(crate::convert::timestamp(chrono::Utc::now())),
    }
}

/// Writes `event`'s sessions into `session_revocations` (inside the caller's transaction: identity's
/// session change, or a consumer's cursor advance) and drops rows that expired.
pub async fn record<C: ConnectionTrait>(db: &C, event: &SessionsRevoked) -> Result<(), DbErr> {
    let now = now_secs();
    row::Entity::delete_many()
        .filter(row::Column::ExpireTime.lt(now))
        .exec(db)
        .await?;
    let revoke_time = revoke_secs(event);
    let expire_time = revoke_time + RETAIN_SECS;
    if expire_time < now || event.session_ids.is_empty() {
        return Ok(());
    }
    // Bounded statements: a user may end thousands of sessions at once.
    for chunk in event.session_ids.chunks(500) {
        let rows = chunk.iter().map(|id| row::ActiveModel {
            session_id: sea_orm::Set(id.clone()),
            user_id: sea_orm::Set(event.user_id.clone()),
            revoke_time: sea_orm::Set(revoke_time),
            expire_time: sea_orm::Set(expire_time),
        });
        row::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(row::Column::SessionId)
                    .update_columns([row::Column::RevokeTime, row::Column::ExpireTime])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// [`record`] for an event of identity's stream; other events are ignored. What a consumer's
/// [`EventHandler::apply`] calls.
pub async fn apply<C: ConnectionTrait>(db: &C, event: &Event) -> ApiResult<()> {
    if let Some(Payload::SessionsRevoked(e)) = &event.payload {
        record(db, e).await?;
    }
    Ok(())
}

/// How long a key deactivation is remembered: longer than a cached API-key resolution lives
/// (10 s in `orgplane`) plus the deadline of the call that resolved it.
pub const KEY_DEACTIVATION_RETAIN: Duration = Duration::from_secs(120);

/// The ended sessions (and lately deactivated API keys) this process knows, in memory: consulted
/// on every authenticated call.
#[derive(Debug, Default)]
pub struct SessionRevocations {
    /// Session id → expiry (Unix seconds).
    sessions: RwLock<HashMap<String, i64>>,
    /// Size after the last prune: the next prune happens when the map has doubled.
    pruned_len: AtomicUsize,
    /// API keys deactivated lately: key id → when this process learned it. A reactivation
    /// removes the key.
    deactivated_keys: RwLock<HashMap<String, Instant>>,
    /// When this process last missed key events (a re-sync, or another replica applied them):
    /// every key resolution cached before then is distrusted.
    keys_unknown_since: RwLock<Option<Instant>>,
}

impl SessionRevocations {
    /// An empty set.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// True when `session_id` ended and its tokens may still be unexpired.
    pub fn is_revoked(&self, session_id: &str) -> bool {
        let sessions = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        if sessions.is_empty() {
            return false;
        }
        sessions
            .get(session_id)
            .is_some_and(|expire| *expire >= now_secs())
    }

    /// How many revocations are held (tests, metrics).
    pub fn len(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// True when none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Notes that API key `key_id` was set INACTIVE (`active == false`) or ACTIVE again, after
    /// the transaction that changed it committed.
    pub fn key_status_changed(&self, key_id: &str, active: bool) {
        let mut keys = self
            .deactivated_keys
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if active {
            keys.remove(key_id);
            return;
        }
        if keys.len() >= 1024 {
            keys.retain(|_, at| at.elapsed() < KEY_DEACTIVATION_RETAIN);
        }
        keys.insert(key_id.to_owned(), Instant::now());
    }

    /// True when API key `key_id` may have been deactivated at or after `since` (a resolution of
    /// the key obtained before then must not be used again).
    pub fn key_deactivated_since(&self, key_id: &str, since: Instant) -> bool {
        let unknown = *self
            .keys_unknown_since
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if unknown.is_some_and(|at| at >= since) {
            return true;
        }
        let keys = self
            .deactivated_keys
            .read()
            .unwrap_or_else(|e| e.into_inner());
        keys.get(key_id).is_some_and(|at| *at >= since)
    }

    /// Adds `event`'s sessions (after the transaction that recorded them committed).
    pub fn remember(&self, event: &SessionsRevoked) {
        let expire = revoke_secs(event) + RETAIN_SECS;
        self.insert(event.session_ids.iter().map(|id| (id.clone(), expire)));
    }

    fn insert(&self, entries: impl IntoIterator<Item = (String, i64)>) {
        let now = now_secs();
        let mut sessions = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        for (id, expire) in entries {
            if expire < now {
                continue;
            }
            let kept = sessions.entry(id).or_insert(expire);
            *kept = (*kept).max(expire);
        }
        // Amortized pruning: a pass over the map only after it doubled since the last one.
        if sessions.len() > 2 * self.pruned_len.load(Ordering::Relaxed).max(512) {
            sessions.retain(|_, expire| *expire >= now);
            self.pruned_len.store(sessions.len(), Ordering::Relaxed);
        }
    }

    /// Adds every unexpired revocation stored in `db` (start-up, and after a re-sync). Merges
    /// rather than replaces: in `orgplane all` several services feed the same set.
    pub async fn load<C: ConnectionTrait>(&self, db: &C) -> Result<usize, DbErr> {
        let rows = row::Entity::find()
            .filter(row::Column::ExpireTime.gte(now_secs()))
            .all(db)
            .await?;
        let n = rows.len();
        self.insert(rows.into_iter().map(|r| (r.session_id, r.expire_time)));
        Ok(n)
    }

    /// What a consumer's [`EventHandler::committed`] calls: remembers the `SessionsRevoked` and
    /// key deactivations among `events`, or reloads from `db` when the consumer re-synced (or
    /// another replica applied the events) — and then distrusts every cached key resolution,
    /// since key events may have been missed.
    pub async fn committed(&self, db: &DatabaseConnection, events: &[Event], resynced: bool) {
        if resynced {
            *self
                .keys_unknown_since
                .write()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            if let Err(e) = self.load(db).await {
                tracing::warn!(error = %e, "reloading the session revocations failed");
            }
            return;
        }
        for event in events {
            match &event.payload {
                Some(Payload::SessionsRevoked(e)) => self.remember(e),
                Some(Payload::ApiKeyStatusChanged(e)) => {
                    self.key_status_changed(&e.api_key_id, e.active);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::auth::{Authenticator, StaticKeys, TokenVerifier};
    use crate::testkit::{TEST_ISSUER, TestAuth, TestDb};
    use sea_orm_migration::{MigrationTrait, MigratorTrait};

    struct Migrator;
    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(CreateSessionRevocations)]
        }
    }

    fn revoked_at(seconds: i64, ids: &[&str]) -> SessionsRevoked {
        SessionsRevoked {
            user_id: "user_1".into(),
            session_ids: ids.iter().map(|s| String::from(*s)).collect(),
            revoke_time: Some(prost_types::Timestamp { seconds, nanos: 0 }),
        }
    }

    fn bearer_headers(token: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn revocations_survive_in_the_database_until_every_token_they_match_expired() {
        let db = TestDb::sqlite();
        let conn = db.open::<Migrator>().await;
        let now = now_secs();
        record(&conn, &revoked_at(now, &["sess_new", "sess_other"]))
            .await
            .unwrap();
        record(&conn, &revoked_at(now - RETAIN_SECS - 1, &["sess_old"]))
            .await
            .unwrap();
        // Applying the same event twice (at-least-once delivery) is harmless.
        record(&conn, &revoked_at(now, &["sess_new"]))
            .await
            .unwrap();
        let set = SessionRevocations::new();
        assert_eq!(set.load(&conn).await.unwrap(), 2);
        assert!(set.is_revoked("sess_new") && set.is_revoked("sess_other"));
        assert!(!set.is_revoked("sess_old"), "older than any live token");
        assert!(!set.is_revoked("sess_unknown"));
        // An expired row is dropped by the next write.
        conn.execute_unprepared(
            "UPDATE session_revocations SET expire_time = 0 WHERE session_id = 'sess_other'",
        )
        .await
        .unwrap();
        record(&conn, &revoked_at(now, &["sess_third"]))
            .await
            .unwrap();
        let ids: Vec<String> = row::Entity::find()
            .all(&conn)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.session_id)
            .collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(!ids.contains(&"sess_other".to_string()));
    }

    #[tokio::test]
    async fn the_authenticator_refuses_a_cached_token_of_a_revoked_session_only() {
        let auth = TestAuth::new();
        let verifier = TokenVerifier::new(
            TEST_ISSUER,
            Arc::new(StaticKeys(vec![auth.signer.public_key()])),
        );
        let set = SessionRevocations::new();
        let authenticator =
            Authenticator::new(Arc::new(verifier), None).with_revocations(set.clone());
        let user = bearer_headers(&auth.user_token("user_1"));
        let service = bearer_headers(&auth.service_token("workspace"));
        // Verified and cached before the revocation arrives.
        authenticator.authenticate(&user).await.unwrap();
        set.remember(&revoked_at(now_secs(), &["sess_unrelated"]));
        authenticator.authenticate(&user).await.unwrap();
        // `TestAuth` tokens belong to session `ses_test`.
        set.remember(&revoked_at(now_secs(), &["ses_test"]));
        let err = authenticator.authenticate(&user).await.unwrap_err();
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(
            crate::error::reason_of(&status).as_deref(),
            Some(SESSION_REVOKED.as_str_name())
        );
        authenticator.authenticate(&service).await.unwrap();
        // A revocation older than every token it could match is not even kept.
        set.remember(&revoked_at(now_secs() - RETAIN_SECS - 1, &["sess_gone"]));
        assert!(!set.is_revoked("sess_gone"));
    }

    #[test]
    fn memory_forgets_expired_revocations_once_it_doubled() {
        let set = SessionRevocations::default();
        let now = now_secs();
        set.insert((0..600).map(|i| (format!("sess_old_{i}"), now)));
        assert_eq!(set.len(), 600);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        set.insert((0..500).map(|i| (format!("sess_new_{i}"), now + 100)));
        // 1100 > 2 × 512: one pass dropped the 600 that expired.
        assert_eq!(set.len(), 500);
        assert!(!set.is_revoked("sess_old_1") && set.is_revoked("sess_new_1"));
    }
}
