//! A consumer's cursor: the last revision of each producer applied here, stored in the
//! consumer's own database in the transaction that applied the events (so the effect is
//! exactly-once), and locked while a batch is applied (so replicas sharing the database apply
//! each event once).

use orgplane_proto::events::v1::Producer;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseTransaction, QuerySelect};

use super::consumer::producer_name;

/// A stored cursor that asks the consumer to re-sync from the producer's snapshot before it
/// watches again. Restoring databases copied at different instants writes it for a consumer whose
/// cursor is ahead of its producer's restored outbox (see [`super::restore`]): watching from that
/// cursor would skip the events the producer issues again under the revisions it lost.
pub const RESYNC_REQUESTED: i64 = -1;

/// Rows of `consumer_cursors`.
pub mod cursor_row {
    use sea_orm::entity::prelude::*;

    /// The last revision of one producer applied here.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "consumer_cursors")]
    pub struct Model {
        /// The producer's name (`identity`, `organization`, `workspace`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub producer: String,
        /// The last applied revision, or [`super::RESYNC_REQUESTED`].
        pub revision: i64,
        /// When the cursor last moved (Unix milliseconds).
        pub update_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The stored cursor of `producer` (0 before the first event, [`RESYNC_REQUESTED`] when a re-sync
/// was asked for).
pub async fn load_cursor<C: ConnectionTrait>(db: &C, producer: Producer) -> Result<i64, DbErr> {
    Ok(cursor_row::Entity::find_by_id(producer_name(producer))
        .one(db)
        .await?
        .map(|c| c.revision)
        .unwrap_or(0))
}

/// Reads the cursor of `producer` inside `txn` and holds its row until `txn` ends, so that
/// replicas sharing the database apply each event once: on PostgreSQL the second one waits for
/// the first to commit and then sees the cursor it stored (on SQLite, `begin_write` already
/// serializes writers). The row is created first if this consumer never stored one.
pub async fn lock_cursor(txn: &DatabaseTransaction, producer: Producer) -> Result<i64, DbErr> {
    let name = producer_name(producer);
    cursor_row::Entity::insert(cursor_row::ActiveModel {
        producer: sea_orm::Set(name.to_owned()),
        revision: sea_orm::Set(0),
        update_time_ms: sea_orm::Set(chrono::Utc::now().timestamp_millis()),
    })
    .on_conflict(
        OnConflict::column(cursor_row::Column::Producer)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(cursor_row::Entity::find_by_id(name)
        .lock_exclusive()
        .one(txn)
        .await?
        .map(|c| c.revision)
        .unwrap_or(0))
}

/// Stores the cursor of `producer` (inside the transaction that applied the events).
pub async fn store_cursor<C: ConnectionTrait>(
    db: &C,
    producer: Producer,
    revision: i64,
) -> Result<(), DbErr> {
    let row = cursor_row::ActiveModel {
        producer: sea_orm::Set(producer_name(producer).to_owned()),
        revision: sea_orm::Set(revision),
        update_time_ms: sea_orm::Set(chrono::Utc::now().timestamp_millis()),
    };
    cursor_row::Entity::insert(row)
        .on_conflict(
            OnConflict::column(cursor_row::Column::Producer)
                .update_columns([
                    cursor_row::Column::Revision,
                    cursor_row::Column::UpdateTimeMs,
                ])
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}
