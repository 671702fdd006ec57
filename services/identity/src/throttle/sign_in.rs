//! The sign-in budgets of rule ID-3, shared by every replica through identity's database:
//! failed sign-ins (passwords and second-factor codes) per peer address and per account, and the
//! account's own budget at an address it signed in from lately. N replicas sharing one database
//! enforce one budget together, and a restart forgets nothing.
//!
//! Each budget is a fixed window that opens at the first failure after the previous window
//! ended: at most `limit` failures per window, so at most `2 × limit` in any span of one window
//! length. Rows are `sign_in_budgets (key, failures, window_start_ms)`:
//!
//! - an attempt reads its budgets and whether its address is known to the account in **one**
//!   indexed query ([`SignInBudgets::begin`]) — the only cost a successful sign-in pays;
//! - a failure is **one** atomic `INSERT … ON CONFLICT DO UPDATE` that increments (or restarts an
//!   ended window) in the database, so concurrent failures on any replica are never lost;
//! - attempts still in flight (their hash not yet computed) are reserved in this replica's
//!   memory, so a concurrent burst on one replica tries exactly the budget; the read-and-reserve
//!   and the record-and-release of a failure take turns in the replica (one short database
//!   statement each), so no failure is missed between the two counts;
//! - ended windows are deleted by [`SignInBudgets::sweep`] on a timer.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use orgplane_platform::{ApiError, ApiResult};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Alias, OnConflict, Query, UnionType};
use sea_orm::{ConnectionTrait, ExprTrait, Set};

use crate::store::entity::{sign_in_address, sign_in_budget};
use orgplane_platform::error::Reason;

/// The key a known address is reported under in [`SignInBudgets::begin`]'s query (no budget
/// key is empty).
const KNOWN: &str = "";

/// How many failures a budget allows per window.
#[derive(Debug, Clone, Copy)]
pub struct SignInLimits {
    /// Failures per peer address.
    pub per_peer: u32,
    /// Failures per account (and per account at each of its known addresses).
    pub per_account: u32,
    /// How long a window lasts.
    pub window: Duration,
}

/// The failures a stored window still counts at `now_ms`: none once it ended.
fn live_failures(failures: i32, window_start_ms: i64, now_ms: i64, window_ms: i64) -> u32 {
    if window_start_ms > now_ms - window_ms {
        u32::try_from(failures).unwrap_or(0)
    } else {
        0
    }
}

/// How long until the window that opened at `window_start_ms` ends (at least a second).
fn retry_after(window_start_ms: i64, now_ms: i64, window_ms: i64) -> Duration {
    let left = std::cmp::max(window_start_ms + window_ms - now_ms, 0);
    Duration::from_millis(u64::try_from(left).unwrap_or(0)).max(Duration::from_secs(1))
}

/// RESOURCE_EXHAUSTED `RATE_LIMITED` with RetryInfo: the same refusal as every throttle.
fn refused(wait: Duration) -> ApiError {
    ApiError::rate_limited(Reason::RateLimited, "too many attempts; retry later", wait)
}

/// A stored window as [`SignInBudgets::begin`] read it.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    failures: u32,
    start_ms: i64,
}

/// The shared sign-in budgets (rule ID-3); see the module documentation.
#[derive(Debug)]
pub struct SignInBudgets {
    limits: SignInLimits,
    window_ms: i64,
    /// Attempts of this replica whose outcome is not known yet, per key.
    in_flight: Mutex<HashMap<String, u32>>,
    /// Held while an attempt reads the budgets and reserves its place, and while a failed one
    /// records its failure and gives its place back: otherwise a read can miss a failure that
    /// left the in-flight count after the read began but before it was counted (measured: 20
    /// concurrent guesses at a budget of 5 let 6 through).
    transitions: tokio::sync::Mutex<()>,
    /// Prefixed to every key; empty in a deployment (see [`Self::isolate_for_control_arm`]).
    scope: OnceLock<String>,
}

impl SignInBudgets {
    /// Budgets of `limits`.
    pub fn new(limits: SignInLimits) -> Self {
        Self {
            limits,
            window_ms: std::cmp::max(
                i64::try_from(limits.window.as_millis()).unwrap_or(i64::MAX / 4),
                1,
            ),
            in_flight: Mutex::new(HashMap::new()),
            transitions: tokio::sync::Mutex::new(()),
            scope: OnceLock::new(),
        }
    }

    /// Gives this replica budgets of its own, as the in-memory throttles did: only the control
    /// arm of the tests that prove replicas share one budget calls this.
    #[doc(hidden)]
    pub fn isolate_for_control_arm(&self) {
        let _ = self
            .scope
            .set(format!("replica {} ", uuid::Uuid::now_v7().simple()));
    }

    fn key(&self, parts: std::fmt::Arguments<'_>) -> String {
        format!("{}{parts}", self.scope.get().map_or("", String::as_str))
    }

    /// The key of `account`'s budget for strangers (the password reset clears it).
    pub fn account_key(&self, account: &str) -> String {
        self.key(format_args!("account {account}"))
    }

    /// Takes one attempt from the budgets of `peer` and `account` before the proof is checked.
    /// When the account's user (`known.0`; empty for an unknown account, which reads the same)
    /// signed in from `peer` since `known.1` (Unix ms), the account's budget is that address's
    /// own, so that guesses from elsewhere do not lock the owner out. RESOURCE_EXHAUSTED
    /// `RATE_LIMITED` with RetryInfo when either is spent, counting this replica's attempts in
    /// flight. One indexed read.
    pub async fn begin<C: ConnectionTrait>(
        &self,
        db: &C,
        now_ms: i64,
        peer: &str,
        account: &str,
        known: (&str, i64),
    ) -> ApiResult<SignInAttempt<'_>> {
        let peer_key = self.key(format_args!("peer {peer}"));
        let stranger_key = self.account_key(account);
        let own_key = self.key(format_args!("account {account} from {peer}"));
        let (user_id, since_ms) = known;
        let _transition = self.transitions.lock().await;
        let query = Query::select()
            .columns([
                sign_in_budget::Column::Key,
                sign_in_budget::Column::Failures,
                sign_in_budget::Column::WindowStartMs,
            ])
            .from(sign_in_budget::Entity)
            .and_where(sign_in_budget::Column::Key.is_in([
                peer_key.clone(),
                stranger_key.clone(),
                own_key.clone(),
            ]))
            .union(
                UnionType::All,
                Query::select()
                    .expr_as(Expr::val(KNOWN), Alias::new("key"))
                    .expr_as(Expr::val(0i32), Alias::new("failures"))
                    .column(sign_in_address::Column::LastSeenMs)
                    .from(sign_in_address::Entity)
                    .and_where(sign_in_address::Column::UserId.eq(user_id))
                    .and_where(sign_in_address::Column::Address.eq(peer))
                    .and_where(sign_in_address::Column::LastSeenMs.gt(since_ms))
                    .to_owned(),
            )
            .to_owned();
        let mut windows: HashMap<String, Window> = HashMap::new();
        for row in db.query_all(&query).await? {
            let key: String = row.try_get_by_index(0)?;
            let failures: i32 = row.try_get_by_index(1)?;
            let start_ms: i64 = row.try_get_by_index(2)?;
            let failures = live_failures(failures, start_ms, now_ms, self.window_ms);
            windows.insert(key, Window { failures, start_ms });
        }
        let account_key = if windows.contains_key(KNOWN) {
            own_key
        } else {
            stranger_key
        };
        let budgets = [
            (peer_key, self.limits.per_peer),
            (account_key, self.limits.per_account),
        ];
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for (key, limit) in &budgets {
            let window = windows.get(key).copied().unwrap_or_default();
            let pending = in_flight.get(key).copied().unwrap_or(0);
            if window.failures.saturating_add(pending) >= *limit {
                let wait = if window.failures >= *limit {
                    retry_after(window.start_ms, now_ms, self.window_ms)
                } else {
                    Duration::from_secs(1)
                };
                return Err(refused(wait));
            }
        }
        for (key, _) in &budgets {
            *in_flight.entry(key.clone()).or_insert(0) += 1;
        }
        drop(in_flight);
        let [(peer_key, _), (account_key, _)] = budgets;
        let account_had_failures = windows.get(&account_key).is_some_and(|w| w.failures > 0);
        Ok(SignInAttempt {
            budgets: self,
            peer_key,
            account_key,
            account_had_failures,
            released: false,
        })
    }

    /// Counts one failure against each of `keys`: one atomic upsert that increments a live
    /// window and restarts an ended one, race-free across replicas.
    async fn record_failure<C: ConnectionTrait>(
        &self,
        db: &C,
        now_ms: i64,
        keys: [&str; 2],
    ) -> ApiResult<()> {
        let ended = Expr::col((
            sign_in_budget::Entity,
            sign_in_budget::Column::WindowStartMs,
        ))
        .lte(now_ms - self.window_ms);
        let rows = keys.map(|key| sign_in_budget::ActiveModel {
            key: Set(key.to_owned()),
            failures: Set(1),
            window_start_ms: Set(now_ms),
        });
        sign_in_budget::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(sign_in_budget::Column::Key)
                    .value(
                        sign_in_budget::Column::Failures,
                        Expr::case(ended.clone(), 1i32).finally(
                            Expr::col((sign_in_budget::Entity, sign_in_budget::Column::Failures))
                                .add(1i32),
                        ),
                    )
                    .value(
                        sign_in_budget::Column::WindowStartMs,
                        Expr::case(ended, now_ms).finally(Expr::col((
                            sign_in_budget::Entity,
                            sign_in_budget::Column::WindowStartMs,
                        ))),
                    )
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        Ok(())
    }

    /// Forgets the failures counted against `key`.
    pub async fn clear<C: ConnectionTrait>(&self, db: &C, key: &str) -> ApiResult<()> {
        sign_in_budget::Entity::delete_by_id(key.to_owned())
            .exec(db)
            .await?;
        Ok(())
    }

    /// Deletes the windows that ended by `now_ms`; returns how many.
    pub async fn sweep<C: ConnectionTrait>(&self, db: &C, now_ms: i64) -> ApiResult<u64> {
        let done = sign_in_budget::Entity::delete_many()
            .filter(sign_in_budget::Column::WindowStartMs.lte(now_ms - self.window_ms))
            .exec(db)
            .await?;
        Ok(done.rows_affected)
    }

    fn release(&self, keys: [&str; 2]) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            if let Some(n) = in_flight.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    in_flight.remove(key);
                }
            }
        }
    }
}

/// One sign-in attempt holding its place in the budgets (in this replica's memory) until its
/// outcome: [`Self::failed`] counts it in the shared database, [`Self::succeeded`] clears the
/// account budget it drew on; dropped without either (a right password still waiting for its
/// second factor, an answer that proved nothing) it counts for nothing.
#[derive(Debug)]
#[must_use = "say how the attempt ended: failed or succeeded"]
pub struct SignInAttempt<'a> {
    budgets: &'a SignInBudgets,
    peer_key: String,
    account_key: String,
    account_had_failures: bool,
    /// The place was given back already (by [`Self::failed`]).
    released: bool,
}

impl SignInAttempt<'_> {
    /// A wrong proof: one failure against the peer's and the account's budgets, recorded before
    /// the reservation is given back so that it is never counted by neither.
    pub async fn failed<C: ConnectionTrait>(mut self, db: &C, now_ms: i64) -> ApiResult<()> {
        let _transition = self.budgets.transitions.lock().await;
        let recorded = self
            .budgets
            .record_failure(db, now_ms, [&self.peer_key, &self.account_key])
            .await;
        self.budgets.release([&self.peer_key, &self.account_key]);
        self.released = true;
        recorded
    }

    /// Signed in: the account budget the attempt drew on starts afresh (a write only when it
    /// had failures). The peer keeps its failures.
    pub async fn succeeded<C: ConnectionTrait>(self, db: &C) -> ApiResult<()> {
        if self.account_had_failures {
            self.budgets.clear(db, &self.account_key).await?;
        }
        Ok(())
    }
}

impl Drop for SignInAttempt<'_> {
    fn drop(&mut self) {
        if !self.released {
            self.budgets.release([&self.peer_key, &self.account_key]);
        }
    }
}

#[cfg(test)]
mod tests;
