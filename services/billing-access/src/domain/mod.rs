//! Pure rules of billing access: no tonic, no sea-orm.

pub mod access;
pub mod accounts;
pub mod error;
pub mod prices;
pub mod reports;
pub mod usage;

pub use error::{Error, Result};
