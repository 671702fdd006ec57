//! Billing accounts (rule BILL-2): created with the organization, read, and updated with a field
//! mask and an etag (the row version: of two racing updates one wins, the other is ABORTED); and
//! the purge of every billing datum of an organization (rule BILL-5).

use chrono::{DateTime, Utc};
use orgplane_platform::Call;
use orgplane_platform::audit::{self, AuditLogWriter, Entry};
use orgplane_platform::convert::check_etag;
use orgplane_proto::billing::v1::BillingPlan;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, Set};

use crate::app::Billing;
use crate::domain::accounts::{AccountChanges, DEFAULT_SEATS, RESOURCE};
use crate::domain::{Error, Result};
use crate::store::accounts;
use crate::store::entity::{
    account, purged, usage_account_rollup, usage_record, usage_rollup, workspace,
};

/// UpdateBillingAccount, decoded and validated.
#[derive(Debug, Clone)]
pub struct UpdateAccount {
    /// The account's organization.
    pub organization_id: String,
    /// What to change.
    pub changes: AccountChanges,
    /// The etag the caller read, or empty for "whatever is current".
    pub etag: String,
}

/// Creates the account of a new organization inside the consumer's `txn` (rule BILL-2): plan
/// FREE, the organization's primary email, one seat. Audited as a system action. Does nothing
/// if the account exists (a redelivered or re-synced event). Returns whether it was created.
pub async fn create_for_organization<C: ConnectionTrait>(
    txn: &C,
    log: &AuditLogWriter,
    organization_id: &str,
    primary_email: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let model = account::Model {
        organization_id: organization_id.to_owned(),
        plan: BillingPlan::Free as i32,
        billing_email: primary_email.to_owned(),
        seats: DEFAULT_SEATS,
        create_time_ms: now.timestamp_millis(),
        update_time_ms: now.timestamp_millis(),
        version: 1,
    };
    let inserted = account::Entity::insert(account::ActiveModel {
        organization_id: Set(model.organization_id.clone()),
        plan: Set(model.plan),
        billing_email: Set(model.billing_email.clone()),
        seats: Set(model.seats),
        create_time_ms: Set(model.create_time_ms),
        update_time_ms: Set(model.update_time_ms),
        version: Set(model.version),
    })
    .on_conflict(
        OnConflict::column(account::Column::OrganizationId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    if inserted == 0 {
        return Ok(false);
    }
    log.write(
        txn,
        &Call::system(),
        Entry::new(
            organization_id,
            "billing_account.create",
            RESOURCE,
            organization_id,
        )
        .change(None, Some(&model)),
    )
    .await?;
    Ok(true)
}

/// Removes every billing datum of `organization_id` inside `txn` (rule BILL-5): account, the
/// managed accounts whose home it is and their billing accounts (rule BILL-6), usage records and
/// rollups (both tables and their tiers), workspaces, and its audit records; remembers the id so that late events
/// and usage cannot bring data back. The purge itself is audited without the organization (its
/// log is gone).
pub async fn purge_organization<C: ConnectionTrait>(
    txn: &C,
    log: &AuditLogWriter,
    organization_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    // The account first: a concurrent RecordUsage holds it FOR SHARE on PostgreSQL, so this
    // waits for that batch to commit and the deletes below then see its records.
    account::Entity::delete_many()
        .filter(account::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    accounts::purge(txn, organization_id).await?;
    usage_record::Entity::delete_many()
        .filter(usage_record::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    usage_rollup::Entity::delete_many()
        .filter(usage_rollup::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    usage_account_rollup::Entity::delete_many()
        .filter(usage_account_rollup::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    crate::store::rollups::delete_tier_rows(txn, organization_id).await?;
    workspace::Entity::delete_many()
        .filter(workspace::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    audit::row::Entity::delete_many()
        .filter(audit::row::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    purged::Entity::insert(purged::ActiveModel {
        organization_id: Set(organization_id.to_owned()),
        purge_time_ms: Set(now.timestamp_millis()),
    })
    .on_conflict(
        OnConflict::column(purged::Column::OrganizationId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    log.write(
        txn,
        &Call::system(),
        Entry::new("", "billing_account.purge", RESOURCE, organization_id),
    )
    .await?;
    Ok(())
}

async fn find<C: ConnectionTrait>(db: &C, organization_id: &str) -> Result<account::Model> {
    account::Entity::find_by_id(organization_id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| Error::AccountNotFound(organization_id.to_owned()))
}

impl Billing {
    /// The account of `organization_id` (NOT_FOUND if there is none).
    pub async fn account(&self, organization_id: &str) -> Result<account::Model> {
        find(&self.db, organization_id).await
    }

    /// Applies `update.changes` if `update.etag` (when not empty) is current (ABORTED
    /// otherwise), audited in the same transaction.
    pub async fn update_account(
        &self,
        call: &Call,
        update: UpdateAccount,
    ) -> Result<account::Model> {
        let org = update.organization_id.as_str();
        let txn = orgplane_platform::db::begin_write(&self.db).await?;
        let before = find(&txn, org).await?;
        check_etag(&update.etag, before.version, RESOURCE)?;
        let mut after = before.clone();
        let changes = update.changes;
        if let Some(plan) = changes.plan {
            after.plan = plan as i32;
        }
        if let Some(email) = changes.billing_email {
            after.billing_email = email;
        }
        if let Some(seats) = changes.seats {
            after.seats = seats;
        }
        let now = self.runtime.clock.now().timestamp_millis();
        after.update_time_ms = now.max(before.update_time_ms);
        after.version = before.version + 1;
        // Conditional on the version read above: of two racing updates, one wins and the other
        // is ABORTED.
        let updated = account::Entity::update_many()
            .col_expr(account::Column::Plan, Expr::value(after.plan))
            .col_expr(
                account::Column::BillingEmail,
                Expr::value(after.billing_email.clone()),
            )
            .col_expr(account::Column::Seats, Expr::value(after.seats))
            .col_expr(
                account::Column::UpdateTimeMs,
                Expr::value(after.update_time_ms),
            )
            .col_expr(account::Column::Version, Expr::value(after.version))
            .filter(account::Column::OrganizationId.eq(org))
            .filter(account::Column::Version.eq(before.version))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            return Err(Error::EtagMismatch);
        }
        self.audit
            .write(
                &txn,
                call,
                Entry::new(org, "billing_account.update", RESOURCE, org)
                    .change(Some(&before), Some(&after)),
            )
            .await?;
        txn.commit().await?;
        Ok(after)
    }
}
