//! Settings resolved per field over real gRPC on loopback (rule ORG-13): security policy and
//! branding of operators and their children — inheritance, overrides, clearing, ENFORCED
//! fields, provenance, fan-out events, the operator acting in a child, invite mail branding;
//! SQLite and, for the policy, PostgreSQL (set ORGPLANE_TEST_POSTGRES_URL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

#[path = "settings/branding.rs"]
mod branding;
#[path = "hierarchy/common.rs"]
#[allow(dead_code)] // the helpers these tests share with the hierarchy tests
mod common;
#[path = "settings/helpers.rs"]
mod helpers;
#[path = "settings/policy.rs"]
mod policy;
