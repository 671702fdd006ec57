//! Accounts over real gRPC on loopback (rules ACC-1 … ACC-5): creation and limits, reading
//! rules and tenant isolation, subaccounts, compliance designations, imports between
//! organizations, ownership and members leaving, audit records and `AccountChanged` events, and
//! a property test of random sequences against a model; SQLite and, where storage and
//! concurrency matter, PostgreSQL (set ORGPLANE_TEST_POSTGRES_URL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

#[path = "accounts/basics.rs"]
mod basics;
#[path = "accounts/common.rs"]
mod common;
#[path = "accounts/compliance.rs"]
mod compliance;
#[path = "accounts/import.rs"]
mod import;
#[path = "accounts/invariants.rs"]
mod invariants;
#[path = "accounts/property.rs"]
mod property;
#[path = "accounts/visibility.rs"]
mod visibility;
