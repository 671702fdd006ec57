//! The account-specific part of the cross-tenant matrix. The generated matrix
//! ([`crate::security`]) names tenant A's organization with A's account, and A's account alone
//! in the RPCs without an organization; here tenant B's callers also name A's account and
//! subaccount through B's own organization or through none ("its home"), in every AccountService
//! RPC that names an account (an RPC this table does not know fails the matrix), and A's account
//! in billing's UpdateBillingAccount (rule BILL-6). Each must be refused as for an unknown
//! account (NOT_FOUND, or PERMISSION_DENIED), and no answer may carry anything of A or C beyond
//! the ids the request named. The probes run again while B's list holds A's account as PENDING
//! ([`super::imports`]: ImportAccount names any account by id by design).

use std::collections::BTreeMap;

use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::organization::v1 as org_api;
use prost::Message;
use tonic::{Code, Status};

use super::{SERVICE, names_an_account, target};
use crate::Figures;
use crate::harness::{Harness, mask};
use crate::security::{Cred, Target, Tenant, call, contains_any};

/// The answers' codes, by name, for the figures' notes.
pub(super) type Codes = BTreeMap<String, usize>;

/// What a probe may also answer while B's list holds A's account as PENDING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Refused as before.
    Same,
    /// Also FAILED_PRECONDITION (`ACCOUNT_NOT_MANAGED`): B knows the account.
    NotManaged,
    /// Also OK for B's OWNER and ADMIN: a read of B's own (PENDING) entry.
    ReadsThroughB,
    /// Not sent then: it would withdraw B's import.
    Skip,
}

/// One request naming A's account (or subaccount) otherwise than the generated matrix does.
pub(super) struct Probe {
    pub(super) method: &'static str,
    pub(super) what: &'static str,
    pub(super) target: Target,
    pub(super) body: Vec<u8>,
    held: Held,
}

fn probe(method: &'static str, what: &'static str, held: Held, body: Vec<u8>) -> Probe {
    let target = if method == "UpdateBillingAccount" {
        Target {
            path: "/orgplane.billing.v1.BillingAccessService/UpdateBillingAccount".into(),
            service: "billing-access",
            id_fields: Vec::new(),
        }
    } else {
        target(method)
    };
    Probe {
        method,
        what,
        target,
        body,
        held,
    }
}

/// The probes of B's callers against A's account `acct` and subaccount `sub`.
pub(super) fn probes(a: &Tenant, b: &Tenant) -> Vec<Probe> {
    use Held::*;
    let acct = &a.accounts.account;
    let sub = &a.accounts.subaccount;
    let get = |id: &str, org: &str| {
        org_api::GetAccountRequest {
            account_id: id.into(),
            organization_id: org.into(),
        }
        .encode_to_vec()
    };
    let close = |id: &str, org: &str| {
        org_api::CloseAccountRequest {
            account_id: id.into(),
            organization_id: org.into(),
            etag: String::new(),
        }
        .encode_to_vec()
    };
    let update = |id: &str, org: &str| {
        org_api::UpdateAccountRequest {
            account: Some(org_api::Account {
                id: id.into(),
                organization_id: org.into(),
                display_name: "taken over".into(),
                ..Default::default()
            }),
            update_mask: mask(&["display_name"]),
            etag: String::new(),
        }
        .encode_to_vec()
    };
    let transfer = |id: &str| {
        org_api::TransferAccountOwnershipRequest {
            account_id: id.into(),
            new_owner_user_id: b.owner.clone(),
            etag: String::new(),
        }
        .encode_to_vec()
    };
    let subaccount = |parent: &str| {
        org_api::CreateSubaccountRequest {
            parent_account_id: parent.into(),
            subaccount: Some(org_api::Account {
                display_name: "planted".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }
        .encode_to_vec()
    };
    let list_subs = |parent: &str| {
        org_api::ListSubaccountsRequest {
            parent_account_id: parent.into(),
            show_closed: true,
            ..Default::default()
        }
        .encode_to_vec()
    };
    let accept = |org: &str| {
        org_api::AcceptAccountImportRequest {
            account_id: acct.clone(),
            organization_id: org.into(),
        }
        .encode_to_vec()
    };
    let billing = |org: &str| {
        bill_api::UpdateBillingAccountRequest {
            billing_account: Some(bill_api::BillingAccount {
                organization_id: org.into(),
                account_id: acct.clone(),
                seats: 9,
                ..Default::default()
            }),
            update_mask: mask(&["seats"]),
            etag: String::new(),
        }
        .encode_to_vec()
    };
    vec![
        probe("GetAccount", "A's account, home view", Same, get(acct, "")),
        probe(
            "GetAccount",
            "A's account through B",
            ReadsThroughB,
            get(acct, &b.org),
        ),
        probe(
            "GetAccount",
            "A's subaccount, home view",
            Same,
            get(sub, ""),
        ),
        probe(
            "GetAccount",
            "A's subaccount through B",
            Same,
            get(sub, &b.org),
        ),
        probe("CloseAccount", "A's account, home", Same, close(acct, "")),
        probe(
            "CloseAccount",
            "A's account through B",
            Skip,
            close(acct, &b.org),
        ),
        probe("CloseAccount", "A's subaccount, home", Same, close(sub, "")),
        probe(
            "UpdateAccount",
            "A's account, home",
            NotManaged,
            update(acct, ""),
        ),
        probe(
            "UpdateAccount",
            "A's account through B",
            NotManaged,
            update(acct, &b.org),
        ),
        probe("UpdateAccount", "A's subaccount", Same, update(sub, "")),
        probe(
            "TransferAccountOwnership",
            "A's account to B's owner",
            NotManaged,
            transfer(acct),
        ),
        probe(
            "TransferAccountOwnership",
            "A's subaccount to B's owner",
            Same,
            transfer(sub),
        ),
        probe(
            "CreateSubaccount",
            "under A's account",
            NotManaged,
            subaccount(acct),
        ),
        probe(
            "CreateSubaccount",
            "under A's subaccount",
            Same,
            subaccount(sub),
        ),
        probe("ListSubaccounts", "of A's account", Same, list_subs(acct)),
        probe("ListSubaccounts", "of A's subaccount", Same, list_subs(sub)),
        probe(
            "AcceptAccountImport",
            "A's account into B",
            Same,
            accept(&b.org),
        ),
        probe(
            "AcceptAccountImport",
            "A's account into A",
            Same,
            accept(&a.org),
        ),
        probe(
            "AddAccountMember",
            "B's member to A's account through B",
            NotManaged,
            org_api::AddAccountMemberRequest {
                account_id: acct.clone(),
                organization_id: b.org.clone(),
                user_id: b.member.clone(),
            }
            .encode_to_vec(),
        ),
        probe(
            "AddAccountMember",
            "B's member to A's subaccount through B",
            Same,
            org_api::AddAccountMemberRequest {
                account_id: sub.clone(),
                organization_id: b.org.clone(),
                user_id: b.member.clone(),
            }
            .encode_to_vec(),
        ),
        probe(
            "ListAccountMembers",
            "of A's account through B",
            ReadsThroughB,
            org_api::ListAccountMembersRequest {
                account_id: acct.clone(),
                organization_id: b.org.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        probe(
            "RemoveAccountMember",
            "A's grant through B",
            Same,
            org_api::RemoveAccountMemberRequest {
                account_id: acct.clone(),
                organization_id: b.org.clone(),
                user_id: a.member.clone(),
            }
            .encode_to_vec(),
        ),
        probe(
            "UpdateBillingAccount",
            "A's account's billing through B",
            Same,
            billing(&b.org),
        ),
        probe(
            "UpdateBillingAccount",
            "A's account's billing through A",
            Same,
            billing(&a.org),
        ),
    ]
}

/// Whether `code` is an acceptable refusal of `p` (in the PENDING phase when `held`).
fn refused_well(p: &Probe, code: Code, held: bool) -> bool {
    match code {
        Code::NotFound | Code::PermissionDenied | Code::Unauthenticated => true,
        Code::FailedPrecondition => held && p.held == Held::NotManaged,
        _ => false,
    }
}

/// An id of the same kind and length as `id` that names nothing: its part after the prefix
/// reversed (rotated when that changes nothing).
pub(crate) fn unknown_like(id: &str) -> String {
    let cut = id.find('_').map_or(0, |i| i + 1);
    let (prefix, rest) = id.split_at(cut);
    let mut tail: Vec<char> = rest.chars().rev().collect();
    if tail.iter().collect::<String>() == rest {
        tail.rotate_left(1);
    }
    format!("{prefix}{}", tail.into_iter().collect::<String>())
}

/// `body` with every occurrence of each of `ids` replaced by [`unknown_like`] (same length, so
/// the encoding stays valid).
pub(crate) fn disguised(body: &[u8], ids: &[&str]) -> Vec<u8> {
    let mut out = body.to_vec();
    for id in ids {
        let (from, to) = (id.as_bytes(), unknown_like(id));
        if from.is_empty() || to.len() != from.len() {
            continue;
        }
        let mut i = 0;
        while i + from.len() <= out.len() {
            if &out[i..i + from.len()] == from {
                out[i..i + from.len()].copy_from_slice(to.as_bytes());
                i += from.len();
            } else {
                i += 1;
            }
        }
    }
    out
}

/// The probes by every caller of B. `held`: B's list holds A's account as PENDING. Each answer
/// is also compared with the answer to the same request naming unknown ids instead of A's
/// account and subaccount: a different code would let B tell A's ids from unknown ones (the
/// service comment: "so that account ids of other tenants cannot be probed"). Answers the
/// number of calls.
pub(super) async fn run_probes(
    h: &Harness,
    f: &mut Figures,
    (a, b, c): (&Tenant, &Tenant, &Tenant),
    attackers: &[(String, Cred)],
    held: bool,
    codes: &mut Codes,
) -> usize {
    let mut sent = 0;
    let phase = if held { " (B's import pending)" } else { "" };
    for p in probes(a, b) {
        if held && p.held == Held::Skip {
            continue;
        }
        // What the answer may not hold: everything of A the request did not name, and all of C.
        let hidden: Vec<&str> = a
            .secrets()
            .into_iter()
            .filter(|s| !contains_any(&p.body, &[s]))
            .chain(c.secrets())
            .collect();
        let twin = disguised(&p.body, &[&a.accounts.account, &a.accounts.subaccount]);
        for (role, cred) in attackers {
            sent += 1;
            let label = format!("{} {} as B's {role}{phase}", p.method, p.what);
            let r = call(h, &p.target, p.body.clone(), cred).await;
            let code = r.as_ref().map_or_else(Status::code, |_| Code::Ok);
            *codes.entry(format!("{code:?}")).or_default() += 1;
            if !held || p.held == Held::Same {
                sent += 1;
                let unknown = call(h, &p.target, twin.clone(), cred).await;
                let unknown = unknown.as_ref().map_or_else(Status::code, |_| Code::Ok);
                if unknown != code {
                    f.leaks += 1;
                    f.failures.push(format!(
                        "{label}: {code:?}, but {unknown:?} for unknown ids: A's ids can be probed"
                    ));
                }
            }
            match r {
                Ok(bytes) => {
                    let leaked = contains_any(&bytes, &hidden);
                    if held && p.held == Held::ReadsThroughB && !leaked {
                        f.attacks_passed += 1;
                    } else {
                        f.leaks += 1;
                        f.failures.push(format!(
                            "{label}: answered OK{}",
                            if leaked { " with A's data" } else { "" }
                        ));
                    }
                }
                Err(s) => {
                    if contains_any(s.message().as_bytes(), &hidden)
                        || contains_any(s.details(), &hidden)
                    {
                        f.leaks += 1;
                        f.failures.push(format!(
                            "{label}: the refusal names A's data: {}",
                            s.message()
                        ));
                    }
                    if refused_well(&p, s.code(), held) {
                        f.attacks_passed += 1;
                    } else {
                        f.attacks_failed += 1;
                        f.failures
                            .push(format!("{label}: {:?} {}", s.code(), s.message()));
                    }
                }
            }
        }
    }
    sent
}

/// Fails the matrix for every AccountService RPC that names an account and that neither the
/// probes nor the import checks cover; answers the number covered.
fn coverage(f: &mut Figures, a: &Tenant, b: &Tenant) -> anyhow::Result<usize> {
    let protos = crate::escalation::Protos::load()?;
    let probed: Vec<&str> = probes(a, b).iter().map(|p| p.method).collect();
    let mut covered = 0;
    for (path, _, input, _, _) in &protos.methods {
        let Some(method) = path.strip_prefix(&format!("/{SERVICE}/")) else {
            continue;
        };
        if !names_an_account(&protos, input) {
            continue;
        }
        if probed.contains(&method) || method == "ImportAccount" {
            covered += 1;
        } else {
            f.attacks_failed += 1;
            f.failures.push(format!(
                "{path}: names an account the account probes do not cover (add it)"
            ));
        }
    }
    Ok(covered)
}

/// Records one check: `ok`, or a failure saying `what`.
pub(crate) fn check(f: &mut Figures, ok: bool, what: impl FnOnce() -> String) {
    if ok {
        f.attacks_passed += 1;
    } else {
        f.attacks_failed += 1;
        f.failures.push(what());
    }
}

/// Records one answer whose code must be one of `codes`.
pub(crate) fn expect(f: &mut Figures, what: &str, r: &Result<impl Sized, Status>, codes: &[Code]) {
    let code = r.as_ref().map_or_else(Status::code, |_| Code::Ok);
    check(f, codes.contains(&code), || {
        let msg = r.as_ref().err().map(Status::message).unwrap_or_default();
        format!("{what}: {code:?} {msg} (expected one of {codes:?})")
    });
}

/// The account-specific attacks (module comment); answers a summary for the figures' notes.
pub(crate) async fn cross_tenant(
    h: &Harness,
    f: &mut Figures,
    (a, b, c): (&Tenant, &Tenant, &Tenant),
    attackers: &[(String, Cred)],
) -> anyhow::Result<String> {
    let covered = coverage(f, a, b)?;
    let before = super::imports::snapshot(h, a).await?;
    let mut codes = Codes::new();
    let probed = run_probes(h, f, (a, b, c), attackers, false, &mut codes).await;
    let (imports, observed) =
        super::imports::imports(h, f, (a, b, c), attackers, &before, &mut codes).await?;
    Ok(format!(
        "{covered} AccountService RPCs naming an account; {} probes x {} callers ({probed} \
         calls), again while B's MANAGED and INDEPENDENT imports of A's account were pending \
         ({imports} calls with the import checks); codes {codes:?}; documented refusals \
         observed: {observed:?}",
        probes(a, b).len(),
        attackers.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ids_keep_their_prefix_and_length() {
        assert_eq!(unknown_like("acct_0a1b2c"), "acct_c2b1a0");
        assert_eq!(unknown_like("acct_abba"), "acct_bbaa");
        let body = org_api::GetAccountRequest {
            account_id: "acct_0a1b2c".into(),
            organization_id: "org_b".into(),
        }
        .encode_to_vec();
        let twin = org_api::GetAccountRequest::decode(
            disguised(&body, &["acct_0a1b2c", "acct_absent"]).as_slice(),
        )
        .unwrap();
        assert_eq!(twin.account_id, "acct_c2b1a0");
        assert_eq!(twin.organization_id, "org_b");
    }
}
