//! How this service stays in step with the others: the `ListRoleAssignments` snapshot other
//! services re-sync from, the purge job (rule ORG-7), and the consumer of identity's
//! `UserDeleted` (rule ID-9) and the workspace service's workspace events (which units hold
//! workspaces, rule ORG-9).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use orgplane_platform::audit::Entry;
use orgplane_platform::auth::Principal;
use orgplane_platform::events::EventHandler;
use orgplane_platform::{ApiError, ApiResult};
use orgplane_proto::events::v1::{Event, MemberRemoved, OrganizationPurged, event::Payload};
use orgplane_proto::organization::v1::{
    self as api, OrgRole, OrganizationRoleAssignments, OrganizationState, RoleAssignment,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::convert;
use crate::core::{Core, SharedCore, keyset};
use crate::store::{idempotency, invite, member, organization, unit, unit_workspace};

impl Core {
    /// ListRoleAssignments: a snapshot of every organization not yet purged with its members'
    /// roles, ordered by organization id then user id; the revision is fixed by the first page
    /// (read before the rows, so every page reflects at least every change up to it) and
    /// carried in the page token.
    pub async fn list_role_assignments(
        &self,
        principal: &Principal,
        req: api::ListRoleAssignmentsRequest,
    ) -> ApiResult<api::ListRoleAssignmentsResponse> {
        principal.require_service()?;
        let size = orgplane_platform::pagination::page_size(req.page_size)?;
        let scope = "ListRoleAssignments";
        let cursor: Option<(i64, String, String)> =
            self.runtime.page_tokens.decode(scope, &req.page_token)?;
        let (revision, after) = match cursor {
            Some((r, org, user)) => (r, Some((org, user))),
            None => (self.head_revision().await?, None),
        };
        let mut query = member::Entity::find();
        if let Some((org, user)) = after {
            query = query.filter(keyset(
                member::Column::OrganizationId,
                org,
                member::Column::UserId,
                user,
                false,
            ));
        }
        let rows = query
            .order_by_asc(member::Column::OrganizationId)
            .order_by_asc(member::Column::UserId)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let (rows, next) = self.runtime.page_tokens.page(scope, rows, size, |m| {
            (revision, m.organization_id.clone(), m.user_id.clone())
        });
        let mut org_ids: Vec<String> = rows.iter().map(|m| m.organization_id.clone()).collect();
        org_ids.dedup();
        let orgs: HashMap<String, organization::Model> = organization::Entity::find()
            .filter(organization::Column::Id.is_in(org_ids.clone()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|o| (o.id.clone(), o))
            .collect();
        let mut grouped: BTreeMap<String, Vec<RoleAssignment>> = BTreeMap::new();
        for m in rows {
            grouped
                .entry(m.organization_id.clone())
                .or_default()
                .push(RoleAssignment {
                    user_id: m.user_id,
                    role: m.role,
                });
        }
        let organizations = grouped
            .into_iter()
            .filter_map(|(id, role_assignments)| {
                // A member row without its organization can only be a purge racing this read.
                orgs.get(&id).map(|o| OrganizationRoleAssignments {
                    organization: Some(convert::organization(o)),
                    role_assignments,
                })
            })
            .collect();
        Ok(api::ListRoleAssignmentsResponse {
            organizations,
            next_page_token: next,
            revision,
        })
    }

    /// Purges every DELETED organization whose purge time has passed (by the injectable
    /// clock): its members, invites, units and audit records go, and `OrganizationPurged` is
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
            let txn = self.begin().await?;
            let gone = organization::Entity::delete_many()
                .filter(organization::Column::Id.eq(org.id.clone()))
                .filter(organization::Column::State.eq(OrganizationState::Deleted as i32))
                .filter(organization::Column::PurgeTimeMs.lte(now))
                .exec(&txn)
                .await?;
            if gone.rows_affected == 0 {
                continue; // restored meanwhile
            }
            member::Entity::delete_many()
                .filter(member::Column::OrganizationId.eq(org.id.clone()))
                .exec(&txn)
                .await?;
            invite::Entity::delete_many()
                .filter(invite::Column::OrganizationId.eq(org.id.clone()))
                .exec(&txn)
                .await?;
            unit::Entity::delete_many()
                .filter(unit::Column::OrganizationId.eq(org.id.clone()))
                .exec(&txn)
                .await?;
            unit_workspace::Entity::delete_many()
                .filter(unit_workspace::Column::OrganizationId.eq(org.id.clone()))
                .exec(&txn)
                .await?;
            idempotency::Entity::delete_many()
                .filter(idempotency::Column::OrganizationId.eq(org.id.clone()))
                .exec(&txn)
                .await?;
            orgplane_platform::audit::row::Entity::delete_many()
                .filter(orgplane_platform::audit::row::Column::OrganizationId.eq(org.id.clone()))
                .exec(&txn)
                .await?;
            // The one record that outlives the organization: that it was purged, and by whom.
            self.audit
                .record_system(
                    &txn,
                    Entry::new(&org.id, "organization.purge", "organization", &org.id)
                        .with_change(Some(crate::core::org_json(&org)), None),
                )
                .await?;
            let revision = self
                .outbox
                .append(
                    &txn,
                    Payload::OrganizationPurged(OrganizationPurged {
                        organization_id: org.id.clone(),
                    }),
                    &orgplane_platform::context::new_request_id(),
                )
                .await?;
            self.commit(txn, Some(revision)).await?;
            tracing::info!(organization_id = %org.id, revision, "organization purged");
            purged.push(org.id);
        }
        Ok(purged)
    }

    /// Runs [`Self::purge_due`] every `every` until shutdown.
    pub fn spawn_purge(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let core = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = core.runtime.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {},
                }
                if let Err(e) = core.purge_due().await {
                    tracing::warn!(error = %e, "purge pass failed");
                }
            }
        })
    }

    /// Removes a deleted user from every organization (rule ID-9), publishing `MemberRemoved`
    /// for each, inside the consumer's transaction.
    async fn remove_deleted_user(
        &self,
        txn: &DatabaseTransaction,
        event: &Event,
        user_id: &str,
    ) -> ApiResult<()> {
        let memberships = member::Entity::find()
            .filter(member::Column::UserId.eq(user_id.to_owned()))
            .all(txn)
            .await?;
        for m in memberships {
            if convert::role_of(m.role) == OrgRole::Owner {
                // Identity refuses to delete an owner (ID-9); never leave an org without one.
                tracing::warn!(organization_id = %m.organization_id, user_id, "UserDeleted for an OWNER ignored");
                continue;
            }
            member::Entity::delete_many()
                .filter(member::Column::OrganizationId.eq(m.organization_id.clone()))
                .filter(member::Column::UserId.eq(m.user_id.clone()))
                .exec(txn)
                .await?;
            self.audit
                .record_system(
                    txn,
                    Entry::new(&m.organization_id, "member.remove", "member", &m.user_id)
                        .with_change(Some(crate::members::member_json(&m)), None),
                )
                .await?;
            self.outbox
                .append(
                    txn,
                    Payload::MemberRemoved(MemberRemoved {
                        organization_id: m.organization_id.clone(),
                        user_id: m.user_id.clone(),
                        old_role: m.role,
                    }),
                    &event.request_id,
                )
                .await?;
        }
        Ok(())
    }

    async fn place_workspace(
        &self,
        txn: &DatabaseTransaction,
        organization_id: &str,
        workspace_id: &str,
        unit_id: &str,
    ) -> ApiResult<()> {
        if unit_id.is_empty() {
            unit_workspace::Entity::delete_by_id(workspace_id.to_owned())
                .exec(txn)
                .await?;
            return Ok(());
        }
        unit_workspace::Entity::insert(unit_workspace::ActiveModel {
            workspace_id: Set(workspace_id.to_owned()),
            organization_id: Set(organization_id.to_owned()),
            unit_id: Set(unit_id.to_owned()),
        })
        .on_conflict(
            OnConflict::column(unit_workspace::Column::WorkspaceId)
                .update_column(unit_workspace::Column::UnitId)
                .to_owned(),
        )
        .exec(txn)
        .await?;
        Ok(())
    }
}

/// Applies identity's and the workspace service's events to this service (one instance per
/// watched producer).
#[derive(Debug, Clone)]
pub struct Events {
    core: SharedCore,
}

impl Events {
    /// A handler writing through `core`.
    pub fn new(core: SharedCore) -> Self {
        Self { core }
    }
}

impl EventHandler for Events {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            match &event.payload {
                Some(Payload::UserDeleted(e)) => {
                    self.core.remove_deleted_user(txn, event, &e.user_id).await
                }
                Some(Payload::UserEmailVerified(e)) => {
                    // Keeps the stored member emails (ORG-6 ALREADY_A_MEMBER) in step with identity.
                    member::Entity::update_many()
                        .col_expr(
                            member::Column::Email,
                            sea_orm::sea_query::Expr::value(e.email.trim().to_lowercase()),
                        )
                        .filter(member::Column::UserId.eq(e.user_id.clone()))
                        .exec(txn)
                        .await?;
                    Ok(())
                }
                Some(Payload::WorkspaceCreated(e)) => {
                    self.core
                        .place_workspace(txn, &e.organization_id, &e.workspace_id, &e.unit_id)
                        .await
                }
                Some(Payload::WorkspaceUpdated(e)) => {
                    self.core
                        .place_workspace(txn, &e.organization_id, &e.workspace_id, &e.unit_id)
                        .await
                }
                _ => Ok(()),
            }
        })
    }

    fn resync<'a>(&'a self, _txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move {
            // Neither identity nor the workspace service offers a snapshot of what this service
            // consumes; a cursor older than their retention cannot be repaired automatically.
            Err(ApiError::unavailable(
                "RESYNC_UNSUPPORTED",
                "the producer compacted events this service has not applied; an operator must reset the cursor",
            ))
        })
    }

    fn committed<'a>(&'a self, _events: &'a [Event], _resynced: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Wake this service's own watchers for the MemberRemoved events just committed.
            if let Ok(head) = self.core.outbox.head().await {
                self.core.outbox.committed(head.revision);
            }
        })
    }
}
