//! Accounts (rules ACC-1 … ACC-5): the accounts themselves, the entries of organizations' lists
//! (MANAGED, INDEPENDENT, PENDING), the members granted access through an organization, and each
//! organization's compliance defaults; and the migration that adds the four tables. It only
//! adds, so the previous release keeps working on the same database during a rolling update.

use orgplane_platform::schema::{big, int, text as string};
use sea_orm_migration::prelude::*;
use sea_orm_migration::{MigrationTrait, SchemaManager};

/// Rows of `accounts`.
pub mod account {
    use sea_orm::entity::prelude::*;

    /// One account or subaccount, open or closed (closed ones stay readable).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "accounts")]
    pub struct Model {
        /// `acct_…`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The organization it belongs to and is billed in (for a subaccount, its parent's).
        pub home_organization_id: String,
        /// The parent account of a subaccount; empty for a top-level account.
        pub parent_account_id: String,
        /// Display name as given (trimmed).
        pub display_name: String,
        /// The owning user.
        pub owner_user_id: String,
        /// `AccountState` as its number.
        pub state: i32,
        /// `ComplianceDesignation` as its number (rule ACC-5).
        pub compliance: i32,
        /// `ComplianceSource` as its number.
        pub compliance_source: i32,
        /// Created at.
        pub create_time_ms: i64,
        /// Last changed at.
        pub update_time_ms: i64,
        /// Closed at.
        pub close_time_ms: Option<i64>,
        /// Change counter (the etag of its MANAGED view).
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `account_entries`: what a top-level account is to one organization (rule ACC-2).
/// Subaccounts have none.
pub mod account_entry {
    use sea_orm::entity::prelude::*;

    /// One account in one organization's list.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "account_entries")]
    pub struct Model {
        /// The organization whose list holds the entry.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// The account.
        #[sea_orm(primary_key, auto_increment = false)]
        pub account_id: String,
        /// `AccountType` as its number: MANAGED, INDEPENDENT or PENDING.
        pub entry_type: i32,
        /// For PENDING, the `AccountType` the import asks for; 0 otherwise.
        pub requested_type: i32,
        /// The account's `AccountState` number, kept in step with it: closed entries do not
        /// count against the organization's limit (rule ACC-1) and list filters read it here.
        pub state: i32,
        /// Entered the list at (the list order, ties broken by account id).
        pub create_time_ms: i64,
        /// Last changed at.
        pub update_time_ms: i64,
        /// Change counter (the etag of an INDEPENDENT or PENDING view).
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `account_members`: a member's access to an account, granted through an organization.
pub mod account_member {
    use sea_orm::entity::prelude::*;

    /// One grant.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "account_members")]
    pub struct Model {
        /// The organization that granted access.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// The account.
        #[sea_orm(primary_key, auto_increment = false)]
        pub account_id: String,
        /// The member.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// Granted at.
        pub create_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `compliance_defaults`: an organization's default designation (rule ACC-5); no row
/// means NONE, never set.
pub mod compliance_default {
    use sea_orm::entity::prelude::*;

    /// One organization's defaults.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "compliance_defaults")]
    pub struct Model {
        /// The organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// `ComplianceDesignation` as its number.
        pub designation: i32,
        /// Last changed at.
        pub update_time_ms: i64,
        /// Change counter (the etag); 0 while never set (no row).
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The four account tables (rules ACC-1 … ACC-5).
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateAccounts;

impl MigrationName for CreateAccounts {
    fn name(&self) -> &str {
        "m20261220_000001_create_accounts"
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    HomeOrganizationId,
    ParentAccountId,
    DisplayName,
    OwnerUserId,
    State,
    Compliance,
    ComplianceSource,
    CreateTimeMs,
    UpdateTimeMs,
    CloseTimeMs,
    Version,
}

#[derive(DeriveIden)]
enum AccountEntries {
    Table,
    OrganizationId,
    AccountId,
    EntryType,
    RequestedType,
    State,
    CreateTimeMs,
    UpdateTimeMs,
    Version,
}

#[derive(DeriveIden)]
enum AccountMembers {
    Table,
    OrganizationId,
    AccountId,
    UserId,
    CreateTimeMs,
}

#[derive(DeriveIden)]
enum ComplianceDefaults {
    Table,
    OrganizationId,
    Designation,
    UpdateTimeMs,
    Version,
}

async fn index(
    m: &SchemaManager<'_>,
    name: &str,
    table: impl IntoTableRef,
    cols: Vec<DynIden>,
) -> Result<(), DbErr> {
    let mut i = Index::create();
    i.name(name).table(table).if_not_exists();
    for c in cols {
        i.col(c);
    }
    m.create_index(i.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAccounts {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Accounts::Table)
                .if_not_exists()
                .col(string(Accounts::Id).primary_key())
                .col(string(Accounts::HomeOrganizationId))
                .col(string(Accounts::ParentAccountId))
                .col(string(Accounts::DisplayName))
                .col(string(Accounts::OwnerUserId))
                .col(int(Accounts::State))
                .col(int(Accounts::Compliance))
                .col(int(Accounts::ComplianceSource))
                .col(big(Accounts::CreateTimeMs))
                .col(big(Accounts::UpdateTimeMs))
                .col(ColumnDef::new(Accounts::CloseTimeMs).big_integer().null())
                .col(big(Accounts::Version))
                .to_owned(),
        )
        .await?;
        // ListSubaccounts and the subaccount limit (rule ACC-4).
        index(
            m,
            "idx_accounts_parent",
            Accounts::Table,
            vec![
                Accounts::ParentAccountId.into_iden(),
                Accounts::CreateTimeMs.into_iden(),
                Accounts::Id.into_iden(),
            ],
        )
        .await?;
        // The accounts a leaving member owns in an organization (rule ACC-3), and moves.
        index(
            m,
            "idx_accounts_home_owner",
            Accounts::Table,
            vec![
                Accounts::HomeOrganizationId.into_iden(),
                Accounts::OwnerUserId.into_iden(),
            ],
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AccountEntries::Table)
                .if_not_exists()
                .col(string(AccountEntries::OrganizationId))
                .col(string(AccountEntries::AccountId))
                .col(int(AccountEntries::EntryType))
                .col(int(AccountEntries::RequestedType))
                .col(int(AccountEntries::State))
                .col(big(AccountEntries::CreateTimeMs))
                .col(big(AccountEntries::UpdateTimeMs))
                .col(big(AccountEntries::Version))
                .primary_key(
                    Index::create()
                        .col(AccountEntries::OrganizationId)
                        .col(AccountEntries::AccountId),
                )
                .to_owned(),
        )
        .await?;
        // ListAccounts, oldest first (rule ACC-1).
        index(
            m,
            "idx_account_entries_list",
            AccountEntries::Table,
            vec![
                AccountEntries::OrganizationId.into_iden(),
                AccountEntries::CreateTimeMs.into_iden(),
                AccountEntries::AccountId.into_iden(),
            ],
        )
        .await?;
        // Every organization's entry of one account (closing, moving it).
        index(
            m,
            "idx_account_entries_account",
            AccountEntries::Table,
            vec![AccountEntries::AccountId.into_iden()],
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AccountMembers::Table)
                .if_not_exists()
                .col(string(AccountMembers::OrganizationId))
                .col(string(AccountMembers::AccountId))
                .col(string(AccountMembers::UserId))
                .col(big(AccountMembers::CreateTimeMs))
                .primary_key(
                    Index::create()
                        .col(AccountMembers::OrganizationId)
                        .col(AccountMembers::AccountId)
                        .col(AccountMembers::UserId),
                )
                .to_owned(),
        )
        .await?;
        // What a member was granted in an organization (ListAccounts, leaving).
        index(
            m,
            "idx_account_members_user",
            AccountMembers::Table,
            vec![
                AccountMembers::OrganizationId.into_iden(),
                AccountMembers::UserId.into_iden(),
            ],
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ComplianceDefaults::Table)
                .if_not_exists()
                .col(string(ComplianceDefaults::OrganizationId).primary_key())
                .col(int(ComplianceDefaults::Designation))
                .col(big(ComplianceDefaults::UpdateTimeMs))
                .col(big(ComplianceDefaults::Version))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            ComplianceDefaults::Table.into_iden(),
            AccountMembers::Table.into_iden(),
            AccountEntries::Table.into_iden(),
            Accounts::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
