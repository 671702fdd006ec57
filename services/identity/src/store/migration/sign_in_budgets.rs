//! The shared sign-in budgets (rule ID-3).

use sea_orm_migration::prelude::*;

use super::{big, index, int, key};

/// `sign_in_budgets`: failed sign-ins per peer address and per account in fixed windows, shared
/// by every replica on the database (`crate::throttle::sign_in`). Adds a table only, so the
/// previous release runs on the same database during a rolling update (it keeps its in-memory
/// budgets meanwhile).
#[derive(Debug, Clone, Copy)]
pub struct AddSignInBudgets;

impl MigrationName for AddSignInBudgets {
    fn name(&self) -> &str {
        "m20261220_000001_add_sign_in_budgets"
    }
}

#[derive(DeriveIden)]
enum SignInBudgets {
    Table,
    Key,
    Failures,
    WindowStartMs,
}

#[async_trait::async_trait]
impl MigrationTrait for AddSignInBudgets {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SignInBudgets::Table)
                    .if_not_exists()
                    .col(key(SignInBudgets::Key))
                    .col(int(SignInBudgets::Failures))
                    .col(big(SignInBudgets::WindowStartMs))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_sign_in_budgets_window",
            SignInBudgets::Table,
            vec![SignInBudgets::WindowStartMs.into_iden()],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SignInBudgets::Table).to_owned())
            .await
    }
}
