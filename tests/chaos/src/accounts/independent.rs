//! After A's owner accepts B's INDEPENDENT import of A's account ([`super::imports`]): A's
//! account keeps its home, owner, name, subaccount and grants; B may grant its own members
//! access through B, who then read B's entry and nothing else of A; B may not rename, transfer,
//! close or look under the account; B's CloseAccount only takes it off B's list, and B's grants
//! go with it.

use org_api::AccountType;
use orgplane_proto::organization::v1 as org_api;
use prost::Message;
use tonic::Code;

use super::cross_tenant::{check, expect, probes};
use super::imports::{Snapshot, snapshot};
use super::target;
use crate::Figures;
use crate::harness::{Harness, bearer};
use crate::security::{Cred, Target, Tenant, call, contains_any};

/// A's owner accepts B's INDEPENDENT import: A's account keeps its home, owner, name and state,
/// and B still may not rename, transfer, close or look under it; B's CloseAccount only takes it
/// off B's list. Answers the number of calls.
pub(super) async fn accepted_independent(
    h: &Harness,
    f: &mut Figures,
    a: &Tenant,
    b: &Tenant,
    before: &Snapshot,
) -> anyhow::Result<usize> {
    let acct = a.accounts.account.clone();
    let r = h
        .accounts()
        .accept_account_import(bearer(
            org_api::AcceptAccountImportRequest {
                account_id: acct.clone(),
                organization_id: b.org.clone(),
            },
            &h.user_token(&a.owner)?,
        ))
        .await;
    match &r {
        Ok(resp) => {
            let v = resp.get_ref().account.clone().unwrap_or_default();
            check(
                f,
                v.r#type == AccountType::Independent as i32
                    && v.organization_id == b.org
                    && v.home_organization_id == a.org,
                || format!("AcceptAccountImport INDEPENDENT answered {v:?}"),
            );
        }
        Err(_) => expect(f, "AcceptAccountImport by A's owner", &r, &[Code::Ok]),
    }
    let same = |now: &Snapshot| {
        let (x, y) = (&before.account, &now.account);
        x.home_organization_id == y.home_organization_id
            && x.display_name == y.display_name
            && x.owner_user_id == y.owner_user_id
            && x.state == y.state
            && x.compliance == y.compliance
            && x.r#type == y.r#type
            && before.subaccount == now.subaccount
            && before.listed == now.listed
            && before.grants == now.grants
    };
    let now = snapshot(h, a).await?;
    check(f, same(&now), || {
        format!("A's account changed when its owner accepted an INDEPENDENT import: {now:?}")
    });
    let token = h.user_token(&b.owner)?;
    let cred = Cred::Token(token.clone());
    let mut sent = 1;
    for p in probes(a, b) {
        let want: &[Code] = match (p.method, p.what) {
            ("UpdateAccount" | "TransferAccountOwnership" | "CreateSubaccount", _) => &[
                Code::FailedPrecondition,
                Code::NotFound,
                Code::PermissionDenied,
            ],
            ("ListSubaccounts" | "UpdateBillingAccount", _) => {
                &[Code::NotFound, Code::PermissionDenied]
            }
            ("GetAccount", "A's subaccount through B" | "A's subaccount, home view") => {
                &[Code::NotFound]
            }
            _ => continue,
        };
        sent += 1;
        let r = call(h, &p.target, p.body.clone(), &cred).await;
        expect(
            f,
            &format!("{} {} by B's OWNER (INDEPENDENT)", p.method, p.what),
            &r,
            want,
        );
    }
    sent += granted_through_b(h, f, a, b, &cred).await?;
    // Closing through B takes it off B's list and leaves A's account as it was.
    sent += 1;
    let r = h
        .accounts()
        .close_account(bearer(
            org_api::CloseAccountRequest {
                account_id: acct.clone(),
                organization_id: b.org.clone(),
                etag: String::new(),
            },
            &token,
        ))
        .await;
    expect(
        f,
        "CloseAccount of the INDEPENDENT entry by B's OWNER",
        &r,
        &[Code::Ok],
    );
    let now = snapshot(h, a).await?;
    check(f, same(&now), || {
        format!("B's CloseAccount of its INDEPENDENT entry changed A's account: {now:?}")
    });
    // B's grant went with B's entry.
    let member = Cred::Token(h.user_token(&b.member)?);
    for (method, body) in [
        ("GetAccount", get_body(&acct, &b.org)),
        ("ListAccountMembers", members_body(&acct, &b.org)),
    ] {
        sent += 1;
        let r = call(h, &target(method), body, &member).await;
        expect(
            f,
            &format!("{method} of A's account through B by B's member granted before B removed it"),
            &r,
            &[Code::NotFound],
        );
    }
    Ok(sent)
}

fn get_body(account: &str, org: &str) -> Vec<u8> {
    org_api::GetAccountRequest {
        account_id: account.into(),
        organization_id: org.into(),
    }
    .encode_to_vec()
}

fn members_body(account: &str, org: &str) -> Vec<u8> {
    org_api::ListAccountMembersRequest {
        account_id: account.into(),
        organization_id: org.into(),
        page_size: 1000,
        ..Default::default()
    }
    .encode_to_vec()
}

/// With A's account INDEPENDENT in B's list, B's OWNER grants B's member access through B: the
/// member reads B's entry and nothing else of A (not the home view, not the subaccounts), B's
/// grants list shows none of A's grants, and B's billing lists no billing account of A's
/// account (it stays with its home, rule BILL-6). Answers the number of calls.
async fn granted_through_b(
    h: &Harness,
    f: &mut Figures,
    a: &Tenant,
    b: &Tenant,
    b_owner: &Cred,
) -> anyhow::Result<usize> {
    let acct = &a.accounts.account;
    let sub = &a.accounts.subaccount;
    let grant = org_api::AddAccountMemberRequest {
        account_id: acct.clone(),
        organization_id: b.org.clone(),
        user_id: b.member.clone(),
    }
    .encode_to_vec();
    let r = call(h, &target("AddAccountMember"), grant, b_owner).await;
    expect(
        f,
        "AddAccountMember of B's member to the INDEPENDENT entry by B's OWNER (allowed)",
        &r,
        &[Code::Ok],
    );
    let member = Cred::Token(h.user_token(&b.member)?);
    let r = call(h, &target("GetAccount"), get_body(acct, &b.org), &member).await;
    expect(
        f,
        "GetAccount of the INDEPENDENT entry by B's granted member (allowed)",
        &r,
        &[Code::Ok],
    );
    let list_subs = org_api::ListSubaccountsRequest {
        parent_account_id: acct.clone(),
        show_closed: true,
        ..Default::default()
    }
    .encode_to_vec();
    for (what, method, body) in [
        ("A's account, home view", "GetAccount", get_body(acct, "")),
        (
            "A's subaccount through B",
            "GetAccount",
            get_body(sub, &b.org),
        ),
        ("A's subaccount, home view", "GetAccount", get_body(sub, "")),
        ("of A's account", "ListSubaccounts", list_subs),
    ] {
        let r = call(h, &target(method), body, &member).await;
        expect(
            f,
            &format!("{method} {what} by B's member granted A's account through B"),
            &r,
            &[Code::NotFound],
        );
    }
    let r = call(
        h,
        &target("ListAccountMembers"),
        members_body(acct, &b.org),
        b_owner,
    )
    .await;
    check(
        f,
        r.as_ref()
            .is_ok_and(|bytes| !contains_any(bytes, &[&a.member, &a.owner])),
        || format!("ListAccountMembers of the INDEPENDENT entry through B: {r:?}"),
    );
    let billing = Target {
        path: "/orgplane.billing.v1.BillingAccessService/ListBillingAccounts".into(),
        service: "billing-access",
        id_fields: Vec::new(),
    };
    let body = orgplane_proto::billing::v1::ListBillingAccountsRequest {
        organization_id: b.org.clone(),
        page_size: 1000,
        ..Default::default()
    }
    .encode_to_vec();
    let r = call(h, &billing, body, b_owner).await;
    check(
        f,
        r.as_ref()
            .is_ok_and(|bytes| !contains_any(bytes, &[acct.as_str(), sub, &a.accounts.name])),
        || format!("B's ListBillingAccounts with A's account INDEPENDENT in B: {r:?}"),
    );
    Ok(8)
}
