//! The replica's tables: organizations and members, and the migration creating them.

use orgplane_proto::organization::v1::{OrgRole, OrganizationState};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::prelude as mig;

use crate::policy::SecurityPolicy;

/// Rows of `replica_organizations`.
pub mod org_row {
    use sea_orm::entity::prelude::*;

    /// A replicated organization.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "replica_organizations")]
    pub struct Model {
        /// The organization's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// Its name.
        pub name: String,
        /// Its primary email.
        pub primary_email: String,
        /// Its owner.
        pub owner_user_id: String,
        /// `OrganizationState` as its number.
        pub state: i32,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `replica_members`.
pub mod member_row {
    use sea_orm::entity::prelude::*;

    /// A replicated membership.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "replica_members")]
    pub struct Model {
        /// The organization's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// The member's user id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// `OrgRole` as its number.
        pub role: i32,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `replica_security_policies`: an organization's policy (rule ORG-16); an organization
/// without a row has the default policy.
pub mod policy_row {
    use sea_orm::entity::prelude::*;

    /// A replicated security policy.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "replica_security_policies")]
    pub struct Model {
        /// The organization's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// `MfaRequirement` as its number.
        pub mfa_requirement: i32,
        /// The re-authentication age, in seconds.
        pub reauth_max_age_secs: i64,
        /// The allowed sign-in methods ([`crate::policy::SecurityPolicy::methods_bits`]).
        pub sign_in_methods: i32,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The migration creating the replica's tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateRoleReplica;

impl mig::MigrationName for CreateRoleReplica {
    fn name(&self) -> &str {
        "m20261123_000004_create_role_replica"
    }
}

#[derive(mig::DeriveIden)]
enum ReplicaOrganizations {
    Table,
    OrganizationId,
    Name,
    PrimaryEmail,
    OwnerUserId,
    State,
}

#[derive(mig::DeriveIden)]
enum ReplicaMembers {
    Table,
    OrganizationId,
    UserId,
    Role,
}

#[mig::async_trait::async_trait]
impl mig::MigrationTrait for CreateRoleReplica {
    async fn up(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        use mig::{ColumnDef, Index, Table};
        manager
            .create_table(
                Table::create()
                    .table(ReplicaOrganizations::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ReplicaOrganizations::OrganizationId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ReplicaOrganizations::Name)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReplicaOrganizations::PrimaryEmail)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReplicaOrganizations::OwnerUserId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReplicaOrganizations::State)
                            .integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReplicaMembers::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ReplicaMembers::OrganizationId)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ReplicaMembers::UserId).string().not_null())
                    .col(ColumnDef::new(ReplicaMembers::Role).integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(ReplicaMembers::OrganizationId)
                            .col(ReplicaMembers::UserId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_replica_members_user")
                    .table(ReplicaMembers::Table)
                    .col(ReplicaMembers::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(mig::Table::drop().table(ReplicaMembers::Table).to_owned())
            .await?;
        manager
            .drop_table(
                mig::Table::drop()
                    .table(ReplicaOrganizations::Table)
                    .to_owned(),
            )
            .await
    }
}

/// The migration adding the replica's security policies (rule ORG-16); it only adds a table, so
/// the previous release keeps working on the same database during a rolling update.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateSecurityPolicyReplica;

impl mig::MigrationName for CreateSecurityPolicyReplica {
    fn name(&self) -> &str {
        "m20261203_000001_create_security_policy_replica"
    }
}

#[derive(mig::DeriveIden)]
enum ReplicaSecurityPolicies {
    Table,
    OrganizationId,
    MfaRequirement,
    ReauthMaxAgeSecs,
    SignInMethods,
}

#[mig::async_trait::async_trait]
impl mig::MigrationTrait for CreateSecurityPolicyReplica {
    async fn up(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        use mig::{ColumnDef, Table};
        manager
            .create_table(
                Table::create()
                    .table(ReplicaSecurityPolicies::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ReplicaSecurityPolicies::OrganizationId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ReplicaSecurityPolicies::MfaRequirement)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReplicaSecurityPolicies::ReauthMaxAgeSecs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReplicaSecurityPolicies::SignInMethods)
                            .integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                mig::Table::drop()
                    .table(ReplicaSecurityPolicies::Table)
                    .to_owned(),
            )
            .await
    }
}

// ----- writes the replica applies --------------------------------------------------------------

pub(super) async fn upsert_org<C: ConnectionTrait>(
    txn: &C,
    id: &str,
    name: &str,
    primary_email: &str,
    owner: &str,
    state: OrganizationState,
) -> Result<(), DbErr> {
    org_row::Entity::insert(org_row::ActiveModel {
        organization_id: sea_orm::Set(id.to_owned()),
        name: sea_orm::Set(name.to_owned()),
        primary_email: sea_orm::Set(primary_email.to_owned()),
        owner_user_id: sea_orm::Set(owner.to_owned()),
        state: sea_orm::Set(state as i32),
    })
    .on_conflict(
        OnConflict::column(org_row::Column::OrganizationId)
            .update_columns([
                org_row::Column::Name,
                org_row::Column::PrimaryEmail,
                org_row::Column::OwnerUserId,
                org_row::Column::State,
            ])
            .to_owned(),
    )
    .exec(txn)
    .await?;
    Ok(())
}

pub(super) async fn set_state<C: ConnectionTrait>(
    txn: &C,
    id: &str,
    state: OrganizationState,
) -> Result<(), DbErr> {
    org_row::Entity::update_many()
        .col_expr(org_row::Column::State, Expr::value(state as i32))
        .filter(org_row::Column::OrganizationId.eq(id))
        .exec(txn)
        .await?;
    Ok(())
}

/// Sets `(org, user)`'s role (one row of [`upsert_members`]).
pub(super) async fn upsert_member<C: ConnectionTrait>(
    txn: &C,
    org: &str,
    user: &str,
    role: OrgRole,
) -> Result<(), DbErr> {
    upsert_members(txn, &[(org, user, role)]).await
}

/// Members per statement of [`upsert_members`]: 3 parameters each, far below both databases'
/// limits.
const UPSERT_CHUNK: usize = 500;

/// Sets each `(organization, user)`'s role, with one statement per [`UPSERT_CHUNK`] members. A
/// member may appear once only (PostgreSQL refuses an upsert that touches a row twice).
pub(super) async fn upsert_members<C: ConnectionTrait>(
    txn: &C,
    rows: &[(&str, &str, OrgRole)],
) -> Result<(), DbErr> {
    for chunk in rows.chunks(UPSERT_CHUNK) {
        member_row::Entity::insert_many(chunk.iter().map(|&(org, user, role)| {
            member_row::ActiveModel {
                organization_id: sea_orm::Set(org.to_owned()),
                user_id: sea_orm::Set(user.to_owned()),
                role: sea_orm::Set(role as i32),
            }
        }))
        .on_conflict(
            OnConflict::columns([
                member_row::Column::OrganizationId,
                member_row::Column::UserId,
            ])
            .update_column(member_row::Column::Role)
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

pub(super) fn policy_model(
    organization_id: &str,
    policy: &SecurityPolicy,
) -> policy_row::ActiveModel {
    policy_row::ActiveModel {
        organization_id: sea_orm::Set(organization_id.to_owned()),
        mfa_requirement: sea_orm::Set(policy.to_proto(organization_id).mfa_requirement),
        reauth_max_age_secs: sea_orm::Set(policy.reauth_max_age_secs),
        sign_in_methods: sea_orm::Set(policy.methods_bits()),
    }
}

pub(super) async fn upsert_policy<C: ConnectionTrait>(
    txn: &C,
    organization_id: &str,
    policy: &SecurityPolicy,
) -> Result<(), DbErr> {
    policy_row::Entity::insert(policy_model(organization_id, policy))
        .on_conflict(
            OnConflict::column(policy_row::Column::OrganizationId)
                .update_columns([
                    policy_row::Column::MfaRequirement,
                    policy_row::Column::ReauthMaxAgeSecs,
                    policy_row::Column::SignInMethods,
                ])
                .to_owned(),
        )
        .exec(txn)
        .await?;
    Ok(())
}
