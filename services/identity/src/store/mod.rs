//! Identity's storage: the sea-orm [`entity`] rows and the [`migration`]s that create them.

pub mod entity;
pub mod migration;
mod scim;
mod sso;
