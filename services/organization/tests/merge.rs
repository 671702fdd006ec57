//! Organization merge over real gRPC on loopback (rule ORG-15): every precondition with its own
//! reason, the conflicts and their resolution, the preview against the merge and the state after
//! it, the roles, the tombstone, the one `OrganizationsMerged` event, the audit records and
//! idempotent retries; SQLite and PostgreSQL (set ORGPLANE_TEST_POSTGRES_URL). The workspace
//! service is a fake answering `ListWorkspaces` from a list the tests set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

#[path = "merge/common.rs"]
mod common;
#[path = "merge/merging.rs"]
mod merging;
#[path = "merge/preconditions.rs"]
mod preconditions;
