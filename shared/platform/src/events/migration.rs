//! The tables of the events mechanism, as migrations every service includes in its own migrator:
//! producers take [`CreateOutbox`] and [`CreateWriteGuards`], consumers [`CreateConsumerCursors`].

use sea_orm_migration::prelude::*;

/// `outbox_head` (the revision counter) and `outbox_events`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateOutbox;

impl MigrationName for CreateOutbox {
    fn name(&self) -> &str {
        "m20261123_000001_create_outbox"
    }
}

#[derive(DeriveIden)]
enum OutboxHead {
    Table,
    Id,
    Revision,
    CompactedThrough,
}

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Revision,
    EventId,
    Payload,
    CreateTimeMs,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboxHead::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(OutboxHead::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(OutboxHead::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboxHead::CompactedThrough)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(OutboxHead::Table)
                    .columns([
                        OutboxHead::Id,
                        OutboxHead::Revision,
                        OutboxHead::CompactedThrough,
                    ])
                    .values_panic([1.into(), 0i64.into(), 0i64.into()])
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(OutboxEvents::Revision)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(OutboxEvents::EventId).string().not_null())
                    .col(ColumnDef::new(OutboxEvents::Payload).blob().not_null())
                    .col(
                        ColumnDef::new(OutboxEvents::CreateTimeMs)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_events_create_time")
                    .table(OutboxEvents::Table)
                    .col(OutboxEvents::CreateTimeMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OutboxEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(OutboxHead::Table).to_owned())
            .await
    }
}

/// `consumer_cursors`: the last applied revision per producer.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateConsumerCursors;

impl MigrationName for CreateConsumerCursors {
    fn name(&self) -> &str {
        "m20261123_000002_create_consumer_cursors"
    }
}

#[derive(DeriveIden)]
enum ConsumerCursors {
    Table,
    Producer,
    Revision,
    UpdateTimeMs,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateConsumerCursors {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConsumerCursors::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ConsumerCursors::Producer)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ConsumerCursors::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConsumerCursors::UpdateTimeMs)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConsumerCursors::Table).to_owned())
            .await
    }
}

/// `write_guards`: the check behind [`crate::events::WriteUnit::change_at_commit`]. A row
/// inserted there names how many rows a change was to touch (`expected`) and how many it did
/// (`seen`); its trigger fails the statement with [`crate::events::unit::STALE_WRITE`] when they
/// differ and keeps no row either way, so the table stays empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateWriteGuards;

impl MigrationName for CreateWriteGuards {
    fn name(&self) -> &str {
        "m20261224_000001_create_write_guards"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateWriteGuards {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let stale = super::unit::STALE_WRITE;
        let sql = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS write_guards (expected BIGINT NOT NULL, seen BIGINT NOT NULL);
                 CREATE OR REPLACE FUNCTION write_guards_check() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     IF NEW.seen <> NEW.expected THEN
                         RAISE EXCEPTION '{stale}';
                     END IF;
                     RETURN NULL;
                 END $$;
                 DROP TRIGGER IF EXISTS write_guards_check ON write_guards;
                 CREATE TRIGGER write_guards_check BEFORE INSERT ON write_guards
                     FOR EACH ROW EXECUTE FUNCTION write_guards_check();"
            ),
            _ => format!(
                "CREATE TABLE IF NOT EXISTS write_guards (expected INTEGER NOT NULL, seen INTEGER NOT NULL);
                 CREATE TRIGGER IF NOT EXISTS write_guards_check BEFORE INSERT ON write_guards BEGIN
                     SELECT RAISE(ABORT, '{stale}') WHERE NEW.seen <> NEW.expected;
                     SELECT RAISE(IGNORE);
                 END;"
            ),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                "DROP TABLE IF EXISTS write_guards; DROP FUNCTION IF EXISTS write_guards_check();"
            }
            _ => "DROP TABLE IF EXISTS write_guards;",
        };
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }
}
