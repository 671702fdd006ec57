//! The SCIM tables (rule ID-14): bearer tokens (digests only), an organization's group-to-role
//! settings, provisioned users and groups with their members, and the queue of membership
//! changes owed to the organization service.

use sea_orm_migration::prelude::*;

use super::{big, big_null, flag, index, int, key, text};

/// SCIM tokens (SHA-256 digests of the secrets), per-organization settings, users (one per
/// organization and account, the SCIM attributes as JSON), groups and their members, and
/// `scim_provisioning`: the membership changes each SCIM write owes the organization service,
/// written in the write's transaction and delivered exactly once per `request_id`. Adds tables
/// only, so the previous release runs on the same database during a rolling update.
#[derive(Debug, Clone, Copy)]
pub struct AddScim;

impl MigrationName for AddScim {
    fn name(&self) -> &str {
        "m20261205_000001_add_scim"
    }
}

#[derive(DeriveIden)]
enum ScimTokens {
    Table,
    Id,
    OrganizationId,
    DisplayName,
    TokenHash,
    PartialHint,
    State,
    AllowUnverified,
    CreatorUserId,
    RequestId,
    Version,
    CreateTimeMs,
    UpdateTimeMs,
    LastUsedMs,
}

#[derive(DeriveIden)]
enum ScimSettings {
    Table,
    OrganizationId,
    DefaultRole,
    Mappings,
    Version,
    UpdateTimeMs,
}

#[derive(DeriveIden)]
enum ScimUsers {
    Table,
    Id,
    OrganizationId,
    UserId,
    UserName,
    UserNameKey,
    ExternalId,
    Active,
    Resource,
    AppliedRole,
    Version,
    CreateTimeMs,
    UpdateTimeMs,
}

#[derive(DeriveIden)]
enum ScimGroups {
    Table,
    Id,
    OrganizationId,
    DisplayName,
    DisplayNameKey,
    ExternalId,
    Version,
    CreateTimeMs,
    UpdateTimeMs,
}

#[derive(DeriveIden)]
enum ScimGroupMembers {
    Table,
    GroupId,
    ScimUserId,
    OrganizationId,
}

#[derive(DeriveIden)]
enum ScimProvisioning {
    Table,
    RequestId,
    OrganizationId,
    UserId,
    Action,
    Role,
    CreateTimeMs,
    Attempts,
    NextAttemptMs,
    DoneTimeMs,
    LastError,
}

#[async_trait::async_trait]
impl MigrationTrait for AddScim {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ScimTokens::Table)
                    .if_not_exists()
                    .col(key(ScimTokens::Id))
                    .col(text(ScimTokens::OrganizationId))
                    .col(text(ScimTokens::DisplayName))
                    .col(text(ScimTokens::TokenHash))
                    .col(text(ScimTokens::PartialHint))
                    .col(int(ScimTokens::State))
                    .col(flag(ScimTokens::AllowUnverified))
                    .col(text(ScimTokens::CreatorUserId))
                    .col(ColumnDef::new(ScimTokens::RequestId).string().null())
                    .col(big(ScimTokens::Version))
                    .col(big(ScimTokens::CreateTimeMs))
                    .col(big(ScimTokens::UpdateTimeMs))
                    .col(big_null(ScimTokens::LastUsedMs))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ux_scim_tokens_hash",
            ScimTokens::Table,
            vec![ScimTokens::TokenHash.into_iden()],
            true,
        )
        .await?;
        index(
            manager,
            "idx_scim_tokens_org",
            ScimTokens::Table,
            vec![
                ScimTokens::OrganizationId.into_iden(),
                ScimTokens::CreateTimeMs.into_iden(),
                ScimTokens::Id.into_iden(),
            ],
            false,
        )
        .await?;
        index(
            manager,
            "ux_scim_tokens_request",
            ScimTokens::Table,
            vec![
                ScimTokens::OrganizationId.into_iden(),
                ScimTokens::RequestId.into_iden(),
            ],
            true,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(ScimSettings::Table)
                    .if_not_exists()
                    .col(key(ScimSettings::OrganizationId))
                    .col(int(ScimSettings::DefaultRole))
                    .col(ColumnDef::new(ScimSettings::Mappings).text().not_null())
                    .col(big(ScimSettings::Version))
                    .col(big(ScimSettings::UpdateTimeMs))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ScimUsers::Table)
                    .if_not_exists()
                    .col(key(ScimUsers::Id))
                    .col(text(ScimUsers::OrganizationId))
                    .col(text(ScimUsers::UserId))
                    .col(text(ScimUsers::UserName))
                    .col(text(ScimUsers::UserNameKey))
                    .col(ColumnDef::new(ScimUsers::ExternalId).string().null())
                    .col(flag(ScimUsers::Active))
                    .col(ColumnDef::new(ScimUsers::Resource).text().not_null())
                    .col(int(ScimUsers::AppliedRole))
                    .col(big(ScimUsers::Version))
                    .col(big(ScimUsers::CreateTimeMs))
                    .col(big(ScimUsers::UpdateTimeMs))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ux_scim_users_name",
            ScimUsers::Table,
            vec![
                ScimUsers::OrganizationId.into_iden(),
                ScimUsers::UserNameKey.into_iden(),
            ],
            true,
        )
        .await?;
        index(
            manager,
            "ux_scim_users_account",
            ScimUsers::Table,
            vec![
                ScimUsers::OrganizationId.into_iden(),
                ScimUsers::UserId.into_iden(),
            ],
            true,
        )
        .await?;
        index(
            manager,
            "idx_scim_users_external",
            ScimUsers::Table,
            vec![
                ScimUsers::OrganizationId.into_iden(),
                ScimUsers::ExternalId.into_iden(),
            ],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(ScimGroups::Table)
                    .if_not_exists()
                    .col(key(ScimGroups::Id))
                    .col(text(ScimGroups::OrganizationId))
                    .col(text(ScimGroups::DisplayName))
                    .col(text(ScimGroups::DisplayNameKey))
                    .col(ColumnDef::new(ScimGroups::ExternalId).string().null())
                    .col(big(ScimGroups::Version))
                    .col(big(ScimGroups::CreateTimeMs))
                    .col(big(ScimGroups::UpdateTimeMs))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ux_scim_groups_name",
            ScimGroups::Table,
            vec![
                ScimGroups::OrganizationId.into_iden(),
                ScimGroups::DisplayNameKey.into_iden(),
            ],
            true,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(ScimGroupMembers::Table)
                    .if_not_exists()
                    .col(text(ScimGroupMembers::GroupId))
                    .col(text(ScimGroupMembers::ScimUserId))
                    .col(text(ScimGroupMembers::OrganizationId))
                    .primary_key(
                        Index::create()
                            .col(ScimGroupMembers::GroupId)
                            .col(ScimGroupMembers::ScimUserId),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_scim_group_members_user",
            ScimGroupMembers::Table,
            vec![ScimGroupMembers::ScimUserId.into_iden()],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(ScimProvisioning::Table)
                    .if_not_exists()
                    .col(key(ScimProvisioning::RequestId))
                    .col(text(ScimProvisioning::OrganizationId))
                    .col(text(ScimProvisioning::UserId))
                    .col(text(ScimProvisioning::Action))
                    .col(int(ScimProvisioning::Role))
                    .col(big(ScimProvisioning::CreateTimeMs))
                    .col(int(ScimProvisioning::Attempts))
                    .col(big(ScimProvisioning::NextAttemptMs))
                    .col(big_null(ScimProvisioning::DoneTimeMs))
                    .col(ColumnDef::new(ScimProvisioning::LastError).text().null())
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_scim_provisioning_due",
            ScimProvisioning::Table,
            vec![
                ScimProvisioning::DoneTimeMs.into_iden(),
                ScimProvisioning::NextAttemptMs.into_iden(),
            ],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ScimProvisioning::Table.into_iden(),
            ScimGroupMembers::Table.into_iden(),
            ScimGroups::Table.into_iden(),
            ScimUsers::Table.into_iden(),
            ScimSettings::Table.into_iden(),
            ScimTokens::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
