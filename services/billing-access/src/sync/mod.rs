//! The event streams billing access consumes: the organization's (roles, billing accounts,
//! purges) and the workspace service's (names and archival). Each handler applies an event in
//! the transaction that advances its cursor.

pub mod organization;
pub mod workspace;
