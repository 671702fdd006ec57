//! `orgplane.events.v1.EventService`: streams a producer's outbox — the backlog after the
//! caller's cursor, then live events as they commit. Per producer, one [`tail`](super::tail) task
//! reads each new run of committed events once (woken in-process by [`Outbox::committed`], and
//! by a short poll for commits of other replicas on the same PostgreSQL database) and keeps the
//! most recent ones; a stream takes its next events from there, and reads the database itself
//! only while it is behind what the tail keeps (backlog, slow reader) or the tail's read failed.
//! So 1,000 open streams cost one query per commit or poll interval, not 1,000.
//!
//! The reads a stream makes itself (its opening head, backlog replay) take turns: at most
//! [`DEFAULT_BACKLOG_READS`] at once in the process, well below any connection pool, so that
//! however many streams replay a backlog, ordinary calls still find a free connection; a stream
//! waits for its turn, it does not fail. And a stream reads its next batch only once the client
//! has taken the previous one (it reserves room in its one-message channel first), so a slow
//! client costs at most a batch queued and a batch in flight, never a read-ahead.
//!
//! Replay is paced: the batches of streams that have not caught up share one per-process rate
//! ([`DEFAULT_REPLAY_RATE`] events per second, in order of asking, with a short burst allowed),
//! whether they come from the tail's memory or the database. Without it, a thousand streams
//! replaying from memory keep every core busy encoding and ordinary calls queue behind them
//! (measured: p99 5 ms → 315 ms). Caught-up streams (live events) are not paced.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orgplane_proto::events::v1::event_service_server::EventService;
use orgplane_proto::events::v1::{Event, Producer, WatchRequest, WatchResponse};
use sea_orm::DbErr;
use tokio::sync::mpsc::OwnedPermit;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::tail::{self, DEFAULT_TAIL_EVENTS, WatchStats, Window};
use super::{CURSOR_AHEAD, Outbox, REVISION_COMPACTED};
use crate::auth::{Capability, Principal};
use crate::error::ApiError;
use crate::error::Reason;

/// Default number of events per message.
pub const DEFAULT_BATCH: i32 = 100;
/// Largest number of events per message.
pub const MAX_BATCH: i32 = 1000;
/// Default limit of Watch streams open at once in one process, whatever the connections: each
/// holds a task and up to a batch of events, so that clients opening streams on many
/// connections cannot grow the process without bound. A real deployment has a few consumers per
/// replica.
pub const DEFAULT_MAX_STREAMS: usize = 2048;
/// Default number of database reads made by single streams at once in one process (opening
/// heads and backlog replay; the shared tails read apart). Far below the pools (SQLite 8,
/// PostgreSQL 16 connections per service), so that streams replaying a backlog never take the
/// connections ordinary calls need; streams beyond it queue in order.
pub const DEFAULT_BACKLOG_READS: usize = 2;

/// Default number of replayed events per second, all streams of a process together.
pub const DEFAULT_REPLAY_RATE: usize = 50_000;
/// How far the pace lets replay run ahead after an idle moment.
const REPLAY_BURST: Duration = Duration::from_millis(100);

/// The per-process pace of replayed batches: each takes its share of the rate, in order.
#[derive(Debug)]
struct Pace {
    per_event: Duration,
    next: Mutex<Instant>,
}

impl Pace {
    /// A pace of `rate` events per second; `None` for no pace (0 or `usize::MAX`).
    fn new(rate: usize) -> Option<Arc<Pace>> {
        (rate != 0 && rate != usize::MAX).then(|| {
            Arc::new(Pace {
                per_event: Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX),
                next: Mutex::new(Instant::now()),
            })
        })
    }

    /// When a batch of `n` events may go.
    fn slot(&self, n: usize) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let start = (*next).max(now.checked_sub(REPLAY_BURST).unwrap_or(now));
        *next = start + self.per_event * u32::try_from(n).unwrap_or(u32::MAX);
        start
    }
}

/// The EventService implementation, serving one or more producers' outboxes.
#[derive(Clone, Debug)]
pub struct EventServer {
    outboxes: HashMap<i32, Outbox>,
    shutdown: CancellationToken,
    poll_interval: Duration,
    heartbeat_interval: Duration,
    /// Each producer's tail, started by its first stream.
    tails: Arc<Mutex<HashMap<i32, watch::Receiver<Window>>>>,
    tail_events: usize,
    stats: Arc<WatchStats>,
    /// One permit per open stream.
    streams: Arc<Semaphore>,
    max_streams: usize,
    /// One permit per database read a stream makes itself.
    reads: Arc<Semaphore>,
    /// The pace of replayed batches, unless unbounded.
    pace: Option<Arc<Pace>>,
}

impl EventServer {
    /// A server for `outboxes`; open streams end when `shutdown` is cancelled.
    pub fn new(outboxes: impl IntoIterator<Item = Outbox>, shutdown: CancellationToken) -> Self {
        Self {
            outboxes: outboxes
                .into_iter()
                .map(|o| (o.producer() as i32, o))
                .collect(),
            shutdown,
            poll_interval: Duration::from_millis(250),
            heartbeat_interval: Duration::from_secs(10),
            tails: Arc::default(),
            tail_events: DEFAULT_TAIL_EVENTS,
            stats: Arc::default(),
            streams: Arc::new(Semaphore::new(DEFAULT_MAX_STREAMS)),
            max_streams: DEFAULT_MAX_STREAMS,
            reads: Arc::new(Semaphore::new(DEFAULT_BACKLOG_READS)),
            pace: Pace::new(DEFAULT_REPLAY_RATE),
        }
    }

    /// At most `rate` replayed events per second, all streams together (default
    /// [`DEFAULT_REPLAY_RATE`]); 0 or `usize::MAX` lifts the pace (the control of the chaos
    /// suite's `watch-backlog` scenario).
    pub fn with_replay_rate(mut self, rate: usize) -> Self {
        self.pace = Pace::new(rate);
        self
    }

    /// At most `n` (at least 1) database reads by single streams at once (default
    /// [`DEFAULT_BACKLOG_READS`]); `usize::MAX` lifts the bound (tests show what it prevents).
    pub fn with_backlog_reads(mut self, n: usize) -> Self {
        self.reads = Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS)));
        self
    }

    /// At most `n` streams open at once; more are refused with RESOURCE_EXHAUSTED.
    pub fn with_max_streams(mut self, n: usize) -> Self {
        self.streams = Arc::new(Semaphore::new(n));
        self.max_streams = n;
        self
    }

    /// `outbox`'s tail, started from `head` (a committed revision) unless it runs.
    fn tail(&self, outbox: &Outbox, head: i64) -> watch::Receiver<Window> {
        let mut tails = self.tails.lock().unwrap_or_else(|e| e.into_inner());
        let key = outbox.producer() as i32;
        match tails.get(&key) {
            // An ended tail (shutdown) is not restarted; its streams end with the shutdown.
            Some(rx) if rx.has_changed().is_ok() || self.shutdown.is_cancelled() => rx.clone(),
            _ => {
                let rx = tail::spawn(
                    outbox.clone(),
                    head,
                    self.tail_events,
                    self.poll_interval,
                    self.shutdown.clone(),
                    self.stats.clone(),
                );
                tails.insert(key, rx.clone());
                rx
            }
        }
    }

    /// How many recent events each producer's tail keeps for streams to share (default
    /// [`DEFAULT_TAIL_EVENTS`]); streams further behind read the database.
    pub fn with_tail_events(mut self, n: usize) -> Self {
        self.tail_events = n;
        self
    }

    /// Counts of the database reads made to serve Watch.
    pub fn stats(&self) -> Arc<WatchStats> {
        self.stats.clone()
    }

    /// How often the outbox is polled for commits made by other replicas.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How often an idle stream sends a heartbeat.
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }
}

/// The error a consumer gets for a cursor older than the oldest kept event.
pub fn compacted(after: i64, through: i64) -> ApiError {
    ApiError::failed_precondition(
        REVISION_COMPACTED,
        "after_revision",
        format!(
            "events up to revision {through} were compacted; re-sync from a snapshot (cursor {after})"
        ),
    )
    .with_metadata("compacted_through", through.to_string())
}

/// The error a consumer gets for a cursor beyond the newest event (the producer was restored
/// from an older copy).
pub fn ahead(after: i64, head: i64) -> ApiError {
    ApiError::failed_precondition(
        CURSOR_AHEAD,
        "after_revision",
        format!(
            "cursor {after} is beyond this producer's newest event {head} (was it restored from a backup?); re-sync from a snapshot"
        ),
    )
    .with_metadata("head_revision", head.to_string())
}

#[tonic::async_trait]
impl EventService for EventServer {
    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<BoxStream<WatchResponse>>, Status> {
        let principal = Principal::of(&request);
        let service = principal.service()?;
        let req = request.into_inner();
        let producer = Producer::try_from(req.producer).unwrap_or(Producer::Unspecified);
        let Some(needed) = Capability::watching(producer) else {
            return Err(ApiError::invalid_argument("producer", "must be set").into());
        };
        service.require(needed)?;
        if req.after_revision < 0 {
            return Err(
                ApiError::invalid_argument("after_revision", "must not be negative").into(),
            );
        }
        let outbox = self.outboxes.get(&req.producer).cloned().ok_or_else(|| {
            ApiError::new(
                tonic::Code::NotFound,
                Reason::ProducerNotServed,
                "this address does not serve that producer's events",
            )
        })?;
        let batch = match req.max_batch_size {
            n if n <= 0 => DEFAULT_BATCH,
            n => n.min(MAX_BATCH),
        } as u64;
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            ApiError::quota_exceeded(
                Reason::TooManyStreams,
                "watch streams",
                format!(
                    "{} event streams are open on this server; retry later",
                    self.max_streams
                ),
            )
            .retry_after(Duration::from_secs(1))
        })?;
        let head = {
            let _turn = self.reads.acquire().await;
            outbox.head().await.map_err(ApiError::from)?
        };
        let window = self.tail(&outbox, head.revision);
        if req.after_revision < head.compacted_through {
            return Err(compacted(req.after_revision, head.compacted_through).into());
        }
        if req.after_revision > head.revision {
            return Err(ahead(req.after_revision, head.revision).into());
        }
        let (tx, rx) = mpsc::channel(1);
        let stream = StreamTask {
            outbox,
            window,
            stats: self.stats.clone(),
            reads: self.reads.clone(),
            pace: self.pace.clone(),
            tx,
            after: req.after_revision,
            floor: head.revision,
            batch,
            shutdown: self.shutdown.clone(),
            heartbeat_interval: self.heartbeat_interval,
            _permit: permit,
            _open: crate::metrics::watch_stream_open(super::consumer::producer_name(producer)),
        };
        tokio::spawn(stream.run());
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct StreamTask {
    /// Counts the stream in `orgplane_watch_streams_open` while it runs.
    _open: crate::metrics::WatchStreamGuard,
    outbox: Outbox,
    /// The producer's tail.
    window: watch::Receiver<Window>,
    stats: Arc<WatchStats>,
    /// The process's turns for database reads.
    reads: Arc<Semaphore>,
    pace: Option<Arc<Pace>>,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
    after: i64,
    /// The head when the stream opened: "nothing new" must be known at least up to here.
    floor: i64,
    batch: u64,
    shutdown: CancellationToken,
    heartbeat_interval: Duration,
    /// Released when the stream ends.
    _permit: OwnedSemaphorePermit,
}

impl StreamTask {
    /// The next events after the cursor (from the tail, else from the database once it is this
    /// stream's turn) and the revision the tail has read through; `None` when the client left or
    /// the server shuts down while the stream waited for its turn.
    async fn next(&mut self) -> Result<Option<(Vec<Event>, i64)>, DbErr> {
        let (taken, through) = {
            let window = self.window.borrow_and_update();
            let taken = window.take(self.after, self.batch as usize, self.floor);
            (taken, window.through())
        };
        if let Some(events) = taken {
            return Ok(Some((events, through)));
        }
        let _turn = tokio::select! {
            turn = self.reads.acquire() => turn,
            _ = self.tx.closed() => return Ok(None),
            _ = self.shutdown.cancelled() => return Ok(None),
        };
        self.stats.stream_reads.fetch_add(1, Ordering::Relaxed);
        Ok(Some((
            self.outbox.read(self.after, self.batch).await?,
            through,
        )))
    }

    /// Room for one message once the client took the previous one; `None` when it left or the
    /// server shuts down.
    async fn room(&self) -> Option<OwnedPermit<Result<WatchResponse, Status>>> {
        tokio::select! {
            room = self.tx.clone().reserve_owned() => room.ok(),
            _ = self.shutdown.cancelled() => None,
        }
    }

    async fn run(mut self) {
        let mut last_sent = Instant::now();
        let mut announced_caught_up = false;
        loop {
            // Backpressure: nothing is read before the client has room for it.
            let Some(room) = self.room().await else {
                return;
            };
            let (events, through) = match self.next().await {
                Ok(Some(next)) => next,
                Ok(None) => return,
                Err(e) => {
                    room.send(Err(ApiError::from(e).into()));
                    return;
                }
            };
            if let Some(first) = events.first()
                && first.revision != self.after + 1
            {
                // Compaction overtook this stream between its check and its read.
                let through = first.revision - 1;
                room.send(Err(compacted(self.after, through).into()));
                return;
            }
            let full = events.len() as u64 == self.batch;
            if let Some(pace) = self.pace.as_ref().filter(|_| !announced_caught_up)
                && !events.is_empty()
            {
                let at = pace.slot(events.len());
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {},
                    _ = self.tx.closed() => return,
                    _ = self.shutdown.cancelled() => return,
                }
            }
            if let Some(last) = events.last() {
                self.after = last.revision;
                let head_revision = if full {
                    through.max(self.after)
                } else {
                    self.after
                };
                room.send(Ok(WatchResponse {
                    events,
                    head_revision,
                    caught_up: !full,
                }));
                announced_caught_up = !full;
                last_sent = Instant::now();
                if full {
                    continue;
                }
            } else if !announced_caught_up || last_sent.elapsed() >= self.heartbeat_interval {
                room.send(Ok(WatchResponse {
                    events: Vec::new(),
                    head_revision: self.after,
                    caught_up: true,
                }));
                announced_caught_up = true;
                last_sent = Instant::now();
            } else {
                drop(room);
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.tx.closed() => return,
                // The tail ended: the server is going away.
                changed = self.window.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(self.heartbeat_interval.saturating_sub(last_sent.elapsed())) => {},
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use orgplane_proto::events::v1::event_service_server::EventService;
    use sea_orm_migration::{MigrationTrait, SchemaManager};
    use tonic::Code;
    use tonic_types::StatusExt;

    use super::*;
    use crate::auth::ServicePrincipal;

    fn request() -> Request<WatchRequest> {
        let mut req = Request::new(WatchRequest {
            producer: Producer::Organization as i32,
            after_revision: 0,
            max_batch_size: 0,
        });
        req.extensions_mut()
            .insert(Principal::Service(ServicePrincipal {
                name: "workspace".into(),
                capabilities: crate::auth::Capabilities::all(),
            }));
        req
    }

    #[test]
    fn the_replay_pace_hands_out_slots_in_order_at_its_rate() {
        assert!(Pace::new(0).is_none() && Pace::new(usize::MAX).is_none());
        let pace = Pace::new(1000).unwrap();
        let slots: Vec<Instant> = (0..4).map(|_| pace.slot(100)).collect();
        for pair in slots.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(100));
        }
        // After an idle moment the next slot is now, not the stale past (at most a burst back).
        *pace.next.lock().unwrap() = Instant::now() - Duration::from_secs(60);
        let after_idle = pace.slot(1);
        assert!(Instant::now() - after_idle <= REPLAY_BURST + Duration::from_millis(50));
    }

    #[tokio::test]
    async fn streams_past_the_limit_are_refused_with_quota_details_until_one_ends() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::connect(&crate::db::default_sqlite_url(dir.path(), "p"))
            .await
            .unwrap();
        super::super::migration::CreateOutbox
            .up(&SchemaManager::new(&db))
            .await
            .unwrap();
        let server = EventServer::new(
            [Outbox::new(db, Producer::Organization)],
            CancellationToken::new(),
        )
        .with_max_streams(2);
        let first = server.watch(request()).await.unwrap();
        let _second = server.watch(request()).await.unwrap();
        let refused = server.watch(request()).await.err().unwrap();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert_eq!(
            crate::error::reason_of(&refused).as_deref(),
            Some("TOO_MANY_STREAMS")
        );
        assert!(refused.get_details_retry_info().is_some());
        assert!(refused.get_details_quota_failure().is_some());
        // The client of the first stream goes away: its task ends and frees the place.
        drop(first);
        let mut accepted = None;
        for _ in 0..100 {
            if let Ok(s) = server.watch(request()).await {
                accepted = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            accepted.is_some(),
            "the ended stream's place was not released"
        );
    }
}
