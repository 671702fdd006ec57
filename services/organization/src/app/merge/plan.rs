//! The plan of a merge (rule ORG-15), computed from the database through one connection (the
//! merge's transaction, or the preview's): every member of the candidate with the role they will
//! hold, its units, accounts and workspaces, and every conflict.

use std::collections::{HashMap, HashSet};

use orgplane_proto::organization::v1::{
    AccountState, AccountType, MergeMemberMove, MergePlan, MergeWorkspaceMove, OrgRole,
};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use super::Pair;
use super::workspaces::Workspaces;
use crate::app::App;
use crate::domain::Result;
use crate::domain::merge::{Holdings, UnitFacts, conflicts, resulting_role};
use crate::domain::validate::role_of;
use crate::store::{account, account_entry, member, unit};

/// The members of `organization_id`, in user id order.
pub(crate) async fn members_of<C: ConnectionTrait>(
    db: &C,
    organization_id: &str,
) -> Result<Vec<member::Model>> {
    Ok(member::Entity::find()
        .filter(member::Column::OrganizationId.eq(organization_id.to_owned()))
        .order_by_asc(member::Column::UserId)
        .all(db)
        .await?)
}

/// The units of `organization_id`, parents first (by depth, then id).
async fn units_of<C: ConnectionTrait>(db: &C, organization_id: &str) -> Result<Vec<unit::Model>> {
    Ok(unit::Entity::find()
        .filter(unit::Column::OrganizationId.eq(organization_id.to_owned()))
        .order_by_asc(unit::Column::Depth)
        .order_by_asc(unit::Column::Id)
        .all(db)
        .await?)
}

fn top_level(units: &[unit::Model]) -> Vec<UnitFacts> {
    units
        .iter()
        .filter(|u| u.parent_unit_id.is_empty())
        .map(|u| UnitFacts {
            id: u.id.clone(),
            name: u.name.clone(),
        })
        .collect()
}

/// The open entries of `organization_id`'s account list (what rule ACC-1 counts), by account id.
async fn open_entries<C: ConnectionTrait>(
    db: &C,
    organization_id: &str,
) -> Result<Vec<account_entry::Model>> {
    Ok(account_entry::Entity::find()
        .filter(account_entry::Column::OrganizationId.eq(organization_id.to_owned()))
        .filter(account_entry::Column::State.eq(AccountState::Active as i32))
        .all(db)
        .await?)
}

/// Every account whose home is `organization_id` (subaccounts included), by id.
pub(crate) async fn homed_accounts<C: ConnectionTrait>(
    db: &C,
    organization_id: &str,
) -> Result<Vec<account::Model>> {
    Ok(account::Entity::find()
        .filter(account::Column::HomeOrganizationId.eq(organization_id.to_owned()))
        .order_by_asc(account::Column::Id)
        .all(db)
        .await?)
}

impl App {
    /// The plan of merging `pair.candidate` into `pair.prime`, read through `db`, with the
    /// workspaces the workspace service reported.
    pub(crate) async fn merge_plan<C: ConnectionTrait>(
        &self,
        db: &C,
        pair: &Pair,
        workspaces: &Workspaces,
    ) -> Result<MergePlan> {
        let (prime, candidate) = (&pair.prime.id, &pair.candidate.id);
        let prime_roles: HashMap<String, i32> = members_of(db, prime)
            .await?
            .into_iter()
            .map(|m| (m.user_id, m.role))
            .collect();
        let mut members = Vec::new();
        let mut in_both = Vec::new();
        for m in members_of(db, candidate).await? {
            let prime_role = prime_roles.get(&m.user_id).map(|r| role_of(*r));
            if prime_role.is_some() {
                in_both.push(m.user_id.clone());
            }
            members.push(MergeMemberMove {
                user_id: m.user_id.clone(),
                candidate_role: m.role,
                prime_role: prime_role.unwrap_or(OrgRole::Unspecified) as i32,
                resulting_role: resulting_role(role_of(m.role), prime_role) as i32,
            });
        }
        let prime_units = units_of(db, prime).await?;
        let candidate_units = units_of(db, candidate).await?;
        // ACC-1: the prime's open entries, plus the candidate's open MANAGED accounts it does not
        // list yet (one it lists INDEPENDENT or PENDING becomes MANAGED and counts once). The
        // candidate's INDEPENDENT and PENDING entries are dropped.
        let prime_entries = open_entries(db, prime).await?;
        let listed: HashSet<&str> = prime_entries
            .iter()
            .map(|e| e.account_id.as_str())
            .collect();
        let arriving = open_entries(db, candidate)
            .await?
            .into_iter()
            .filter(|e| e.entry_type == AccountType::Managed as i32)
            .filter(|e| !listed.contains(e.account_id.as_str()))
            .count();
        let holdings = Holdings {
            prime_workspaces: workspaces.prime.clone(),
            candidate_workspaces: workspaces.candidate.clone(),
            prime_units: top_level(&prime_units),
            candidate_units: top_level(&candidate_units),
            members_in_both: in_both,
            accounts_after: (prime_entries.len() + arriving) as u64,
            max_accounts: self.max_accounts(prime),
            max_workspaces: self.config.merge_max_active_workspaces,
        };
        let mut planned_workspaces = workspaces.candidate.clone();
        planned_workspaces.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(MergePlan {
            conflicts: conflicts(&holdings),
            members,
            unit_ids: candidate_units.into_iter().map(|u| u.id).collect(),
            workspaces: planned_workspaces
                .into_iter()
                .map(|w| MergeWorkspaceMove {
                    workspace_id: w.id,
                    name: w.name,
                    archived: w.archived,
                })
                .collect(),
            account_ids: homed_accounts(db, candidate)
                .await?
                .into_iter()
                .map(|a| a.id)
                .collect(),
        })
    }
}
