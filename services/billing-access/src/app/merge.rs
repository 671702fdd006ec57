//! Billing's part of an organization merge (rules ORG-15, BILL-6): the `OrganizationsMerged`
//! event, applied in the organization consumer's transaction, re-attributes the candidate's
//! billing data to the prime without changing any amount:
//!
//! - usage records move to the prime, re-keyed so that the two organizations' idempotency keys
//!   cannot collide ([`crate::store::merge`]); their rollups, in both rollup tables, are added
//!   into the prime's;
//! - workspaces and managed accounts (subaccounts included) whose organization is the candidate
//!   move, listed in the event or not; an account's billing account follows its account;
//! - the candidate's own billing account (its plan, email and seats, for usage naming no account)
//!   is removed: the candidate no longer exists, and its usage naming no account is now the
//!   prime's organization-level usage, billed on the prime's billing account, which does not
//!   change. The candidate's audit records stay under its id;
//! - the candidate is remembered as merged into the prime: its billing answers NOT_FOUND, usage
//!   naming it is refused for good, and late workspace events naming it apply to the prime.
//!
//! One `billing_account.merge` entry in each organization's log records the merge: the
//! candidate's billing account as it was, and what moved. Exactly once: the consumer applies the
//! event in the transaction that advances its cursor, and an event applied a second time (a
//! re-publication) finds the candidate remembered and changes nothing.

use chrono::{DateTime, Utc};
use orgplane_platform::Call;
use orgplane_platform::audit::{AuditImage, AuditLogWriter, Entry};
use orgplane_proto::events::v1::OrganizationsMerged;
use sea_orm::ConnectionTrait;
use sea_orm::entity::prelude::*;

use crate::app::accounts::purge_organization;
use crate::domain::Result;
use crate::domain::accounts::RESOURCE;
use crate::store::entity::account;
use crate::store::merge;
use crate::store::workspaces::is_purged;

/// What one merge re-attributed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moved {
    /// Usage records moved (each re-keyed).
    pub usage_records: u64,
    /// The candidate's rows of `usage_rollups` added into the prime's (its rows of
    /// `usage_account_rollups` are added alike).
    pub rollup_rows: u64,
    /// Workspaces moved.
    pub workspace_ids: Vec<String>,
    /// Managed accounts moved (subaccounts included).
    pub account_ids: Vec<String>,
}

/// Applies `event` inside the consumer's `txn` (see the module docs). Returns what moved, or
/// `None` when there was nothing to apply: a malformed event, a candidate already merged (the
/// event applied a second time) or purged. If the prime was purged (its data gone), the
/// candidate's billing data is purged rather than moved into nothing; if the prime was merged
/// in turn (merges learnt from a re-sync, out of order), the data goes where the prime's went.
pub async fn apply_organizations_merged<C: ConnectionTrait>(
    txn: &C,
    log: &AuditLogWriter,
    event: &OrganizationsMerged,
    now: DateTime<Utc>,
) -> Result<Option<Moved>> {
    let candidate = event.candidate_organization_id.as_str();
    if event.prime_organization_id.is_empty() || candidate.is_empty() {
        return Ok(None);
    }
    // Merges a re-sync learns of may come in any order: a prime merged meanwhile hands on to
    // the organization that absorbed it.
    let prime = merge::current_home(txn, &event.prime_organization_id).await?;
    let prime = prime.as_str();
    if prime == candidate {
        return Ok(None);
    }
    if merge::prime_of(txn, candidate).await?.is_some() || is_purged(txn, candidate).await? {
        return Ok(None);
    }
    if is_purged(txn, prime).await? {
        purge_organization(txn, log, candidate, now).await?;
        return Ok(None);
    }
    // The candidate's account first, as a purge does: a concurrent RecordUsage holds it FOR
    // SHARE on PostgreSQL, so this waits for that batch to commit (its records then move), and a
    // later batch finds the account gone and is refused.
    let candidate_account = account::Entity::find_by_id(candidate.to_owned())
        .one(txn)
        .await?;
    account::Entity::delete_many()
        .filter(account::Column::OrganizationId.eq(candidate))
        .exec(txn)
        .await?;
    let usage_records = merge::move_usage_records(txn, candidate, prime).await?;
    merge::add_rollups_into(txn, candidate, prime).await?;
    let rollup_rows = merge::delete_rollups(txn, candidate).await?;
    let moved = Moved {
        usage_records,
        rollup_rows,
        workspace_ids: merge::move_workspaces(txn, candidate, prime).await?,
        account_ids: merge::move_accounts(txn, candidate, prime).await?,
    };
    merge::remember(txn, candidate, prime, now.timestamp_millis()).await?;
    let details = serde_json::json!({
        "primeOrganizationId": prime,
        "candidateOrganizationId": candidate,
        "candidateBillingAccount": candidate_account.as_ref().map(AuditImage::audit_image),
        "usageRecords": moved.usage_records,
        "rollupRows": moved.rollup_rows,
        "workspaceIds": moved.workspace_ids,
        "accountIds": moved.account_ids,
    });
    for org in [candidate, prime] {
        log.write(
            txn,
            &Call::system(),
            Entry::new(org, "billing_account.merge", RESOURCE, candidate)
                .with_details(details.clone()),
        )
        .await?;
    }
    Ok(Some(moved))
}
