//! The billing-access service over real gRPC on loopback, fed by fake organization and workspace
//! producers (an Outbox + EventServer each) in the same process. SQLite by default; the key paths
//! also on PostgreSQL when `ORGPLANE_TEST_POSTGRES_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "billing_access/support.rs"]
mod support;

#[path = "billing_access/access.rs"]
mod access;
#[path = "billing_access/accounts.rs"]
mod accounts;
#[path = "billing_access/merge.rs"]
mod merge;
#[path = "billing_access/merge_access.rs"]
mod merge_access;
#[path = "billing_access/merge_reports.rs"]
mod merge_reports;
#[path = "billing_access/migration.rs"]
mod migration;
#[path = "billing_access/per_account.rs"]
mod per_account;
#[path = "billing_access/per_account_usage.rs"]
mod per_account_usage;
#[path = "billing_access/policy.rs"]
mod policy;
#[path = "billing_access/property.rs"]
mod property;
#[path = "billing_access/purge.rs"]
mod purge;
#[path = "billing_access/reports.rs"]
mod reports;
#[path = "billing_access/rolling_update.rs"]
mod rolling_update;
#[path = "billing_access/sweep.rs"]
mod sweep;
#[path = "billing_access/tiers.rs"]
mod tiers;
#[path = "billing_access/usage.rs"]
mod usage;
