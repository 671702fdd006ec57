//! A local replica of organization roles, kept by every service that consumes the organization
//! service's events (identity, workspace, billing-access): organizations with their state and
//! security policy (rule ORG-16), members with their roles, and VERIFIED domains (rule ORG-14), in the consumer's own database and mirrored in memory so that hot
//! paths (access checks) never touch the database. It is applied inside the consumer's
//! transaction ([`RoleReplica::apply`]), rebuilt from `ListRoleAssignments` on re-sync, and the
//! memory view is refreshed after commit, before the revision is announced.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::clients::ServiceChannel;
use orgplane_proto::events::v1::{Event, event::Payload};
use orgplane_proto::organization::v1::organization_service_client::OrganizationServiceClient;
use orgplane_proto::organization::v1::{ListRoleAssignmentsRequest, OrgRole, OrganizationState};
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::auth::{Principal, UserPrincipal};
use crate::clients::ServiceTokenSource;
use crate::error::ApiResult;
use crate::events::handlers::{SnapshotPage, read_snapshot};
use crate::policy::SecurityPolicy;

mod domains;
mod entry;
pub mod intern;
mod load;
mod merge;
mod store;

pub use domains::{CreateVerifiedDomainReplica, DomainEntry, domain_row};
use entry::role_of;
pub use entry::{Members, OrgEntry};
pub use merge::{Merge, resulting_role};
pub use store::{CreateRoleReplica, CreateSecurityPolicyReplica, member_row, org_row, policy_row};
use store::{policy_model, set_state, upsert_member, upsert_members, upsert_org, upsert_policy};

/// The replica; cheap to clone (the memory view is shared).
#[derive(Clone)]
pub struct RoleReplica {
    db: DatabaseConnection,
    organization: ServiceChannel,
    tokens: Arc<dyn ServiceTokenSource>,
    memory: Arc<RwLock<HashMap<String, OrgEntry>>>,
    domains: Arc<RwLock<domains::DomainView>>,
}

impl std::fmt::Debug for RoleReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleReplica").finish_non_exhaustive()
    }
}

impl RoleReplica {
    /// The replica in `db` (its migration must have run), loaded into memory. Re-syncs fetch the
    /// snapshot from the organization service over `organization` with `tokens`.
    pub async fn load(
        db: DatabaseConnection,
        organization: impl Into<ServiceChannel>,
        tokens: Arc<dyn ServiceTokenSource>,
    ) -> Result<Self, DbErr> {
        let organization: ServiceChannel = organization.into();
        let replica = Self {
            db,
            organization,
            tokens,
            memory: Arc::new(RwLock::new(HashMap::new())),
            domains: Arc::new(RwLock::new(HashMap::new())),
        };
        replica.reload().await?;
        Ok(replica)
    }

    /// Reloads the memory view from the database.
    pub async fn reload(&self) -> Result<(), DbErr> {
        let view = load::view(&self.db).await?;
        let verified = domains::load(&self.db).await?;
        let old = std::mem::replace(
            &mut *self.memory.write().unwrap_or_else(|e| e.into_inner()),
            view,
        );
        *self.domains.write().unwrap_or_else(|e| e.into_inner()) = verified;
        // The previous view's ids are released outside the lock.
        drop(old);
        intern::sweep();
        Ok(())
    }

    /// The role of `user_id` in `organization_id` while the organization is ACTIVE.
    pub fn role(&self, organization_id: &str, user_id: &str) -> Option<OrgRole> {
        let memory = self.memory.read().unwrap_or_else(|e| e.into_inner());
        let org = memory.get(organization_id)?;
        if !org.is_active() {
            return None;
        }
        org.members.get(user_id).copied()
    }

    /// Whether `principal` may leave a record in `organization_id`'s audit log (ORG-10): a
    /// member of the ACTIVE organization, one of its API keys, or an Orgplane service. A refusal
    /// decided before the tenant check (another organization's key, a user of another one) is
    /// not recorded there, so that outsiders cannot write into a log they may not read.
    pub fn has_standing(&self, principal: &Principal, organization_id: &str) -> bool {
        match principal {
            Principal::User(u) => self.role(organization_id, &u.user_id).is_some(),
            Principal::ApiKey(k) => k.organization_id == organization_id,
            Principal::Service(_) => true,
            Principal::Anonymous => false,
        }
    }

    /// The security policy of `organization_id` (the default for an unknown organization).
    pub fn policy(&self, organization_id: &str) -> SecurityPolicy {
        self.with_organization(organization_id, |o| o.policy)
            .unwrap_or_default()
    }

    /// The role of the signed-in `user` in `organization_id` while it is ACTIVE, after the
    /// organization's security policy admitted the user's sign-in (rule ORG-16): the way every
    /// service resolves a calling user's standing. UNAUTHENTICATED `MFA_REQUIRED` or
    /// `SSO_REQUIRED` when the policy refuses it.
    pub fn admitted_role(
        &self,
        organization_id: &str,
        user: &UserPrincipal,
    ) -> ApiResult<Option<OrgRole>> {
        let found = {
            let memory = self.memory.read().unwrap_or_else(|e| e.into_inner());
            memory
                .get(organization_id)
                .filter(|o| o.is_active())
                .and_then(|o| o.members.get(&user.user_id).map(|r| (*r, o.policy)))
        };
        let Some((role, policy)) = found else {
            return Ok(None);
        };
        policy.admit(organization_id, user, Some(role))?;
        Ok(Some(role))
    }

    /// [`Self::admitted_role`] for any principal: the role of a user, `None` for API keys and
    /// services (which carry no sign-in to judge).
    pub fn admitted_role_of(
        &self,
        organization_id: &str,
        principal: &Principal,
    ) -> ApiResult<Option<OrgRole>> {
        match principal {
            Principal::User(u) => self.admitted_role(organization_id, u),
            _ => Ok(None),
        }
    }

    /// A copy of the organization's entry, whatever its state.
    pub fn organization(&self, organization_id: &str) -> Option<OrgEntry> {
        self.memory
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(organization_id)
            .cloned()
    }

    /// `f` applied to the organization's entry (whatever its state) under the read lock, without
    /// copying the entry: what per-request paths use (a copy costs O(members)).
    pub fn with_organization<T>(
        &self,
        organization_id: &str,
        f: impl FnOnce(&OrgEntry) -> T,
    ) -> Option<T> {
        self.memory
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(organization_id)
            .map(f)
    }

    /// The organizations `user_id` belongs to, with their role (ACTIVE organizations only).
    pub fn organizations_of(&self, user_id: &str) -> Vec<(String, OrgRole)> {
        let memory = self.memory.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, OrgRole)> = memory
            .iter()
            .filter(|(_, o)| o.is_active())
            .filter_map(|(id, o)| o.members.get(user_id).map(|r| (id.clone(), *r)))
            .collect();
        out.sort();
        out
    }

    /// The organizations holding `domain_name` (IDNA ASCII lower case) VERIFIED, with their
    /// policies (rule ORG-14): several may, at most one with an enforcing policy.
    pub fn holders_of_domain(&self, domain_name: &str) -> Vec<DomainEntry> {
        let view = self.domains.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<DomainEntry> = view
            .values()
            .filter(|d| d.domain_name == domain_name)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.domain_id.cmp(&b.domain_id));
        out
    }

    /// The domains `organization_id` holds VERIFIED, by name.
    pub fn domains_of(&self, organization_id: &str) -> Vec<DomainEntry> {
        let view = self.domains.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<DomainEntry> = view
            .values()
            .filter(|d| d.organization_id == organization_id)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.domain_name.cmp(&b.domain_name));
        out
    }

    /// Whether `organization_id` holds `domain_name` VERIFIED.
    pub fn holds_verified(&self, organization_id: &str, domain_name: &str) -> bool {
        self.domains
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|d| d.organization_id == organization_id && d.domain_name == domain_name)
    }

    /// The member whose role `event` sets, and the role, when that is all the event changes in
    /// the replica's tables: a role change, or an addition other than an owner's (which also
    /// names the organization's owner). A run of such events can be written at once
    /// ([`Self::apply_member_roles`]).
    pub fn member_role_set_by(event: &Event) -> Option<(&str, &str, OrgRole)> {
        match event.payload.as_ref()? {
            Payload::MemberRoleChanged(e) => {
                Some((&e.organization_id, &e.user_id, role_of(e.new_role)))
            }
            Payload::MemberAdded(e) if role_of(e.role) != OrgRole::Owner => {
                Some((&e.organization_id, &e.user_id, role_of(e.role)))
            }
            _ => None,
        }
    }

    /// Applies a run of events that each only set a member's role
    /// ([`Self::member_role_set_by`]; others are ignored) in `txn` with one statement per 500
    /// members instead of one per event: each member gets the last role the run gives them, as
    /// applying the events one by one would leave it.
    pub async fn apply_member_roles<C: ConnectionTrait>(
        &self,
        txn: &C,
        events: &[Event],
    ) -> ApiResult<()> {
        let mut last: HashMap<(&str, &str), usize> = HashMap::new();
        let mut rows: Vec<(&str, &str, OrgRole)> = Vec::with_capacity(events.len());
        for (org, user, role) in events.iter().filter_map(Self::member_role_set_by) {
            match last.get(&(org, user)) {
                Some(&i) => rows[i].2 = role,
                None => {
                    last.insert((org, user), rows.len());
                    rows.push((org, user, role));
                }
            }
        }
        upsert_members(txn, &rows).await?;
        Ok(())
    }

    /// Applies an organization event to the replica's tables inside the consumer's `txn`.
    /// Events of other kinds are ignored. Every change is an assignment of state, so applying an
    /// event on top of a snapshot that already reflects it is harmless.
    pub async fn apply<C: ConnectionTrait>(&self, txn: &C, event: &Event) -> ApiResult<()> {
        let Some(payload) = &event.payload else {
            return Ok(());
        };
        domains::apply(txn, payload).await?;
        match payload {
            Payload::OrganizationCreated(e) => {
                upsert_org(
                    txn,
                    &e.organization_id,
                    &e.name,
                    &e.primary_email,
                    &e.owner_user_id,
                    OrganizationState::Active,
                )
                .await?;
                // A child organization (ORG-13) has no owner until its first owner accepts.
                if !e.owner_user_id.is_empty() {
                    upsert_member(txn, &e.organization_id, &e.owner_user_id, OrgRole::Owner)
                        .await?;
                }
            }
            Payload::OrganizationUpdated(e) => {
                org_row::Entity::update_many()
                    .col_expr(org_row::Column::Name, Expr::value(e.name.clone()))
                    .col_expr(
                        org_row::Column::PrimaryEmail,
                        Expr::value(e.primary_email.clone()),
                    )
                    .filter(org_row::Column::OrganizationId.eq(&e.organization_id))
                    .exec(txn)
                    .await?;
            }
            Payload::OrganizationDeleted(e) => {
                set_state(txn, &e.organization_id, OrganizationState::Deleted).await?;
            }
            Payload::OrganizationRestored(e) => {
                set_state(txn, &e.organization_id, OrganizationState::Active).await?;
            }
            Payload::OrganizationPurged(e) => {
                member_row::Entity::delete_many()
                    .filter(member_row::Column::OrganizationId.eq(&e.organization_id))
                    .exec(txn)
                    .await?;
                policy_row::Entity::delete_by_id(e.organization_id.clone())
                    .exec(txn)
                    .await?;
                org_row::Entity::delete_by_id(e.organization_id.clone())
                    .exec(txn)
                    .await?;
            }
            Payload::MemberAdded(e) => {
                upsert_member(txn, &e.organization_id, &e.user_id, role_of(e.role)).await?;
                // The first owner of a child organization joins as OWNER (ORG-13).
                if role_of(e.role) == OrgRole::Owner {
                    org_row::Entity::update_many()
                        .col_expr(org_row::Column::OwnerUserId, Expr::value(e.user_id.clone()))
                        .filter(org_row::Column::OrganizationId.eq(&e.organization_id))
                        .exec(txn)
                        .await?;
                }
            }
            Payload::MemberRoleChanged(e) => {
                upsert_member(txn, &e.organization_id, &e.user_id, role_of(e.new_role)).await?;
            }
            Payload::MemberRemoved(e) => {
                member_row::Entity::delete_by_id((e.organization_id.clone(), e.user_id.clone()))
                    .exec(txn)
                    .await?;
            }
            Payload::OwnershipTransferred(e) => {
                upsert_member(
                    txn,
                    &e.organization_id,
                    &e.new_owner_user_id,
                    OrgRole::Owner,
                )
                .await?;
                upsert_member(
                    txn,
                    &e.organization_id,
                    &e.previous_owner_user_id,
                    OrgRole::Admin,
                )
                .await?;
                org_row::Entity::update_many()
                    .col_expr(
                        org_row::Column::OwnerUserId,
                        Expr::value(e.new_owner_user_id.clone()),
                    )
                    .filter(org_row::Column::OrganizationId.eq(&e.organization_id))
                    .exec(txn)
                    .await?;
            }
            Payload::OrganizationsMerged(e) => {
                merge::apply(txn, e).await?;
            }
            Payload::SecurityPolicyChanged(e) => {
                let policy = e
                    .security_policy
                    .as_ref()
                    .map(SecurityPolicy::from_proto)
                    .unwrap_or_default();
                upsert_policy(txn, &e.organization_id, &policy).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies committed events to the memory view (call from `EventHandler::committed`).
    pub fn apply_in_memory(&self, events: &[Event]) {
        let mut memory = self.memory.write().unwrap_or_else(|e| e.into_inner());
        let mut verified = self.domains.write().unwrap_or_else(|e| e.into_inner());
        for event in events {
            let Some(payload) = &event.payload else {
                continue;
            };
            domains::apply_in_memory(&mut verified, payload);
            match payload {
                Payload::OrganizationCreated(e) => {
                    let org = memory.entry(e.organization_id.clone()).or_default();
                    org.name = e.name.clone();
                    org.primary_email = e.primary_email.clone();
                    org.owner_user_id = e.owner_user_id.clone();
                    org.state = OrganizationState::Active as i32;
                    if !e.owner_user_id.is_empty() {
                        org.members.insert(&e.owner_user_id, OrgRole::Owner);
                    }
                }
                Payload::OrganizationUpdated(e) => {
                    if let Some(org) = memory.get_mut(&e.organization_id) {
                        org.name = e.name.clone();
                        org.primary_email = e.primary_email.clone();
                    }
                }
                Payload::OrganizationDeleted(e) => {
                    if let Some(org) = memory.get_mut(&e.organization_id) {
                        org.state = OrganizationState::Deleted as i32;
                    }
                }
                Payload::OrganizationRestored(e) => {
                    if let Some(org) = memory.get_mut(&e.organization_id) {
                        org.state = OrganizationState::Active as i32;
                    }
                }
                Payload::OrganizationPurged(e) => {
                    memory.remove(&e.organization_id);
                }
                Payload::MemberAdded(e) => {
                    let org = memory.entry(e.organization_id.clone()).or_default();
                    org.members.insert(&e.user_id, role_of(e.role));
                    if role_of(e.role) == OrgRole::Owner {
                        org.owner_user_id = e.user_id.clone();
                    }
                }
                Payload::MemberRoleChanged(e) => {
                    memory
                        .entry(e.organization_id.clone())
                        .or_default()
                        .members
                        .insert(&e.user_id, role_of(e.new_role));
                }
                Payload::MemberRemoved(e) => {
                    if let Some(org) = memory.get_mut(&e.organization_id) {
                        org.members.remove(&e.user_id);
                    }
                }
                Payload::OwnershipTransferred(e) => {
                    let org = memory.entry(e.organization_id.clone()).or_default();
                    org.members.insert(&e.new_owner_user_id, OrgRole::Owner);
                    org.members
                        .insert(&e.previous_owner_user_id, OrgRole::Admin);
                    org.owner_user_id = e.new_owner_user_id.clone();
                }
                Payload::OrganizationsMerged(e) => merge::apply_in_memory(&mut memory, e),
                Payload::SecurityPolicyChanged(e) => {
                    if let Some(org) = memory.get_mut(&e.organization_id) {
                        org.policy = e
                            .security_policy
                            .as_ref()
                            .map(SecurityPolicy::from_proto)
                            .unwrap_or_default();
                    }
                }
                _ => {}
            }
        }
    }

    /// Brings the memory view in step after the consumer's transaction committed: patched from
    /// `events`, or reloaded from the database after a re-sync (what every consumer's
    /// `EventHandler::committed` does first).
    pub async fn committed(&self, events: &[Event], resynced: bool) {
        if resynced {
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "reloading the role replica failed");
            }
        } else {
            self.apply_in_memory(events);
        }
    }

    /// Replaces the replica's tables with the organization service's snapshot inside `txn` and
    /// returns the snapshot's revision (call from `EventHandler::resync`, then [`Self::reload`]
    /// after commit).
    pub async fn resync<C: ConnectionTrait>(&self, txn: &C) -> ApiResult<i64> {
        Ok(self.resync_with_merges(txn).await?.0)
    }

    /// [`Self::resync`], also returning the merges the snapshot reports (rule ORG-15): each
    /// MERGED organization that names the prime it went to (`merged_into_organization_id`),
    /// so that a consumer that missed the `OrganizationsMerged` event (compacted) can move what
    /// it holds of the candidate. A MERGED organization is kept as a tombstone without members
    /// or domains, whatever the snapshot lists for it; one absent from the snapshot is gone
    /// like a purged one.
    pub async fn resync_with_merges<C: ConnectionTrait>(
        &self,
        txn: &C,
    ) -> ApiResult<(i64, Vec<Merge>)> {
        let client = OrganizationServiceClient::new(self.organization.clone())
            .max_decoding_message_size(64 * 1024 * 1024);
        let (revision, entries) = read_snapshot(
            self.tokens.as_ref(),
            "ListRoleAssignments",
            |page_token, token| {
                let mut client = client.clone();
                async move {
                    let page = client
                        .list_role_assignments(crate::clients::outgoing(
                            ListRoleAssignmentsRequest {
                                page_size: 1000,
                                page_token,
                            },
                            token.as_deref(),
                            None,
                        ))
                        .await?
                        .into_inner();
                    Ok(SnapshotPage {
                        items: page.organizations,
                        revision: page.revision,
                        next_page_token: page.next_page_token,
                    })
                }
            },
        )
        .await?;
        let mut orgs: Vec<org_row::ActiveModel> = Vec::new();
        let mut members: Vec<member_row::ActiveModel> = Vec::new();
        let mut policies: Vec<policy_row::ActiveModel> = Vec::new();
        let mut verified = Vec::new();
        let mut seen_orgs = std::collections::HashSet::new();
        let mut merges = std::collections::BTreeSet::new();
        for entry in entries {
            let Some(org) = entry.organization else {
                continue;
            };
            let merged = org.state == OrganizationState::Merged as i32;
            if merged && !org.merged_into_organization_id.is_empty() {
                merges.insert(Merge {
                    candidate_organization_id: org.id.clone(),
                    prime_organization_id: org.merged_into_organization_id.clone(),
                });
            }
            if seen_orgs.insert(org.id.clone()) {
                orgs.push(org_row::ActiveModel {
                    organization_id: sea_orm::Set(org.id.clone()),
                    name: sea_orm::Set(org.name.clone()),
                    primary_email: sea_orm::Set(org.primary_email.clone()),
                    owner_user_id: sea_orm::Set(org.owner_user_id.clone()),
                    state: sea_orm::Set(org.state),
                });
                if let Some(p) = &entry.security_policy {
                    policies.push(policy_model(&org.id, &SecurityPolicy::from_proto(p)));
                }
            }
            if merged {
                continue;
            }
            verified.extend(entry.verified_domains);
            for a in entry.role_assignments {
                members.push(member_row::ActiveModel {
                    organization_id: sea_orm::Set(org.id.clone()),
                    user_id: sea_orm::Set(a.user_id),
                    role: sea_orm::Set(a.role),
                });
            }
        }
        member_row::Entity::delete_many().exec(txn).await?;
        policy_row::Entity::delete_many().exec(txn).await?;
        org_row::Entity::delete_many().exec(txn).await?;
        for chunk in orgs.chunks(500) {
            org_row::Entity::insert_many(chunk.to_vec())
                .exec(txn)
                .await?;
        }
        for chunk in policies.chunks(500) {
            policy_row::Entity::insert_many(chunk.to_vec())
                .exec(txn)
                .await?;
        }
        for chunk in members.chunks(500) {
            member_row::Entity::insert_many(chunk.to_vec())
                .exec(txn)
                .await?;
        }
        domains::replace(txn, &verified).await?;
        Ok((revision, merges.into_iter().collect()))
    }
}
