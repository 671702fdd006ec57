//! The workspace service over real gRPC on loopback, fed by fake organization and identity
//! producers (an Outbox + EventServer each) and a fake ListRoleAssignments for re-syncs. Tests are
//! named after the rule they prove.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "workspace/rig.rs"]
mod rig;

#[path = "workspace/access.rs"]
mod access;
#[path = "workspace/members.rs"]
mod members;
#[path = "workspace/merge.rs"]
mod merge;
#[path = "workspace/policy.rs"]
mod policy;
#[path = "workspace/replica.rs"]
mod replica;
#[path = "workspace/replicas.rs"]
mod replicas;
#[path = "workspace/sweep.rs"]
mod sweep;
#[path = "workspace/workspaces.rs"]
mod workspaces;
