//! What rule ORG-15 stores: `organizations.merged_into_id` (the prime a MERGED organization went
//! to; empty otherwise) and `organization_merges`, one row per merge: the candidate, its prime,
//! its OWNER at merge time, the plan as it was carried out and the revision of its
//! `OrganizationsMerged` event (what an idempotent retry answers again). Additive only, so the
//! previous release keeps working on the same database during a rolling update.

use sea_orm_migration::prelude::*;
use sea_orm_migration::{MigrationTrait, SchemaManager};

/// Rows of `organization_merges`.
pub mod merge_record {
    use sea_orm::entity::prelude::*;

    /// One merge of a candidate into a prime (rule ORG-15).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "organization_merges")]
    pub struct Model {
        /// The candidate, MERGED since.
        #[sea_orm(primary_key, auto_increment = false)]
        pub candidate_organization_id: String,
        /// The prime that absorbed it.
        pub prime_organization_id: String,
        /// The candidate's OWNER at merge time: the one caller its tombstone still answers.
        pub former_owner_user_id: String,
        /// The `MergePlan` carried out, protobuf-encoded.
        pub plan: Vec<u8>,
        /// The outbox revision of its `OrganizationsMerged` event.
        pub revision: i64,
        /// Merged at.
        pub create_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Adds `organizations.merged_into_id` and the `organization_merges` table (rule ORG-15).
#[derive(Debug, Clone, Copy, Default)]
pub struct AddMerges;

impl MigrationName for AddMerges {
    fn name(&self) -> &str {
        "m20261222_000001_add_merges"
    }
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    MergedIntoId,
}

#[derive(DeriveIden)]
enum OrganizationMerges {
    Table,
    CandidateOrganizationId,
    PrimeOrganizationId,
    FormerOwnerUserId,
    Plan,
    Revision,
    CreateTimeMs,
}

#[async_trait::async_trait]
impl MigrationTrait for AddMerges {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Organizations::Table)
                .add_column(
                    ColumnDef::new(Organizations::MergedIntoId)
                        .string()
                        .not_null()
                        .default(""),
                )
                .to_owned(),
        )
        .await?;
        let text = |c: OrganizationMerges| ColumnDef::new(c).string().not_null().to_owned();
        let big = |c: OrganizationMerges| ColumnDef::new(c).big_integer().not_null().to_owned();
        m.create_table(
            Table::create()
                .table(OrganizationMerges::Table)
                .if_not_exists()
                .col(text(OrganizationMerges::CandidateOrganizationId).primary_key())
                .col(text(OrganizationMerges::PrimeOrganizationId))
                .col(text(OrganizationMerges::FormerOwnerUserId))
                .col(ColumnDef::new(OrganizationMerges::Plan).blob().not_null())
                .col(big(OrganizationMerges::Revision))
                .col(big(OrganizationMerges::CreateTimeMs))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(OrganizationMerges::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Organizations::Table)
                .drop_column(Organizations::MergedIntoId)
                .to_owned(),
        )
        .await
    }
}
