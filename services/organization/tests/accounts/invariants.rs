//! The model and the checker of the property test ([`crate::property`]): the fixed world of
//! three organizations and their members, what the service should hold, and the comparison of
//! the service's answers with it after each step.

use std::collections::{BTreeMap, BTreeSet};

use orgplane_proto::organization::v1::*;
use proptest::test_runner::TestCaseError;
use sea_orm::{ActiveModelTrait, IntoActiveModel};

use crate::common::*;
use crate::harness::Rig;

pub(crate) const ORGS: usize = 3;
pub(crate) const USERS: [&str; 4] = ["user_p0", "user_p1", "user_p2", "user_p3"];
/// Who is a member of which organization besides its owner.
pub(crate) const MEMBERS: [&[usize]; ORGS] = [&[0, 1], &[0, 2], &[1, 3]];
/// The organizations that hold `example.com` (every user's domain) VERIFIED.
pub(crate) const VERIFIED: [bool; ORGS] = [true, true, false];
pub(crate) const MAX_ACCOUNTS: u64 = 3;
pub(crate) const MAX_SUBACCOUNTS: u64 = 2;

pub(crate) fn owner_of(o: usize) -> String {
    format!("user_owner{o}")
}

/// An account as the model knows it.
#[derive(Debug, Clone)]
pub(crate) struct MAccount {
    pub(crate) id: String,
    pub(crate) home: usize,
    pub(crate) parent: Option<String>,
    pub(crate) owner: String,
    pub(crate) closed: bool,
    pub(crate) compliance: i32,
    pub(crate) source: i32,
}

/// The model: what the service should hold.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// The wrong model of the control: default changes apply to existing accounts.
    pub(crate) retroactive: bool,
    pub(crate) accounts: Vec<MAccount>,
    /// (org, account id) → (type, requested type).
    pub(crate) entries: BTreeMap<(usize, String), (i32, i32)>,
    pub(crate) defaults: [i32; ORGS],
    pub(crate) members: [BTreeSet<String>; ORGS],
}

pub(crate) const MANAGED: i32 = AccountType::Managed as i32;
pub(crate) const INDEPENDENT: i32 = AccountType::Independent as i32;
pub(crate) const PENDING: i32 = AccountType::Pending as i32;

impl Model {
    pub(crate) fn new(retroactive: bool) -> Self {
        let mut m = Model {
            retroactive,
            defaults: [ComplianceDesignation::None as i32; ORGS],
            ..Model::default()
        };
        for (o, users) in MEMBERS.iter().enumerate() {
            m.members[o].insert(owner_of(o));
            for u in users.iter() {
                m.members[o].insert(USERS[*u].to_owned());
            }
        }
        m
    }

    pub(crate) fn open_entries(&self, o: usize) -> usize {
        self.entries
            .keys()
            .filter(|(org, id)| *org == o && !self.get(id).closed)
            .count()
    }

    pub(crate) fn get(&self, id: &str) -> &MAccount {
        self.accounts.iter().find(|a| a.id == id).unwrap()
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> &mut MAccount {
        self.accounts.iter_mut().find(|a| a.id == id).unwrap()
    }
}

/// What the rig knows beyond the service: the organizations' ids.
pub(crate) struct World<'a> {
    pub(crate) rig: &'a Rig,
    pub(crate) orgs: Vec<String>,
}

pub(crate) fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

/// Compares the service's answers with the model and checks the invariants.
pub(crate) async fn check_invariants(w: &World<'_>, m: &Model) -> Result<(), TestCaseError> {
    let rig = w.rig;
    let mut managed_in: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut members: Vec<BTreeSet<String>> = Vec::new();
    for (o, org) in w.orgs.iter().enumerate() {
        let listed = list_all(rig, &owner_of(o), org).await;
        let open = listed
            .iter()
            .filter(|a| a.state() == AccountState::Active)
            .count() as u64;
        check(open <= MAX_ACCOUNTS, || {
            format!("org {o} holds {open} open accounts")
        })?;
        let got: BTreeMap<String, (i32, i32)> = listed
            .iter()
            .map(|a| (a.id.clone(), (a.r#type, a.requested_type)))
            .collect();
        let want: BTreeMap<String, (i32, i32)> = m
            .entries
            .iter()
            .filter(|((x, _), _)| *x == o)
            .map(|((_, id), v)| (id.clone(), *v))
            .collect();
        check(got == want, || {
            format!("org {o}'s list: service {got:?}, model {want:?}")
        })?;
        for a in listed.iter().filter(|a| a.r#type() == AccountType::Managed) {
            managed_in.entry(a.id.clone()).or_default().push(o);
        }
        let listed_members: BTreeSet<String> = rig
            .client()
            .list_members(rig.as_user(
                &owner_of(o),
                ListMembersRequest {
                    organization_id: org.clone(),
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .members
            .into_iter()
            .map(|x| x.user_id)
            .collect();
        members.push(listed_members);
    }
    for a in &m.accounts {
        let s = get(rig, &owner_of(a.home), &a.id, "").await.map_err(|e| {
            TestCaseError::fail(format!("{} unreadable by its home's owner: {e:?}", a.id))
        })?;
        let home = w
            .orgs
            .iter()
            .position(|o| *o == s.home_organization_id)
            .unwrap();
        check(home == a.home, || {
            format!("{}: home {home}, model {}", a.id, a.home)
        })?;
        check(members[home].contains(&s.owner_user_id), || {
            format!(
                "{}: owner {} is not a member of its home",
                a.id, s.owner_user_id
            )
        })?;
        check(s.owner_user_id == a.owner, || {
            format!("{}: owner {}, model {}", a.id, s.owner_user_id, a.owner)
        })?;
        check((s.state() == AccountState::Closed) == a.closed, || {
            format!("{}: state {:?}, model closed {}", a.id, s.state(), a.closed)
        })?;
        check(
            s.compliance == a.compliance && s.compliance_source == a.source,
            || {
                format!(
                    "{}: designation {:?} from {:?}, model {:?} from {:?}",
                    a.id,
                    s.compliance(),
                    s.compliance_source(),
                    ComplianceDesignation::try_from(a.compliance),
                    ComplianceSource::try_from(a.source)
                )
            },
        )?;
        match &a.parent {
            Some(p) => {
                check(s.parent_account_id == *p, || format!("{}: parent", a.id))?;
                let parent = get(rig, &owner_of(a.home), p, "").await.unwrap();
                check(
                    parent.home_organization_id == s.home_organization_id,
                    || format!("{}: not at its parent's home", a.id),
                )?;
                check(!managed_in.contains_key(&a.id), || {
                    format!("{} listed", a.id)
                })?;
            }
            None => {
                let lists = managed_in.get(&a.id).cloned().unwrap_or_default();
                check(lists == [home], || {
                    format!("{} is MANAGED in {lists:?}, home {home}", a.id)
                })?;
            }
        }
    }
    Ok(())
}

/// Writes `example.com` VERIFIED for `org` straight into the database (the import tests take the
/// DNS path; here only its outcome matters).
pub(crate) async fn verified_example_com(rig: &Rig, org: &str) {
    let now = chrono::Utc::now().timestamp_millis();
    orgplane_organization::store::domain::Model {
        id: format!("dom_{org}"),
        organization_id: org.to_owned(),
        domain_name: "example.com".into(),
        state: DomainState::Verified as i32,
        policy: DomainPolicy::None as i32,
        token: "0".repeat(32),
        check_outcome: 0,
        check_found: "[]".into(),
        check_detail: String::new(),
        check_time_ms: None,
        create_time_ms: now,
        update_time_ms: now,
        verify_time_ms: Some(now),
        expire_time_ms: now,
        version: 1,
    }
    .into_active_model()
    .insert(rig.org.db())
    .await
    .unwrap();
}
