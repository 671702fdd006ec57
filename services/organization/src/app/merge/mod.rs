//! MergeOrganizations (rule ORG-15): a prime organization absorbs a candidate.
//!
//! The preconditions ([`App::merge_checks`]) are checked before anything else, and again inside
//! the merge's transaction once both organizations' rows are locked (in id order, as account
//! moves lock them). The plan ([`plan`]) is computed from the database the same way for a
//! preview and for the merge — inside the merge's own transaction — so that the preview of an
//! unchanged pair equals what the merge does, and a member who joined the candidate after the
//! preview still moves. The workspaces come from the workspace service ([`workspaces`]), asked
//! before the transaction. The merge ([`apply`]) writes everything, the candidate's tombstone,
//! one audit record in each organization and one `OrganizationsMerged` event in one
//! [`WriteUnit`].
//!
//! A MERGED candidate is a tombstone: NOT_FOUND to every caller on every RPC (see
//! [`super::access::Access::resolve`]), except GetOrganization by its former OWNER (kept as its
//! `owner_user_id`), which names the prime. It is never purged (it holds no members, invites to
//! act on, units, accounts or domains), listed by no ListOrganizations, and kept in the
//! ListRoleAssignments snapshot without members, so that a consumer re-syncing after compaction
//! learns of the merge (`merged_into_organization_id`) instead of mistaking the candidate for a
//! purged organization.

pub mod apply;
pub mod plan;
pub mod workspaces;

use orgplane_platform::Call;
use orgplane_platform::auth::Principal;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::events::v1::{OrganizationsMerged, event};
use orgplane_proto::organization::v1::{
    DomainState, MergePlan, OrganizationKind, OrganizationState,
};
use prost::Message;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::App;
use super::access::Access;
use crate::domain::accounts::email_domain;
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::error::MergeRefusal;
use crate::domain::validate::{self, required};
use crate::domain::{Error, Result};
use crate::store::query::lock_organization;
use crate::store::{domain, member, merge_record, organization};

/// MergeOrganizations.
#[derive(Debug, Clone, Default)]
pub struct MergeOrganizations {
    /// The organization that absorbs the other.
    pub prime_organization_id: String,
    /// The organization absorbed.
    pub candidate_organization_id: String,
    /// Only compute and answer the plan.
    pub validate_only: bool,
    /// The AIP-155 request id, or empty.
    pub request_id: String,
}

/// What MergeOrganizations answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// What moves (preview) or moved.
    pub plan: MergePlan,
    /// Whether the merge happened.
    pub merged: bool,
    /// The prime after the merge (or as it is, for a preview).
    pub prime: organization::Model,
    /// The revision of the `OrganizationsMerged` event; 0 for a preview.
    pub revision: i64,
}

/// Both organizations, as the preconditions found them.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    /// The prime.
    pub prime: organization::Model,
    /// The candidate.
    pub candidate: organization::Model,
}

/// The idempotency key of a merge: per caller, pair and request id.
fn merge_key(actor: &str, cmd: &MergeOrganizations, request_id: &str) -> String {
    format!(
        "MergeOrganizations|{actor}|{}|{}|{request_id}",
        cmd.prime_organization_id, cmd.candidate_organization_id
    )
}

impl App {
    /// MergeOrganizations (rule ORG-15): a preview with `validate_only`, else the merge; a
    /// retry with the request id of a merge that happened answers that merge again.
    pub async fn merge_organizations(
        &self,
        call: &Call,
        cmd: MergeOrganizations,
    ) -> Result<Merged> {
        let (_, actor) = call.principal.actor();
        let key = validate::request_id(&cmd.request_id)
            .ok()
            .flatten()
            .filter(|_| !cmd.validate_only)
            .map(|r| merge_key(&actor, &cmd, &r));
        let first = self.merge_once(call, &cmd, key.as_deref()).await;
        self.or_created_meanwhile(key.as_deref(), first, || {
            self.merge_once(call, &cmd, key.as_deref())
        })
        .await
    }

    async fn merge_once(
        &self,
        call: &Call,
        cmd: &MergeOrganizations,
        key: Option<&str>,
    ) -> Result<Merged> {
        require_caller(&call.principal)?;
        required("prime_organization_id", &cmd.prime_organization_id)?;
        required("candidate_organization_id", &cmd.candidate_organization_id)?;
        if cmd.prime_organization_id == cmd.candidate_organization_id {
            return Err(Error::invalid(
                "candidate_organization_id",
                "an organization cannot be merged into itself",
            ));
        }
        validate::request_id(&cmd.request_id)?;
        if let Some(candidate) = self.idempotent(key).await? {
            return self.merge_done(call, &candidate).await;
        }
        self.merge_checks(&self.db, call, cmd).await?;
        let workspaces = self
            .merge_workspaces(&cmd.prime_organization_id, &cmd.candidate_organization_id)
            .await?;
        if cmd.validate_only {
            // Read in one transaction, as the merge reads, for one consistent view.
            let txn = sea_orm::TransactionTrait::begin(&self.db).await?;
            let pair = self.merge_checks(&txn, call, cmd).await?;
            let plan = self.merge_plan(&txn, &pair, &workspaces).await?;
            txn.rollback().await?;
            return Ok(Merged {
                plan,
                merged: false,
                prime: pair.prime,
                revision: 0,
            });
        }
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        // Both organizations' locks, in one order, so that two merges (or a merge and an
        // account move) cannot deadlock.
        let mut ids = [
            cmd.prime_organization_id.clone(),
            cmd.candidate_organization_id.clone(),
        ];
        ids.sort();
        for id in &ids {
            lock_organization(&*txn, id).await?;
        }
        let pair = self.merge_checks(&*txn, call, cmd).await?;
        let plan = self.merge_plan(&*txn, &pair, &workspaces).await?;
        let blocking: Vec<_> = plan
            .conflicts
            .iter()
            .filter(|c| c.blocking)
            .cloned()
            .collect();
        if !blocking.is_empty() {
            return Err(MergeRefusal::Conflicts {
                conflicts: blocking,
            }
            .into());
        }
        let now = self.now_ms();
        self.apply_merge(&txn, call, &pair, &plan, now).await?;
        let revision = txn
            .append(event::Payload::OrganizationsMerged(OrganizationsMerged {
                prime_organization_id: pair.prime.id.clone(),
                candidate_organization_id: pair.candidate.id.clone(),
                members: plan.members.clone(),
                workspace_ids: plan
                    .workspaces
                    .iter()
                    .map(|w| w.workspace_id.clone())
                    .collect(),
                account_ids: plan.account_ids.clone(),
                candidate_owner_user_id: pair.candidate.owner_user_id.clone(),
            }))
            .await?;
        merge_record::Entity::insert(merge_record::ActiveModel {
            candidate_organization_id: Set(pair.candidate.id.clone()),
            prime_organization_id: Set(pair.prime.id.clone()),
            former_owner_user_id: Set(pair.candidate.owner_user_id.clone()),
            plan: Set(plan.encode_to_vec()),
            revision: Set(revision),
            create_time_ms: Set(now),
        })
        .exec(&*txn)
        .await?;
        self.remember(&txn, key, &pair.prime.id, &pair.candidate.id)
            .await?;
        txn.commit().await?;
        tracing::info!(
            prime = %pair.prime.id,
            candidate = %pair.candidate.id,
            revision,
            "organizations merged"
        );
        Ok(Merged {
            plan,
            merged: true,
            prime: pair.prime,
            revision,
        })
    }

    /// The answer of a merge that happened (an idempotent retry): its plan and revision, and the
    /// prime as it is now, if the caller still sees it.
    async fn merge_done(&self, call: &Call, candidate_id: &str) -> Result<Merged> {
        let not_found = || Error::not_found("organization", candidate_id);
        let record = merge_record::Entity::find_by_id(candidate_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(not_found)?;
        let access = Access::resolve(
            &self.db,
            &call.principal,
            &record.prime_organization_id,
            Deleted::VisibleToOwner,
        )
        .await?;
        let plan = MergePlan::decode(record.plan.as_slice())
            .map_err(|e| Error::Api(orgplane_platform::ApiError::internal(e)))?;
        Ok(Merged {
            plan,
            merged: true,
            prime: access.org,
            revision: record.revision,
        })
    }

    /// The preconditions of a merge, read through `db`, each refused with its own reason: both
    /// visible (NOT_FOUND), the caller the OWNER of both (PERMISSION_DENIED), signed in recently
    /// (REAUTHENTICATION_REQUIRED), neither deleted, neither an operator nor a child, the prime
    /// holding a VERIFIED domain, the caller's email in one of them, the candidate holding none.
    pub(crate) async fn merge_checks<C: ConnectionTrait>(
        &self,
        db: &C,
        call: &Call,
        cmd: &MergeOrganizations,
    ) -> Result<Pair> {
        let principal = call.principal.as_ref();
        let resolve = |id: String| async move {
            Access::resolve(db, principal, &id, Deleted::VisibleToOwner).await
        };
        let prime = resolve(cmd.prime_organization_id.clone()).await?;
        let candidate = resolve(cmd.candidate_organization_id.clone()).await?;
        prime.require(OrgAction::OwnerOnly)?;
        candidate.require(OrgAction::OwnerOnly)?;
        self.step_up(call, &prime)?;
        self.step_up(call, &candidate)?;
        for access in [&prime, &candidate] {
            if access.org.state != OrganizationState::Active as i32 {
                return Err(Error::OrganizationDeleted {
                    organization_id: access.org.id.clone(),
                });
            }
        }
        for access in [&prime, &candidate] {
            let o = &access.org;
            if o.kind == OrganizationKind::Operator as i32 || !o.operator_id.is_empty() {
                return Err(MergeRefusal::HierarchyUnsupported {
                    organization_id: o.id.clone(),
                }
                .into());
            }
        }
        let verified = |org: &str| {
            domain::Entity::find()
                .filter(domain::Column::OrganizationId.eq(org.to_owned()))
                .filter(domain::Column::State.eq(DomainState::Verified as i32))
                .order_by_asc(domain::Column::DomainName)
                .all(db)
        };
        let prime_domains = verified(&prime.org.id).await?;
        if prime_domains.is_empty() {
            return Err(MergeRefusal::PrimeDomainNotVerified {
                organization_id: prime.org.id.clone(),
            }
            .into());
        }
        let email = self.caller_email(db, call, &candidate.org.id).await?;
        let domain_name = email_domain(&email).to_owned();
        if !prime_domains.iter().any(|d| d.domain_name == domain_name) {
            return Err(MergeRefusal::OwnerNotInPrimeDomain { domain_name }.into());
        }
        if let Some(d) = verified(&candidate.org.id).await?.into_iter().next() {
            return Err(MergeRefusal::CandidateHasVerifiedDomain {
                domain_name: d.domain_name,
            }
            .into());
        }
        Ok(Pair {
            prime: prime.org,
            candidate: candidate.org,
        })
    }

    /// The calling user's email: the one stored with their membership of `organization_id`
    /// (verified when they joined), else identity's answer.
    async fn caller_email<C: ConnectionTrait>(
        &self,
        db: &C,
        call: &Call,
        organization_id: &str,
    ) -> Result<String> {
        let Principal::User(u) = call.principal.as_ref() else {
            return Ok(String::new());
        };
        let stored = member::Entity::find_by_id((organization_id.to_owned(), u.user_id.clone()))
            .one(db)
            .await?
            .map(|m| m.email)
            .filter(|e| !e.is_empty());
        Ok(match stored {
            Some(e) => e,
            None => self
                .users
                .get(&u.user_id, call)
                .await?
                .map(|u| u.email.to_lowercase())
                .unwrap_or_default(),
        })
    }

    /// The MERGED organization `organization_id` when the caller is its former OWNER (rule
    /// ORG-15: the one caller its tombstone answers); `None` otherwise.
    pub(crate) async fn merged_for_former_owner(
        &self,
        call: &Call,
        organization_id: &str,
    ) -> Result<Option<organization::Model>> {
        let Principal::User(u) = call.principal.as_ref() else {
            return Ok(None);
        };
        Ok(organization::Entity::find_by_id(organization_id.to_owned())
            .one(&self.db)
            .await?
            .filter(|o| {
                o.state == OrganizationState::Merged as i32 && o.owner_user_id == u.user_id
            }))
    }
}
