//! The organization service's database schema, as sea-orm migrations run at start-up and by
//! `orgplane migrate`.

use orgplane_platform::audit::{AddAuditActorOrganization, CreateAuditLog};
use orgplane_platform::events::migration::{
    CreateConsumerCursors, CreateOutbox, CreateWriteGuards,
};
use orgplane_platform::revocation::CreateSessionRevocations;
use orgplane_platform::schema::{big, int, text as string};
use sea_orm_migration::prelude::*;
use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// Every migration of the organization database, in order.
#[derive(Debug, Clone, Copy)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateConsumerCursors),
            Box::new(CreateAuditLog),
            Box::new(CreateOrganizationTables),
            Box::new(CreateSessionRevocations),
            Box::new(AddInviterApiKey),
            Box::new(CreateSecurityPolicies),
            Box::new(crate::store::domains::CreateDomains),
            Box::new(crate::store::domains::AddInviteRestriction),
            Box::new(crate::store::email_keys::CanonicalEmailKeys),
            Box::new(AddAuditActorOrganization),
            Box::new(crate::store::settings::AddOperators),
            Box::new(crate::store::accounts::CreateAccounts),
            Box::new(crate::store::merges::AddMerges),
            Box::new(crate::store::profiles::AddUserProfiles),
            Box::new(CreateWriteGuards),
        ]
    }
}

/// Organizations, members, invites, units, the units' workspaces and idempotency keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateOrganizationTables;

impl MigrationName for CreateOrganizationTables {
    fn name(&self) -> &str {
        "m20261124_000010_create_organization_tables"
    }
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    NameKey,
    OrgType,
    PrimaryEmail,
    State,
    OwnerUserId,
    CreatorUserId,
    CreateTimeMs,
    UpdateTimeMs,
    DeleteTimeMs,
    PurgeTimeMs,
    Version,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    OrganizationId,
    UserId,
    Email,
    Role,
    CreateTimeMs,
    UpdateTimeMs,
    Version,
}

#[derive(DeriveIden)]
enum Invites {
    Table,
    Id,
    OrganizationId,
    Email,
    PendingKey,
    Role,
    State,
    InviterUserId,
    CreateTimeMs,
    ExpireTimeMs,
    AcceptTimeMs,
    AcceptedUserId,
    DeleteTimeMs,
    InviterApiKeyId,
}

#[derive(DeriveIden)]
enum Units {
    Table,
    Id,
    OrganizationId,
    ParentUnitId,
    Name,
    Depth,
    CreateTimeMs,
    UpdateTimeMs,
    Version,
}

#[derive(DeriveIden)]
enum UnitWorkspaces {
    Table,
    WorkspaceId,
    OrganizationId,
    UnitId,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Key,
    OrganizationId,
    ResourceId,
    CreateTimeMs,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOrganizationTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Organizations::Table)
                .if_not_exists()
                .col(string(Organizations::Id).primary_key())
                .col(string(Organizations::Name))
                .col(string(Organizations::NameKey))
                .col(int(Organizations::OrgType))
                .col(string(Organizations::PrimaryEmail))
                .col(int(Organizations::State))
                .col(string(Organizations::OwnerUserId))
                .col(string(Organizations::CreatorUserId))
                .col(big(Organizations::CreateTimeMs))
                .col(big(Organizations::UpdateTimeMs))
                .col(
                    ColumnDef::new(Organizations::DeleteTimeMs)
                        .big_integer()
                        .null(),
                )
                .col(
                    ColumnDef::new(Organizations::PurgeTimeMs)
                        .big_integer()
                        .null(),
                )
                .col(big(Organizations::Version))
                .to_owned(),
        )
        .await?;
        // ORG-1: names are unique per creating account, ignoring case, until purged.
        m.create_index(
            Index::create()
                .name("ux_organizations_creator_name")
                .table(Organizations::Table)
                .col(Organizations::CreatorUserId)
                .col(Organizations::NameKey)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_organizations_purge")
                .table(Organizations::Table)
                .col(Organizations::State)
                .col(Organizations::PurgeTimeMs)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Members::Table)
                .if_not_exists()
                .col(string(Members::OrganizationId))
                .col(string(Members::UserId))
                .col(string(Members::Email))
                .col(int(Members::Role))
                .col(big(Members::CreateTimeMs))
                .col(big(Members::UpdateTimeMs))
                .col(big(Members::Version))
                .primary_key(
                    Index::create()
                        .col(Members::OrganizationId)
                        .col(Members::UserId),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_members_join_order")
                .table(Members::Table)
                .col(Members::OrganizationId)
                .col(Members::CreateTimeMs)
                .col(Members::UserId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_members_user")
                .table(Members::Table)
                .col(Members::UserId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_members_email")
                .table(Members::Table)
                .col(Members::OrganizationId)
                .col(Members::Email)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Invites::Table)
                .if_not_exists()
                .col(string(Invites::Id).primary_key())
                .col(string(Invites::OrganizationId))
                .col(string(Invites::Email))
                .col(ColumnDef::new(Invites::PendingKey).string().null())
                .col(int(Invites::Role))
                .col(int(Invites::State))
                .col(string(Invites::InviterUserId))
                .col(big(Invites::CreateTimeMs))
                .col(big(Invites::ExpireTimeMs))
                .col(ColumnDef::new(Invites::AcceptTimeMs).big_integer().null())
                .col(string(Invites::AcceptedUserId))
                .col(ColumnDef::new(Invites::DeleteTimeMs).big_integer().null())
                .to_owned(),
        )
        .await?;
        // ORG-6: one pending invite per email and organization (NULLs do not collide).
        m.create_index(
            Index::create()
                .name("ux_invites_pending")
                .table(Invites::Table)
                .col(Invites::OrganizationId)
                .col(Invites::PendingKey)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_invites_org")
                .table(Invites::Table)
                .col(Invites::OrganizationId)
                .col(Invites::Id)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Units::Table)
                .if_not_exists()
                .col(string(Units::Id).primary_key())
                .col(string(Units::OrganizationId))
                .col(string(Units::ParentUnitId))
                .col(string(Units::Name))
                .col(int(Units::Depth))
                .col(big(Units::CreateTimeMs))
                .col(big(Units::UpdateTimeMs))
                .col(big(Units::Version))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_units_org")
                .table(Units::Table)
                .col(Units::OrganizationId)
                .col(Units::Depth)
                .col(Units::Id)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(UnitWorkspaces::Table)
                .if_not_exists()
                .col(string(UnitWorkspaces::WorkspaceId).primary_key())
                .col(string(UnitWorkspaces::OrganizationId))
                .col(string(UnitWorkspaces::UnitId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_unit_workspaces_unit")
                .table(UnitWorkspaces::Table)
                .col(UnitWorkspaces::UnitId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(IdempotencyKeys::Table)
                .if_not_exists()
                .col(string(IdempotencyKeys::Key).primary_key())
                .col(string(IdempotencyKeys::OrganizationId))
                .col(string(IdempotencyKeys::ResourceId))
                .col(big(IdempotencyKeys::CreateTimeMs))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            IdempotencyKeys::Table.into_iden(),
            UnitWorkspaces::Table.into_iden(),
            Units::Table.into_iden(),
            Invites::Table.into_iden(),
            Members::Table.into_iden(),
            Organizations::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

/// Invites name who sent them truthfully (ORG-6): a new `inviter_api_key_id` column holds the
/// admin API key that sent an invite, and `inviter_user_id` keeps users only. Invites sent with
/// a key before this migration held the key's id (`key_…`) in `inviter_user_id`; it moves.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddInviterApiKey;

impl MigrationName for AddInviterApiKey {
    fn name(&self) -> &str {
        "m20261203_000001_add_invite_inviter_api_key"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddInviterApiKey {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Invites::Table)
                .add_column(string(Invites::InviterApiKeyId).default(""))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "UPDATE invites SET inviter_api_key_id = inviter_user_id, inviter_user_id = '' \
                 WHERE substr(inviter_user_id, 1, 4) = 'key_'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(
                "UPDATE invites SET inviter_user_id = inviter_api_key_id \
                 WHERE inviter_api_key_id <> ''",
            )
            .await?;
        m.alter_table(
            Table::alter()
                .table(Invites::Table)
                .drop_column(Invites::InviterApiKeyId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}

/// Organizations' security policies (rule ORG-16). It only adds a table, so the previous release
/// keeps working on the same database during a rolling update (it ignores the policies).
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateSecurityPolicies;

impl MigrationName for CreateSecurityPolicies {
    fn name(&self) -> &str {
        "m20261210_000001_create_security_policies"
    }
}

#[derive(DeriveIden)]
enum SecurityPolicies {
    Table,
    OrganizationId,
    MfaRequirement,
    ReauthMaxAgeSecs,
    SignInMethods,
    Version,
    UpdateTimeMs,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSecurityPolicies {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SecurityPolicies::Table)
                .if_not_exists()
                .col(string(SecurityPolicies::OrganizationId).primary_key())
                .col(int(SecurityPolicies::MfaRequirement))
                .col(big(SecurityPolicies::ReauthMaxAgeSecs))
                .col(int(SecurityPolicies::SignInMethods))
                .col(big(SecurityPolicies::Version))
                .col(big(SecurityPolicies::UpdateTimeMs))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SecurityPolicies::Table).to_owned())
            .await
    }
}
