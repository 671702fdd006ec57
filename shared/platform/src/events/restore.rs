//! Restoring databases that were copied at different instants (an online backup copies them one
//! after another; PostgreSQL clusters recovered to "the same" time are not exactly aligned).
//!
//! Each consumer's cursor lives in its own database and each producer's head in the producer's.
//! When a consumer was copied after its producer, its cursor may be ahead of the producer's
//! copied head: it applied events whose producer transactions are not in the producer's copy.
//! Restored as they are, the producer would issue those revisions again for new events and the
//! consumer would skip them as duplicates — lost — and keep the effects of events the producer
//! no longer has. [`check_cursors`] finds such cursors and replaces them by
//! [`RESYNC_REQUESTED`]: the consumer then rebuilds from the producer's snapshot before it
//! watches, exactly as after a compaction. A cursor behind its producer needs nothing: the
//! consumer catches up from the producer's outbox.

use orgplane_proto::events::v1::Producer;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait};

use super::consumer::{RESYNC_REQUESTED, cursor_row, producer_name};
use super::outbox::read_head;

/// One service's database, named by the service (`identity`, `organization`, `workspace`,
/// `billing-access`): a producer's database is the one named like the producer.
#[derive(Debug, Clone, Copy)]
pub struct NamedDatabase<'a> {
    /// The service whose database this is.
    pub service: &'a str,
    /// A connection to it.
    pub db: &'a DatabaseConnection,
}

/// What was found for one consumer's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorCheck {
    /// The consuming service.
    pub consumer: String,
    /// The producer the cursor follows.
    pub producer: String,
    /// The stored cursor (before any change).
    pub cursor: i64,
    /// The producer's head in its database; `None` when that database is not among the checked.
    pub producer_head: Option<i64>,
    /// The verdict.
    pub verdict: Verdict,
}

/// The verdict on one cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// At or behind the producer's head: the consumer catches up from the outbox.
    InStep,
    /// Ahead of the producer's head and replaced by [`RESYNC_REQUESTED`].
    ResyncRequested,
    /// Ahead of the producer's head and left as it is (only when asked not to fix).
    AheadLeft,
    /// A re-sync was already requested.
    AlreadyRequested,
    /// The producer's database was not among those checked.
    ProducerUnknown,
}

/// The producers whose databases carry an outbox.
const PRODUCERS: [Producer; 3] = [
    Producer::Identity,
    Producer::Organization,
    Producer::Workspace,
];

/// Compares every consumer cursor in `databases` with its producer's head among `databases` and,
/// when `fix` is set, requests a re-sync for each cursor ahead of its producer (see the module
/// docs). Run it on databases no service is using (copies, or restored databases before start).
pub async fn check_cursors(
    databases: &[NamedDatabase<'_>],
    fix: bool,
) -> Result<Vec<CursorCheck>, DbErr> {
    let mut heads = Vec::new();
    for d in databases {
        if PRODUCERS.iter().any(|p| producer_name(*p) == d.service) {
            heads.push((d.service, read_head(d.db).await?.revision));
        }
    }
    let mut checks = Vec::new();
    for d in databases {
        for row in cursor_row::Entity::find().all(d.db).await? {
            let head = heads
                .iter()
                .find(|(name, _)| *name == row.producer)
                .map(|(_, h)| *h);
            let verdict = match head {
                _ if row.revision == RESYNC_REQUESTED => Verdict::AlreadyRequested,
                None => Verdict::ProducerUnknown,
                Some(h) if row.revision <= h => Verdict::InStep,
                Some(_) if !fix => Verdict::AheadLeft,
                Some(_) => {
                    request_resync(d.db, &row.producer).await?;
                    Verdict::ResyncRequested
                }
            };
            checks.push(CursorCheck {
                consumer: d.service.to_owned(),
                producer: row.producer,
                cursor: row.revision,
                producer_head: head,
                verdict,
            });
        }
    }
    Ok(checks)
}

async fn request_resync(db: &DatabaseConnection, producer: &str) -> Result<(), DbErr> {
    let Some(producer) = PRODUCERS
        .into_iter()
        .find(|p| producer_name(*p) == producer)
    else {
        return Err(DbErr::Custom(format!("unknown producer {producer}")));
    };
    super::consumer::store_cursor(db, producer, RESYNC_REQUESTED).await
}
