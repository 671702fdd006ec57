//! The risk signals of rule ID-12, persisted so that every replica sharing the database agrees:
//! where each account signed in from (`sign_in_addresses`) and its failed proofs of the last
//! hour (`sign_in_failures`). Identity records them in the session's `risk` and the access
//! token's `risk` claim; the platform's step-up check turns them into REAUTHENTICATION_REQUIRED.

use orgplane_platform::ApiResult;
use orgplane_platform::policy::signal;
use sea_orm::Condition;
use sea_orm::ConnectionTrait;
use sea_orm::Set;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{OnConflict, Order, Query};

use super::{App, new_id};
use crate::store::entity::{sign_in_address, sign_in_failure};

/// How long an address stays known for an account (30 days).
pub(crate) const ADDRESS_MEMORY_MS: i64 = 30 * 24 * 3600 * 1000;
/// How many addresses each account's list keeps (its most recent), so that the list stays small.
const ADDRESSES_PER_ACCOUNT: u64 = 8;
/// How far back failed proofs count (one hour).
const FAILURE_WINDOW_MS: i64 = 3600 * 1000;
/// Failed proofs within the window that make a sign-in risky.
const RISKY_FAILURES: u64 = 3;

/// Risk signals as stored in a session or challenge: space-separated.
pub(crate) fn join_signals(signals: &[&str]) -> String {
    signals.join(" ")
}

/// The signals of a stored `risk` column.
pub(crate) fn split_signals(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_owned).collect()
}

impl App {
    /// The signals that fire for a sign-in of `user_id` from `address` now: `new_address` when
    /// the account signed in before but not from there in 30 days, `recent_failures` after
    /// repeated failed proofs in the last hour.
    pub(crate) async fn sign_in_risk<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
        address: &str,
    ) -> ApiResult<Vec<&'static str>> {
        let now = self.now_ms();
        let mut signals = Vec::new();
        let seen_before = sign_in_address::Entity::find()
            .filter(sign_in_address::Column::UserId.eq(user_id))
            .one(db)
            .await?
            .is_some();
        if seen_before {
            let seen_here = sign_in_address::Entity::find()
                .filter(sign_in_address::Column::UserId.eq(user_id))
                .filter(sign_in_address::Column::Address.eq(address))
                .filter(sign_in_address::Column::LastSeenMs.gt(now - ADDRESS_MEMORY_MS))
                .one(db)
                .await?
                .is_some();
            if !seen_here {
                signals.push(signal::NEW_ADDRESS);
            }
        }
        if self.had_recent_failures(db, user_id).await? {
            signals.push(signal::RECENT_FAILURES);
        }
        Ok(signals)
    }

    /// Whether `user_id` had repeated failed proofs in the last hour.
    pub(crate) async fn had_recent_failures<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: &str,
    ) -> ApiResult<bool> {
        let failures = sign_in_failure::Entity::find()
            .filter(sign_in_failure::Column::UserId.eq(user_id))
            .filter(sign_in_failure::Column::TimeMs.gt(self.now_ms() - FAILURE_WINDOW_MS))
            .count(db)
            .await?;
        Ok(failures >= RISKY_FAILURES)
    }

    /// Records a completed sign-in of `user_id` from `address` (and forgets the account's
    /// addresses unseen for 30 days, and all but its 8 most recent). The list is what the
    /// `new_address` signal (rule ID-12) and the known-address budgets (rule ID-3) read.
    pub(crate) async fn record_sign_in_address<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: &str,
        address: &str,
    ) -> ApiResult<()> {
        let now = self.now_ms();
        sign_in_address::Entity::insert(sign_in_address::ActiveModel {
            user_id: Set(user_id.to_owned()),
            address: Set(address.to_owned()),
            last_seen_ms: Set(now),
        })
        .on_conflict(
            OnConflict::columns([
                sign_in_address::Column::UserId,
                sign_in_address::Column::Address,
            ])
            .update_column(sign_in_address::Column::LastSeenMs)
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
        let newest = Query::select()
            .column(sign_in_address::Column::Address)
            .from(sign_in_address::Entity)
            .and_where(sign_in_address::Column::UserId.eq(user_id))
            .order_by(sign_in_address::Column::LastSeenMs, Order::Desc)
            .order_by(sign_in_address::Column::Address, Order::Desc)
            .limit(ADDRESSES_PER_ACCOUNT)
            .to_owned();
        sign_in_address::Entity::delete_many()
            .filter(sign_in_address::Column::UserId.eq(user_id))
            .filter(
                Condition::any()
                    .add(sign_in_address::Column::LastSeenMs.lte(now - ADDRESS_MEMORY_MS))
                    .add(sign_in_address::Column::Address.not_in_subquery(newest)),
            )
            .exec(txn)
            .await?;
        Ok(())
    }

    /// Records a failed password or second-factor proof of `user_id`, in a write of its own so
    /// that it stays when the request fails (and prunes that user's failures older than the
    /// window).
    pub(crate) async fn record_sign_in_failure(&self, user_id: &str) -> ApiResult<()> {
        let now = self.now_ms();
        sign_in_failure::Entity::delete_many()
            .filter(sign_in_failure::Column::UserId.eq(user_id))
            .filter(sign_in_failure::Column::TimeMs.lte(now - FAILURE_WINDOW_MS))
            .exec(&self.db)
            .await?;
        sign_in_failure::ActiveModel {
            id: Set(new_id("fail")),
            user_id: Set(user_id.to_owned()),
            time_ms: Set(now),
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }
}
