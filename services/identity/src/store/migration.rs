//! The identity service's database schema, as sea-orm migrations run at start-up and by
//! `orgplane migrate`.

use orgplane_platform::audit::{AddAuditActorOrganization, CreateAuditLog};
use orgplane_platform::events::migration::{
    CreateConsumerCursors, CreateOutbox, CreateWriteGuards,
};
use orgplane_platform::replica::{
    CreateRoleReplica, CreateSecurityPolicyReplica, CreateVerifiedDomainReplica,
};
use orgplane_platform::revocation::CreateSessionRevocations;
use orgplane_platform::schema::{big, int, text};
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
            Box::new(CanonicalEmailKeys),
            Box::new(CreateVerifiedDomainReplica),
            Box::new(AddSso),
            Box::new(AddScim),
            Box::new(AddAuditActorOrganization),
            Box::new(AddSignInBudgets),
            Box::new(CreateWriteGuards),
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

fn big_null<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).big_integer().null().to_owned()
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

mod canonical_emails;
mod scim;
mod second_factors;
mod sign_in_budgets;
mod sso;
pub use canonical_emails::CanonicalEmailKeys;
pub use scim::AddScim;
pub use second_factors::AddSecondFactors;
pub use sign_in_budgets::AddSignInBudgets;
pub use sso::AddSso;
