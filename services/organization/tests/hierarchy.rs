//! Operators and their child organizations over real gRPC on loopback (rule ORG-13): creation
//! with the first owner's invite, acceptance, the operator acting in its children, isolation,
//! listing; SQLite and, for creation and acceptance, PostgreSQL (set ORGPLANE_TEST_POSTGRES_URL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

#[path = "hierarchy/acting.rs"]
mod acting;
#[path = "hierarchy/common.rs"]
mod common;
#[path = "hierarchy/creation.rs"]
mod creation;
