//! Verified domains (rule ORG-14): the `domains` table, and the migrations that add it and the
//! invite restriction of the security policy (rule ORG-6). Both only add (a table, a column with
//! a default), so the previous release keeps working on the same database during a rolling
//! update.

use orgplane_platform::schema::{big, int, text as string};
use sea_orm_migration::prelude::*;
use sea_orm_migration::{MigrationTrait, SchemaManager};

/// Rows of `domains`.
pub mod domain {
    use sea_orm::entity::prelude::*;

    /// One domain an organization registered. EXPIRED is not stored: a domain never verified
    /// whose `expire_time_ms` passed is expired.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "domains")]
    pub struct Model {
        /// `dom_…`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The organization that registered it.
        pub organization_id: String,
        /// The domain name, IDNA ASCII lower case (unique per organization).
        pub domain_name: String,
        /// `DomainState` as its number: PENDING, VERIFIED or FAILED.
        pub state: i32,
        /// `DomainPolicy` as its number.
        pub policy: i32,
        /// The challenge token (128 random bits, hex): the TXT record holds
        /// `orgplane-domain-verification=<token>`. Not a secret: it is published in DNS.
        pub token: String,
        /// `DomainCheckOutcome` of the latest check as its number; 0 before the first.
        pub check_outcome: i32,
        /// The TXT values the latest check found, as a JSON array of strings.
        pub check_found: String,
        /// The latest check's sentence for people.
        pub check_detail: String,
        /// When the latest check ran.
        pub check_time_ms: Option<i64>,
        /// Registered at.
        pub create_time_ms: i64,
        /// Last changed at.
        pub update_time_ms: i64,
        /// Last verified at; `None` while never.
        pub verify_time_ms: Option<i64>,
        /// Until when a never verified domain may be verified.
        pub expire_time_ms: i64,
        /// Change counter (the etag).
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The name of the index that lets one organization only hold a domain VERIFIED with an
/// enforcing policy (rule ORG-14); its violation is `DOMAIN_CLAIMED`.
pub const ENFORCING_INDEX: &str = "ux_domains_enforcing";

/// The `domains` table (rule ORG-14).
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateDomains;

impl MigrationName for CreateDomains {
    fn name(&self) -> &str {
        "m20261215_000001_create_domains"
    }
}

#[derive(DeriveIden)]
enum Domains {
    Table,
    Id,
    OrganizationId,
    DomainName,
    State,
    Policy,
    Token,
    CheckOutcome,
    CheckFound,
    CheckDetail,
    CheckTimeMs,
    CreateTimeMs,
    UpdateTimeMs,
    VerifyTimeMs,
    ExpireTimeMs,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDomains {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Domains::Table)
                .if_not_exists()
                .col(string(Domains::Id).primary_key())
                .col(string(Domains::OrganizationId))
                .col(string(Domains::DomainName))
                .col(int(Domains::State))
                .col(int(Domains::Policy))
                .col(string(Domains::Token))
                .col(int(Domains::CheckOutcome))
                .col(ColumnDef::new(Domains::CheckFound).text().not_null())
                .col(ColumnDef::new(Domains::CheckDetail).text().not_null())
                .col(ColumnDef::new(Domains::CheckTimeMs).big_integer().null())
                .col(big(Domains::CreateTimeMs))
                .col(big(Domains::UpdateTimeMs))
                .col(ColumnDef::new(Domains::VerifyTimeMs).big_integer().null())
                .col(big(Domains::ExpireTimeMs))
                .col(big(Domains::Version))
                .to_owned(),
        )
        .await?;
        // An organization registers a domain once.
        m.create_index(
            Index::create()
                .name("ux_domains_org_name")
                .table(Domains::Table)
                .col(Domains::OrganizationId)
                .col(Domains::DomainName)
                .unique()
                .to_owned(),
        )
        .await?;
        // Lookups by name (LookupDomain, invites, auto-enrollment) across organizations.
        m.create_index(
            Index::create()
                .name("idx_domains_name")
                .table(Domains::Table)
                .col(Domains::DomainName)
                .col(Domains::State)
                .to_owned(),
        )
        .await?;
        // ORG-14: one organization only may hold a domain VERIFIED (2) with an enforcing policy
        // (RESTRICTED 2, AUTO_ENROLL 3). A partial unique index, the same text in SQLite and
        // PostgreSQL, so that two concurrent verifications cannot both win.
        m.get_connection()
            .execute_unprepared(&format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {ENFORCING_INDEX} ON domains (domain_name) \
                 WHERE state = 2 AND policy IN (2, 3)"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Domains::Table).to_owned())
            .await
    }
}

/// The security policy's `restrict_invites_to_verified_domains` (rule ORG-6), off for every
/// existing organization.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddInviteRestriction;

impl MigrationName for AddInviteRestriction {
    fn name(&self) -> &str {
        "m20261215_000002_add_invite_restriction"
    }
}

#[derive(DeriveIden)]
enum SecurityPolicies {
    Table,
    RestrictInvitesToVerifiedDomains,
}

#[async_trait::async_trait]
impl MigrationTrait for AddInviteRestriction {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(SecurityPolicies::Table)
                .add_column(
                    ColumnDef::new(SecurityPolicies::RestrictInvitesToVerifiedDomains)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(SecurityPolicies::Table)
                .drop_column(SecurityPolicies::RestrictInvitesToVerifiedDomains)
                .to_owned(),
        )
        .await
    }
}
