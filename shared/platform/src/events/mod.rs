//! Cross-service state changes: the transactional outbox, the `EventService/Watch` server, and
//! the consumer that applies another service's events exactly once.
//!
//! A producer appends events **inside the transaction that changes its state**
//! ([`Outbox::append`]). Each append takes the next revision from a one-row counter
//! (`outbox_head`) with `UPDATE … RETURNING`; the row lock is held until commit, so revisions are
//! handed out in commit order and are gap-free. This is what makes a plain
//! `revision > cursor` reader safe on PostgreSQL: with a bare sequence, a slow transaction could
//! commit revision 10 after a reader already moved past a committed 11 and skip 10 for ever (the
//! classic outbox flaw). The price — producers serialize on one row, only for the instant
//! between their append and their commit — is negligible for role changes.
//!
//! Consumers store their cursor in their own database in the same transaction as the event's
//! effect ([`consumer`]), so delivery is at-least-once and the effect exactly-once. Old events are
//! compacted after a retention window; a cursor older than the compaction point gets
//! FAILED_PRECONDITION `REVISION_COMPACTED` and the consumer re-syncs from a snapshot; so does a
//! consumer whose cursor is ahead of the producer's head (`CURSOR_AHEAD`, after a restore).

use crate::error::Reason;

pub mod consumer;
pub mod cursor;
pub mod group;
pub mod handlers;
pub mod migration;
pub mod outbox;
pub mod restore;
pub mod tail;
pub mod unit;
pub mod watch;

pub use consumer::{Consumer, ConsumerHandle, ConsumerStats, EventHandler, ProcessSpans};
pub use outbox::Outbox;
pub use unit::WriteUnit;
pub use watch::EventServer;

/// The ErrorInfo reason for a cursor older than the oldest kept event.
pub const REVISION_COMPACTED: Reason = Reason::RevisionCompacted;
/// The ErrorInfo reason for a cursor beyond the producer's newest event: the producer's
/// database was restored from a copy older than the consumer's, so the revisions after its head
/// will be issued again for other changes. The consumer re-syncs from the snapshot.
pub const CURSOR_AHEAD: Reason = Reason::CursorAhead;
