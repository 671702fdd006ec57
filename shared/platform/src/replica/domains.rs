//! The replica's VERIFIED domains (rule ORG-14): which organization holds which domain VERIFIED,
//! with its policy. Identity reads them for SSO (a connection serves only its organization's
//! verified domains, rule ID-13) and for the sign-up restriction; applied from `DomainChanged`
//! (kept while VERIFIED, dropped otherwise), `DomainDeleted`, `OrganizationPurged` and the
//! `ListRoleAssignments` snapshot, like the rest of the replica.

use std::collections::HashMap;

use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::{DomainPolicy, DomainState, VerifiedDomain};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DbErr, Set};
use sea_orm_migration::prelude as mig;

/// One VERIFIED domain of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainEntry {
    /// The domain's id (`dom_…`).
    pub domain_id: String,
    /// The organization that holds it VERIFIED.
    pub organization_id: String,
    /// The name, IDNA ASCII lower case.
    pub domain_name: String,
    /// Its policy.
    pub policy: DomainPolicy,
}

impl DomainEntry {
    fn from_row(r: domain_row::Model) -> Self {
        Self {
            domain_id: r.domain_id,
            organization_id: r.organization_id,
            domain_name: r.domain_name,
            policy: DomainPolicy::try_from(r.policy).unwrap_or(DomainPolicy::Unspecified),
        }
    }

    fn from_proto(d: &VerifiedDomain) -> Self {
        Self {
            domain_id: d.domain_id.clone(),
            organization_id: d.organization_id.clone(),
            domain_name: d.domain_name.clone(),
            policy: DomainPolicy::try_from(d.policy).unwrap_or(DomainPolicy::Unspecified),
        }
    }

    fn model(&self) -> domain_row::ActiveModel {
        domain_row::ActiveModel {
            domain_id: Set(self.domain_id.clone()),
            organization_id: Set(self.organization_id.clone()),
            domain_name: Set(self.domain_name.clone()),
            policy: Set(self.policy as i32),
        }
    }
}

/// The memory view: domain id → entry.
pub(super) type DomainView = HashMap<String, DomainEntry>;

/// Rows of `replica_verified_domains`.
pub mod domain_row {
    use sea_orm::entity::prelude::*;

    /// A VERIFIED domain, as replicated.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "replica_verified_domains")]
    pub struct Model {
        /// The domain's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub domain_id: String,
        /// The organization holding it VERIFIED.
        pub organization_id: String,
        /// The name, IDNA ASCII lower case.
        pub domain_name: String,
        /// `DomainPolicy` as its number.
        pub policy: i32,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every row, for the memory view.
pub(super) async fn load<C: ConnectionTrait>(db: &C) -> Result<DomainView, DbErr> {
    Ok(domain_row::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|r| (r.domain_id.clone(), DomainEntry::from_row(r)))
        .collect())
}

/// What an event means for the replica's domains: keep (or add) one, drop one, drop an
/// organization's, or nothing.
enum Change {
    Keep(DomainEntry),
    Drop(String),
    DropOrganization(String),
    Skip,
}

fn change_of(payload: &Payload) -> Change {
    match payload {
        Payload::DomainChanged(e) if e.state == DomainState::Verified as i32 => {
            Change::Keep(DomainEntry {
                domain_id: e.domain_id.clone(),
                organization_id: e.organization_id.clone(),
                domain_name: e.domain_name.clone(),
                policy: DomainPolicy::try_from(e.policy).unwrap_or(DomainPolicy::Unspecified),
            })
        }
        Payload::DomainChanged(e) => Change::Drop(e.domain_id.clone()),
        Payload::DomainDeleted(e) => Change::Drop(e.domain_id.clone()),
        Payload::OrganizationPurged(e) => Change::DropOrganization(e.organization_id.clone()),
        // A merged candidate (rule ORG-15) held no VERIFIED domain; whatever is known goes.
        Payload::OrganizationsMerged(e) if !e.candidate_organization_id.is_empty() => {
            Change::DropOrganization(e.candidate_organization_id.clone())
        }
        _ => Change::Skip,
    }
}

/// Applies a domain event (or a purge) to the table inside the consumer's `txn`.
pub(super) async fn apply<C: ConnectionTrait>(txn: &C, payload: &Payload) -> Result<(), DbErr> {
    match change_of(payload) {
        Change::Keep(entry) => {
            domain_row::Entity::insert(entry.model())
                .on_conflict(
                    OnConflict::column(domain_row::Column::DomainId)
                        .update_columns([
                            domain_row::Column::OrganizationId,
                            domain_row::Column::DomainName,
                            domain_row::Column::Policy,
                        ])
                        .to_owned(),
                )
                .exec(txn)
                .await?;
        }
        Change::Drop(id) => {
            domain_row::Entity::delete_by_id(id).exec(txn).await?;
        }
        Change::DropOrganization(org) => {
            domain_row::Entity::delete_many()
                .filter(domain_row::Column::OrganizationId.eq(org))
                .exec(txn)
                .await?;
        }
        Change::Skip => {}
    }
    Ok(())
}

/// Applies a committed domain event (or a purge) to the memory view.
pub(super) fn apply_in_memory(view: &mut DomainView, payload: &Payload) {
    match change_of(payload) {
        Change::Keep(entry) => {
            view.insert(entry.domain_id.clone(), entry);
        }
        Change::Drop(id) => {
            view.remove(&id);
        }
        Change::DropOrganization(org) => view.retain(|_, d| d.organization_id != org),
        Change::Skip => {}
    }
}

/// Replaces the table with a snapshot's `verified_domains` inside `txn` (a re-sync).
pub(super) async fn replace<C: ConnectionTrait>(
    txn: &C,
    domains: &[VerifiedDomain],
) -> Result<(), DbErr> {
    domain_row::Entity::delete_many().exec(txn).await?;
    let mut seen = std::collections::HashSet::new();
    let rows: Vec<domain_row::ActiveModel> = domains
        .iter()
        .filter(|d| seen.insert(d.domain_id.clone()))
        .map(|d| DomainEntry::from_proto(d).model())
        .collect();
    for chunk in rows.chunks(500) {
        domain_row::Entity::insert_many(chunk.to_vec())
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// The migration adding the replica's VERIFIED domains (rule ORG-14); it only adds a table, so
/// the previous release keeps working on the same database during a rolling update.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateVerifiedDomainReplica;

impl mig::MigrationName for CreateVerifiedDomainReplica {
    fn name(&self) -> &str {
        "m20261204_000001_create_verified_domain_replica"
    }
}

#[derive(mig::DeriveIden)]
enum ReplicaVerifiedDomains {
    Table,
    DomainId,
    OrganizationId,
    DomainName,
    Policy,
}

#[mig::async_trait::async_trait]
impl mig::MigrationTrait for CreateVerifiedDomainReplica {
    async fn up(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        use mig::{ColumnDef, Index, Table};
        manager
            .create_table(
                Table::create()
                    .table(ReplicaVerifiedDomains::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ReplicaVerifiedDomains::DomainId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ReplicaVerifiedDomains::OrganizationId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReplicaVerifiedDomains::DomainName)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReplicaVerifiedDomains::Policy)
                            .integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_replica_verified_domains_name")
                    .table(ReplicaVerifiedDomains::Table)
                    .col(ReplicaVerifiedDomains::DomainName)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                mig::Table::drop()
                    .table(ReplicaVerifiedDomains::Table)
                    .to_owned(),
            )
            .await
    }
}
