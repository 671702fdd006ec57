//! The billing-access service's database schema, as sea-orm migrations run at start-up and by
//! `orgplane migrate`.

use orgplane_platform::audit::{AddAuditActorOrganization, CreateAuditLog};
use orgplane_platform::events::migration::CreateConsumerCursors;
use orgplane_platform::replica::{
    CreateRoleReplica, CreateSecurityPolicyReplica, CreateVerifiedDomainReplica,
};
use orgplane_platform::revocation::CreateSessionRevocations;
use orgplane_platform::schema::{big, text};
use sea_orm_migration::prelude::*;
use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub use crate::store::account_migration::AddBillingPerAccount;
pub use crate::store::merge_migration::AddOrganizationMerges;
pub use crate::store::tier_migration::AddRollupTiers;

/// Every migration of the billing-access database, in order.
#[derive(Debug, Clone, Copy)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateConsumerCursors),
            Box::new(CreateAuditLog),
            Box::new(CreateRoleReplica),
            Box::new(CreateBillingTables),
            Box::new(CreateSessionRevocations),
            Box::new(VersionBillingAccounts),
            Box::new(CreateSecurityPolicyReplica),
            Box::new(CreateVerifiedDomainReplica),
            Box::new(AddAuditActorOrganization),
            Box::new(AddBillingPerAccount),
            Box::new(AddOrganizationMerges),
            Box::new(AddRollupTiers),
        ]
    }
}

/// Billing accounts, usage records and their minute rollups, workspaces, purged organizations.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateBillingTables;

impl MigrationName for CreateBillingTables {
    fn name(&self) -> &str {
        "m20261201_000001_create_billing_tables"
    }
}

#[derive(DeriveIden)]
enum BillingAccounts {
    Table,
    OrganizationId,
    Plan,
    BillingEmail,
    Seats,
    CreateTimeMs,
    UpdateTimeMs,
    Etag,
}

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    OrganizationId,
    IdempotencyKey,
    WorkspaceId,
    ApiKeyId,
    UserId,
    Model,
    InputTokens,
    OutputTokens,
    UsageTimeMs,
    RecordTimeMs,
}

#[derive(DeriveIden)]
enum UsageRollups {
    Table,
    OrganizationId,
    MinuteMs,
    WorkspaceId,
    ApiKeyId,
    Model,
    UserId,
    InputTokens,
    OutputTokens,
    RecordCount,
}

#[derive(DeriveIden)]
enum BillingWorkspaces {
    Table,
    WorkspaceId,
    OrganizationId,
    Name,
    ArchiveTimeMs,
}

#[derive(DeriveIden)]
enum BillingPurgedOrganizations {
    Table,
    OrganizationId,
    PurgeTimeMs,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateBillingTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BillingAccounts::Table)
                    .if_not_exists()
                    .col(text(BillingAccounts::OrganizationId).primary_key())
                    .col(ColumnDef::new(BillingAccounts::Plan).integer().not_null())
                    .col(text(BillingAccounts::BillingEmail))
                    .col(ColumnDef::new(BillingAccounts::Seats).integer().not_null())
                    .col(big(BillingAccounts::CreateTimeMs))
                    .col(big(BillingAccounts::UpdateTimeMs))
                    .col(text(BillingAccounts::Etag))
                    .to_owned(),
            )
            .await?;
        // The primary key is the idempotency constraint (rule BILL-3).
        manager
            .create_table(
                Table::create()
                    .table(UsageRecords::Table)
                    .if_not_exists()
                    .col(text(UsageRecords::OrganizationId))
                    .col(text(UsageRecords::IdempotencyKey))
                    .col(text(UsageRecords::WorkspaceId))
                    .col(text(UsageRecords::ApiKeyId))
                    .col(text(UsageRecords::UserId))
                    .col(text(UsageRecords::Model))
                    .col(big(UsageRecords::InputTokens))
                    .col(big(UsageRecords::OutputTokens))
                    .col(big(UsageRecords::UsageTimeMs))
                    .col(big(UsageRecords::RecordTimeMs))
                    .primary_key(
                        Index::create()
                            .col(UsageRecords::OrganizationId)
                            .col(UsageRecords::IdempotencyKey),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_records_org_time")
                    .table(UsageRecords::Table)
                    .col(UsageRecords::OrganizationId)
                    .col(UsageRecords::UsageTimeMs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Reports scan (organization, minute range): the primary key's leading columns.
        manager
            .create_table(
                Table::create()
                    .table(UsageRollups::Table)
                    .if_not_exists()
                    .col(text(UsageRollups::OrganizationId))
                    .col(big(UsageRollups::MinuteMs))
                    .col(text(UsageRollups::WorkspaceId))
                    .col(text(UsageRollups::ApiKeyId))
                    .col(text(UsageRollups::Model))
                    .col(text(UsageRollups::UserId))
                    .col(big(UsageRollups::InputTokens))
                    .col(big(UsageRollups::OutputTokens))
                    .col(big(UsageRollups::RecordCount))
                    .primary_key(
                        Index::create()
                            .col(UsageRollups::OrganizationId)
                            .col(UsageRollups::MinuteMs)
                            .col(UsageRollups::WorkspaceId)
                            .col(UsageRollups::ApiKeyId)
                            .col(UsageRollups::Model)
                            .col(UsageRollups::UserId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BillingWorkspaces::Table)
                    .if_not_exists()
                    .col(text(BillingWorkspaces::WorkspaceId).primary_key())
                    .col(text(BillingWorkspaces::OrganizationId))
                    .col(text(BillingWorkspaces::Name))
                    .col(
                        ColumnDef::new(BillingWorkspaces::ArchiveTimeMs)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_billing_workspaces_org")
                    .table(BillingWorkspaces::Table)
                    .col(BillingWorkspaces::OrganizationId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BillingPurgedOrganizations::Table)
                    .if_not_exists()
                    .col(text(BillingPurgedOrganizations::OrganizationId).primary_key())
                    .col(big(BillingPurgedOrganizations::PurgeTimeMs))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            BillingPurgedOrganizations::Table.into_iden(),
            BillingWorkspaces::Table.into_iden(),
            UsageRollups::Table.into_iden(),
            UsageRecords::Table.into_iden(),
            BillingAccounts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Billing accounts get an integer row version (their etag is `v<version>`, updates are
/// conditional on it) instead of a random etag string; existing accounts start at version 1.
///
/// On PostgreSQL (where replicas of two releases share the database during a rolling update) it
/// only expands: the old `etag` column stays, with a default the new code leaves in place, and
/// goes in a later release. The embedded SQLite database has one process, and drops it at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct VersionBillingAccounts;

impl MigrationName for VersionBillingAccounts {
    fn name(&self) -> &str {
        "m20261203_000001_version_billing_accounts"
    }
}

#[derive(DeriveIden)]
enum AccountVersion {
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for VersionBillingAccounts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BillingAccounts::Table)
                    .add_column(
                        ColumnDef::new(AccountVersion::Version)
                            .big_integer()
                            .not_null()
                            .default(1),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        match db.get_database_backend() {
            sea_orm::DbBackend::Sqlite => {
                db.execute_unprepared("ALTER TABLE billing_accounts DROP COLUMN etag")
                    .await?;
            }
            _ => {
                db.execute_unprepared(
                    "ALTER TABLE billing_accounts ALTER COLUMN etag SET DEFAULT ''",
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Sqlite {
            manager
                .alter_table(
                    Table::alter()
                        .table(BillingAccounts::Table)
                        .add_column(
                            ColumnDef::new(BillingAccounts::Etag)
                                .string()
                                .not_null()
                                .default(""),
                        )
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(BillingAccounts::Table)
                    .drop_column(AccountVersion::Version)
                    .to_owned(),
            )
            .await
    }
}
