//! The write unit every mutation runs in: begin a write transaction, change state, append the
//! events that describe the change, commit, and only then wake the watchers of the outbox. The
//! three steps used to be written by hand in each service (and a forgotten wake-up delayed
//! consumers until the next poll); here they are one value. A unit begun with
//! [`WriteUnit::begin_grouped`] shares its commit with the units queued behind it
//! (see [`super::group`]).
//!
//! A unit's event rows, and the audit records written with [`crate::audit::AuditLogWriter::write_in`],
//! are INSERTed when it commits, together, in one round trip (on SQLite statements of one string,
//! on PostgreSQL one statement with data-modifying `WITH` parts). Only the first
//! event of a unit takes a revision from the counter row (its lock or the write lock is then
//! held to the commit, so no other transaction takes one meanwhile); the unit numbers its later
//! events itself and stores the last number with its rows. In a group, units number theirs
//! after the group's last, and the group stores the counter once before it commits: where the
//! statements of a group run one after the other, a role change makes one round trip in its
//! turn on SQLite (its UPDATE, checked with [`WriteUnit::change_at_commit`], its rows and the
//! hand-over) and two on PostgreSQL, instead of six.

use std::ops::Deref;

use orgplane_proto::events::v1::event;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement, Values};

use crate::call::Call;
use crate::db::WriteTransaction;
use crate::error::{ApiError, ApiResult};
use crate::events::Outbox;
use crate::events::group::Turn;

/// Deferred statements sent as one: a unit that publishes thousands of events (an operator's
/// change reaching every child) stays far below PostgreSQL's 65,535 parameters per statement.
const JOINED: usize = 200;

/// The error the `write_guards` trigger raises (migration
/// [`super::migration::CreateWriteGuards`]) when a change run with
/// [`WriteUnit::change_at_commit`] touched another number of rows than it was to.
pub(crate) const STALE_WRITE: &str = "orgplane: stale write";

/// A statement run at commit.
enum Deferred {
    /// An INSERT (or the counter's UPDATE) whose outcome nothing reads.
    Write(Statement),
    /// A change that must touch exactly `rows` rows, checked in the same round trip.
    Checked { change: Statement, rows: u64 },
}

/// An open write transaction on a producer's database; see the module docs. Dereferences to the
/// transaction, so every sea-orm statement of the mutation runs on `&*unit`.
pub struct WriteUnit {
    txn: Txn,
    outbox: Outbox,
    request_id: String,
    /// The last revision the unit appended.
    revision: Option<i64>,
    /// The counter row's value in this transaction after the unit's own
    /// [`Outbox::advance`] or its own store of it, if it did either.
    stored: Option<i64>,
    /// Statements run at commit (checked changes, events, audit records).
    deferred: Vec<Deferred>,
    /// The error a commit answers when a checked change touched another number of rows.
    stale: Option<ApiError>,
}

/// Where a unit's statements run.
enum Txn {
    /// A transaction of its own.
    Own(WriteTransaction),
    /// Its savepoint in a group's transaction.
    Grouped(Turn),
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
        Ok(Self::new(Txn::Own(txn), outbox, request_id))
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
        let turn = outbox.groups().join(outbox).await?;
        Ok(Self::new(Txn::Grouped(turn), outbox, request_id))
    }

    fn new(txn: Txn, outbox: &Outbox, request_id: &str) -> Self {
        Self {
            txn,
            outbox: outbox.clone(),
            request_id: request_id.to_owned(),
            revision: None,
            stored: None,
            deferred: Vec::new(),
            stale: None,
        }
    }

    /// Appends an event in this transaction and returns its revision; its row is written at
    /// commit. Append after the state changes it describes (the counter's row lock is then held
    /// only until the commit).
    pub async fn append(&mut self, payload: event::Payload) -> ApiResult<i64> {
        let known = self.revision.or_else(|| match &self.txn {
            Txn::Grouped(turn) => turn.head(),
            Txn::Own(_) => None,
        });
        let revision = match known {
            Some(last) => last + 1,
            None => {
                let taken = self.outbox.advance(self.txn()).await?;
                self.stored = Some(taken);
                taken
            }
        };
        let insert = self
            .outbox
            .event_insert(self.backend(), revision, payload, &self.request_id);
        self.deferred.push(Deferred::Write(insert));
        self.revision = Some(revision);
        Ok(revision)
    }

    /// Runs `statement` (an INSERT whose outcome nothing in the unit reads) at commit, with the
    /// unit's other deferred statements.
    pub(crate) fn defer(&mut self, statement: Statement) {
        self.deferred.push(Deferred::Write(statement));
    }

    /// Runs `change` (an UPDATE or DELETE whose conditions say what it expects, such as a row's
    /// version) at commit, in the round trip of the unit's rows instead of one of its own, and
    /// fails the commit with `stale` unless it touched exactly `rows` rows: nothing of the unit
    /// is then kept, and a grouped unit's group goes on without it. For a change nothing in the
    /// unit reads back (later statements of the unit do not see it). When a unit checks several
    /// changes, a commit that finds any of them stale answers the first one's `stale`.
    pub fn change_at_commit(&mut self, change: Statement, rows: u64, stale: ApiError) {
        self.stale.get_or_insert(stale);
        self.deferred.push(Deferred::Checked { change, rows });
    }

    fn backend(&self) -> DbBackend {
        self.txn().get_database_backend()
    }

    /// Runs the deferred statements and, outside a group, stores the counter when the unit
    /// numbered events past its own [`Outbox::advance`].
    async fn flush(&mut self) -> ApiResult<()> {
        let backend = self.backend();
        if matches!(self.txn, Txn::Own(_))
            && let Some(revision) = self.revision
            && self.stored != Some(revision)
        {
            self.deferred
                .push(Deferred::Write(Outbox::head_update(backend, revision)));
        }
        let mut deferred = std::mem::take(&mut self.deferred).into_iter().peekable();
        while deferred.peek().is_some() {
            let part: Vec<Deferred> = deferred.by_ref().take(JOINED).collect();
            if let Some(joined) = joined(backend, part) {
                let ran = self.txn().execute_raw(joined).await;
                if let Err(e) = &ran
                    && e.to_string().contains(STALE_WRITE)
                    && let Some(stale) = self.stale.take()
                {
                    return Err(stale);
                }
                ran?;
            }
        }
        Ok(())
    }

    /// The revision of the last event appended, if any.
    pub fn revision(&self) -> Option<i64> {
        self.revision
    }

    /// The transaction, for APIs that take it by reference.
    pub fn txn(&self) -> &DatabaseTransaction {
        match &self.txn {
            Txn::Own(txn) => txn,
            Txn::Grouped(turn) => turn.txn(),
        }
    }

    /// Writes the deferred rows, commits, then wakes the outbox's watchers. Returns the last
    /// revision appended. A grouped unit hands its turn over instead ([`Turn::HAND_OVER`]: on
    /// SQLite in the round trip of its rows, with the counter stored at its last revision; on
    /// PostgreSQL, whose rows go as one prepared statement, in one more) and answers after its group's commit.
    pub async fn commit(mut self) -> ApiResult<Option<i64>> {
        let backend = self.backend();
        let folded = backend == DbBackend::Sqlite;
        if let Txn::Grouped(turn) = &mut self.txn
            && folded
        {
            // The counter is stored in this round trip too, so the group's commit is its COMMIT
            // alone.
            if let Some(revision) = self.revision
                && self.stored != Some(revision)
            {
                self.deferred
                    .push(Deferred::Write(Outbox::head_update(backend, revision)));
                self.stored = Some(revision);
            }
            let hand_over =
                Turn::HAND_OVER.map(|sql| Deferred::Write(Statement::from_string(backend, sql)));
            turn.handing_over();
            self.deferred.extend(hand_over);
        }
        let written = self.write_out(folded).await;
        if let (Err(_), Txn::Grouped(turn)) = (&written, &mut self.txn) {
            turn.hand_over_failed();
        }
        written?;
        let Self {
            txn,
            outbox,
            revision,
            stored,
            ..
        } = self;
        match txn {
            Txn::Own(txn) => {
                txn.commit().await?;
                if let Some(revision) = revision {
                    outbox.committed(revision);
                }
            }
            // The group's committer commits and wakes the watchers.
            Txn::Grouped(turn) => turn.handed_over(revision, stored).await?,
        }
        Ok(revision)
    }

    /// Flushes, then sends a grouped unit's hand-over unless `folded` into the flush.
    async fn write_out(&mut self, folded: bool) -> ApiResult<()> {
        self.flush().await?;
        if let Txn::Grouped(turn) = &mut self.txn
            && !folded
        {
            turn.handing_over();
            turn.txn()
                .execute_unprepared(&Turn::HAND_OVER.join(";\n"))
                .await?;
        }
        Ok(())
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
        self.txn()
    }
}

/// Statements as one, for one round trip: on SQLite their SQL joined by `;` with their parameters
/// in order (each statement binds the next of them: SQLx's SQLite driver runs every statement of
/// a string); on PostgreSQL, which prepares one statement at a time, all but the last as
/// data-modifying `WITH` parts of the last, their `$n` parameters renumbered. The parts of a
/// PostgreSQL statement do not see each other's rows: only for writes of distinct rows. A checked
/// change is followed by its guard, an INSERT into `write_guards` of the rows it touched (on
/// SQLite `changes()`, on PostgreSQL the count of the rows its part returned), whose trigger fails
/// the statement when they are not the rows expected.
fn joined(backend: DbBackend, deferred: Vec<Deferred>) -> Option<Statement> {
    let mut parts: Vec<Statement> = Vec::with_capacity(deferred.len() + 1);
    for d in deferred {
        match d {
            Deferred::Write(statement) => parts.push(statement),
            Deferred::Checked { mut change, rows } => {
                let guard = match backend {
                    DbBackend::Sqlite => {
                        format!(
                            "INSERT INTO write_guards (expected, seen) VALUES ({rows}, changes())"
                        )
                    }
                    _ => {
                        change.sql.push_str(" RETURNING 1");
                        format!(
                            "INSERT INTO write_guards (expected, seen) SELECT {rows}, count(*) FROM deferred_{}",
                            parts.len()
                        )
                    }
                };
                parts.push(change);
                parts.push(Statement::from_string(backend, guard));
            }
        }
    }
    let mut statements = parts.into_iter();
    let mut first = statements.next()?;
    let mut values = first.values.take().map(|v| v.0).unwrap_or_default();
    let rest: Vec<Statement> = statements.collect();
    if rest.is_empty() {
        first.values = Some(Values(values));
        return Some(first);
    }
    let sql = match backend {
        DbBackend::Sqlite => {
            let mut sql = first.sql;
            for s in rest {
                sql.push_str(";\n");
                sql.push_str(&s.sql);
                values.extend(s.values.map(|v| v.0).unwrap_or_default());
            }
            sql
        }
        _ => {
            let mut sql = format!("WITH deferred_0 AS ({})", first.sql);
            let last = rest.len() - 1;
            for (i, s) in rest.into_iter().enumerate() {
                let part = renumbered(&s.sql, values.len());
                values.extend(s.values.map(|v| v.0).unwrap_or_default());
                if i == last {
                    sql.push(' ');
                    sql.push_str(&part);
                } else {
                    sql.push_str(&format!(", deferred_{} AS ({part})", i + 1));
                }
            }
            sql
        }
    };
    Some(Statement {
        sql,
        values: Some(Values(values)),
        db_backend: backend,
    })
}

/// `sql` with each PostgreSQL parameter `$n` outside quotes as `$(n + offset)`.
fn renumbered(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        out.push(c);
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '$') => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                match n.parse::<usize>() {
                    Ok(n) => out.push_str(&(n + offset).to_string()),
                    Err(_) => out.push_str(&n),
                }
            }
            (None, _) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::renumbered;

    #[test]
    fn renumbered_shifts_parameters_outside_quotes_only() {
        assert_eq!(
            renumbered(
                r#"INSERT INTO "t$1" ("a", "b") VALUES ($1, $12) -- '$3'"#,
                4
            ),
            r#"INSERT INTO "t$1" ("a", "b") VALUES ($5, $16) -- '$3'"#
        );
        assert_eq!(renumbered("SELECT $", 2), "SELECT $");
    }
}
