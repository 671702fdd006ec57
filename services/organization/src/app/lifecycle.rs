//! The organization's lifecycle (rule ORG-7): delete (OWNER, step-up, the exact name typed),
//! undelete before the purge time, and the purge job that removes everything for good.

use std::sync::Arc;
use std::time::Duration;

use orgplane_platform::audit::Entry;
use orgplane_platform::convert::{check_etag, etag_mismatch, timestamp_ms};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_platform::{ApiResult, Call};
use orgplane_proto::events::v1::{
    OrganizationDeleted, OrganizationPurged, OrganizationRestored, event::Payload,
};
use orgplane_proto::organization::v1::OrganizationState;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};

use super::access::Access;
use super::{App, Revised};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::validate::required;
use crate::domain::{Error, PURGE_AFTER_MS, Result};
use crate::store::{
    branding, domain, idempotency, invite, member, organization, security_policy, unit,
    unit_workspace,
};

/// DeleteOrganization (ORG-7).
#[derive(Debug, Clone, Default)]
pub struct DeleteOrganization {
    /// The organization.
    pub organization_id: String,
    /// The organization's exact name, typed by the caller.
    pub confirm_name: String,
    /// The etag read, or empty.
    pub etag: String,
}

/// Writes a lifecycle transition (delete or undelete: state, delete and purge times) if nobody
/// changed the organization since `before` was read; ABORTED otherwise.
async fn set_lifecycle(
    txn: &DatabaseTransaction,
    before: &organization::Model,
    after: &organization::Model,
) -> Result<()> {
    let updated = organization::Entity::update_many()
        .col_expr(organization::Column::State, Expr::value(after.state))
        .col_expr(
            organization::Column::DeleteTimeMs,
            Expr::value(after.delete_time_ms),
        )
        .col_expr(
            organization::Column::PurgeTimeMs,
            Expr::value(after.purge_time_ms),
        )
        .col_expr(
            organization::Column::UpdateTimeMs,
            Expr::value(after.update_time_ms),
        )
        .col_expr(organization::Column::Version, Expr::value(after.version))
        .filter(organization::Column::Id.eq(before.id.clone()))
        .filter(organization::Column::Version.eq(before.version))
        .exec(txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(etag_mismatch("organization").into());
    }
    Ok(())
}

impl App {
    /// DeleteOrganization (rules ORG-7, ID-6).
    pub async fn delete_organization(
        &self,
        call: &Call,
        cmd: DeleteOrganization,
    ) -> Result<Revised<organization::Model>> {
        require_caller(&call.principal)?;
        required("organization_id", &cmd.organization_id)?;
        let access = Access::resolve(
            &self.db,
            &call.principal,
            &cmd.organization_id,
            Deleted::Hidden,
        )
        .await?;
        access.require_or_operator(OrgAction::OwnerOnly)?;
        self.step_up(call, &access)?;
        let operator = access.acting_operator().map(str::to_owned);
        let before = access.org;
        if cmd.confirm_name != before.name {
            return Err(Error::ConfirmNameMismatch);
        }
        check_etag(&cmd.etag, before.version, "organization")?;
        // ORG-13: an operator goes only after its children are purged (they would be orphans).
        let children = organization::Entity::find()
            .filter(organization::Column::OperatorId.eq(before.id.clone()))
            .one(&self.db)
            .await?;
        if children.is_some() {
            return Err(Error::OperatorHasChildren {
                organization_id: before.id.clone(),
            });
        }
        let now = self.now_ms();
        let mut after = before.clone();
        after.state = OrganizationState::Deleted as i32;
        after.delete_time_ms = Some(now);
        after.purge_time_ms = Some(now + PURGE_AFTER_MS);
        after.update_time_ms = now;
        after.version += 1;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        set_lifecycle(&txn, &before, &after).await?;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &before.id,
                    "organization.delete",
                    "organization",
                    &before.id,
                )
                .change(Some(&before), Some(&after))
                .as_operator(operator.as_deref()),
            )
            .await?;
        txn.append(Payload::OrganizationDeleted(OrganizationDeleted {
            organization_id: before.id.clone(),
            purge_time: after.purge_time_ms.map(timestamp_ms),
        }))
        .await?;
        let revision = txn.commit_at_revision().await?;
        Ok(Revised {
            value: after,
            revision,
        })
    }

    /// UndeleteOrganization (rules ORG-7, ID-6).
    pub async fn undelete_organization(
        &self,
        call: &Call,
        organization_id: &str,
        etag: &str,
    ) -> Result<Revised<organization::Model>> {
        require_caller(&call.principal)?;
        required("organization_id", organization_id)?;
        let access = Access::resolve(
            &self.db,
            &call.principal,
            organization_id,
            Deleted::VisibleToOwner,
        )
        .await?;
        access.require_or_operator(OrgAction::OwnerOnly)?;
        let before = access.org.clone();
        let now = self.now_ms();
        if before.state != OrganizationState::Deleted as i32 {
            return Err(Error::NotDeleted {
                organization_id: before.id.clone(),
            });
        }
        if before.purge_time_ms.is_some_and(|p| p <= now) {
            return Err(Error::not_found("organization", &before.id));
        }
        self.step_up(call, &access)?;
        check_etag(etag, before.version, "organization")?;
        let mut after = before.clone();
        after.state = OrganizationState::Active as i32;
        after.delete_time_ms = None;
        after.purge_time_ms = None;
        after.update_time_ms = now;
        after.version += 1;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        set_lifecycle(&txn, &before, &after).await?;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &before.id,
                    "organization.undelete",
                    "organization",
                    &before.id,
                )
                .change(Some(&before), Some(&after))
                .as_operator(access.acting_operator()),
            )
            .await?;
        txn.append(Payload::OrganizationRestored(OrganizationRestored {
            organization_id: before.id.clone(),
        }))
        .await?;
        let revision = txn.commit_at_revision().await?;
        Ok(Revised {
            value: after,
            revision,
        })
    }

    /// Purges every DELETED organization whose purge time has passed (by the injectable
    /// clock): its members, invites, units, security policy, domains, accounts and audit records go, and `OrganizationPurged` is
    /// published in the same transaction. Returns the purged ids.
    pub async fn purge_due(&self) -> ApiResult<Vec<String>> {
        let now = self.now_ms();
        let due = organization::Entity::find()
            .filter(organization::Column::State.eq(OrganizationState::Deleted as i32))
            .filter(organization::Column::PurgeTimeMs.lte(now))
            .all(&self.db)
            .await?;
        let mut purged = Vec::new();
        for org in due {
            // The system purges, with a request id of its own per organization.
            let call = Call::system();
            let mut txn = WriteUnit::begin(&self.outbox, &call).await?;
            let gone = organization::Entity::delete_many()
                .filter(organization::Column::Id.eq(org.id.clone()))
                .filter(organization::Column::State.eq(OrganizationState::Deleted as i32))
                .filter(organization::Column::PurgeTimeMs.lte(now))
                .exec(&*txn)
                .await?;
            if gone.rows_affected == 0 {
                continue; // restored meanwhile
            }
            member::Entity::delete_many()
                .filter(member::Column::OrganizationId.eq(org.id.clone()))
                .exec(&*txn)
                .await?;
            invite::Entity::delete_many()
                .filter(invite::Column::OrganizationId.eq(org.id.clone()))
                .exec(&*txn)
                .await?;
            unit::Entity::delete_many()
                .filter(unit::Column::OrganizationId.eq(org.id.clone()))
                .exec(&*txn)
                .await?;
            unit_workspace::Entity::delete_many()
                .filter(unit_workspace::Column::OrganizationId.eq(org.id.clone()))
                .exec(&*txn)
                .await?;
            idempotency::Entity::delete_many()
                .filter(idempotency::Column::OrganizationId.eq(org.id.clone()))
                .exec(&*txn)
                .await?;
            security_policy::Entity::delete_many()
                .filter(security_policy::Column::OrganizationId.eq(org.id.clone()))
                .exec(&*txn)
                .await?;
            branding::Entity::delete_many()
                .filter(branding::Column::OrganizationId.eq(org.id.clone()))
                .exec(&*txn)
                .await?;
            domain::Entity::delete_many()
                .filter(domain::Column::OrganizationId.eq(org.id.clone()))
                .exec(&*txn)
                .await?;
            self.purge_accounts(&*txn, &org.id).await?;
            orgplane_platform::audit::row::Entity::delete_many()
                .filter(orgplane_platform::audit::row::Column::OrganizationId.eq(org.id.clone()))
                .exec(&*txn)
                .await?;
            // The one record that outlives the organization: that it was purged, and by whom.
            self.audit
                .write(
                    &*txn,
                    &call,
                    Entry::new(&org.id, "organization.purge", "organization", &org.id)
                        .change(Some(&org), None),
                )
                .await?;
            let revision = txn
                .append(Payload::OrganizationPurged(OrganizationPurged {
                    organization_id: org.id.clone(),
                }))
                .await?;
            txn.commit().await?;
            tracing::info!(organization_id = %org.id, revision, "organization purged");
            purged.push(org.id);
        }
        Ok(purged)
    }

    /// Runs [`Self::purge_due`] every `every` until shutdown.
    pub fn spawn_purge(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = app.runtime.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {},
                }
                if let Err(e) = app.purge_due().await {
                    tracing::warn!(error = %e, "purge pass failed");
                }
            }
        })
    }
}
