//! Organization events: the shared role replica, plus billing accounts on creation (BILL-2), the
//! purge of an organization's billing data (BILL-5), managed accounts with their billing
//! accounts (BILL-6), and merges, which re-attribute a candidate's billing data to the prime
//! (ORG-15, BILL-6; see [`crate::app::merge`]).
//!
//! A re-sync (after the producer compacted past this consumer's cursor) reads the organization
//! service's role snapshot, which carries no accounts: accounts changed while this service was
//! away stay as last seen until their next `AccountChanged` (the organization service would have
//! to list accounts in its snapshot for a re-sync to catch them up). Accounts of organizations
//! gone meanwhile are purged with them. Merges whose `OrganizationsMerged` was compacted away
//! before this service read it come with the snapshot: they are applied as the event would have
//! been, before the accounts are reconciled (a candidate already merged here is left as it is,
//! and gets no new billing account from a snapshot that still lists it).

use std::collections::HashSet;

use futures::future::BoxFuture;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::clock::SharedClock;
use orgplane_platform::error::ApiResult;
use orgplane_platform::events::handlers::{OrgEventsExtension, OrgRoleEvents};
use orgplane_platform::replica::{Merge, RoleReplica, org_row};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{Event, OrganizationsMerged};
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseTransaction, QuerySelect};

use crate::app::account_billing::apply_account_changed;
use crate::app::accounts::{create_for_organization, purge_organization};
use crate::app::merge::apply_organizations_merged;
use crate::domain::Result;
use crate::store::entity::account;
use crate::store::merge;

/// What billing-access adds to the shared role replica's handling of organization events:
/// billing accounts (BILL-2), purges (BILL-5), managed accounts (BILL-6) and merges (ORG-15).
pub struct BillingAccounts {
    audit: AuditLogWriter,
    clock: SharedClock,
}

/// The organization events handler: the shared role replica, then [`BillingAccounts`].
pub type OrganizationEvents = OrgRoleEvents<BillingAccounts>;

impl BillingAccounts {
    /// The handler of organization events around the shared `replica`.
    pub fn handler(
        replica: RoleReplica,
        audit: AuditLogWriter,
        clock: SharedClock,
    ) -> OrganizationEvents {
        OrgRoleEvents::new(replica, Self { audit, clock })
    }

    /// After a re-sync: accounts for organizations created while this service was away, and a
    /// purge for accounts whose organization is gone.
    async fn reconcile_accounts(&self, txn: &DatabaseTransaction) -> Result<()> {
        let orgs = org_row::Entity::find().all(txn).await?;
        let known: HashSet<String> = orgs.iter().map(|o| o.organization_id.clone()).collect();
        let accounts: Vec<String> = account::Entity::find()
            .select_only()
            .column(account::Column::OrganizationId)
            .into_tuple()
            .all(txn)
            .await?;
        let now = self.clock.now();
        let with_account: HashSet<String> = accounts.iter().cloned().collect();
        let merged = merge::all(txn).await?;
        for org in &orgs {
            if !with_account.contains(&org.organization_id)
                && !merged.contains_key(&org.organization_id)
            {
                create_for_organization(
                    txn,
                    &self.audit,
                    &org.organization_id,
                    &org.primary_email,
                    now,
                )
                .await?;
            }
        }
        for id in accounts.iter().filter(|id| !known.contains(*id)) {
            purge_organization(txn, &self.audit, id, now).await?;
        }
        Ok(())
    }
}

impl OrgEventsExtension for BillingAccounts {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            match &event.payload {
                Some(Payload::OrganizationCreated(e)) => {
                    create_for_organization(
                        txn,
                        &self.audit,
                        &e.organization_id,
                        &e.primary_email,
                        self.clock.now(),
                    )
                    .await?;
                }
                Some(Payload::OrganizationPurged(e)) => {
                    purge_organization(txn, &self.audit, &e.organization_id, self.clock.now())
                        .await?;
                }
                Some(Payload::AccountChanged(e)) => {
                    apply_account_changed(txn, &self.audit, e, self.clock.now()).await?;
                }
                Some(Payload::OrganizationsMerged(e)) => {
                    apply_organizations_merged(txn, &self.audit, e, self.clock.now()).await?;
                }
                _ => {}
            }
            Ok(())
        })
    }

    fn reconcile_merges<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        merges: &'a [Merge],
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            for m in merges {
                let event = OrganizationsMerged {
                    prime_organization_id: m.prime_organization_id.clone(),
                    candidate_organization_id: m.candidate_organization_id.clone(),
                    ..Default::default()
                };
                apply_organizations_merged(txn, &self.audit, &event, self.clock.now()).await?;
            }
            Ok(())
        })
    }

    fn reconcile<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move { Ok(self.reconcile_accounts(txn).await?) })
    }
}
