//! Verified domains over real gRPC on loopback (rules ORG-14, ORG-6's invite restriction,
//! ID-15), with domain checks answered by an in-process authoritative DNS server; SQLite and,
//! where storage matters, PostgreSQL (set ORGPLANE_TEST_POSTGRES_URL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

#[path = "domains/claims.rs"]
mod claims;
#[path = "domains/common.rs"]
mod common;
#[path = "domains/joining.rs"]
mod joining;
#[path = "domains/provision.rs"]
mod provision;
#[path = "domains/verify.rs"]
mod verify;
