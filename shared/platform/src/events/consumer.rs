//! The consumer side: watches a producer from the cursor stored in this service's database,
//! applies each batch of events and advances the cursor **in one transaction**, reconnects with
//! jittered backoff, and re-syncs from a snapshot when its cursor was compacted away or the stored
//! cursor is [`RESYNC_REQUESTED`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::clients::ServiceChannel;
use futures::future::BoxFuture;
use orgplane_proto::events::v1::event_service_client::EventServiceClient;
use orgplane_proto::events::v1::{Event, Producer, WatchRequest};
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{CURSOR_AHEAD, REVISION_COMPACTED};
use crate::clients::ServiceTokenSource;
use crate::error::Reason;
use crate::error::{ApiError, ApiResult};

pub use super::cursor::{RESYNC_REQUESTED, cursor_row, load_cursor, lock_cursor, store_cursor};

/// What a consuming service does with another service's events.
pub trait EventHandler: Send + Sync + 'static {
    /// Applies `event` inside `txn`, the transaction that also advances the cursor. An error
    /// rolls the whole batch back; it is retried after a backoff.
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>>;

    /// Applies the fresh events of a batch, in revision order, inside `txn`: by default each with
    /// [`Self::apply`] in its `process` span (`spans.of(event)`). A handler may write a run of
    /// events with fewer statements, provided the batch leaves what applying them one by one
    /// would, and each event's own work still runs in its span.
    fn apply_batch<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        events: &'a [Event],
        spans: &'a ProcessSpans,
    ) -> BoxFuture<'a, ApiResult<()>> {
        spans.each(events, move |event| self.apply(txn, event))
    }

    /// Rebuilds this service's replica from the producer's snapshot inside `txn` and returns the
    /// revision the snapshot is consistent at (the cursor to watch from).
    fn resync<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>>;

    /// Called after the transaction that applied `events` (or, with `resynced`, a snapshot)
    /// committed and before the new revision is announced: where in-memory views catch up, so
    /// that a reader waiting for the revision sees them. `resynced` is also set when another
    /// replica sharing this database applied events first: memory must then be reloaded from
    /// the database.
    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        let _ = (events, resynced);
        Box::pin(async {})
    }
}

/// The `process` span of each event a consumer applies (OpenTelemetry messaging, kind consumer):
/// a child of the event's publish span, so a mutation's trace shows every consumer applying it.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSpans {
    producer: &'static str,
    consumer: &'static str,
}

impl ProcessSpans {
    /// The spans of `consumer` applying `producer`'s events.
    pub fn new(producer: Producer, consumer: &'static str) -> Self {
        Self {
            producer: producer_name(producer),
            consumer,
        }
    }

    /// Runs `apply` for each of `events` in order, each in its span; stops at the first error.
    pub fn each<'a, F>(&'a self, events: &'a [Event], apply: F) -> BoxFuture<'a, ApiResult<()>>
    where
        F: Fn(&'a Event) -> BoxFuture<'a, ApiResult<()>> + Send + 'a,
    {
        Box::pin(async move {
            for event in events {
                tracing::Instrument::instrument(apply(event), self.of(event)).await?;
            }
            Ok(())
        })
    }

    /// The span to apply `event` in.
    pub fn of(&self, event: &Event) -> tracing::Span {
        let producer = self.producer;
        let span = tracing::info_span!(
            "apply_event",
            otel.name = %format_args!("{producer} process"),
            otel.kind = "consumer",
            messaging.system = "orgplane",
            messaging.operation.type = "process",
            messaging.destination.name = producer,
            consumer = self.consumer,
            producer,
            revision = event.revision,
            request_id = %event.request_id,
        );
        crate::telemetry::continue_trace(&span, &event.traceparent, &event.tracestate);
        span
    }
}

/// Counters of one consumer, for tests, metrics and lag.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Events received from the stream.
    pub delivered: AtomicU64,
    /// Events received at or below the cursor (redeliveries), skipped.
    pub duplicates: AtomicU64,
    /// Events applied.
    pub applied: AtomicU64,
    /// Re-syncs from a snapshot.
    pub resyncs: AtomicU64,
    /// Stream (re)connections.
    pub connects: AtomicU64,
    /// The producer's head as last reported.
    pub head_revision: AtomicI64,
    /// Commit time (Unix ms) of the last applied event, for "seconds behind".
    pub last_event_time_ms: AtomicI64,
    /// Why the stream last ended other than by shutdown, for the logs of a service still waiting
    /// for it (readiness); cleared once it catches up.
    pub last_failure: std::sync::Mutex<Option<String>>,
}

/// Settings of a consumer.
#[derive(Clone)]
pub struct ConsumerConfig {
    /// The producer to watch.
    pub producer: Producer,
    /// A channel to the producer's EventService.
    pub channel: ServiceChannel,
    /// The service token presented to the producer.
    pub tokens: Arc<dyn ServiceTokenSource>,
    /// Events per message asked of the producer.
    pub batch_size: i32,
    /// First reconnect delay; doubles up to `max_backoff`, with jitter.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// The consuming service's name, for metrics and logs.
    pub consumer: &'static str,
}

impl ConsumerConfig {
    /// Defaults for `producer` over `channel`.
    pub fn new(
        producer: Producer,
        channel: impl Into<ServiceChannel>,
        tokens: Arc<dyn ServiceTokenSource>,
    ) -> Self {
        let channel: ServiceChannel = channel.into();
        Self {
            producer,
            channel,
            tokens,
            batch_size: 500,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            consumer: "orgplane",
        }
    }

    /// Names the consuming service (the `consumer` label of the lag metrics).
    pub fn with_consumer(mut self, consumer: &'static str) -> Self {
        self.consumer = consumer;
        self
    }
}

/// The name a producer's cursor is stored under.
pub fn producer_name(producer: Producer) -> &'static str {
    match producer {
        Producer::Identity => "identity",
        Producer::Organization => "organization",
        Producer::Workspace => "workspace",
        Producer::Unspecified => "unspecified",
    }
}

/// What the rest of the service reads from a running consumer.
#[derive(Clone, Debug)]
pub struct ConsumerHandle {
    producer: Producer,
    applied: watch::Receiver<i64>,
    caught_up: watch::Receiver<bool>,
    stats: Arc<ConsumerStats>,
}

impl ConsumerHandle {
    /// The producer it consumes.
    pub fn producer(&self) -> Producer {
        self.producer
    }

    /// Why its stream last failed, while it has not caught up since.
    pub fn last_failure(&self) -> Option<String> {
        self.stats
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The last revision applied (committed) here.
    pub fn applied_revision(&self) -> i64 {
        *self.applied.borrow()
    }

    /// The counters.
    pub fn stats(&self) -> &ConsumerStats {
        &self.stats
    }

    /// Waits until revision `revision` is applied, or UNAVAILABLE after `timeout`: the
    /// read-your-writes wait behind `min_revision`.
    pub async fn wait_for(&self, revision: i64, timeout: Duration) -> ApiResult<i64> {
        let mut rx = self.applied.clone();
        let waited =
            tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= revision)).await;
        match waited {
            Ok(Ok(applied)) => Ok(*applied),
            _ => Err(ApiError::unavailable(
                Reason::RevisionNotYetApplied,
                format!("revision {revision} is not applied here yet; retry"),
            )
            .with_metadata("min_revision", revision.to_string())
            .with_metadata("applied_revision", self.applied_revision().to_string())
            .retry_after(Duration::from_millis(100))),
        }
    }

    /// Waits until the consumer has caught up with the producer once (for readiness).
    pub async fn wait_caught_up(&self) {
        let mut rx = self.caught_up.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// True once the consumer has caught up with the producer.
    pub fn is_caught_up(&self) -> bool {
        *self.caught_up.borrow()
    }
}

/// A running consumer; see the module docs.
pub struct Consumer {
    db: DatabaseConnection,
    config: ConsumerConfig,
    handler: Arc<dyn EventHandler>,
    applied: watch::Sender<i64>,
    caught_up: watch::Sender<bool>,
    stats: Arc<ConsumerStats>,
}

enum StreamEnd {
    /// The cursor was compacted away, or a re-sync was requested: rebuild from the snapshot.
    Resync,
    /// The cursor is beyond the producer's head (the producer was restored from an older copy):
    /// rebuild from the snapshot, even though it is older than the cursor.
    Ahead,
    Failed(String),
    Shutdown,
}

impl Consumer {
    /// A consumer of `config.producer` writing into `db` through `handler`.
    pub async fn new(
        db: DatabaseConnection,
        config: ConsumerConfig,
        handler: Arc<dyn EventHandler>,
    ) -> Result<(Self, ConsumerHandle), DbErr> {
        let start = load_cursor(&db, config.producer).await?.max(0);
        let (applied, applied_rx) = watch::channel(start);
        let (caught_up, caught_up_rx) = watch::channel(false);
        let stats = Arc::new(ConsumerStats::default());
        let handle = ConsumerHandle {
            producer: config.producer,
            applied: applied_rx,
            caught_up: caught_up_rx,
            stats: stats.clone(),
        };
        Ok((
            Self {
                db,
                config,
                handler,
                applied,
                caught_up,
                stats,
            },
            handle,
        ))
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let producer = producer_name(self.config.producer);
        let mut backoff = self.config.min_backoff;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let end = tokio::select! {
                _ = shutdown.cancelled() => StreamEnd::Shutdown,
                end = self.stream_once(&mut backoff) => end,
            };
            match end {
                StreamEnd::Shutdown => return,
                StreamEnd::Resync | StreamEnd::Ahead => {
                    let ahead = matches!(end, StreamEnd::Ahead);
                    if ahead {
                        tracing::warn!(
                            producer,
                            "the cursor is beyond the producer's newest event (restored from an older copy?); re-syncing"
                        );
                    }
                    if let Err(e) = self.resync(ahead).await {
                        tracing::warn!(producer, error = %e, "re-sync failed");
                        self.failed(format!("re-sync failed: {e}"));
                    } else {
                        backoff = self.config.min_backoff;
                        continue;
                    }
                }
                StreamEnd::Failed(why) => {
                    tracing::debug!(producer, why, "event stream ended; reconnecting");
                    self.failed(why);
                }
            }
            let jitter = rand::random_range(0.5..1.5);
            let delay = backoff.mul_f64(jitter);
            backoff = (backoff * 2).min(self.config.max_backoff);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {},
            }
        }
    }

    async fn stream_once(&self, backoff: &mut Duration) -> StreamEnd {
        let cursor = match load_cursor(&self.db, self.config.producer).await {
            Ok(c) => c,
            Err(e) => return StreamEnd::Failed(format!("reading the cursor: {e}")),
        };
        if cursor == RESYNC_REQUESTED {
            return StreamEnd::Resync;
        }
        let token = match self.config.tokens.token().await {
            Ok(t) => t,
            Err(e) => return StreamEnd::Failed(format!("getting a service token: {e}")),
        };
        let mut client = EventServiceClient::new(self.config.channel.clone())
            .max_decoding_message_size(64 * 1024 * 1024);
        let request = crate::clients::outgoing(
            WatchRequest {
                producer: self.config.producer as i32,
                after_revision: cursor,
                max_batch_size: self.config.batch_size,
            },
            token.as_deref(),
            None,
        );
        let mut stream = match client.watch(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => return classify(status),
        };
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        loop {
            let message = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return StreamEnd::Failed("stream closed by the producer".into()),
                Err(status) => return classify(status),
            };
            *backoff = self.config.min_backoff;
            self.stats
                .head_revision
                .fetch_max(message.head_revision, Ordering::Relaxed);
            if !message.events.is_empty()
                && let Err(e) = self.apply_batch(&message.events).await
            {
                return StreamEnd::Failed(format!("applying events: {e}"));
            }
            if message.caught_up && self.applied_revision() >= message.head_revision {
                let first = self
                    .caught_up
                    .send_if_modified(|c| !std::mem::replace(c, true));
                if first {
                    self.failed_no_more();
                }
            }
            self.record_lag(message.head_revision, message.events.len() as u64);
        }
    }

    fn applied_revision(&self) -> i64 {
        *self.applied.borrow()
    }

    fn failed(&self, why: String) {
        *self
            .stats
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    fn failed_no_more(&self) {
        self.stats
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    fn record_lag(&self, head: i64, received: u64) {
        let applied = self.applied_revision();
        let behind = head - applied;
        let seconds = if behind > 0 {
            let last = self.stats.last_event_time_ms.load(Ordering::Relaxed);
            let now = chrono::Utc::now().timestamp_millis();
            Duration::from_millis((now - last).max(0) as u64)
        } else {
            Duration::ZERO
        };
        crate::metrics::record_consumer_lag(
            self.config.consumer,
            producer_name(self.config.producer),
            behind,
            seconds,
            received,
        );
    }

    async fn apply_batch(&self, events: &[Event]) -> ApiResult<()> {
        self.stats
            .delivered
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let txn = crate::db::begin_write(&self.db).await?;
        let mut cursor = lock_cursor(&txn, self.config.producer).await?;
        let start = cursor;
        // Another replica of this service, sharing the database, applied events this one has
        // not seen: its memory views must be rebuilt from the database rather than patched.
        let applied_elsewhere = start > self.applied_revision();
        // Redeliveries (at or below the cursor) come first; the rest must follow it gap-free.
        let fresh_from = events.partition_point(|e| e.revision <= cursor);
        self.stats
            .duplicates
            .fetch_add(fresh_from as u64, Ordering::Relaxed);
        let fresh = &events[fresh_from..];
        for event in fresh {
            if event.revision != cursor + 1 {
                return Err(ApiError::internal(format!(
                    "gap in the event stream: expected revision {}, got {}",
                    cursor + 1,
                    event.revision
                )));
            }
            cursor = event.revision;
        }
        if cursor == start {
            txn.rollback().await?;
            if applied_elsewhere {
                self.handler.committed(&[], true).await;
                self.applied.send_replace(start);
            }
            return Ok(());
        }
        let spans = ProcessSpans::new(self.config.producer, self.config.consumer);
        self.handler.apply_batch(&txn, fresh, &spans).await?;
        store_cursor(&txn, self.config.producer, cursor).await?;
        txn.commit().await?;
        if applied_elsewhere {
            self.handler.committed(&[], true).await;
        } else {
            self.handler.committed(fresh, false).await;
        }
        self.stats
            .applied
            .fetch_add((cursor - start) as u64, Ordering::Relaxed);
        if let Some(t) = events.last().and_then(|e| e.create_time.as_ref()) {
            self.stats.last_event_time_ms.store(
                t.seconds * 1000 + i64::from(t.nanos / 1_000_000),
                Ordering::Relaxed,
            );
        }
        self.applied.send_replace(cursor);
        Ok(())
    }

    /// Rebuilds from the producer's snapshot; `ahead`: the cursor is known to be beyond the
    /// producer, so a snapshot older than it is expected.
    async fn resync(&self, ahead: bool) -> ApiResult<()> {
        let producer = producer_name(self.config.producer);
        let txn = crate::db::begin_write(&self.db).await?;
        let before = lock_cursor(&txn, self.config.producer).await?;
        let revision = self.handler.resync(&txn).await?;
        if !ahead && before != RESYNC_REQUESTED && revision < before {
            return Err(ApiError::internal(format!(
                "snapshot at revision {revision} is older than the cursor {before}"
            )));
        }
        store_cursor(&txn, self.config.producer, revision).await?;
        txn.commit().await?;
        self.handler.committed(&[], true).await;
        self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        self.applied.send_replace(revision);
        tracing::info!(
            producer,
            from = before,
            to = revision,
            "re-synced from a snapshot"
        );
        Ok(())
    }
}

fn classify(status: tonic::Status) -> StreamEnd {
    let reason = (status.code() == tonic::Code::FailedPrecondition)
        .then(|| crate::error::error_reason_of(&status))
        .flatten();
    match reason {
        Some(REVISION_COMPACTED) => StreamEnd::Resync,
        Some(CURSOR_AHEAD) => StreamEnd::Ahead,
        _ => StreamEnd::Failed(format!("{:?}: {}", status.code(), status.message())),
    }
}

/// Where `producer`'s kept events begin (the `compacted_through` its Watch reports for a cursor
/// of 0; 0 when nothing was compacted): the revision a consumer that needs no snapshot of older
/// state re-syncs to.
pub async fn compacted_through(
    channel: &ServiceChannel,
    tokens: &dyn ServiceTokenSource,
    producer: Producer,
) -> ApiResult<i64> {
    use tonic_types::StatusExt;
    let token = tokens.token().await?;
    let mut client = EventServiceClient::new(channel.clone());
    let request = crate::clients::outgoing(
        WatchRequest {
            producer: producer as i32,
            after_revision: 0,
            max_batch_size: 1,
        },
        token.as_deref(),
        None,
    );
    match client.watch(request).await {
        Ok(_) => Ok(0),
        Err(status) => status
            .get_details_error_info()
            .and_then(|i| i.metadata.get("compacted_through").cloned())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                ApiError::unavailable(
                    Reason::SnapshotUnavailable,
                    format!(
                        "{} events unavailable: {}",
                        producer_name(producer),
                        status.message()
                    ),
                )
            }),
    }
}
