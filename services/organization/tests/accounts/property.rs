//! A property test of accounts (rules ACC-1 … ACC-5): random sequences of creations, imports,
//! acceptances, transfers, closes, subaccount creations, default changes, explicit flags and
//! member removals run against the real service (SQLite); a model predicts each answer, and after
//! each step a checker compares what the service says (lists, accounts, members) with the model
//! and checks the invariants: at most the limit of open top-level entries per organization; every
//! account's owner a member of its home; every top-level account MANAGED in exactly one list, its
//! home's; subaccounts at their parent's home; each designation what it was given (the default
//! when created, the parent's when created, or an explicit flag) — so changing a default never
//! changes an existing account.
//!
//! The control runs the same sequences with a deliberately wrong model (one that applies default
//! changes to existing accounts) and asserts that the checker catches it.

use orgplane_platform::error::reason_of;
use orgplane_proto::organization::v1::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use crate::common::*;
use crate::harness::{Backend, Rig};
use crate::invariants::*;

/// One step; indices are taken modulo what exists when it runs.
#[derive(Debug, Clone)]
enum Op {
    Create {
        org: usize,
        owner: usize,
    },
    /// Imports an account that could be (picked among them) when `fitting`, else anything.
    Import {
        org: usize,
        account: usize,
        managed: bool,
        fitting: bool,
    },
    /// Accepts a pending import (picked among them), else a random account and organization.
    Accept {
        account: usize,
        org: usize,
    },
    Transfer {
        account: usize,
        to: usize,
    },
    /// Closes through a list entry (picked among them) when `listed`, else anything.
    Close {
        account: usize,
        org: usize,
        listed: bool,
    },
    Sub {
        parent: usize,
    },
    SetDefault {
        org: usize,
        hipaa: bool,
    },
    Flag {
        account: usize,
        hipaa: bool,
    },
    RemoveMember {
        org: usize,
        user: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let i = || 0usize..16;
    prop_oneof![
        4 => (i(), i()).prop_map(|(org, owner)| Op::Create { org, owner }),
        3 => (i(), i(), any::<bool>(), any::<bool>()).prop_map(|(org, account, managed, fitting)| Op::Import { org, account, managed, fitting }),
        3 => (i(), i()).prop_map(|(account, org)| Op::Accept { account, org }),
        1 => (i(), i()).prop_map(|(account, to)| Op::Transfer { account, to }),
        2 => (i(), i(), any::<bool>()).prop_map(|(account, org, listed)| Op::Close { account, org, listed }),
        2 => i().prop_map(|parent| Op::Sub { parent }),
        2 => (i(), any::<bool>()).prop_map(|(org, hipaa)| Op::SetDefault { org, hipaa }),
        1 => (i(), any::<bool>()).prop_map(|(account, hipaa)| Op::Flag { account, hipaa }),
        1 => (i(), i()).prop_map(|(org, user)| Op::RemoveMember { org, user }),
    ]
}

type Expect = Result<(), &'static str>;

fn outcome<T>(r: Result<T, tonic::Status>) -> Result<T, String> {
    r.map_err(|e| reason_of(&e).unwrap_or_else(|| format!("{:?}", e.code())))
}

fn same(step: &Op, got: Result<(), String>, want: Expect) -> Result<(), TestCaseError> {
    let want = want.map_err(str::to_owned);
    if got != want {
        return Err(TestCaseError::fail(format!(
            "{step:?}: the service answered {got:?}, the model predicted {want:?}"
        )));
    }
    Ok(())
}

async fn run_step(w: &World<'_>, m: &mut Model, step: &Op) -> Result<(), TestCaseError> {
    let rig = w.rig;
    let n = m.accounts.len();
    match *step {
        Op::Create { org, owner } => {
            let o = org % ORGS;
            let candidates = [
                owner_of(o),
                USERS[0].into(),
                USERS[1].into(),
                USERS[2].into(),
                USERS[3].into(),
            ];
            let owner = candidates[owner % candidates.len()].clone();
            let want = if m.open_entries(o) as u64 >= MAX_ACCOUNTS {
                Err("ACCOUNT_LIMIT_REACHED")
            } else if !m.members[o].contains(&owner) {
                Err("ACCOUNT_OWNER_NOT_MANAGED")
            } else {
                Ok(())
            };
            let got = outcome(
                accounts(rig)
                    .create_account(rig.as_user(&owner_of(o), create_req(&w.orgs[o], "A", &owner)))
                    .await,
            );
            let id = got
                .as_ref()
                .ok()
                .map(|r| r.get_ref().account.clone().unwrap().id);
            same(step, got.map(|_| ()), want)?;
            if let Some(id) = id {
                m.entries.insert((o, id.clone()), (MANAGED, 0));
                m.accounts.push(MAccount {
                    id,
                    home: o,
                    parent: None,
                    owner,
                    closed: false,
                    compliance: m.defaults[o],
                    source: ComplianceSource::OrganizationDefault as i32,
                });
            }
        }
        Op::Import {
            org,
            account,
            managed,
            fitting,
        } if n > 0 => {
            let fits: Vec<(usize, String)> = (0..ORGS)
                .flat_map(|o| m.accounts.iter().map(move |a| (o, a)))
                .filter(|(o, a)| {
                    a.parent.is_none() && !a.closed && !m.entries.contains_key(&(*o, a.id.clone()))
                })
                .map(|(o, a)| (o, a.id.clone()))
                .collect();
            let (o, id) = match (fitting, fits.len()) {
                (true, f) if f > 0 => fits[account % f].clone(),
                _ => (org % ORGS, m.accounts[account % n].id.clone()),
            };
            let a = m.get(&id).clone();
            let want = if a.parent.is_some() {
                Err("ACCOUNT_IS_SUBACCOUNT")
            } else if a.closed {
                Err("ACCOUNT_CLOSED")
            } else if m.entries.contains_key(&(o, a.id.clone())) {
                Err("ACCOUNT_ALREADY_IN_ORGANIZATION")
            } else if managed && !VERIFIED[o] {
                Err("EMAIL_DOMAIN_NOT_VERIFIED")
            } else if m.open_entries(o) as u64 >= MAX_ACCOUNTS {
                Err("ACCOUNT_LIMIT_REACHED")
            } else {
                Ok(())
            };
            let kind = if managed {
                AccountType::Managed
            } else {
                AccountType::Independent
            };
            let got = outcome(import(rig, &owner_of(o), &w.orgs[o], &a.id, kind).await);
            same(step, got.map(|_| ()), want)?;
            if want.is_ok() {
                m.entries.insert((o, a.id.clone()), (PENDING, kind as i32));
            }
        }
        Op::Accept { account, org } if n > 0 => {
            let pending: Vec<(usize, String)> = m
                .entries
                .iter()
                .filter(|(_, (t, _))| *t == PENDING)
                .map(|(k, _)| k.clone())
                .collect();
            let (o, id) = match pending.len() {
                0 => (org % ORGS, m.accounts[account % n].id.clone()),
                p => pending[account % p].clone(),
            };
            let a = m.get(&id).clone();
            let entry = m.entries.get(&(o, a.id.clone())).copied();
            let want = match entry {
                Some((PENDING, req)) if a.closed => {
                    let _ = req;
                    Err("ACCOUNT_CLOSED")
                }
                Some((PENDING, req)) if req == MANAGED && !m.members[o].contains(&a.owner) => {
                    Err("ACCOUNT_OWNER_NOT_MANAGED")
                }
                Some((PENDING, _)) => Ok(()),
                _ => Err("ACCOUNT_IMPORT_NOT_PENDING"),
            };
            let got = outcome(accept(rig, &a.owner, &a.id, &w.orgs[o]).await);
            same(step, got.map(|_| ()), want)?;
            if let (Ok(()), Some((_, req))) = (want, entry) {
                m.entries.insert((o, a.id.clone()), (req, 0));
                if req == MANAGED {
                    let from = a.home;
                    m.entries.remove(&(from, a.id.clone()));
                    let owner = a.owner.clone();
                    let in_new = m.members[o].clone();
                    for x in m.accounts.iter_mut() {
                        if x.id == a.id {
                            x.home = o;
                        } else if x.parent.as_deref() == Some(&a.id) {
                            x.home = o;
                            if !in_new.contains(&x.owner) {
                                x.owner = owner.clone();
                            }
                        }
                    }
                }
            }
        }
        Op::Transfer { account, to } if n > 0 => {
            let a = m.accounts[account % n].clone();
            let candidates = [
                owner_of(a.home),
                USERS[0].into(),
                USERS[1].into(),
                USERS[2].into(),
                USERS[3].into(),
            ];
            let to = candidates[to % candidates.len()].clone();
            let want = if a.closed {
                Err("ACCOUNT_CLOSED")
            } else if a.owner == to {
                Err("INVALID_ARGUMENT")
            } else if !m.members[a.home].contains(&to) {
                Err("ACCOUNT_OWNER_NOT_MANAGED")
            } else {
                Ok(())
            };
            let got = outcome(transfer(rig, &owner_of(a.home), &a.id, &to).await);
            same(step, got.map(|_| ()), want)?;
            if want.is_ok() {
                m.get_mut(&a.id).owner = to;
            }
        }
        Op::Close {
            account,
            org,
            listed,
        } if n > 0 => {
            let keys: Vec<(usize, String)> = m.entries.keys().cloned().collect();
            let (o, id) = match (listed, keys.len()) {
                (true, k) if k > 0 => keys[account % k].clone(),
                _ => (org % ORGS, m.accounts[account % n].id.clone()),
            };
            let a = m.get(&id).clone();
            let entry = m.entries.get(&(o, a.id.clone())).copied();
            let at_home_sub = a.parent.is_some() && a.home == o;
            let want = match entry {
                Some((PENDING | INDEPENDENT, _)) => Ok(()),
                Some((MANAGED, _)) | None if entry.is_some() || at_home_sub => {
                    let open_subs = m
                        .accounts
                        .iter()
                        .any(|x| x.parent.as_deref() == Some(&a.id) && !x.closed);
                    if a.closed {
                        Err("ACCOUNT_CLOSED")
                    } else if open_subs {
                        Err("ACCOUNT_HAS_SUBACCOUNTS")
                    } else {
                        Ok(())
                    }
                }
                _ => Err("NOT_FOUND"),
            };
            let got = outcome(close(rig, &owner_of(o), &a.id, &w.orgs[o]).await);
            same(step, got.map(|_| ()), want)?;
            if want.is_ok() {
                match entry {
                    Some((PENDING | INDEPENDENT, _)) => {
                        m.entries.remove(&(o, a.id.clone()));
                    }
                    _ => {
                        m.get_mut(&a.id).closed = true;
                        m.entries
                            .retain(|(_, id), (t, _)| !(id == &a.id && *t == PENDING));
                    }
                }
            }
        }
        Op::Sub { parent } if n > 0 => {
            let p = m.accounts[parent % n].clone();
            let open = m
                .accounts
                .iter()
                .filter(|x| x.parent.as_deref() == Some(&p.id) && !x.closed)
                .count() as u64;
            let want = if p.parent.is_some() {
                Err("ACCOUNT_IS_SUBACCOUNT")
            } else if p.closed {
                Err("ACCOUNT_CLOSED")
            } else if open >= MAX_SUBACCOUNTS {
                Err("SUBACCOUNT_LIMIT_REACHED")
            } else {
                Ok(())
            };
            let got = outcome(create_sub(rig, &p.owner, &p.id, "S").await);
            let id = got.as_ref().ok().map(|s| s.id.clone());
            same(step, got.map(|_| ()), want)?;
            if let Some(id) = id {
                m.accounts.push(MAccount {
                    id,
                    home: p.home,
                    parent: Some(p.id.clone()),
                    owner: p.owner.clone(),
                    closed: false,
                    compliance: p.compliance,
                    source: ComplianceSource::Parent as i32,
                });
            }
        }
        Op::SetDefault { org, hipaa } => {
            let o = org % ORGS;
            let d = designation(hipaa);
            let got = outcome(set_default(rig, &owner_of(o), &w.orgs[o], d).await);
            same(step, got.map(|_| ()), Ok(()))?;
            m.defaults[o] = d as i32;
            if m.retroactive {
                for x in m.accounts.iter_mut().filter(|x| {
                    x.home == o && x.source == ComplianceSource::OrganizationDefault as i32
                }) {
                    x.compliance = d as i32;
                }
            }
        }
        Op::Flag { account, hipaa } if n > 0 => {
            let a = m.accounts[account % n].clone();
            let d = designation(hipaa);
            let want = if a.closed {
                Err("ACCOUNT_CLOSED")
            } else {
                Ok(())
            };
            let got = outcome(
                update(
                    rig,
                    &owner_of(a.home),
                    Account {
                        id: a.id.clone(),
                        compliance: d as i32,
                        ..Default::default()
                    },
                    &["compliance"],
                )
                .await,
            );
            same(step, got.map(|_| ()), want)?;
            if want.is_ok() {
                let x = m.get_mut(&a.id);
                x.compliance = d as i32;
                x.source = ComplianceSource::Explicit as i32;
            }
        }
        Op::RemoveMember { org, user } => {
            let o = org % ORGS;
            let u = USERS[user % USERS.len()];
            let want = if m.members[o].contains(u) {
                Ok(())
            } else {
                Err("NOT_FOUND")
            };
            let got = outcome(remove_member(rig, &owner_of(o), &w.orgs[o], u).await);
            same(step, got.map(|_| ()), want)?;
            if want.is_ok() {
                m.members[o].remove(u);
                for x in m
                    .accounts
                    .iter_mut()
                    .filter(|x| x.home == o && x.owner == u)
                {
                    x.owner = owner_of(o);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn designation(hipaa: bool) -> ComplianceDesignation {
    if hipaa {
        ComplianceDesignation::Hipaa
    } else {
        ComplianceDesignation::None
    }
}

/// Runs one sequence on a fresh service.
async fn run_case(ops: Vec<Op>, retroactive: bool) -> Result<(), TestCaseError> {
    let env = env_with(Backend::Sqlite, |c| {
        c.max_accounts = MAX_ACCOUNTS;
        c.max_subaccounts = MAX_SUBACCOUNTS;
    })
    .await
    .unwrap();
    let rig: &Rig = &env;
    let mut orgs = Vec::new();
    for o in 0..ORGS {
        let org = create_org(rig, &owner_of(o), &format!("Org {o}")).await;
        for u in MEMBERS[o] {
            join(rig, &org.id, &owner_of(o), USERS[*u], OrgRole::User).await;
        }
        if VERIFIED[o] {
            verified_example_com(rig, &org.id).await;
        }
        orgs.push(org.id);
    }
    let w = World { rig, orgs };
    let mut m = Model::new(retroactive);
    for step in &ops {
        run_step(&w, &mut m, step).await?;
        check_invariants(&w, &m).await?;
    }
    Ok(())
}

/// The same sequences for the property and its control: a fixed seed.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            max_shrink_iters: 16,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    )
}

fn run_property(retroactive: bool) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runner(16)
        .run(&proptest::collection::vec(op(), 10..30), |ops| {
            rt.block_on(run_case(ops, retroactive))
        })
        .map_err(|e| e.to_string())
}

#[test]
fn acc_1_to_5_random_sequences_keep_the_invariants() {
    if let Err(e) = run_property(false) {
        panic!("{e}");
    }
}

#[test]
fn acc_5_control_a_model_applying_defaults_retroactively_is_caught() {
    let failure = run_property(true).expect_err("the checker must catch the wrong model");
    assert!(failure.contains("designation"), "{failure}");
}
