//! `OrganizationsMerged` (rule ORG-15) in the role replica: every moved member holds their
//! `resulting_role` in the prime, the candidate loses every membership and becomes MERGED — not
//! ACTIVE, so it answers like a gone organization to every role check (NOT_FOUND) — and its
//! VERIFIED domains (it should hold none) are dropped (see `domains`). Every write is an assignment of state, so
//! applying the event twice (or on top of a snapshot that reflects it) changes nothing.

use std::collections::HashMap;

use orgplane_proto::events::v1::OrganizationsMerged;
use orgplane_proto::organization::v1::{MergeMemberMove, OrgRole, OrganizationState};
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, DbErr};

use super::store::{member_row, set_state, upsert_member};
use super::{OrgEntry, role_of};

/// A merge as the replica knows it: the candidate organization and the prime that absorbed it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Merge {
    /// The organization absorbed (MERGED now).
    pub candidate_organization_id: String,
    /// The organization that absorbed it.
    pub prime_organization_id: String,
}

impl Merge {
    /// The merge an event announces; `None` for a malformed event (an id missing, or the same
    /// organization twice), which the replica ignores.
    pub fn of(e: &OrganizationsMerged) -> Option<Self> {
        let valid = !e.prime_organization_id.is_empty()
            && !e.candidate_organization_id.is_empty()
            && e.prime_organization_id != e.candidate_organization_id;
        valid.then(|| Self {
            candidate_organization_id: e.candidate_organization_id.clone(),
            prime_organization_id: e.prime_organization_id.clone(),
        })
    }
}

fn rank(role: OrgRole) -> u8 {
    match role {
        OrgRole::Owner => 5,
        OrgRole::Admin => 4,
        OrgRole::Billing => 3,
        OrgRole::Developer => 2,
        OrgRole::User => 1,
        OrgRole::Unspecified => 0,
    }
}

/// The role `m` holds in the prime after the merge: `resulting_role` as the organization service
/// computed it; when an event lacks it, the rule itself (the candidate's OWNER becomes ADMIN, a
/// member of both keeps the higher role).
pub fn resulting_role(m: &MergeMemberMove) -> OrgRole {
    let resulting = role_of(m.resulting_role);
    if resulting != OrgRole::Unspecified {
        return resulting;
    }
    let from_candidate = match role_of(m.candidate_role) {
        OrgRole::Owner => OrgRole::Admin,
        other => other,
    };
    let in_prime = role_of(m.prime_role);
    if rank(in_prime) >= rank(from_candidate) {
        in_prime
    } else {
        from_candidate
    }
}

/// Applies the merge to the replica's tables inside the consumer's `txn`.
pub(super) async fn apply<C: ConnectionTrait>(
    txn: &C,
    e: &OrganizationsMerged,
) -> Result<(), DbErr> {
    let Some(merge) = Merge::of(e) else {
        return Ok(());
    };
    for m in &e.members {
        let role = resulting_role(m);
        if m.user_id.is_empty() || role == OrgRole::Unspecified {
            continue;
        }
        upsert_member(txn, &merge.prime_organization_id, &m.user_id, role).await?;
    }
    member_row::Entity::delete_many()
        .filter(member_row::Column::OrganizationId.eq(&merge.candidate_organization_id))
        .exec(txn)
        .await?;
    set_state(
        txn,
        &merge.candidate_organization_id,
        OrganizationState::Merged,
    )
    .await
}

/// Applies the merge to the memory view (after its transaction committed).
pub(super) fn apply_in_memory(memory: &mut HashMap<String, OrgEntry>, e: &OrganizationsMerged) {
    let Some(merge) = Merge::of(e) else {
        return;
    };
    let prime = memory
        .entry(merge.prime_organization_id.clone())
        .or_default();
    for m in &e.members {
        let role = resulting_role(m);
        if m.user_id.is_empty() || role == OrgRole::Unspecified {
            continue;
        }
        prime.members.insert(&m.user_id, role);
    }
    if let Some(candidate) = memory.get_mut(&merge.candidate_organization_id) {
        candidate.members.clear();
        candidate.state = OrganizationState::Merged as i32;
    }
}
