//! Billing per managed account (rule BILL-6): the replica of the organization service's accounts,
//! kept from its `AccountChanged` events in the consumer's transaction; a billing account for
//! every top-level account (a subaccount is billed to its parent); and their listing and
//! updates by the billing members of the account's home organization.
//!
//! A billing account is keyed by its account alone: the account's home organization is a column
//! of the replica, so a move (an accepted MANAGED import) changes that one column and the billing
//! account follows the account, with its plan, email and seats. Usage already recorded keeps the
//! organization it was recorded in (unless that organization is merged into another, rule
//! ORG-15: then all of its usage moves, see [`crate::app::merge`]).

use chrono::{DateTime, Utc};
use orgplane_platform::Call;
use orgplane_platform::audit::{AuditImage, AuditLogWriter, Entry};
use orgplane_platform::convert::{check_etag, millis_of};
use orgplane_proto::billing::v1::BillingPlan;
use orgplane_proto::events::v1::AccountChanged;
use orgplane_proto::organization::v1::AccountState;
use sea_orm::ConnectionTrait;
use sea_orm::entity::prelude::*;

use crate::app::Billing;
use crate::domain::accounts::{AccountChanges, DEFAULT_SEATS, RESOURCE};
use crate::domain::{Error, Result};
use crate::store::accounts::{self, AccountBilling};
use crate::store::entity::{account, account_billing, managed_account};
use crate::store::workspaces::is_purged;

/// UpdateBillingAccount of a managed account's billing account, decoded and validated.
#[derive(Debug, Clone)]
pub struct UpdateAccountBilling {
    /// The organization the caller acts in: the account's home.
    pub organization_id: String,
    /// The account.
    pub account_id: String,
    /// What to change.
    pub changes: AccountChanges,
    /// The etag the caller read, or empty for "whatever is current".
    pub etag: String,
}

/// A page of ListBillingAccounts.
#[derive(Debug, Clone)]
pub struct AccountsQuery {
    /// The organization.
    pub organization_id: String,
    /// The page size (validated).
    pub page_size: u64,
    /// The previous page's token, or empty.
    pub page_token: String,
    /// Whether closed accounts are listed too.
    pub show_closed: bool,
}

/// Applies an `AccountChanged` event inside the consumer's `txn`: upserts the account as its
/// home organization sees it and, for a top-level account, creates its billing account the first
/// time (plan FREE, one seat, the home organization's billing email at that moment). Applying it
/// twice is harmless. Events of purged organizations are ignored (rule BILL-5).
pub async fn apply_account_changed<C: ConnectionTrait>(
    txn: &C,
    log: &AuditLogWriter,
    event: &AccountChanged,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(a) = &event.account else {
        return Ok(());
    };
    let home = if a.home_organization_id.is_empty() {
        &a.organization_id
    } else {
        &a.home_organization_id
    };
    if a.id.is_empty() || home.is_empty() || is_purged(txn, home).await? {
        return Ok(());
    }
    let closed = a.state == AccountState::Closed as i32;
    let close_time_ms = closed.then(|| {
        a.close_time
            .as_ref()
            .and_then(millis_of)
            .unwrap_or_else(|| now.timestamp_millis())
    });
    let before = accounts::find(txn, &a.id).await?;
    let row = managed_account::Model {
        account_id: a.id.clone(),
        organization_id: home.clone(),
        parent_account_id: a.parent_account_id.clone(),
        state: a.state,
        owner_user_id: a.owner_user_id.clone(),
        display_name: a.display_name.clone(),
        close_time_ms,
    };
    accounts::upsert(txn, row.clone()).await?;
    if !row.parent_account_id.is_empty() {
        return Ok(());
    }
    let billing = match accounts::billing(txn, &row.account_id).await? {
        Some(billing) => billing,
        None => return create_billing(txn, log, row, now).await,
    };
    // Moved: the replica knew it in another organization (the event's
    // `previous_organization_id` says the same; the replica's diff also holds when the event is
    // applied twice, and then records the move once).
    let previous = before.map(|b| b.organization_id).filter(|org| org != home);
    if let Some(previous) = previous {
        // The billing account moved with the account: both organizations' logs say so.
        let moved = AccountBilling {
            account: row,
            billing,
        };
        for org in [previous.as_str(), home.as_str()] {
            log.write(
                txn,
                &Call::system(),
                Entry::new(org, "billing_account.move", RESOURCE, &a.id).with_details(
                    serde_json::json!({
                        "accountId": a.id,
                        "previousOrganizationId": previous,
                        "organizationId": home,
                        "billingAccount": moved.audit_image(),
                    }),
                ),
            )
            .await?;
        }
    }
    Ok(())
}

/// Creates the billing account of top-level account `account` (audited as a system action).
async fn create_billing<C: ConnectionTrait>(
    txn: &C,
    log: &AuditLogWriter,
    account: managed_account::Model,
    now: DateTime<Utc>,
) -> Result<()> {
    let billing_email = account::Entity::find_by_id(account.organization_id.clone())
        .one(txn)
        .await?
        .map(|org| org.billing_email)
        .unwrap_or_default();
    let billing = account_billing::Model {
        account_id: account.account_id.clone(),
        plan: BillingPlan::Free as i32,
        billing_email,
        seats: DEFAULT_SEATS,
        create_time_ms: now.timestamp_millis(),
        update_time_ms: now.timestamp_millis(),
        version: 1,
    };
    if !accounts::insert_billing(txn, &billing).await? {
        return Ok(());
    }
    let org = account.organization_id.clone();
    let id = account.account_id.clone();
    let created = AccountBilling { account, billing };
    log.write(
        txn,
        &Call::system(),
        Entry::new(&org, "billing_account.create", RESOURCE, &id).change(None, Some(&created)),
    )
    .await?;
    Ok(())
}

/// The account `account_id` if it is a top-level account whose home is `organization_id`, with
/// its billing account: NOT_FOUND for unknown accounts and other organizations' (never telling
/// the two apart), FAILED_PRECONDITION for a subaccount.
async fn find_in<C: ConnectionTrait>(
    db: &C,
    organization_id: &str,
    account_id: &str,
) -> Result<AccountBilling> {
    let not_found = || Error::ManagedAccountNotFound(account_id.to_owned());
    let account = accounts::find(db, account_id)
        .await?
        .filter(|a| a.organization_id == organization_id)
        .ok_or_else(not_found)?;
    if !account.parent_account_id.is_empty() {
        return Err(Error::AccountIsSubaccount(account_id.to_owned()));
    }
    let billing = accounts::billing(db, account_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(AccountBilling { account, billing })
}

impl Billing {
    /// A page of the billing accounts of `query.organization_id`'s top-level accounts, by
    /// account id.
    pub async fn account_billings(
        &self,
        query: AccountsQuery,
    ) -> Result<(Vec<AccountBilling>, String)> {
        let org = &query.organization_id;
        let tokens = &self.runtime.page_tokens;
        let scope = format!("ListBillingAccounts|{org}|{}", query.show_closed);
        let after: Option<String> = tokens.decode(&scope, &query.page_token)?;
        let rows = accounts::list(
            &self.db,
            org,
            after.as_deref(),
            query.show_closed,
            AccountState::Closed as i32,
            query.page_size.saturating_add(1),
        )
        .await?;
        Ok(tokens.page(&scope, rows, query.page_size, |r| {
            r.account.account_id.clone()
        }))
    }

    /// Applies `update.changes` to a managed account's billing account if `update.etag` (when
    /// not empty) is current (ABORTED otherwise), audited in the same transaction. A closed
    /// account's billing account no longer changes (FAILED_PRECONDITION).
    pub async fn update_account_billing(
        &self,
        call: &Call,
        update: UpdateAccountBilling,
    ) -> Result<AccountBilling> {
        let org = update.organization_id.as_str();
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let before = find_in(&txn, org, &update.account_id).await?;
        if before.account.state == AccountState::Closed as i32 {
            return Err(Error::AccountClosed(update.account_id));
        }
        let version = before.billing.version;
        check_etag(&update.etag, version, RESOURCE)?;
        let mut after = before.clone();
        let changes = update.changes;
        if let Some(plan) = changes.plan {
            after.billing.plan = plan as i32;
        }
        if let Some(email) = changes.billing_email {
            after.billing.billing_email = email;
        }
        if let Some(seats) = changes.seats {
            after.billing.seats = seats;
        }
        let now = self.runtime.clock.now().timestamp_millis();
        after.billing.update_time_ms = now.max(before.billing.update_time_ms);
        after.billing.version = version + 1;
        if !accounts::update_billing(&txn, &after.billing, version).await? {
            return Err(Error::EtagMismatch);
        }
        self.audit
            .write(
                &txn,
                call,
                Entry::new(org, "billing_account.update", RESOURCE, &update.account_id)
                    .change(Some(&before), Some(&after)),
            )
            .await?;
        txn.commit().await?;
        Ok(after)
    }
}
