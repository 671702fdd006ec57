//! The write unit every mutation runs in: begin a write transaction, change state, append the
//! events that describe the change, commit, and only then wake the watchers of the outbox. The
//! three steps used to be written by hand in each service (and a forgotten wake-up delayed
//! consumers until the next poll); here they are one value. A unit begun with
//! [`WriteUnit::begin_grouped`] shares its commit with the units queued behind it
//! (see [`super::group`]).

use std::ops::Deref;

use orgplane_proto::events::v1::event;
use sea_orm::DatabaseTransaction;

use crate::call::Call;
use crate::error::ApiResult;
use crate::events::Outbox;
use crate::events::group::Turn;

/// An open write transaction on a producer's database; see the module docs. Dereferences to the
/// transaction, so every sea-orm statement of the mutation runs on `&*unit`.
pub struct WriteUnit {
    /// The transaction, or for a grouped unit its savepoint in the group's transaction. Declared
    /// before `turn`: dropped first, it rolls the savepoint back before the turn passes on.
    txn: DatabaseTransaction,
    outbox: Outbox,
    request_id: String,
    revision: Option<i64>,
    /// The unit's turn in a group commit, if grouped.
    turn: Option<Turn>,
}

impl std::fmt::Debug for WriteUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteUnit")
            .field("request_id", &self.request_id)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl WriteUnit {
    /// Begins a write transaction ([`crate::db::begin_write`]) on `outbox`'s database for `call`.
    pub async fn begin(outbox: &Outbox, call: &Call) -> ApiResult<Self> {
        Self::begin_for(outbox, &call.request_id).await
    }

    /// The same for work the system does by itself, tagged with `request_id`.
    pub async fn begin_for(outbox: &Outbox, request_id: &str) -> ApiResult<Self> {
        let txn = crate::db::begin_write(outbox.connection()).await?;
        Ok(Self {
            txn,
            outbox: outbox.clone(),
            request_id: request_id.to_owned(),
            revision: None,
            turn: None,
        })
    }

    /// Begins a unit that commits together with the units of `outbox` queued behind it (group
    /// commit, [`super::group`]): many mutations per database commit instead of one. Only for
    /// mutations whose checks hold inside the unit (version conditions in their statements, reads
    /// on the unit), since reads on other connections do not see earlier units of the group.
    pub async fn begin_grouped(outbox: &Outbox, call: &Call) -> ApiResult<Self> {
        Self::begin_grouped_for(outbox, &call.request_id).await
    }

    /// [`Self::begin_grouped`] for work tagged with `request_id`.
    pub async fn begin_grouped_for(outbox: &Outbox, request_id: &str) -> ApiResult<Self> {
        if !outbox.groups().enabled() {
            return Self::begin_for(outbox, request_id).await;
        }
        let (txn, turn) = outbox.groups().join(outbox).await?;
        Ok(Self {
            txn,
            outbox: outbox.clone(),
            request_id: request_id.to_owned(),
            revision: None,
            turn: Some(turn),
        })
    }

    /// Appends an event in this transaction and returns its revision. Append after the state
    /// changes it describes (the counter's row lock is then held only until the commit).
    pub async fn append(&mut self, payload: event::Payload) -> ApiResult<i64> {
        let revision = self
            .outbox
            .append(&self.txn, payload, &self.request_id)
            .await?;
        self.revision = Some(revision);
        Ok(revision)
    }

    /// The revision of the last event appended, if any.
    pub fn revision(&self) -> Option<i64> {
        self.revision
    }

    /// The transaction, for APIs that take it by reference.
    pub fn txn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Commits, then wakes the outbox's watchers. Returns the last revision appended.
    pub async fn commit(self) -> ApiResult<Option<i64>> {
        let Self {
            txn,
            outbox,
            revision,
            turn,
            ..
        } = self;
        txn.commit().await?;
        match turn {
            // The savepoint is released; the group's committer commits and wakes the watchers.
            Some(turn) => turn.committed(revision).await?,
            None => {
                if let Some(revision) = revision {
                    outbox.committed(revision);
                }
            }
        }
        Ok(revision)
    }

    /// Commits and answers the revision a client should wait for: the last one appended, or the
    /// outbox head when this unit published nothing (a no-op mutation still names a revision).
    pub async fn commit_at_revision(self) -> ApiResult<i64> {
        let outbox = self.outbox.clone();
        match self.commit().await? {
            Some(revision) => Ok(revision),
            None => Ok(outbox.head().await?.revision),
        }
    }
}

impl Deref for WriteUnit {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}
