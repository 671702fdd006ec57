//! Organization events: the shared role replica, plus billing accounts on creation (BILL-2) and
//! the purge of an organization's billing data (BILL-5).

use std::collections::HashSet;

use futures::future::BoxFuture;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::clock::SharedClock;
use orgplane_platform::error::ApiResult;
use orgplane_platform::events::handlers::{OrgEventsExtension, OrgRoleEvents};
use orgplane_platform::replica::{RoleReplica, org_row};
use orgplane_proto::events::v1::Event;
use orgplane_proto::events::v1::event::Payload;
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseTransaction, QuerySelect};

use crate::app::accounts::{create_for_organization, purge_organization};
use crate::domain::Result;
use crate::store::entity::account;

/// What billing-access adds to the shared role replica's handling of organization events:
/// billing accounts (BILL-2) and purges (BILL-5).
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
        for org in &orgs {
            if !with_account.contains(&org.organization_id) {
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
                _ => {}
            }
            Ok(())
        })
    }

    fn reconcile<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move { Ok(self.reconcile_accounts(txn).await?) })
    }
}
