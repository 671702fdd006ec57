//! What an organization holds, read through the public API the same way before and after the
//! merge ([`collect`]); what the prime must hold after it ([`Observed::merged`]); and the
//! exactly-once comparison of the two ([`verify`]), a pure function so that the control arm can
//! run it on states known to be wrong.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context;
use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::identity::v1 as id_api;
use orgplane_proto::organization::v1::{self as org_api, OrgRole};
use orgplane_proto::workspace::v1 as ws_api;

use crate::harness::{Harness, bearer, retry};

/// An exact decimal: `units / 10^scale`, kept without trailing zeros so that `==` compares values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dec {
    units: i128,
    scale: u32,
}

impl Dec {
    /// Parses a report amount: digits, optionally `.` and more digits.
    pub fn parse(s: &str) -> anyhow::Result<Dec> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        anyhow::ensure!(
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && frac.len() <= 30,
            "not a decimal amount: {s:?}"
        );
        let units: i128 = format!("{int}{frac}").parse()?;
        Ok(Dec {
            units,
            scale: frac.len() as u32,
        }
        .normalized())
    }

    fn normalized(mut self) -> Dec {
        while self.scale > 0 && self.units % 10 == 0 {
            self.units /= 10;
            self.scale -= 1;
        }
        self
    }

    /// The exact sum.
    pub fn plus(self, other: Dec) -> Dec {
        let scale = self.scale.max(other.scale);
        let a = self.units * 10i128.pow(scale - self.scale);
        let b = other.units * 10i128.pow(scale - other.scale);
        Dec {
            units: a + b,
            scale,
        }
        .normalized()
    }
}

impl std::fmt::Display for Dec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.units);
        }
        let p = 10i128.pow(self.scale);
        write!(
            f,
            "{}.{:0width$}",
            self.units / p,
            self.units % p,
            width = self.scale as usize
        )
    }
}

/// Summed usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Input tokens.
    pub input: i64,
    /// Output tokens.
    pub output: i64,
    /// Records.
    pub records: i64,
}

impl Tokens {
    fn plus(self, o: Tokens) -> Tokens {
        Tokens {
            input: self.input + o.input,
            output: self.output + o.output,
            records: self.records + o.records,
        }
    }
}

/// A workspace as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ws {
    /// `wrkspc_…`.
    pub id: String,
    /// Its organization.
    pub org: String,
    /// Its name.
    pub name: String,
    /// Its unit, or empty.
    pub unit: String,
    /// Whether archived.
    pub archived: bool,
}

/// What one organization holds, as its OWNER reads it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The organization.
    pub org: String,
    /// Members with their roles, as listed (duplicates kept).
    pub members: Vec<(String, i32)>,
    /// Workspaces, active and archived, as listed.
    pub workspaces: Vec<Ws>,
    /// Direct members of each workspace (user, role), as listed.
    pub direct: BTreeMap<String, Vec<(String, i32)>>,
    /// Units (id, depth), as listed.
    pub units: Vec<(String, i32)>,
    /// API keys, as listed.
    pub keys: Vec<String>,
    /// Usage over the range.
    pub usage: Tokens,
    /// Usage per workspace (empty: the Default Workspace).
    pub usage_by_ws: BTreeMap<String, Tokens>,
    /// The cost report's total over the range.
    pub cost: Dec,
    /// Cost per account (empty: none).
    pub cost_by_account: BTreeMap<String, Dec>,
}

fn rank(role: i32) -> i32 {
    // OWNER (1) > ADMIN > BILLING > DEVELOPER > USER (5); 0 is no role.
    if role == 0 { i32::MAX } else { role }
}

impl Observed {
    /// What the prime `p` must hold once candidate `c` merged into it: every member once with
    /// the higher of its two roles (C's OWNER counting as ADMIN), everything else of both.
    pub fn merged(p: &Observed, c: &Observed, c_owner: &str) -> Observed {
        let mut roles: BTreeMap<String, i32> = p.members.iter().cloned().collect();
        for (user, role) in &c.members {
            let role = if user == c_owner && *role == OrgRole::Owner as i32 {
                OrgRole::Admin as i32
            } else {
                *role
            };
            let e = roles.entry(user.clone()).or_insert(role);
            if rank(role) < rank(*e) {
                *e = role;
            }
        }
        let mut usage_by_ws = p.usage_by_ws.clone();
        for (ws, t) in &c.usage_by_ws {
            let e = usage_by_ws.entry(ws.clone()).or_default();
            *e = e.plus(*t);
        }
        let mut cost_by_account = p.cost_by_account.clone();
        for (a, d) in &c.cost_by_account {
            let e = cost_by_account.entry(a.clone()).or_default();
            *e = e.plus(*d);
        }
        let concat = |a: &[_], b: &[_]| [a, b].concat();
        Observed {
            org: p.org.clone(),
            members: roles.into_iter().collect(),
            workspaces: c
                .workspaces
                .iter()
                .map(|w| Ws {
                    org: p.org.clone(),
                    ..w.clone()
                })
                .chain(p.workspaces.iter().cloned())
                .collect(),
            direct: p
                .direct
                .iter()
                .chain(c.direct.iter())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            units: concat(&p.units, &c.units),
            keys: [p.keys.as_slice(), c.keys.as_slice()].concat(),
            usage: p.usage.plus(c.usage),
            usage_by_ws,
            cost: p.cost.plus(c.cost),
            cost_by_account,
        }
    }
}

/// How an observed state differs from the expected one.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Expected items not found (members, workspaces, direct members, units, keys).
    pub missing: u64,
    /// Items found more than once (each extra copy counts).
    pub duplicated: u64,
    /// Other differences, described.
    pub wrong: Vec<String>,
}

impl Verdict {
    /// Whether nothing differs.
    pub fn clean(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && self.wrong.is_empty()
    }
}

/// Counts `expected` keys in `observed` (missing, extra copies) and reports keys not expected.
fn once<K: std::hash::Hash + Eq + std::fmt::Debug + Clone>(
    what: &str,
    expected: impl IntoIterator<Item = K>,
    observed: impl IntoIterator<Item = K>,
    v: &mut Verdict,
) {
    let mut count: HashMap<K, u64> = HashMap::new();
    for k in observed {
        *count.entry(k).or_default() += 1;
    }
    let expected: HashSet<K> = expected.into_iter().collect();
    for k in &expected {
        match count.get(k).copied().unwrap_or(0) {
            0 => v.missing += 1,
            n => v.duplicated += n - 1,
        }
    }
    let extra: Vec<_> = count.keys().filter(|k| !expected.contains(*k)).collect();
    if !extra.is_empty() {
        v.wrong.push(format!(
            "{} unexpected {what}, e.g. {:?}",
            extra.len(),
            extra[0]
        ));
    }
}

/// Compares `observed` with `expected` item by item (see [`Verdict`]).
pub fn verify(expected: &Observed, observed: &Observed) -> Verdict {
    let mut v = Verdict::default();
    once(
        "members",
        expected.members.iter().map(|(u, _)| u.clone()),
        observed.members.iter().map(|(u, _)| u.clone()),
        &mut v,
    );
    let want: HashMap<&String, i32> = expected.members.iter().map(|(u, r)| (u, *r)).collect();
    let wrong_roles = observed
        .members
        .iter()
        .filter(|(u, r)| want.get(u).is_some_and(|w| w != r))
        .count();
    if wrong_roles > 0 {
        v.wrong
            .push(format!("{wrong_roles} members with a wrong role"));
    }
    once(
        "workspaces",
        expected.workspaces.iter().map(|w| w.id.clone()),
        observed.workspaces.iter().map(|w| w.id.clone()),
        &mut v,
    );
    let want: HashMap<&String, &Ws> = expected.workspaces.iter().map(|w| (&w.id, w)).collect();
    for w in &observed.workspaces {
        if let Some(e) = want.get(&w.id)
            && *e != w
        {
            v.wrong.push(format!("workspace {:?} is {w:?}", e));
        }
    }
    let mut names = HashSet::new();
    for w in observed.workspaces.iter().filter(|w| !w.archived) {
        if !names.insert(w.name.to_lowercase()) {
            v.wrong
                .push(format!("active workspace name {:?} twice", w.name));
        }
    }
    once(
        "direct workspace members",
        expected
            .direct
            .iter()
            .flat_map(|(ws, m)| m.iter().map(move |(u, r)| (ws.clone(), u.clone(), *r))),
        observed
            .direct
            .iter()
            .flat_map(|(ws, m)| m.iter().map(move |(u, r)| (ws.clone(), u.clone(), *r))),
        &mut v,
    );
    once(
        "units",
        expected.units.iter().cloned(),
        observed.units.iter().cloned(),
        &mut v,
    );
    once(
        "API keys",
        expected.keys.iter().cloned(),
        observed.keys.iter().cloned(),
        &mut v,
    );
    if expected.usage != observed.usage {
        v.wrong.push(format!(
            "usage {:?}, expected {:?}",
            observed.usage, expected.usage
        ));
    }
    if expected.usage_by_ws != observed.usage_by_ws {
        let differ = expected
            .usage_by_ws
            .keys()
            .chain(observed.usage_by_ws.keys())
            .collect::<HashSet<_>>()
            .into_iter()
            .filter(|k| expected.usage_by_ws.get(*k) != observed.usage_by_ws.get(*k))
            .count();
        v.wrong
            .push(format!("usage of {differ} workspaces differs"));
    }
    if expected.cost != observed.cost {
        v.wrong.push(format!(
            "cost total {}, expected {}",
            observed.cost, expected.cost
        ));
    }
    if expected.cost_by_account != observed.cost_by_account {
        v.wrong.push(format!(
            "cost per account {:?}, expected {:?}",
            observed.cost_by_account, expected.cost_by_account
        ));
    }
    v
}

/// The range every report covers: the last three days (the usage is of the last two).
pub fn range() -> (prost_types::Timestamp, prost_types::Timestamp) {
    let now = chrono::Utc::now().timestamp();
    (
        prost_types::Timestamp {
            seconds: now - 3 * 86_400,
            nanos: 0,
        },
        prost_types::Timestamp {
            seconds: now + 60,
            nanos: 0,
        },
    )
}

/// Reads what `org` holds through the API as `owner` (every page of every list).
pub async fn collect(h: &Harness, org: &str, owner: &str) -> anyhow::Result<Observed> {
    let token = h.user_token(owner)?;
    let mut o = Observed {
        org: org.into(),
        ..Default::default()
    };
    let mut page = String::new();
    loop {
        let r = retry(|| async {
            h.orgs()
                .list_members(bearer(
                    org_api::ListMembersRequest {
                        organization_id: org.into(),
                        page_size: 1000,
                        page_token: page.clone(),
                        role: 0,
                    },
                    &token,
                ))
                .await
        })
        .await
        .context("ListMembers")?;
        o.members
            .extend(r.members.into_iter().map(|m| (m.user_id, m.role)));
        page = r.next_page_token;
        if page.is_empty() {
            break;
        }
    }
    loop {
        let r = retry(|| async {
            h.workspaces()
                .list_workspaces(bearer(
                    ws_api::ListWorkspacesRequest {
                        organization_id: org.into(),
                        page_size: 1000,
                        page_token: page.clone(),
                        include_archived: true,
                        unit_id: String::new(),
                    },
                    &token,
                ))
                .await
        })
        .await
        .context("ListWorkspaces")?;
        o.workspaces.extend(r.workspaces.into_iter().map(|w| Ws {
            archived: w.state == ws_api::WorkspaceState::Archived as i32,
            id: w.id,
            org: w.organization_id,
            name: w.name,
            unit: w.unit_id,
        }));
        page = r.next_page_token;
        if page.is_empty() {
            break;
        }
    }
    for w in &o.workspaces {
        let mut members = Vec::new();
        loop {
            let r = retry(|| async {
                h.workspaces()
                    .list_workspace_members(bearer(
                        ws_api::ListWorkspaceMembersRequest {
                            workspace_id: w.id.clone(),
                            page_size: 1000,
                            page_token: page.clone(),
                            role: 0,
                            role_source: ws_api::WorkspaceRoleSource::Direct as i32,
                        },
                        &token,
                    ))
                    .await
            })
            .await
            .context("ListWorkspaceMembers")?;
            members.extend(
                r.workspace_members
                    .into_iter()
                    .map(|m| (m.user_id, m.assigned_role)),
            );
            page = r.next_page_token;
            if page.is_empty() {
                break;
            }
        }
        o.direct.insert(w.id.clone(), members);
    }
    loop {
        let r = retry(|| async {
            h.orgs()
                .list_units(bearer(
                    org_api::ListUnitsRequest {
                        organization_id: org.into(),
                        page_size: 1000,
                        page_token: page.clone(),
                        parent_unit_id: String::new(),
                    },
                    &token,
                ))
                .await
        })
        .await
        .context("ListUnits")?;
        o.units.extend(r.units.into_iter().map(|u| (u.id, u.depth)));
        page = r.next_page_token;
        if page.is_empty() {
            break;
        }
    }
    loop {
        let r = retry(|| async {
            h.identity_client()
                .list_api_keys(bearer(
                    id_api::ListApiKeysRequest {
                        organization_id: org.into(),
                        page_size: 1000,
                        page_token: page.clone(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
        })
        .await
        .context("ListApiKeys")?;
        o.keys.extend(r.api_keys.into_iter().map(|k| k.id));
        page = r.next_page_token;
        if page.is_empty() {
            break;
        }
    }
    let (start, end) = range();
    for group in [None, Some(bill_api::UsageDimension::Workspace)] {
        loop {
            let r = retry(|| async {
                h.billing()
                    .get_usage_report(bearer(
                        bill_api::GetUsageReportRequest {
                            organization_id: org.into(),
                            page_size: 1000,
                            page_token: page.clone(),
                            start_time: Some(start),
                            end_time: Some(end),
                            bucket_width: bill_api::BucketWidth::OneDay as i32,
                            group_by: group.iter().map(|g| *g as i32).collect(),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
            })
            .await
            .context("GetUsageReport")?;
            for row in r.buckets.iter().flat_map(|b| &b.rows) {
                let t = Tokens {
                    input: row.input_tokens,
                    output: row.output_tokens,
                    records: row.record_count,
                };
                match group {
                    None => o.usage = o.usage.plus(t),
                    Some(_) => {
                        let e = o.usage_by_ws.entry(row.workspace_id.clone()).or_default();
                        *e = e.plus(t);
                    }
                }
            }
            page = r.next_page_token;
            if page.is_empty() {
                break;
            }
        }
    }
    for group in [None, Some(bill_api::CostDimension::Account)] {
        loop {
            let r = retry(|| async {
                h.billing()
                    .get_cost_report(bearer(
                        bill_api::GetCostReportRequest {
                            organization_id: org.into(),
                            page_size: 1000,
                            page_token: page.clone(),
                            start_time: Some(start),
                            end_time: Some(end),
                            group_by: group.iter().map(|g| *g as i32).collect(),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
            })
            .await
            .context("GetCostReport")?;
            for b in &r.buckets {
                match group {
                    None => o.cost = o.cost.plus(Dec::parse(&b.total_amount)?),
                    Some(_) => {
                        for row in &b.rows {
                            let e = o.cost_by_account.entry(row.account_id.clone()).or_default();
                            *e = e.plus(Dec::parse(&row.amount)?);
                        }
                    }
                }
            }
            page = r.next_page_token;
            if page.is_empty() {
                break;
            }
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::Dec;

    #[test]
    fn decimals_add_exactly() {
        let a = Dec::parse("0.1").unwrap();
        let b = Dec::parse("0.20").unwrap();
        assert_eq!(a.plus(b), Dec::parse("0.3").unwrap());
        assert_eq!(a.plus(b).to_string(), "0.3");
        let c = Dec::parse("12.000000345").unwrap();
        assert_eq!(c.plus(Dec::parse("7").unwrap()).to_string(), "19.000000345");
        assert_eq!(Dec::parse("0").unwrap().to_string(), "0");
        assert!(Dec::parse("1e5").is_err());
        assert_ne!(a, b);
    }
}
