//! The `audit_log` table: its rows and the migration every service includes.

use sea_orm::entity::prelude::*;
use sea_orm_migration::prelude as mig;

/// Rows of `audit_log`.
pub mod row {
    use sea_orm::entity::prelude::*;

    /// One audit record.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        /// `audit_<uuidv7>`: sorts by time.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The organization the record belongs to; empty for account-level actions.
        pub organization_id: String,
        /// The service that wrote it.
        pub service: String,
        /// `ActorKind` as its number.
        pub actor_kind: i32,
        /// The actor's id.
        pub actor_id: String,
        /// `<resource_type>.<verb>`.
        pub action: String,
        /// The resource's type.
        pub resource_type: String,
        /// The resource's id.
        pub resource_id: String,
        /// When (Unix milliseconds).
        pub create_time_ms: i64,
        /// The request id.
        pub request_id: String,
        /// The trace id.
        pub trace_id: String,
        /// `Outcome` as its number.
        pub outcome: i32,
        /// The gRPC code name of a failure.
        pub status_code: String,
        /// The ErrorInfo reason of a failure.
        pub error_reason: String,
        /// The resource before, as JSON.
        pub before_json: Option<String>,
        /// The resource after, as JSON.
        pub after_json: Option<String>,
        /// For `ActorKind::Operator`: the operator organization the user acted for (ORG-13).
        pub actor_organization_id: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The migration creating `audit_log`; every service includes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateAuditLog;

impl mig::MigrationName for CreateAuditLog {
    fn name(&self) -> &str {
        "m20261123_000003_create_audit_log"
    }
}

#[derive(mig::DeriveIden)]
enum AuditLog {
    Table,
    Id,
    OrganizationId,
    Service,
    ActorKind,
    ActorId,
    Action,
    ResourceType,
    ResourceId,
    CreateTimeMs,
    RequestId,
    TraceId,
    Outcome,
    StatusCode,
    ErrorReason,
    BeforeJson,
    AfterJson,
    ActorOrganizationId,
}

#[mig::async_trait::async_trait]
impl mig::MigrationTrait for CreateAuditLog {
    async fn up(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        use mig::{ColumnDef, Index, Table};
        let s = |c: AuditLog| ColumnDef::new(c).string().not_null().to_owned();
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AuditLog::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(s(AuditLog::OrganizationId))
                    .col(s(AuditLog::Service))
                    .col(ColumnDef::new(AuditLog::ActorKind).integer().not_null())
                    .col(s(AuditLog::ActorId))
                    .col(s(AuditLog::Action))
                    .col(s(AuditLog::ResourceType))
                    .col(s(AuditLog::ResourceId))
                    .col(
                        ColumnDef::new(AuditLog::CreateTimeMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(s(AuditLog::RequestId))
                    .col(s(AuditLog::TraceId))
                    .col(ColumnDef::new(AuditLog::Outcome).integer().not_null())
                    .col(s(AuditLog::StatusCode))
                    .col(s(AuditLog::ErrorReason))
                    .col(ColumnDef::new(AuditLog::BeforeJson).text().null())
                    .col(ColumnDef::new(AuditLog::AfterJson).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_log_org_id")
                    .table(AuditLog::Table)
                    .col(AuditLog::OrganizationId)
                    .col(AuditLog::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(mig::Table::drop().table(AuditLog::Table).to_owned())
            .await
    }
}

/// Adds `audit_log.actor_organization_id` (rule ORG-13: an operator acting in a child); every
/// service includes it after [`CreateAuditLog`]. Additive: the previous release ignores it.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddAuditActorOrganization;

impl mig::MigrationName for AddAuditActorOrganization {
    fn name(&self) -> &str {
        "m20261216_000001_add_audit_actor_organization"
    }
}

#[mig::async_trait::async_trait]
impl mig::MigrationTrait for AddAuditActorOrganization {
    async fn up(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                mig::Table::alter()
                    .table(AuditLog::Table)
                    .add_column(
                        mig::ColumnDef::new(AuditLog::ActorOrganizationId)
                            .string()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                mig::Table::alter()
                    .table(AuditLog::Table)
                    .drop_column(AuditLog::ActorOrganizationId)
                    .to_owned(),
            )
            .await
    }
}
