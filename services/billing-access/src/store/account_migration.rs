//! The schema of billing per account (rule BILL-6): the replica of the organization service's
//! accounts, a billing account per managed top-level account, and the billed account and
//! subaccount on usage records and in per-minute rollups of their own.
//!
//! Expand only: during a rolling update the previous release still upserts into `usage_rollups`
//! on its six-column key, so that table stays exactly as it was. The per-account sums go to a
//! new table, `usage_account_rollups` (the same key plus account and subaccount), filled here
//! with the existing rollups under the empty account, so reports of earlier usage do not change.
//! Usage the previous release ingests after this migration reaches `usage_rollups` only: it is
//! counted in every report that reads that table (all but those grouped or filtered by account)
//! and is missing from account-grouped and account-filtered reports.

use orgplane_platform::schema::{big, text};
use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

/// Accounts, their billing accounts, and accounts on usage.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddBillingPerAccount;

impl MigrationName for AddBillingPerAccount {
    fn name(&self) -> &str {
        "m20261215_000001_billing_per_account"
    }
}

#[derive(DeriveIden)]
enum BillingManagedAccounts {
    Table,
    AccountId,
    OrganizationId,
    ParentAccountId,
    State,
    OwnerUserId,
    DisplayName,
    CloseTimeMs,
}

#[derive(DeriveIden)]
enum BillingAccountSettings {
    Table,
    AccountId,
    Plan,
    BillingEmail,
    Seats,
    CreateTimeMs,
    UpdateTimeMs,
    Version,
}

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    AccountId,
    SubaccountId,
}

#[derive(DeriveIden)]
enum UsageAccountRollups {
    Table,
    OrganizationId,
    MinuteMs,
    WorkspaceId,
    ApiKeyId,
    Model,
    UserId,
    AccountId,
    SubaccountId,
    InputTokens,
    OutputTokens,
    RecordCount,
}

/// The key columns `usage_rollups` and `usage_account_rollups` share.
const KEY: &str = "organization_id, minute_ms, workspace_id, api_key_id, model, user_id";
/// The sums of a rollup row.
const SUMS: &str = "input_tokens, output_tokens, record_count";

/// `usage_account_rollups`: the rollups keyed also by the billed account and subaccount, the
/// primary key starting with (organization, minute) as the narrow table's does.
fn account_rollups() -> TableCreateStatement {
    use UsageAccountRollups as R;
    Table::create()
        .table(R::Table)
        .if_not_exists()
        .col(text(R::OrganizationId))
        .col(big(R::MinuteMs))
        .col(text(R::WorkspaceId))
        .col(text(R::ApiKeyId))
        .col(text(R::Model))
        .col(text(R::UserId))
        .col(text(R::AccountId))
        .col(text(R::SubaccountId))
        .col(big(R::InputTokens))
        .col(big(R::OutputTokens))
        .col(big(R::RecordCount))
        .primary_key(
            Index::create()
                .col(R::OrganizationId)
                .col(R::MinuteMs)
                .col(R::WorkspaceId)
                .col(R::ApiKeyId)
                .col(R::Model)
                .col(R::UserId)
                .col(R::AccountId)
                .col(R::SubaccountId),
        )
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for AddBillingPerAccount {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use BillingAccountSettings as S;
        use BillingManagedAccounts as A;
        manager
            .create_table(
                Table::create()
                    .table(A::Table)
                    .if_not_exists()
                    .col(text(A::AccountId).primary_key())
                    .col(text(A::OrganizationId))
                    .col(text(A::ParentAccountId))
                    .col(ColumnDef::new(A::State).integer().not_null())
                    .col(text(A::OwnerUserId))
                    .col(text(A::DisplayName))
                    .col(ColumnDef::new(A::CloseTimeMs).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_billing_managed_accounts_org")
                    .table(A::Table)
                    .col(A::OrganizationId)
                    .col(A::AccountId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .if_not_exists()
                    .col(text(S::AccountId).primary_key())
                    .col(ColumnDef::new(S::Plan).integer().not_null())
                    .col(text(S::BillingEmail))
                    .col(ColumnDef::new(S::Seats).integer().not_null())
                    .col(big(S::CreateTimeMs))
                    .col(big(S::UpdateTimeMs))
                    .col(big(S::Version))
                    .to_owned(),
            )
            .await?;
        for column in [UsageRecords::AccountId, UsageRecords::SubaccountId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(UsageRecords::Table)
                        .add_column(text(column).default(""))
                        .to_owned(),
                )
                .await?;
        }
        manager.create_table(account_rollups()).await?;
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO usage_account_rollups ({KEY}, account_id, subaccount_id, {SUMS}) \
                 SELECT {KEY}, '', '', {SUMS} FROM usage_rollups"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UsageAccountRollups::Table).to_owned())
            .await?;
        for column in [UsageRecords::AccountId, UsageRecords::SubaccountId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(UsageRecords::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for table in [
            BillingAccountSettings::Table.into_iden(),
            BillingManagedAccounts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
