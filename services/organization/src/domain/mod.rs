//! The organization service's rules, free of tonic and sea-orm: accounts ([`accounts`], rules
//! ACC-1 … ACC-5), who may do what
//! ([`authz`]), what a valid input is ([`validate`]), settings resolved per field
//! ([`settings`], rule ORG-13), what a merge does to roles and where it conflicts ([`merge`],
//! rule ORG-15), and the refusals ([`error`]).

pub mod accounts;
pub mod authz;
pub mod domains;
pub mod error;
pub mod merge;
pub mod settings;
pub mod validate;

pub use error::{Error, Result};

/// How long a DELETED organization can be restored (ORG-7).
pub const PURGE_AFTER_MS: i64 = 7 * 24 * 3600 * 1000;

/// How long an invite can be accepted (ORG-6).
pub const INVITE_TTL_MS: i64 = 21 * 24 * 3600 * 1000;

/// The deepest level a unit may sit at (ORG-9).
pub const MAX_UNIT_DEPTH: i32 = 5;
