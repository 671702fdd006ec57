//! Billing accounts (rule BILL-2): created with the organization, read and updated with a field
//! mask and an etag; and the purge of every billing datum of an organization (rule BILL-5).

use chrono::{DateTime, Utc};
use orgplane_platform::Call;
use orgplane_platform::audit::{self, AuditLogWriter, Entry};
use orgplane_platform::convert::{check_etag, etag, etag_mismatch, timestamp_ms};
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_proto::billing::v1::{BillingAccount, BillingPlan};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DatabaseConnection, Set};

use crate::entity::{account, purged, usage_record, usage_rollup, workspace};

/// Seats of a new account.
pub const DEFAULT_SEATS: i32 = 1;
/// The most seats an account may have.
pub const MAX_SEATS: i32 = 1_000_000;

/// The resource type of billing accounts in errors and audit records.
pub const RESOURCE: &str = "billing_account";

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The API form of an account.
pub fn to_proto(m: &account::Model) -> BillingAccount {
    BillingAccount {
        organization_id: m.organization_id.clone(),
        plan: m.plan,
        billing_email: m.billing_email.clone(),
        seats: m.seats,
        create_time: Some(timestamp_ms(m.create_time_ms)),
        update_time: Some(timestamp_ms(m.update_time_ms)),
        etag: etag(m.version),
    }
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
) -> ApiResult<bool> {
    let model = account::Model {
        organization_id: organization_id.to_owned(),
        plan: BillingPlan::Free as i32,
        billing_email: primary_email.to_owned(),
        seats: DEFAULT_SEATS,
        create_time_ms: ms(now),
        update_time_ms: ms(now),
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
        .change(None, Some(&to_proto(&model))),
    )
    .await?;
    Ok(true)
}

/// Removes every billing datum of `organization_id` inside `txn` (rule BILL-5): account, usage
/// records and rollups, workspaces, and its audit records; remembers the id so that late events
/// and usage cannot bring data back. The purge itself is audited without the organization (its
/// log is gone).
pub async fn purge_organization<C: ConnectionTrait>(
    txn: &C,
    log: &AuditLogWriter,
    organization_id: &str,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    // The account first: a concurrent RecordUsage holds it FOR SHARE on PostgreSQL, so this
    // waits for that batch to commit and the deletes below then see its records.
    account::Entity::delete_many()
        .filter(account::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    usage_record::Entity::delete_many()
        .filter(usage_record::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
    usage_rollup::Entity::delete_many()
        .filter(usage_rollup::Column::OrganizationId.eq(organization_id))
        .exec(txn)
        .await?;
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
        purge_time_ms: Set(ms(now)),
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

/// The account of `organization_id` (NOT_FOUND if there is none).
pub async fn get<C: ConnectionTrait>(db: &C, organization_id: &str) -> ApiResult<account::Model> {
    account::Entity::find_by_id(organization_id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found(RESOURCE, organization_id))
}

/// What an update may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChanges {
    /// The new plan.
    pub plan: Option<BillingPlan>,
    /// The new billing email.
    pub billing_email: Option<String>,
    /// The new seat count.
    pub seats: Option<i32>,
}

/// A plausible email address: one `@`, a non-empty local part, a dotted domain, no spaces or
/// control characters, at most 254 bytes.
pub fn is_email(s: &str) -> bool {
    if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// Validates `mask` against `account` and returns the changes (INVALID_ARGUMENT with a field
/// violation per problem).
pub fn changes_from_mask(account: &BillingAccount, mask: &[String]) -> ApiResult<AccountChanges> {
    if mask.is_empty() {
        return Err(ApiError::invalid_argument(
            "update_mask",
            "name at least one of plan, billing_email, seats",
        ));
    }
    let mut changes = AccountChanges::default();
    let mut violations: Vec<(String, String)> = Vec::new();
    for path in mask {
        match path.as_str() {
            "plan" => match BillingPlan::try_from(account.plan) {
                Ok(BillingPlan::Unspecified) | Err(_) => violations.push((
                    "billing_account.plan".into(),
                    "must be FREE, TEAM or ENTERPRISE".into(),
                )),
                Ok(plan) => changes.plan = Some(plan),
            },
            "billing_email" => {
                let email = account.billing_email.trim();
                if is_email(email) {
                    changes.billing_email = Some(email.to_owned());
                } else {
                    violations.push((
                        "billing_account.billing_email".into(),
                        "not an email address".into(),
                    ));
                }
            }
            "seats" => {
                if (1..=MAX_SEATS).contains(&account.seats) {
                    changes.seats = Some(account.seats);
                } else {
                    violations.push((
                        "billing_account.seats".into(),
                        format!("must be between 1 and {MAX_SEATS}"),
                    ));
                }
            }
            other => violations.push((
                "update_mask".into(),
                format!("{other:?} is not a mutable path (plan, billing_email, seats)"),
            )),
        }
    }
    let mut violations = violations.into_iter();
    if let Some((field, why)) = violations.next() {
        let mut err = ApiError::invalid_argument(&field, why);
        for (field, why) in violations {
            err = err.violation(&field, why);
        }
        return Err(err);
    }
    Ok(changes)
}

/// Applies `changes` to `organization_id`'s account if `etag` (when not empty) is current
/// (ABORTED otherwise), audited in the same transaction.
pub async fn update(
    db: &DatabaseConnection,
    log: &AuditLogWriter,
    call: &Call,
    organization_id: &str,
    changes: AccountChanges,
    given_etag: &str,
    now: DateTime<Utc>,
) -> ApiResult<account::Model> {
    let txn = orgplane_platform::db::begin_write(db).await?;
    let before = get(&txn, organization_id).await?;
    check_etag(given_etag, before.version, RESOURCE)?;
    let mut after = before.clone();
    if let Some(plan) = changes.plan {
        after.plan = plan as i32;
    }
    if let Some(email) = changes.billing_email {
        after.billing_email = email;
    }
    if let Some(seats) = changes.seats {
        after.seats = seats;
    }
    after.update_time_ms = ms(now).max(before.update_time_ms);
    after.version = before.version + 1;
    // Conditional on the version read above: of two racing updates, one wins and the other is
    // ABORTED.
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
        .filter(account::Column::OrganizationId.eq(organization_id))
        .filter(account::Column::Version.eq(before.version))
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(etag_mismatch(RESOURCE));
    }
    log.write(
        &txn,
        call,
        Entry::new(
            organization_id,
            "billing_account.update",
            RESOURCE,
            organization_id,
        )
        .change(Some(&to_proto(&before)), Some(&to_proto(&after))),
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(is_email("billing@acme.example"));
        assert!(!is_email("billing@acme"));
        assert!(!is_email("bill ing@acme.example"));
        assert!(!is_email("@acme.example"));
        assert!(!is_email(""));
    }
}
