//! The rules of a merge (ORG-15) that need no database: the role a moved member ends up with,
//! and the conflicts between a prime and a candidate, from what each holds.

use std::collections::HashMap;

use orgplane_proto::organization::v1::{MergeConflict, MergeConflictKind, OrgRole};

/// How roles compare when a member of both keeps the higher one.
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

/// The role a member of the candidate holds in the prime after the merge: the candidate's OWNER
/// becomes an ADMIN; a member of both keeps the higher of the two roles.
pub fn resulting_role(candidate: OrgRole, prime: Option<OrgRole>) -> OrgRole {
    let moved = if candidate == OrgRole::Owner {
        OrgRole::Admin
    } else {
        candidate
    };
    match prime {
        Some(p) if rank(p) > rank(moved) => p,
        _ => moved,
    }
}

/// A workspace as the merge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceFacts {
    /// `wrkspc_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it is archived (archived ones neither collide nor count, rule WS-1).
    pub archived: bool,
}

/// A top-level unit as the merge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFacts {
    /// `unit_…`.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// What the two organizations hold, as far as conflicts go.
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    /// The prime's workspaces.
    pub prime_workspaces: Vec<WorkspaceFacts>,
    /// The candidate's workspaces.
    pub candidate_workspaces: Vec<WorkspaceFacts>,
    /// The prime's top-level units.
    pub prime_units: Vec<UnitFacts>,
    /// The candidate's top-level units.
    pub candidate_units: Vec<UnitFacts>,
    /// The users who are members of both, in user id order.
    pub members_in_both: Vec<String>,
    /// The open accounts the prime's list would hold after the merge (rule ACC-1).
    pub accounts_after: u64,
    /// The prime's account limit.
    pub max_accounts: u64,
    /// The most active workspaces an organization may hold (rule WS-1).
    pub max_workspaces: u64,
}

fn conflict(
    kind: MergeConflictKind,
    name: &str,
    candidate: &str,
    prime: &str,
    description: String,
) -> MergeConflict {
    MergeConflict {
        kind: kind as i32,
        name: name.to_owned(),
        candidate_resource_id: candidate.to_owned(),
        prime_resource_id: prime.to_owned(),
        blocking: kind != MergeConflictKind::MemberInBoth,
        description,
    }
}

/// Every conflict between the two organizations, in a stable order: workspace names, unit
/// names, members in both, then the limits.
pub fn conflicts(h: &Holdings) -> Vec<MergeConflict> {
    let mut out = Vec::new();
    let active = |ws: &[WorkspaceFacts]| -> Vec<WorkspaceFacts> {
        let mut a: Vec<_> = ws.iter().filter(|w| !w.archived).cloned().collect();
        a.sort_by(|x, y| x.id.cmp(&y.id));
        a
    };
    let (prime_ws, candidate_ws) = (active(&h.prime_workspaces), active(&h.candidate_workspaces));
    let by_name: HashMap<String, &WorkspaceFacts> = prime_ws
        .iter()
        .map(|w| (w.name.to_lowercase(), w))
        .collect();
    for w in &candidate_ws {
        if let Some(p) = by_name.get(&w.name.to_lowercase()) {
            out.push(conflict(
                MergeConflictKind::WorkspaceName,
                &w.name,
                &w.id,
                &p.id,
                format!(
                    "the candidate's active workspace {:?} has the name of the prime's active workspace {:?}; rename or archive one of them",
                    w.name, p.name
                ),
            ));
        }
    }
    let mut prime_units = h.prime_units.clone();
    prime_units.sort_by(|a, b| a.id.cmp(&b.id));
    let mut candidate_units = h.candidate_units.clone();
    candidate_units.sort_by(|a, b| a.id.cmp(&b.id));
    let units: HashMap<String, &UnitFacts> = prime_units
        .iter()
        .map(|u| (u.name.to_lowercase(), u))
        .collect();
    for u in &candidate_units {
        if let Some(p) = units.get(&u.name.to_lowercase()) {
            out.push(conflict(
                MergeConflictKind::UnitName,
                &u.name,
                &u.id,
                &p.id,
                format!(
                    "the candidate's top-level unit {:?} has the name of the prime's top-level unit {:?}; rename one of them",
                    u.name, p.name
                ),
            ));
        }
    }
    for user in &h.members_in_both {
        out.push(conflict(
            MergeConflictKind::MemberInBoth,
            user,
            user,
            user,
            "a member of both organizations; they keep the higher of their two roles".to_owned(),
        ));
    }
    if h.accounts_after > h.max_accounts {
        out.push(conflict(
            MergeConflictKind::AccountLimit,
            "",
            "",
            "",
            format!(
                "together the organizations hold {} open accounts and the prime may hold {}; close accounts first",
                h.accounts_after, h.max_accounts
            ),
        ));
    }
    let workspaces = (prime_ws.len() + candidate_ws.len()) as u64;
    if workspaces > h.max_workspaces {
        out.push(conflict(
            MergeConflictKind::WorkspaceLimit,
            "",
            "",
            "",
            format!(
                "together the organizations hold {workspaces} active workspaces and the prime may hold {}; archive workspaces first",
                h.max_workspaces
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_15_the_candidate_owner_becomes_admin_and_a_member_of_both_keeps_the_higher_role() {
        use OrgRole::*;
        assert_eq!(resulting_role(Owner, None), Admin);
        assert_eq!(resulting_role(Owner, Some(Owner)), Owner);
        assert_eq!(resulting_role(Owner, Some(User)), Admin);
        assert_eq!(resulting_role(Developer, None), Developer);
        assert_eq!(resulting_role(Developer, Some(Billing)), Billing);
        assert_eq!(resulting_role(Admin, Some(User)), Admin);
        assert_eq!(resulting_role(User, Some(User)), User);
    }

    fn ws(id: &str, name: &str, archived: bool) -> WorkspaceFacts {
        WorkspaceFacts {
            id: id.into(),
            name: name.into(),
            archived,
        }
    }

    #[test]
    fn org_15_conflicts_ignore_case_and_archived_workspaces_and_count_the_limits() {
        let h = Holdings {
            prime_workspaces: vec![ws("w1", "Prod", false), ws("w2", "Old", true)],
            candidate_workspaces: vec![
                ws("w3", "prod", false),
                ws("w4", "old", false),
                ws("w5", "Prod2", true),
            ],
            prime_units: vec![UnitFacts {
                id: "u1".into(),
                name: "Sales".into(),
            }],
            candidate_units: vec![UnitFacts {
                id: "u2".into(),
                name: "SALES".into(),
            }],
            members_in_both: vec!["user_a".into()],
            accounts_after: 11,
            max_accounts: 10,
            max_workspaces: 2,
        };
        let c = conflicts(&h);
        let kinds: Vec<i32> = c.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                MergeConflictKind::WorkspaceName as i32,
                MergeConflictKind::UnitName as i32,
                MergeConflictKind::MemberInBoth as i32,
                MergeConflictKind::AccountLimit as i32,
                MergeConflictKind::WorkspaceLimit as i32,
            ]
        );
        assert_eq!(c[0].candidate_resource_id, "w3");
        assert_eq!(c[0].prime_resource_id, "w1");
        assert!(!c[2].blocking);
        assert!(c.iter().filter(|c| c.blocking).count() == 4);
    }
}
