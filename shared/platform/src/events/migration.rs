//! The tables of the events mechanism, as migrations every service includes in its own migrator:
//! producers take [`CreateOutbox`], consumers [`CreateConsumerCursors`].

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
