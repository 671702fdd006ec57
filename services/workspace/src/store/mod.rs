//! Storage: the sea-orm [`entity`] definitions, the [`migration`]s, and the in-memory
//! [`memory`] mirror of this service's tables that CheckAccess reads.

pub mod entity;
pub mod memory;
pub mod migration;
