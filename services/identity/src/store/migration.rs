//! The identity service's database schema, as sea-orm migrations run at start-up and by
//! `orgplane migrate`.

use orgplane_platform::audit::CreateAuditLog;
use orgplane_platform::events::migration::{CreateConsumerCursors, CreateOutbox};
use orgplane_platform::replica::{CreateRoleReplica, CreateSecurityPolicyReplica};
use orgplane_platform::revocation::CreateSessionRevocations;
use sea_orm_migration::prelude::*;
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
            Box::new(CreateRoleReplica),
            Box::new(CreateIdentityTables),
            Box::new(CreateSessionRevocations),
            Box::new(CreateSecurityPolicyReplica),
            Box::new(AddSecondFactors),
        ]
    }
}

/// Users, sessions, refresh tokens, mail tokens, signing keys, API keys and second factors.
#[derive(Debug, Clone, Copy)]
pub struct CreateIdentityTables;

impl MigrationName for CreateIdentityTables {
    fn name(&self) -> &str {
        "m20261124_000001_create_identity_tables"
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    EmailKey,
    EmailVerified,
    DisplayName,
    AccountType,
    PasswordHash,
    Version,
    CreateTimeMs,
    UpdateTimeMs,
    SignupRequestId,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    AuthTime,
    CreateTimeMs,
    ExpireTimeMs,
    RevokedTimeMs,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenHash,
    SessionId,
    UserId,
    CreateTimeMs,
    ExpireTimeMs,
    Rotated,
}

#[derive(DeriveIden)]
enum MailTokens {
    Table,
    TokenHash,
    UserId,
    Purpose,
    Email,
    CreateTimeMs,
    ExpireTimeMs,
    Used,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    SealedSeed,
    PublicX,
    CreateTimeMs,
    RetireTimeMs,
    ExpireTimeMs,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    OrganizationId,
    WorkspaceId,
    Kind,
    Name,
    Status,
    SecretHash,
    Hint,
    CreatorUserId,
    RequestId,
    CreateTimeMs,
    UpdateTimeMs,
    LastUsedTimeMs,
    Version,
}

#[derive(DeriveIden)]
enum MfaFactors {
    Table,
    Id,
    UserId,
    Kind,
    CreateTimeMs,
}

fn text<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).string().not_null().to_owned()
}

fn big<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).big_integer().not_null().to_owned()
}

fn big_null<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).big_integer().null().to_owned()
}

fn int<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).integer().not_null().to_owned()
}

fn flag<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).boolean().not_null().to_owned()
}

fn key<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c)
        .string()
        .not_null()
        .primary_key()
        .to_owned()
}

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    cols: Vec<DynIden>,
    unique: bool,
) -> Result<(), DbErr> {
    let mut idx = Index::create();
    idx.name(name).table(table).if_not_exists();
    for c in cols {
        idx.col(c);
    }
    if unique {
        idx.unique();
    }
    manager.create_index(idx.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for CreateIdentityTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(key(Users::Id))
                    .col(text(Users::Email))
                    .col(text(Users::EmailKey))
                    .col(flag(Users::EmailVerified))
                    .col(text(Users::DisplayName))
                    .col(int(Users::AccountType))
                    .col(text(Users::PasswordHash))
                    .col(big(Users::Version))
                    .col(big(Users::CreateTimeMs))
                    .col(big(Users::UpdateTimeMs))
                    .col(ColumnDef::new(Users::SignupRequestId).string().null())
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ux_users_email_key",
            Users::Table,
            vec![Users::EmailKey.into_iden()],
            true,
        )
        .await?;
        index(
            manager,
            "ux_users_signup_request",
            Users::Table,
            vec![Users::SignupRequestId.into_iden()],
            true,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    .col(key(Sessions::Id))
                    .col(text(Sessions::UserId))
                    .col(big(Sessions::AuthTime))
                    .col(big(Sessions::CreateTimeMs))
                    .col(big(Sessions::ExpireTimeMs))
                    .col(big_null(Sessions::RevokedTimeMs))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_sessions_user",
            Sessions::Table,
            vec![Sessions::UserId.into_iden()],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .if_not_exists()
                    .col(key(RefreshTokens::TokenHash))
                    .col(text(RefreshTokens::SessionId))
                    .col(text(RefreshTokens::UserId))
                    .col(big(RefreshTokens::CreateTimeMs))
                    .col(big(RefreshTokens::ExpireTimeMs))
                    .col(flag(RefreshTokens::Rotated))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_refresh_tokens_session",
            RefreshTokens::Table,
            vec![RefreshTokens::SessionId.into_iden()],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(MailTokens::Table)
                    .if_not_exists()
                    .col(key(MailTokens::TokenHash))
                    .col(text(MailTokens::UserId))
                    .col(text(MailTokens::Purpose))
                    .col(text(MailTokens::Email))
                    .col(big(MailTokens::CreateTimeMs))
                    .col(big(MailTokens::ExpireTimeMs))
                    .col(flag(MailTokens::Used))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_mail_tokens_user",
            MailTokens::Table,
            vec![
                MailTokens::UserId.into_iden(),
                MailTokens::Purpose.into_iden(),
            ],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .if_not_exists()
                    .col(key(SigningKeys::Kid))
                    .col(ColumnDef::new(SigningKeys::SealedSeed).binary().not_null())
                    .col(text(SigningKeys::PublicX))
                    .col(big(SigningKeys::CreateTimeMs))
                    .col(big_null(SigningKeys::RetireTimeMs))
                    .col(big_null(SigningKeys::ExpireTimeMs))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .if_not_exists()
                    .col(key(ApiKeys::Id))
                    .col(text(ApiKeys::OrganizationId))
                    .col(text(ApiKeys::WorkspaceId))
                    .col(int(ApiKeys::Kind))
                    .col(text(ApiKeys::Name))
                    .col(int(ApiKeys::Status))
                    .col(text(ApiKeys::SecretHash))
                    .col(text(ApiKeys::Hint))
                    .col(text(ApiKeys::CreatorUserId))
                    .col(ColumnDef::new(ApiKeys::RequestId).string().null())
                    .col(big(ApiKeys::CreateTimeMs))
                    .col(big(ApiKeys::UpdateTimeMs))
                    .col(big_null(ApiKeys::LastUsedTimeMs))
                    .col(big(ApiKeys::Version))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_api_keys_org",
            ApiKeys::Table,
            vec![
                ApiKeys::OrganizationId.into_iden(),
                ApiKeys::CreateTimeMs.into_iden(),
                ApiKeys::Id.into_iden(),
            ],
            false,
        )
        .await?;
        index(
            manager,
            "ux_api_keys_request",
            ApiKeys::Table,
            vec![
                ApiKeys::CreatorUserId.into_iden(),
                ApiKeys::RequestId.into_iden(),
            ],
            true,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(MfaFactors::Table)
                    .if_not_exists()
                    .col(key(MfaFactors::Id))
                    .col(text(MfaFactors::UserId))
                    .col(text(MfaFactors::Kind))
                    .col(big(MfaFactors::CreateTimeMs))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_mfa_factors_user",
            MfaFactors::Table,
            vec![MfaFactors::UserId.into_iden()],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MfaFactors::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            SigningKeys::Table.into_iden(),
            MailTokens::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

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
