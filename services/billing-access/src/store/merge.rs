//! What a merge (rules ORG-15, BILL-6) changes in the billing tables, as set-based statements in
//! the consumer's transaction, and the merged organizations.
//!
//! Usage records are unique per (organization, idempotency key), and the two organizations may
//! have used the same key: a moved record's key becomes [`moved_key`], `"<candidate id> <key>"`.
//! Clients' keys are printable ASCII without spaces (BILL-3), so a moved key never equals a key
//! the prime recorded or will record, nor one moved from another candidate (each prefix is a
//! different organization; a record moved twice, through a chain of merges, gets two prefixes).
//! Tokens, times and every other column are kept. The candidate's rollups, in both rollup tables
//! (`usage_rollups` and `usage_account_rollups`), are added into the prime's rows with the same
//! minute and dimensions, then removed: each record stays counted
//! once, and reports, which price the summed tokens exactly, add up to the same amounts.

use std::collections::{HashMap, HashSet};

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Alias, BinOper, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, QuerySelect, Set};

use orgplane_platform::error::ApiError;

use crate::domain::Result;
use crate::store::entity::{
    managed_account, merged, usage_account_rollup, usage_record, usage_rollup, workspace,
};

/// Separates the candidate's id from the original key in a moved record's key; never part of a
/// client's key.
pub const KEY_SEPARATOR: char = ' ';

/// How many merges a chain may have before the organization it ends at is taken as it is.
const MAX_CHAIN: usize = 32;

/// The key of `candidate`'s record `key` once it moved to the prime.
pub fn moved_key(candidate: &str, key: &str) -> String {
    format!("{candidate}{KEY_SEPARATOR}{key}")
}

/// The prime that absorbed `organization_id`, if it was merged.
pub async fn prime_of<C: ConnectionTrait>(db: &C, organization_id: &str) -> Result<Option<String>> {
    Ok(merged::Entity::find_by_id(organization_id.to_owned())
        .one(db)
        .await?
        .map(|m| m.prime_organization_id))
}

/// The organization that holds `organization_id`'s data now: itself, or the end of the chain of
/// merges that absorbed it.
pub async fn current_home<C: ConnectionTrait>(db: &C, organization_id: &str) -> Result<String> {
    let mut org = organization_id.to_owned();
    for _ in 0..MAX_CHAIN {
        match prime_of(db, &org).await? {
            Some(prime) if prime != org => org = prime,
            _ => break,
        }
    }
    Ok(org)
}

/// Every merged organization with its prime.
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<HashMap<String, String>> {
    Ok(merged::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.organization_id, m.prime_organization_id))
        .collect())
}

/// The merged organizations among `ids`.
pub async fn merged_among<'a, C: ConnectionTrait>(
    db: &C,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashSet<String>> {
    Ok(merged::Entity::find()
        .select_only()
        .column(merged::Column::OrganizationId)
        .filter(merged::Column::OrganizationId.is_in(ids))
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

/// Records that `candidate` was merged into `prime`; returns false when it already was.
pub async fn remember<C: ConnectionTrait>(
    db: &C,
    candidate: &str,
    prime: &str,
    now_ms: i64,
) -> Result<bool> {
    let inserted = merged::Entity::insert(merged::ActiveModel {
        organization_id: Set(candidate.to_owned()),
        prime_organization_id: Set(prime.to_owned()),
        merge_time_ms: Set(now_ms),
    })
    .on_conflict(
        OnConflict::column(merged::Column::OrganizationId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(inserted > 0)
}

/// Moves `candidate`'s usage records to `prime`, each under its [`moved_key`]; returns how many.
pub async fn move_usage_records<C: ConnectionTrait>(
    db: &C,
    candidate: &str,
    prime: &str,
) -> Result<u64> {
    use usage_record::Column as R;
    let prefix = moved_key(candidate, "");
    let moved = usage_record::Entity::update_many()
        .col_expr(R::OrganizationId, Expr::value(prime))
        .col_expr(
            R::IdempotencyKey,
            Expr::val(prefix).binary(BinOper::Custom("||"), Expr::col(R::IdempotencyKey)),
        )
        .filter(R::OrganizationId.eq(candidate))
        .exec(db)
        .await?;
    Ok(moved.rows_affected)
}

/// The rollup tables with their keys (organization first): `usage_rollups` and
/// `usage_account_rollups` (rule BILL-6), which hold the same sums.
const ROLLUP_TABLES: [(&str, &[&str]); 2] = [
    ("usage_rollups", &crate::store::usage::NARROW_KEY),
    ("usage_account_rollups", &crate::store::usage::WIDE_KEY),
];

const SUMS: [&str; 3] = ["input_tokens", "output_tokens", "record_count"];

/// Adds `from`'s rollups into `into`'s rows with the same minute and dimensions (new rows where
/// `into` has none), in both rollup tables. `from`'s rows stay: [`delete_rollups`] removes them.
pub async fn add_rollups_into<C: ConnectionTrait>(db: &C, from: &str, into: &str) -> Result<()> {
    for (table, key) in ROLLUP_TABLES {
        // The key after the organization, which is `into` for every row written.
        let key = &key[1..];
        let columns = || key.iter().chain(&SUMS).map(|c| Alias::new(*c));
        let mut select = Query::select();
        select.expr(Expr::val(into));
        select.columns(columns()).from(Alias::new(table));
        select.and_where(Expr::col(Alias::new("organization_id")).eq(from));
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new(table))
            .columns(std::iter::once(Alias::new("organization_id")).chain(columns()))
            .select_from(select)
            .map_err(ApiError::internal)?;
        let mut conflict = OnConflict::columns(
            std::iter::once("organization_id")
                .chain(key.iter().copied())
                .map(Alias::new),
        );
        for name in SUMS {
            conflict.value(
                Alias::new(name),
                Expr::cust(format!("{table}.{name} + excluded.{name}")),
            );
        }
        insert.on_conflict(conflict);
        db.execute(&insert).await?;
    }
    Ok(())
}

/// Removes `organization_id`'s rollups from both rollup tables and their tiers; returns how many rows of
/// `usage_rollups` (the rows of every report but those by account).
pub async fn delete_rollups<C: ConnectionTrait>(db: &C, organization_id: &str) -> Result<u64> {
    crate::store::rollups::delete_tier_rows(db, organization_id).await?;
    usage_account_rollup::Entity::delete_many()
        .filter(usage_account_rollup::Column::OrganizationId.eq(organization_id))
        .exec(db)
        .await?;
    Ok(usage_rollup::Entity::delete_many()
        .filter(usage_rollup::Column::OrganizationId.eq(organization_id))
        .exec(db)
        .await?
        .rows_affected)
}

/// Moves every workspace of `candidate` known here to `prime`; returns their ids.
pub async fn move_workspaces<C: ConnectionTrait>(
    db: &C,
    candidate: &str,
    prime: &str,
) -> Result<Vec<String>> {
    use workspace::Column as W;
    let ids: Vec<String> = workspace::Entity::find()
        .select_only()
        .column(W::WorkspaceId)
        .filter(W::OrganizationId.eq(candidate))
        .into_tuple()
        .all(db)
        .await?;
    workspace::Entity::update_many()
        .col_expr(W::OrganizationId, Expr::value(prime))
        .filter(W::OrganizationId.eq(candidate))
        .exec(db)
        .await?;
    Ok(ids)
}

/// Moves every managed account whose home is `candidate` (subaccounts included) to `prime`; their
/// billing accounts, keyed by account, follow. Returns their ids.
pub async fn move_accounts<C: ConnectionTrait>(
    db: &C,
    candidate: &str,
    prime: &str,
) -> Result<Vec<String>> {
    use managed_account::Column as A;
    let ids: Vec<String> = managed_account::Entity::find()
        .select_only()
        .column(A::AccountId)
        .filter(A::OrganizationId.eq(candidate))
        .into_tuple()
        .all(db)
        .await?;
    managed_account::Entity::update_many()
        .col_expr(A::OrganizationId, Expr::value(prime))
        .filter(A::OrganizationId.eq(candidate))
        .exec(db)
        .await?;
    Ok(ids)
}
