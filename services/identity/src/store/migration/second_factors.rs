//! The second-factor tables (rules ID-10 … ID-12).

use sea_orm_migration::prelude::*;

use super::{big, big_null, index, int, key, text};

/// Second factors and step-up (rules ID-10 … ID-12): the factor's secret and state, recovery
/// codes, MFA challenges, the last TOTP step each user used, the addresses each account signed in
/// from, failed sign-ins, and each session's `amr` and risk. Adds tables and nullable or defaulted
/// columns only, so the previous release runs on the same database during a rolling update.
#[derive(Debug, Clone, Copy)]
pub struct AddSecondFactors;

impl MigrationName for AddSecondFactors {
    fn name(&self) -> &str {
        "m20261203_000002_add_second_factors"
    }
}

#[derive(DeriveIden)]
enum MfaFactorsV2 {
    #[sea_orm(iden = "mfa_factors")]
    Table,
    DisplayName,
    State,
    SecretSealed,
    PasskeySealed,
    CredentialId,
    ExpireTimeMs,
    LastUsedTimeMs,
}

#[derive(DeriveIden)]
enum SessionsV2 {
    #[sea_orm(iden = "sessions")]
    Table,
    Amr,
    Risk,
}

#[derive(DeriveIden)]
enum MfaRecoveryCodes {
    Table,
    UserId,
    CodeHash,
    CreateTimeMs,
    UsedTimeMs,
}

#[derive(DeriveIden)]
enum MfaChallenges {
    Table,
    IdHash,
    UserId,
    SessionId,
    Risk,
    PasskeyStateSealed,
    Failures,
    CreateTimeMs,
    ExpireTimeMs,
    UsedTimeMs,
}

#[derive(DeriveIden)]
enum TotpSteps {
    Table,
    UserId,
    LastStep,
}

#[derive(DeriveIden)]
enum SignInAddresses {
    Table,
    UserId,
    Address,
    LastSeenMs,
}

#[derive(DeriveIden)]
enum SignInFailures {
    Table,
    Id,
    UserId,
    TimeMs,
}

fn text_default<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).string().not_null().default("").to_owned()
}

fn text_null<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).text().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for AddSecondFactors {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite adds one at a time.
        for col in [
            text_default(MfaFactorsV2::DisplayName),
            ColumnDef::new(MfaFactorsV2::State)
                .integer()
                .not_null()
                .default(2)
                .to_owned(),
            text_null(MfaFactorsV2::SecretSealed),
            text_null(MfaFactorsV2::PasskeySealed),
            text_null(MfaFactorsV2::CredentialId),
            big_null(MfaFactorsV2::ExpireTimeMs),
            big_null(MfaFactorsV2::LastUsedTimeMs),
        ] {
            let mut col = col;
            manager
                .alter_table(
                    Table::alter()
                        .table(MfaFactorsV2::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        for col in [
            text_default(SessionsV2::Amr),
            text_default(SessionsV2::Risk),
        ] {
            let mut col = col;
            manager
                .alter_table(
                    Table::alter()
                        .table(SessionsV2::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        index(
            manager,
            "idx_mfa_factors_credential",
            MfaFactorsV2::Table,
            vec![MfaFactorsV2::CredentialId.into_iden()],
            true,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaRecoveryCodes::Table)
                    .if_not_exists()
                    .col(text(MfaRecoveryCodes::UserId))
                    .col(text(MfaRecoveryCodes::CodeHash))
                    .col(big(MfaRecoveryCodes::CreateTimeMs))
                    .col(big_null(MfaRecoveryCodes::UsedTimeMs))
                    .primary_key(
                        Index::create()
                            .col(MfaRecoveryCodes::UserId)
                            .col(MfaRecoveryCodes::CodeHash),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaChallenges::Table)
                    .if_not_exists()
                    .col(key(MfaChallenges::IdHash))
                    .col(text(MfaChallenges::UserId))
                    .col(ColumnDef::new(MfaChallenges::SessionId).string().null())
                    .col(text_default(MfaChallenges::Risk))
                    .col(text_null(MfaChallenges::PasskeyStateSealed))
                    .col(int(MfaChallenges::Failures))
                    .col(big(MfaChallenges::CreateTimeMs))
                    .col(big(MfaChallenges::ExpireTimeMs))
                    .col(big_null(MfaChallenges::UsedTimeMs))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_mfa_challenges_expire",
            MfaChallenges::Table,
            vec![MfaChallenges::ExpireTimeMs.into_iden()],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(TotpSteps::Table)
                    .if_not_exists()
                    .col(key(TotpSteps::UserId))
                    .col(big(TotpSteps::LastStep))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SignInAddresses::Table)
                    .if_not_exists()
                    .col(text(SignInAddresses::UserId))
                    .col(text(SignInAddresses::Address))
                    .col(big(SignInAddresses::LastSeenMs))
                    .primary_key(
                        Index::create()
                            .col(SignInAddresses::UserId)
                            .col(SignInAddresses::Address),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SignInFailures::Table)
                    .if_not_exists()
                    .col(key(SignInFailures::Id))
                    .col(text(SignInFailures::UserId))
                    .col(big(SignInFailures::TimeMs))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_sign_in_failures_user_time",
            SignInFailures::Table,
            vec![
                SignInFailures::UserId.into_iden(),
                SignInFailures::TimeMs.into_iden(),
            ],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SignInFailures::Table.into_iden(),
            SignInAddresses::Table.into_iden(),
            TotpSteps::Table.into_iden(),
            MfaChallenges::Table.into_iden(),
            MfaRecoveryCodes::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
