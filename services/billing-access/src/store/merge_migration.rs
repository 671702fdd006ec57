//! The schema of organization merges (rules ORG-15, BILL-6): the merged organizations, each with
//! the prime that absorbed it. The moved data itself needs no new column (see
//! [`crate::store::merge`]).

use sea_orm_migration::prelude::*;

/// The merged organizations.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddOrganizationMerges;

impl MigrationName for AddOrganizationMerges {
    fn name(&self) -> &str {
        "m20261220_000001_organization_merges"
    }
}

#[derive(DeriveIden)]
enum BillingMergedOrganizations {
    Table,
    OrganizationId,
    PrimeOrganizationId,
    MergeTimeMs,
}

#[async_trait::async_trait]
impl MigrationTrait for AddOrganizationMerges {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BillingMergedOrganizations::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(BillingMergedOrganizations::OrganizationId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(BillingMergedOrganizations::PrimeOrganizationId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(BillingMergedOrganizations::MergeTimeMs)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(BillingMergedOrganizations::Table)
                    .to_owned(),
            )
            .await
    }
}
