//! How this service stays in step with the others: the `ListRoleAssignments` snapshot other
//! services re-sync from, the purge job (rule ORG-7), and the consumer of identity's
//! `UserDeleted` (rule ID-9), `UserEmailVerified` and `SessionsRevoked` (rule ID-4) and of the
//! workspace service's workspace events (which units hold workspaces, rule ORG-9).
//!
//! When a producer compacted events this service had not applied, the consumer re-syncs
//! (list-then-watch): it notes a revision of the producer first, rebuilds what it keeps from the
//! producer's existing read RPCs (identity's `BatchGetUsers` for the members' users, the
//! workspace service's `ListWorkspaces` for the unit placements), and watches again from the
//! noted revision, re-applying the later events idempotently.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use orgplane_platform::audit::Entry;
use orgplane_platform::call::Call;
use orgplane_platform::events::EventHandler;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::{ApiError, ApiResult};
use orgplane_proto::events::v1::{
    Event, MemberRemoved, OrganizationPurged, Producer, event::Payload,
};
use orgplane_proto::organization::v1::{
    self as api, OrgRole, OrganizationRoleAssignments, OrganizationState, RoleAssignment,
};
use orgplane_proto::workspace::v1::ListWorkspacesRequest;
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::convert;
use crate::core::{Core, SharedCore, keyset};
use crate::store::{idempotency, invite, member, organization, unit, unit_workspace};

/// Members' users asked of identity per `BatchGetUsers` call in a re-sync (identity's limit).
const RESYNC_USERS_PER_CALL: u64 = 1000;

impl Core {
    /// ListRoleAssignments: a snapshot of every organization not yet purged with its members'
    /// roles, ordered by organization id then user id; the revision is fixed by the first page
    /// (read before the rows, so every page reflects at least every change up to it) and
    /// carried in the page token.
    pub async fn list_role_assignments(
        &self,
        call: &Call,
        req: api::ListRoleAssignmentsRequest,
    ) -> ApiResult<api::ListRoleAssignmentsResponse> {
        let principal = call.principal.as_ref();
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
                        .change(Some(&crate::core::org_json(&org)), None),
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
        request_id: &str,
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
                        .change(Some(&crate::members::member_json(&m)), None),
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
                    request_id,
                )
                .await?;
        }
        Ok(())
    }

    /// Re-sync of identity's stream after compaction: notes where identity's kept events begin,
    /// then asks identity (`BatchGetUsers`, with this service's token) about every member's
    /// user, page by page; users it no longer knows were deleted meanwhile and are removed as
    /// `UserDeleted` removes them, and verified emails are refreshed. Returns the noted
    /// revision: every later event is replayed over this state, which ends in the same state.
    ///
    /// Ended sessions (`SessionsRevoked`) cannot be listed and need not be: a revocation matters
    /// only while its session's access tokens live (minutes), identity keeps events for days, so
    /// every revocation still relevant follows the compaction point and is replayed.
    async fn resync_identity(&self, txn: &DatabaseTransaction) -> ApiResult<i64> {
        let through = orgplane_platform::events::consumer::compacted_through(
            &self.runtime.endpoints.identity,
            self.runtime.service_tokens.as_ref(),
            Producer::Identity,
        )
        .await?;
        let call = Call::system();
        let (mut removed, mut refreshed, mut users) = (0usize, 0u64, 0usize);
        let mut after = String::new();
        loop {
            let ids: Vec<String> = member::Entity::find()
                .select_only()
                .column(member::Column::UserId)
                .distinct()
                .filter(member::Column::UserId.gt(after.clone()))
                .order_by_asc(member::Column::UserId)
                .limit(RESYNC_USERS_PER_CALL)
                .into_tuple()
                .all(txn)
                .await?;
            let Some(last) = ids.last() else { break };
            after = last.clone();
            users += ids.len();
            let known = self.users.batch(&ids, &call).await?;
            for id in &ids {
                match known.get(id) {
                    None => {
                        self.remove_deleted_user(txn, &call.request_id, id).await?;
                        removed += 1;
                    }
                    Some(u) if u.email_verified => {
                        let email = u.email.trim().to_lowercase();
                        refreshed += member::Entity::update_many()
                            .col_expr(member::Column::Email, Expr::value(email.clone()))
                            .filter(member::Column::UserId.eq(id.clone()))
                            .filter(member::Column::Email.ne(email))
                            .exec(txn)
                            .await?
                            .rows_affected;
                    }
                    Some(_) => {}
                }
            }
            if (ids.len() as u64) < RESYNC_USERS_PER_CALL {
                break;
            }
        }
        tracing::info!(
            through,
            users,
            removed,
            refreshed,
            "re-synced identity's users after compaction"
        );
        Ok(through)
    }

    /// Re-sync of the workspace service's stream after compaction: lists every workspace
    /// (archived ones too: they still hold their unit, ORG-9) with `ListWorkspaces`
    /// (`organization_id` `-`, this service's token) and rebuilds the unit placements from it.
    /// Returns the listing's revision (read by the workspace service before its rows).
    async fn resync_workspaces(&self, txn: &DatabaseTransaction) -> ApiResult<i64> {
        let mut client = WorkspaceServiceClient::new(self.runtime.endpoints.workspace.clone())
            .max_decoding_message_size(64 * 1024 * 1024);
        let mut revision = None;
        let mut placed = Vec::new();
        let mut page_token = String::new();
        loop {
            let token = self.runtime.service_tokens.token().await?;
            let mut request = orgplane_platform::auth::outgoing(
                ListWorkspacesRequest {
                    organization_id: "-".into(),
                    page_size: 1000,
                    page_token: page_token.clone(),
                    include_archived: true,
                    unit_id: String::new(),
                },
                Some(&token),
                None,
            );
            request.set_timeout(Duration::from_secs(30));
            let page = client
                .list_workspaces(request)
                .await
                .map_err(|s| {
                    ApiError::unavailable(
                        "SNAPSHOT_UNAVAILABLE",
                        format!("ListWorkspaces failed: {}", s.message()),
                    )
                })?
                .into_inner();
            revision.get_or_insert(page.revision);
            placed.extend(
                page.workspaces
                    .into_iter()
                    .filter(|w| !w.unit_id.is_empty())
                    .map(|w| (w.id, w.organization_id, w.unit_id)),
            );
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        // Workspaces of an organization purged here (the workspace service applies the purge
        // later) hold no unit.
        let orgs: HashSet<String> = organization::Entity::find()
            .select_only()
            .column(organization::Column::Id)
            .into_tuple()
            .all(txn)
            .await?
            .into_iter()
            .collect();
        placed.retain(|(_, org, _)| orgs.contains(org));
        unit_workspace::Entity::delete_many().exec(txn).await?;
        for chunk in placed.chunks(500) {
            unit_workspace::Entity::insert_many(chunk.iter().map(|(ws, org, unit)| {
                unit_workspace::ActiveModel {
                    workspace_id: Set(ws.clone()),
                    organization_id: Set(org.clone()),
                    unit_id: Set(unit.clone()),
                }
            }))
            .exec_without_returning(txn)
            .await?;
        }
        let revision = revision.unwrap_or(0);
        tracing::info!(
            revision,
            placed = placed.len(),
            "re-synced the workspaces' units after compaction"
        );
        Ok(revision)
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
    producer: Producer,
}

impl Events {
    /// A handler of `producer`'s events writing through `core`.
    pub fn new(core: SharedCore, producer: Producer) -> Self {
        Self { core, producer }
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
                    self.core
                        .remove_deleted_user(txn, &event.request_id, &e.user_id)
                        .await
                }
                Some(Payload::UserEmailVerified(e)) => {
                    // Keeps the stored member emails (ORG-6 ALREADY_A_MEMBER) in step with identity.
                    member::Entity::update_many()
                        .col_expr(
                            member::Column::Email,
                            Expr::value(e.email.trim().to_lowercase()),
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
                Some(Payload::SessionsRevoked(_)) => {
                    orgplane_platform::revocation::apply(txn, event).await
                }
                _ => Ok(()),
            }
        })
    }

    fn resync<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move {
            match self.producer {
                Producer::Workspace => self.core.resync_workspaces(txn).await,
                _ => self.core.resync_identity(txn).await,
            }
        })
    }

    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Ended sessions (identity's `SessionsRevoked`): refused by this process from now on.
            self.core
                .runtime
                .revocations
                .committed(&self.core.db, events, resynced)
                .await;
            // Wake this service's own watchers for the MemberRemoved events just committed.
            if let Ok(head) = self.core.outbox.head().await {
                self.core.outbox.committed(head.revision);
            }
        })
    }
}
