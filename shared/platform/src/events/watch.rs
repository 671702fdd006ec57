//! `orgplane.events.v1.EventService`: streams a producer's outbox — the backlog after the
//! caller's cursor, then live events as they commit (woken in-process by
//! [`Outbox::committed`], and by a short poll so that commits made by other replicas on the same
//! PostgreSQL database are seen too).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use orgplane_proto::events::v1::event_service_server::EventService;
use orgplane_proto::events::v1::{Producer, WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::{Outbox, REVISION_COMPACTED};
use crate::auth::Principal;
use crate::error::ApiError;

/// Default number of events per message.
pub const DEFAULT_BATCH: i32 = 100;
/// Largest number of events per message.
pub const MAX_BATCH: i32 = 1000;

/// The EventService implementation, serving one or more producers' outboxes.
#[derive(Clone, Debug)]
pub struct EventServer {
    outboxes: HashMap<i32, Outbox>,
    shutdown: CancellationToken,
    poll_interval: Duration,
    heartbeat_interval: Duration,
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
        }
    }

    /// How often an idle stream re-reads the outbox.
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

#[tonic::async_trait]
impl EventService for EventServer {
    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<BoxStream<WatchResponse>>, Status> {
        Principal::of(&request).require_service()?;
        let req = request.into_inner();
        if req.producer == Producer::Unspecified as i32 {
            return Err(ApiError::invalid_argument("producer", "must be set").into());
        }
        if req.after_revision < 0 {
            return Err(
                ApiError::invalid_argument("after_revision", "must not be negative").into(),
            );
        }
        let outbox = self.outboxes.get(&req.producer).cloned().ok_or_else(|| {
            ApiError::new(
                tonic::Code::NotFound,
                "PRODUCER_NOT_SERVED",
                "this address does not serve that producer's events",
            )
        })?;
        let batch = match req.max_batch_size {
            n if n <= 0 => DEFAULT_BATCH,
            n => n.min(MAX_BATCH),
        } as u64;
        let head = outbox.head().await.map_err(ApiError::from)?;
        if req.after_revision < head.compacted_through {
            return Err(compacted(req.after_revision, head.compacted_through).into());
        }
        let (tx, rx) = mpsc::channel(2);
        let stream = StreamTask {
            outbox,
            tx,
            after: req.after_revision,
            batch,
            shutdown: self.shutdown.clone(),
            poll_interval: self.poll_interval,
            heartbeat_interval: self.heartbeat_interval,
        };
        tokio::spawn(stream.run());
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct StreamTask {
    outbox: Outbox,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
    after: i64,
    batch: u64,
    shutdown: CancellationToken,
    poll_interval: Duration,
    heartbeat_interval: Duration,
}

impl StreamTask {
    async fn run(mut self) {
        let mut commits = self.outbox.subscribe();
        let mut last_sent = Instant::now();
        let mut announced_caught_up = false;
        loop {
            commits.borrow_and_update();
            let events = match self.outbox.read(self.after, self.batch).await {
                Ok(events) => events,
                Err(e) => {
                    let _ = self.tx.send(Err(ApiError::from(e).into())).await;
                    return;
                }
            };
            if let Some(first) = events.first()
                && first.revision != self.after + 1
            {
                // Compaction overtook this stream between its check and its read.
                let through = first.revision - 1;
                let _ = self
                    .tx
                    .send(Err(compacted(self.after, through).into()))
                    .await;
                return;
            }
            let full = events.len() as u64 == self.batch;
            if let Some(last) = events.last() {
                self.after = last.revision;
                let head_revision = if full {
                    match self.outbox.head().await {
                        Ok(h) => h.revision.max(self.after),
                        Err(_) => self.after,
                    }
                } else {
                    self.after
                };
                let message = WatchResponse {
                    events,
                    head_revision,
                    caught_up: !full,
                };
                if self.tx.send(Ok(message)).await.is_err() {
                    return;
                }
                announced_caught_up = !full;
                last_sent = Instant::now();
                if full {
                    continue;
                }
            } else if !announced_caught_up || last_sent.elapsed() >= self.heartbeat_interval {
                let heartbeat = WatchResponse {
                    events: Vec::new(),
                    head_revision: self.after,
                    caught_up: true,
                };
                if self.tx.send(Ok(heartbeat)).await.is_err() {
                    return;
                }
                announced_caught_up = true;
                last_sent = Instant::now();
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.tx.closed() => return,
                _ = commits.changed() => {},
                _ = tokio::time::sleep(self.poll_interval) => {},
            }
        }
    }
}
