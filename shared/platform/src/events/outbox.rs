//! The producer side: appending events inside the caller's transaction, reading them back in
//! revision order, and compacting old ones.

use chrono::{DateTime, Utc};
use orgplane_proto::events::v1::{Event, Producer, event};
use prost::Message;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryOrder, QuerySelect, QueryTrait};
use tokio::sync::watch;

/// Rows of `outbox_events`.
pub mod event_row {
    use sea_orm::entity::prelude::*;

    /// One stored event.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_events")]
    pub struct Model {
        /// The event's revision.
        #[sea_orm(primary_key, auto_increment = false)]
        pub revision: i64,
        /// The event's id.
        pub event_id: String,
        /// The encoded `orgplane.events.v1.Event`.
        pub payload: Vec<u8>,
        /// When it was written (Unix milliseconds), for compaction.
        pub create_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The one row of `outbox_head`.
pub mod head_row {
    use sea_orm::entity::prelude::*;

    /// The revision counter.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_head")]
    pub struct Model {
        /// Always 1.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        /// The latest revision handed out (committed once visible).
        pub revision: i64,
        /// Every event at or below this revision has been compacted away.
        pub compacted_through: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The head of an outbox: where it ends and where compaction has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The latest committed revision.
    pub revision: i64,
    /// Events at or below this revision are gone.
    pub compacted_through: i64,
}

/// One producer's outbox in its database.
#[derive(Clone, Debug)]
pub struct Outbox {
    db: DatabaseConnection,
    producer: Producer,
    committed: watch::Sender<i64>,
    /// The group commit of grouped write units.
    groups: super::group::Groups,
}

impl Outbox {
    /// The outbox of `producer` in `db` (its migrations must have run), its grouped write units
    /// sharing commits (see [`super::group`]).
    pub fn new(db: DatabaseConnection, producer: Producer) -> Self {
        let (committed, _) = watch::channel(0);
        Self {
            producer,
            committed,
            groups: super::group::Groups::new(true),
            db,
        }
    }

    /// This outbox with group commit on or off (on by default, see [`super::group`]).
    pub fn with_group_commit(mut self, on: bool) -> Self {
        self.groups = super::group::Groups::new(on);
        self
    }

    /// The group commit of this outbox's grouped write units.
    pub(crate) fn groups(&self) -> &super::group::Groups {
        &self.groups
    }

    /// Counts of group commits (grouped write units and the commits they shared).
    pub fn group_stats(&self) -> std::sync::Arc<super::group::GroupStats> {
        self.groups.stats()
    }

    /// The producer's database connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The producer this outbox belongs to.
    pub fn producer(&self) -> Producer {
        self.producer
    }

    /// Appends `payload` inside `txn` and returns its revision. Call it as the last write of the
    /// transaction (it holds the counter's row lock until commit), and call
    /// [`Outbox::committed`] after the commit so that watchers wake at once. Mutations append
    /// through [`super::WriteUnit::append`], which defers the event's row to the commit.
    pub async fn append<C: ConnectionTrait>(
        &self,
        txn: &C,
        payload: event::Payload,
        request_id: &str,
    ) -> Result<i64, DbErr> {
        let revision = self.advance(txn).await?;
        txn.execute_raw(self.event_insert(
            txn.get_database_backend(),
            revision,
            payload,
            request_id,
        ))
        .await?;
        Ok(revision)
    }

    /// Takes the next revision from the counter row in `txn` (taking its row lock on
    /// PostgreSQL until the transaction ends).
    pub(crate) async fn advance<C: ConnectionTrait>(&self, txn: &C) -> Result<i64, DbErr> {
        let updated = head_row::Entity::update_many()
            .col_expr(
                head_row::Column::Revision,
                Expr::col(head_row::Column::Revision).add(1),
            )
            .filter(head_row::Column::Id.eq(1))
            .exec_with_returning(txn)
            .await?;
        updated
            .first()
            .map(|h| h.revision)
            .ok_or_else(|| DbErr::Custom("outbox_head row missing: migrations not run".into()))
    }

    /// The statement that sets the counter to `revision`, for a transaction that handed out
    /// revisions past the one its last [`Self::advance`] stored.
    pub(crate) fn head_update(backend: sea_orm::DbBackend, revision: i64) -> sea_orm::Statement {
        head_row::Entity::update_many()
            .col_expr(head_row::Column::Revision, Expr::value(revision))
            .filter(head_row::Column::Id.eq(1))
            .build(backend)
    }

    /// The INSERT of the event `payload` at `revision`, in a publish span whose context the
    /// event carries.
    pub(crate) fn event_insert(
        &self,
        backend: sea_orm::DbBackend,
        revision: i64,
        payload: event::Payload,
        request_id: &str,
    ) -> sea_orm::Statement {
        let now = Utc::now();
        // The publish span (OpenTelemetry messaging, kind producer) whose context the event
        // carries: every consumer's `process` span is its child, in the mutation's trace.
        let producer = super::consumer::producer_name(self.producer);
        let publish = tracing::info_span!(
            "publish",
            otel.name = %format_args!("{producer} publish"),
            otel.kind = "producer",
            messaging.system = "orgplane",
            messaging.operation.type = "publish",
            messaging.destination.name = producer,
            event.revision = revision,
        );
        let (traceparent, tracestate) = publish.in_scope(crate::telemetry::current_trace_headers);
        let event_id = uuid::Uuid::now_v7().to_string();
        let event = Event {
            revision,
            producer: self.producer as i32,
            event_id: event_id.clone(),
            create_time: Some(crate::convert::timestamp(now)),
            traceparent,
            tracestate,
            request_id: request_id.to_owned(),
            payload: Some(payload),
        };
        event_row::Entity::insert(event_row::ActiveModel {
            revision: sea_orm::Set(revision),
            event_id: sea_orm::Set(event_id),
            payload: sea_orm::Set(event.encode_to_vec()),
            create_time_ms: sea_orm::Set(now.timestamp_millis()),
        })
        .build(backend)
    }

    /// Wakes the watchers after a transaction that appended up to `revision` committed.
    pub fn committed(&self, revision: i64) {
        let advanced = self.committed.send_if_modified(|current| {
            if revision > *current {
                *current = revision;
                true
            } else {
                false
            }
        });
        if advanced {
            crate::metrics::record_outbox_head(
                super::consumer::producer_name(self.producer),
                revision,
            );
        }
    }

    /// A receiver that changes whenever [`Outbox::committed`] reports a new revision.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.committed.subscribe()
    }

    /// The current head.
    pub async fn head(&self) -> Result<Head, DbErr> {
        let head = read_head(&self.db).await?;
        crate::metrics::record_outbox_head(
            super::consumer::producer_name(self.producer),
            head.revision,
        );
        Ok(head)
    }

    /// Up to `limit` events after `after`, in revision order.
    pub async fn read(&self, after: i64, limit: u64) -> Result<Vec<Event>, DbErr> {
        let rows = event_row::Entity::find()
            .filter(event_row::Column::Revision.gt(after))
            .order_by_asc(event_row::Column::Revision)
            .limit(limit)
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| {
                Event::decode(row.payload.as_slice()).map_err(|e| {
                    DbErr::Custom(format!("outbox event {} is corrupt: {e}", row.revision))
                })
            })
            .collect()
    }

    /// Removes events written before `cutoff` and returns the new compaction point. The newest
    /// event is always kept, so a consumer that is up to date never has to re-sync.
    pub async fn compact(&self, cutoff: DateTime<Utc>) -> Result<i64, DbErr> {
        let txn = crate::db::begin_write(&self.db).await?;
        let newest = event_row::Entity::find()
            .order_by_desc(event_row::Column::Revision)
            .one(&txn)
            .await?
            .map(|r| r.revision)
            .unwrap_or(0);
        let through = event_row::Entity::find()
            .filter(event_row::Column::CreateTimeMs.lt(cutoff.timestamp_millis()))
            .filter(event_row::Column::Revision.lt(newest))
            .order_by_desc(event_row::Column::Revision)
            .one(&txn)
            .await?
            .map(|r| r.revision);
        let Some(through) = through else {
            txn.commit().await?;
            return Ok(self.head().await?.compacted_through);
        };
        event_row::Entity::delete_many()
            .filter(event_row::Column::Revision.lte(through))
            .exec(&txn)
            .await?;
        head_row::Entity::update_many()
            .col_expr(head_row::Column::CompactedThrough, Expr::value(through))
            .filter(head_row::Column::Id.eq(1))
            .filter(head_row::Column::CompactedThrough.lt(through))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        tracing::info!(producer = ?self.producer, through, "outbox compacted");
        Ok(through)
    }
}

/// The head of the outbox in `db` (a producer's database, or a copy of one).
pub async fn read_head<C: ConnectionTrait>(db: &C) -> Result<Head, DbErr> {
    let head = head_row::Entity::find_by_id(1)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::Custom("outbox_head row missing: migrations not run".into()))?;
    Ok(Head {
        revision: head.revision,
        compacted_through: head.compacted_through,
    })
}

/// How long events are kept before compaction by default.
pub const DEFAULT_RETENTION: chrono::Duration = chrono::Duration::days(7);

impl Outbox {
    /// Compacts events older than `retention` every `every` until `shutdown`.
    pub fn spawn_compaction(
        &self,
        retention: chrono::Duration,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let outbox = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {},
                }
                if let Err(e) = outbox.compact(Utc::now() - retention).await {
                    tracing::warn!(producer = ?outbox.producer, error = %e, "outbox compaction failed");
                }
            }
        })
    }
}
