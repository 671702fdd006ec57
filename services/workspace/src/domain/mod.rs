//! The workspace rules, free of transport and storage: [`model`] (effective roles, permissions,
//! which direct assignments are allowed) and [`error`] (every refusal of the service, each reason
//! named once).

pub mod error;
pub mod model;

pub use error::Error;
