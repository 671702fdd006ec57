//! Real protocol peers for Orgplane's tests, shared by the service suites and the end-to-end
//! suite: [`dns`], an authoritative DNS server in the test's process whose records change while
//! the test runs (domain verification, rule ORG-14), and [`oidc`], OpenID providers started as
//! child processes from the Node package in `tests/oidc` (SSO, rule ID-13). Test support: it
//! panics on setup failures, which is what a test wants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod dns;
pub mod oidc;
