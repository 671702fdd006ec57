//! The SSO tables (rule ID-13): connections and the domains they serve, sign-in attempts in
//! flight, federated identities, and the first factor of an MFA challenge opened after SSO.

use sea_orm_migration::prelude::*;

use super::{big, big_null, index, int, key, text};

/// SSO connections (client secret sealed), the domains each serves, sign-in attempts (`state`,
/// `nonce` and browser binding hashed, the PKCE verifier sealed), federated identities keyed by
/// (connection, `sub`), and `mfa_challenges.sign_in_amr` (the first factor a challenge
/// completes). Adds tables and a defaulted column only, so the previous release runs on the
/// same database during a rolling update.
#[derive(Debug, Clone, Copy)]
pub struct AddSso;

impl MigrationName for AddSso {
    fn name(&self) -> &str {
        "m20261204_000002_add_sso"
    }
}

#[derive(DeriveIden)]
enum SsoConnections {
    Table,
    Id,
    OrganizationId,
    DisplayName,
    Issuer,
    ClientId,
    ClientSecretSealed,
    Scopes,
    Algorithms,
    RedirectUris,
    Enforced,
    JitProvisioning,
    DefaultRole,
    TrustIdpMfa,
    Enabled,
    CreatorUserId,
    RequestId,
    Version,
    CreateTimeMs,
    UpdateTimeMs,
}

#[derive(DeriveIden)]
enum SsoConnectionDomains {
    Table,
    ConnectionId,
    DomainName,
}

#[derive(DeriveIden)]
enum SsoAttempts {
    Table,
    StateHash,
    ConnectionId,
    NonceHash,
    BindingHash,
    VerifierSealed,
    RedirectUri,
    CreateTimeMs,
    ExpireTimeMs,
    UsedTimeMs,
}

#[derive(DeriveIden)]
enum FederatedIdentities {
    Table,
    ConnectionId,
    Subject,
    UserId,
    Email,
    CreateTimeMs,
    LastSignInMs,
}

#[derive(DeriveIden)]
enum MfaChallengesV3 {
    #[sea_orm(iden = "mfa_challenges")]
    Table,
    SignInAmr,
}

fn flag<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).boolean().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for AddSso {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SsoConnections::Table)
                    .if_not_exists()
                    .col(key(SsoConnections::Id))
                    .col(text(SsoConnections::OrganizationId))
                    .col(text(SsoConnections::DisplayName))
                    .col(text(SsoConnections::Issuer))
                    .col(text(SsoConnections::ClientId))
                    .col(
                        ColumnDef::new(SsoConnections::ClientSecretSealed)
                            .text()
                            .null(),
                    )
                    .col(text(SsoConnections::Scopes))
                    .col(text(SsoConnections::Algorithms))
                    .col(
                        ColumnDef::new(SsoConnections::RedirectUris)
                            .text()
                            .not_null(),
                    )
                    .col(flag(SsoConnections::Enforced))
                    .col(flag(SsoConnections::JitProvisioning))
                    .col(int(SsoConnections::DefaultRole))
                    .col(flag(SsoConnections::TrustIdpMfa))
                    .col(flag(SsoConnections::Enabled))
                    .col(text(SsoConnections::CreatorUserId))
                    .col(ColumnDef::new(SsoConnections::RequestId).string().null())
                    .col(big(SsoConnections::Version))
                    .col(big(SsoConnections::CreateTimeMs))
                    .col(big(SsoConnections::UpdateTimeMs))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_sso_connections_org",
            SsoConnections::Table,
            vec![
                SsoConnections::OrganizationId.into_iden(),
                SsoConnections::CreateTimeMs.into_iden(),
            ],
            false,
        )
        .await?;
        index(
            manager,
            "idx_sso_connections_request",
            SsoConnections::Table,
            vec![
                SsoConnections::OrganizationId.into_iden(),
                SsoConnections::RequestId.into_iden(),
            ],
            true,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(SsoConnectionDomains::Table)
                    .if_not_exists()
                    .col(text(SsoConnectionDomains::ConnectionId))
                    .col(text(SsoConnectionDomains::DomainName))
                    .primary_key(
                        Index::create()
                            .col(SsoConnectionDomains::ConnectionId)
                            .col(SsoConnectionDomains::DomainName),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_sso_connection_domains_name",
            SsoConnectionDomains::Table,
            vec![SsoConnectionDomains::DomainName.into_iden()],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(SsoAttempts::Table)
                    .if_not_exists()
                    .col(key(SsoAttempts::StateHash))
                    .col(text(SsoAttempts::ConnectionId))
                    .col(text(SsoAttempts::NonceHash))
                    .col(text(SsoAttempts::BindingHash))
                    .col(
                        ColumnDef::new(SsoAttempts::VerifierSealed)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SsoAttempts::RedirectUri).text().not_null())
                    .col(big(SsoAttempts::CreateTimeMs))
                    .col(big(SsoAttempts::ExpireTimeMs))
                    .col(big_null(SsoAttempts::UsedTimeMs))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_sso_attempts_expire",
            SsoAttempts::Table,
            vec![SsoAttempts::ExpireTimeMs.into_iden()],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(FederatedIdentities::Table)
                    .if_not_exists()
                    .col(text(FederatedIdentities::ConnectionId))
                    .col(text(FederatedIdentities::Subject))
                    .col(text(FederatedIdentities::UserId))
                    .col(text(FederatedIdentities::Email))
                    .col(big(FederatedIdentities::CreateTimeMs))
                    .col(big(FederatedIdentities::LastSignInMs))
                    .primary_key(
                        Index::create()
                            .col(FederatedIdentities::ConnectionId)
                            .col(FederatedIdentities::Subject),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_federated_identities_user",
            FederatedIdentities::Table,
            vec![FederatedIdentities::UserId.into_iden()],
            false,
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(MfaChallengesV3::Table)
                    .add_column(
                        ColumnDef::new(MfaChallengesV3::SignInAmr)
                            .string()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            FederatedIdentities::Table.into_iden(),
            SsoAttempts::Table.into_iden(),
            SsoConnectionDomains::Table.into_iden(),
            SsoConnections::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
