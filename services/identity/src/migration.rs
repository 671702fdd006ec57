//! The identity service's database schema, as sea-orm migrations run at start-up and by
//! `orgplane migrate`.

use orgplane_platform::audit::CreateAuditLog;
use orgplane_platform::events::migration::{CreateConsumerCursors, CreateOutbox};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// Every migration of the identity database, in order.
#[derive(Debug, Clone, Copy)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateConsumerCursors),
            Box::new(CreateAuditLog),
        ]
    }
}
