//! Managed accounts as known here (from the organization service's `AccountChanged` events) and
//! the billing accounts of the top-level ones (rule BILL-6).

use std::collections::{HashMap, HashSet};

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, QueryOrder, QuerySelect, Set};

use crate::domain::Result;
use crate::store::entity::{account_billing, managed_account};

/// A managed top-level account and its billing account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBilling {
    /// The account as its home organization sees it.
    pub account: managed_account::Model,
    /// Its billing account.
    pub billing: account_billing::Model,
}

/// The account `account_id`, if known here.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
) -> Result<Option<managed_account::Model>> {
    Ok(managed_account::Entity::find_by_id(account_id.to_owned())
        .one(db)
        .await?)
}

/// The accounts known here among `ids`, by id.
pub async fn known<C: ConnectionTrait>(
    db: &C,
    ids: &HashSet<&str>,
) -> Result<HashMap<String, managed_account::Model>> {
    let ids: Vec<&str> = ids.iter().copied().collect();
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        for a in managed_account::Entity::find()
            .filter(managed_account::Column::AccountId.is_in(chunk.iter().copied()))
            .all(db)
            .await?
        {
            out.insert(a.account_id.clone(), a);
        }
    }
    Ok(out)
}

/// Inserts or replaces an account with the state an event carried.
pub async fn upsert<C: ConnectionTrait>(db: &C, row: managed_account::Model) -> Result<()> {
    use managed_account::Column as C;
    managed_account::Entity::insert(managed_account::ActiveModel {
        account_id: Set(row.account_id),
        organization_id: Set(row.organization_id),
        parent_account_id: Set(row.parent_account_id),
        state: Set(row.state),
        owner_user_id: Set(row.owner_user_id),
        display_name: Set(row.display_name),
        close_time_ms: Set(row.close_time_ms),
    })
    .on_conflict(
        OnConflict::column(C::AccountId)
            .update_columns([
                C::OrganizationId,
                C::ParentAccountId,
                C::State,
                C::OwnerUserId,
                C::DisplayName,
                C::CloseTimeMs,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The billing account of `account_id`, if it has one.
pub async fn billing<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
) -> Result<Option<account_billing::Model>> {
    Ok(account_billing::Entity::find_by_id(account_id.to_owned())
        .one(db)
        .await?)
}

/// Inserts a billing account unless the account has one; returns whether it was inserted.
pub async fn insert_billing<C: ConnectionTrait>(
    db: &C,
    row: &account_billing::Model,
) -> Result<bool> {
    let inserted = account_billing::Entity::insert(account_billing::ActiveModel {
        account_id: Set(row.account_id.clone()),
        plan: Set(row.plan),
        billing_email: Set(row.billing_email.clone()),
        seats: Set(row.seats),
        create_time_ms: Set(row.create_time_ms),
        update_time_ms: Set(row.update_time_ms),
        version: Set(row.version),
    })
    .on_conflict(
        OnConflict::column(account_billing::Column::AccountId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(inserted > 0)
}

/// Writes `after` over the billing account if its version is still `version`; returns whether
/// it did (of two racing updates, one wins).
pub async fn update_billing<C: ConnectionTrait>(
    db: &C,
    after: &account_billing::Model,
    version: i64,
) -> Result<bool> {
    use account_billing::Column as C;
    let updated = account_billing::Entity::update_many()
        .col_expr(C::Plan, Expr::value(after.plan))
        .col_expr(C::BillingEmail, Expr::value(after.billing_email.clone()))
        .col_expr(C::Seats, Expr::value(after.seats))
        .col_expr(C::UpdateTimeMs, Expr::value(after.update_time_ms))
        .col_expr(C::Version, Expr::value(after.version))
        .filter(C::AccountId.eq(after.account_id.as_str()))
        .filter(C::Version.eq(version))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Up to `limit` top-level accounts whose home is `organization_id`, by id after `after`
/// (closed ones only with `show_closed`), with their billing accounts.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    organization_id: &str,
    after: Option<&str>,
    show_closed: bool,
    closed_state: i32,
    limit: u64,
) -> Result<Vec<AccountBilling>> {
    use managed_account::Column as A;
    let mut query = managed_account::Entity::find()
        .filter(A::OrganizationId.eq(organization_id))
        .filter(A::ParentAccountId.eq(""));
    if let Some(after) = after {
        query = query.filter(A::AccountId.gt(after));
    }
    if !show_closed {
        query = query.filter(A::State.ne(closed_state));
    }
    let accounts = query
        .order_by_asc(A::AccountId)
        .limit(limit)
        .all(db)
        .await?;
    let ids: Vec<String> = accounts.iter().map(|a| a.account_id.clone()).collect();
    let mut billing: HashMap<String, account_billing::Model> = account_billing::Entity::find()
        .filter(account_billing::Column::AccountId.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|b| (b.account_id.clone(), b))
        .collect();
    Ok(accounts
        .into_iter()
        .filter_map(|account| {
            billing
                .remove(&account.account_id)
                .map(|billing| AccountBilling { account, billing })
        })
        .collect())
}

/// Removes the accounts whose home is `organization_id` and their billing accounts (rule
/// BILL-5).
pub async fn purge<C: ConnectionTrait>(db: &C, organization_id: &str) -> Result<()> {
    let of_org = Query::select()
        .column(managed_account::Column::AccountId)
        .from(managed_account::Entity)
        .and_where(Expr::col(managed_account::Column::OrganizationId).eq(organization_id))
        .to_owned();
    account_billing::Entity::delete_many()
        .filter(account_billing::Column::AccountId.in_subquery(of_org))
        .exec(db)
        .await?;
    managed_account::Entity::delete_many()
        .filter(managed_account::Column::OrganizationId.eq(organization_id))
        .exec(db)
        .await?;
    Ok(())
}
