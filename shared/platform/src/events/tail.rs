//! The shared tail of one producer's outbox: one task reads each new run of committed events
//! once and keeps the most recent ones in memory, so that caught-up Watch streams take their next
//! events from there instead of each querying the database after every commit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use orgplane_proto::events::v1::Event;
use prost::Message;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Outbox;

/// Default number of recent events the tail keeps.
pub const DEFAULT_TAIL_EVENTS: usize = 4096;
/// Most encoded bytes of events the tail keeps, whatever their number.
pub const TAIL_BYTES: usize = 8 << 20;
/// Events per read of the tail.
const CHUNK: u64 = 1000;

/// Database reads of outbox events made to serve Watch, to measure the fan-out.
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Reads by the per-producer tails: one per new run of commits or poll, whatever the number
    /// of streams.
    pub tail_reads: AtomicU64,
    /// Reads by single streams: backlog replay, and streams behind what the tail keeps.
    pub stream_reads: AtomicU64,
}

/// The most recent events of one outbox, contiguous and in revision order.
#[derive(Debug)]
pub struct Window {
    events: VecDeque<Event>,
    bytes: usize,
    /// Every committed event up to this revision has been read; the kept events end here.
    through: i64,
    /// The latest read failed, so nothing is known past `through`.
    failed: bool,
}

impl Window {
    fn new(through: i64) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            through,
            failed: false,
        }
    }

    /// The revision the tail has read through.
    pub fn through(&self) -> i64 {
        self.through
    }

    /// Up to `limit` events after `after` (none: nothing follows it yet), or `None` when the
    /// caller must read the database itself: those events are no longer kept, or the tail cannot
    /// vouch for what follows its kept events (its latest read failed, or it has not yet read
    /// through `floor`, a revision the caller knows to be committed).
    pub fn take(&self, after: i64, limit: usize, floor: i64) -> Option<Vec<Event>> {
        if self.failed || self.through < floor {
            return None;
        }
        if after >= self.through {
            return Some(Vec::new());
        }
        let first = self.through + 1 - self.events.len() as i64;
        if after + 1 < first {
            return None;
        }
        let start = (after + 1 - first) as usize;
        Some(self.events.range(start..).take(limit).cloned().collect())
    }

    /// Appends a read that followed `through`, evicts the oldest events beyond `capacity` or
    /// [`TAIL_BYTES`], and says whether anything changed.
    fn push(&mut self, events: Vec<Event>, capacity: usize) -> bool {
        let changed = !events.is_empty() || self.failed;
        self.failed = false;
        if events
            .first()
            .is_some_and(|e| e.revision != self.through + 1)
        {
            // Compaction overtook the tail: what is kept would not be contiguous.
            self.events.clear();
            self.bytes = 0;
        }
        for event in events {
            self.through = event.revision;
            self.bytes += event.encoded_len();
            self.events.push_back(event);
        }
        while self.events.len() > capacity || self.bytes > TAIL_BYTES {
            match self.events.pop_front() {
                Some(e) => self.bytes -= e.encoded_len(),
                None => break,
            }
        }
        changed
    }
}

/// Starts the tail of `outbox` from `through` (a committed revision): it reads new events
/// whenever [`Outbox::committed`] reports a commit and every `poll` (commits by other replicas),
/// until `shutdown` or until nobody holds the returned receiver.
pub fn spawn(
    outbox: Outbox,
    through: i64,
    capacity: usize,
    poll: Duration,
    shutdown: CancellationToken,
    stats: std::sync::Arc<WatchStats>,
) -> watch::Receiver<Window> {
    let (window, rx) = watch::channel(Window::new(through));
    tokio::spawn(async move {
        let mut commits = outbox.subscribe();
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = window.closed() => return,
                changed = commits.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *commits.borrow_and_update() <= window.borrow().through {
                        continue;
                    }
                }
                _ = tick.tick() => {}
            }
            loop {
                let through = window.borrow().through;
                stats.tail_reads.fetch_add(1, Ordering::Relaxed);
                match outbox.read(through, CHUNK).await {
                    Ok(events) => {
                        let more = events.len() as u64 == CHUNK;
                        window.send_if_modified(|w| w.push(events, capacity));
                        if !more {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(producer = ?outbox.producer(), error = %e, "outbox tail read failed");
                        // Streams that wait for news read the database themselves (and end
                        // with its error) until a read succeeds again.
                        window.send_if_modified(|w| !std::mem::replace(&mut w.failed, true));
                        break;
                    }
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: i64) -> Event {
        Event {
            revision,
            ..Default::default()
        }
    }

    fn revisions(events: Option<Vec<Event>>) -> Option<Vec<i64>> {
        events.map(|v| v.into_iter().map(|e| e.revision).collect())
    }

    #[test]
    fn window_serves_kept_events_and_refers_the_rest_to_the_database() {
        let mut w = Window::new(10);
        assert_eq!(revisions(w.take(10, 5, 10)), Some(vec![]), "caught up");
        assert_eq!(revisions(w.take(10, 5, 11)), None, "floor not read yet");
        assert_eq!(revisions(w.take(9, 5, 0)), None, "older than the window");
        assert!(w.push((11..=20).map(event).collect(), 4));
        assert_eq!(revisions(w.take(16, 2, 0)), Some(vec![17, 18]));
        assert_eq!(revisions(w.take(16, 10, 0)), Some(vec![17, 18, 19, 20]));
        assert_eq!(revisions(w.take(15, 10, 0)), None, "evicted");
        assert_eq!(
            revisions(w.take(25, 10, 20)),
            Some(vec![]),
            "cursor past the head"
        );
        assert!(!w.push(Vec::new(), 4), "an empty read changes nothing");
        assert_eq!(revisions(w.take(18, 10, 21)), None, "floor not read yet");
        // After a failed read, streams look themselves.
        w.failed = true;
        assert_eq!(revisions(w.take(20, 10, 0)), None);
        assert_eq!(revisions(w.take(19, 10, 0)), None);
        assert!(
            w.push(Vec::new(), 4),
            "a successful read clears the failure"
        );
        assert_eq!(revisions(w.take(20, 10, 0)), Some(vec![]));
        // A gap (compaction overtook the tail) restarts the window.
        assert!(w.push(vec![event(30), event(31)], 4));
        assert_eq!(revisions(w.take(29, 10, 0)), Some(vec![30, 31]));
        assert_eq!(revisions(w.take(20, 10, 0)), None);
    }
}
