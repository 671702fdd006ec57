//! B's imports of A's account (rule ACC-2), the part of [`super::cross_tenant`] that names an
//! account by id by design: B imports A's account as MANAGED (once B holds A's owner's email
//! domain VERIFIED) and as INDEPENDENT. The PENDING entry in B's list, B's reads of it and B's
//! audit log reveal nothing of A beyond the account id; while it is pending no caller of B and no
//! member of A but the account's owner accepts it, and A's account, subaccount, list entry and
//! grants stay exactly as they were. Once A's owner accepts the INDEPENDENT import, A's account
//! keeps its home, owner and name, and B still may not rename, transfer, close or look under it.

use org_api::AccountType;
use orgplane_proto::organization::v1 as org_api;
use prost::Message;
use tonic::Code;

use super::cross_tenant::{Codes, check, expect, run_probes};
use super::{get, target};
use crate::Figures;
use crate::harness::{Harness, bearer};
use crate::security::{Cred, Tenant, call, contains_any};

/// A's account and subaccount as A's OWNER reads them, A's list entry and A's grants.
#[derive(Debug, PartialEq)]
pub(super) struct Snapshot {
    pub(super) account: org_api::Account,
    pub(super) subaccount: org_api::Account,
    pub(super) listed: Vec<(String, i32)>,
    pub(super) grants: Vec<String>,
}

pub(super) async fn snapshot(h: &Harness, a: &Tenant) -> anyhow::Result<Snapshot> {
    let token = h.user_token(&a.owner)?;
    let account = get(h, &a.accounts.account, "", &token).await?;
    let subaccount = get(h, &a.accounts.subaccount, "", &token).await?;
    let listed = h
        .accounts()
        .list_accounts(bearer(
            org_api::ListAccountsRequest {
                organization_id: a.org.clone(),
                page_size: 1000,
                ..Default::default()
            },
            &token,
        ))
        .await?
        .into_inner()
        .accounts
        .into_iter()
        .map(|x| (x.id, x.r#type))
        .collect();
    let grants = h
        .accounts()
        .list_account_members(bearer(
            org_api::ListAccountMembersRequest {
                account_id: a.accounts.account.clone(),
                organization_id: a.org.clone(),
                page_size: 1000,
                ..Default::default()
            },
            &token,
        ))
        .await?
        .into_inner()
        .members
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    Ok(Snapshot {
        account,
        subaccount,
        listed,
        grants,
    })
}

/// What B's view of a PENDING entry of A's account gets wrong (empty: nothing).
fn pending_view_faults(
    v: &org_api::Account,
    bytes: &[u8],
    a: &Tenant,
    b_org: &str,
    requested: AccountType,
) -> Vec<String> {
    let mut out = Vec::new();
    if v.id != a.accounts.account || v.organization_id != b_org {
        out.push(format!("names {} in {}", v.id, v.organization_id));
    }
    if v.r#type != AccountType::Pending as i32 || v.requested_type != requested as i32 {
        out.push(format!("type {} requested {}", v.r#type, v.requested_type));
    }
    let hidden: Vec<&str> = a
        .secrets()
        .into_iter()
        .filter(|s| *s != a.accounts.account)
        .collect();
    if contains_any(bytes, &hidden)
        || !v.display_name.is_empty()
        || !v.owner_user_id.is_empty()
        || !v.parent_account_id.is_empty()
        || (!v.home_organization_id.is_empty() && v.home_organization_id != b_org)
        || v.compliance != 0
        || v.compliance_source != 0
    {
        out.push(format!(
            "reveals A: home {:?}, name {:?}, owner {:?}, parent {:?}, designation {} ({})",
            v.home_organization_id,
            v.display_name,
            v.owner_user_id,
            v.parent_account_id,
            v.compliance,
            v.compliance_source
        ));
    }
    out
}

/// Verifies domain `name` for `org` the way a found TXT record would (the suite has no DNS):
/// registered through the API, then marked VERIFIED in the organization service's database.
pub(crate) async fn verified_domain(
    h: &Harness,
    org: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let id = h
        .orgs()
        .create_domain(bearer(
            org_api::CreateDomainRequest {
                organization_id: org.into(),
                domain: Some(org_api::Domain {
                    domain_name: name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            token,
        ))
        .await?
        .into_inner()
        .domain
        .unwrap_or_default()
        .id;
    anyhow::ensure!(id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
    let db = h.database("organization").await?;
    let sql = format!(
        "UPDATE domains SET state = {}, verify_time_ms = {} WHERE id = '{id}'",
        org_api::DomainState::Verified as i32,
        chrono::Utc::now().timestamp_millis()
    );
    let mut result = db.execute_unprepared(&sql).await;
    for _ in 0..50 {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        result = db.execute_unprepared(&sql).await;
    }
    let _ = db.close().await;
    result?;
    Ok(())
}

/// B's imports of A's account (module comment). Answers the number of calls and what the
/// documented refusals reveal (for the notes).
pub(super) async fn imports(
    h: &Harness,
    f: &mut Figures,
    (a, b, c): (&Tenant, &Tenant, &Tenant),
    attackers: &[(String, Cred)],
    before: &Snapshot,
    codes: &mut Codes,
) -> anyhow::Result<(usize, Vec<&'static str>)> {
    let acct = a.accounts.account.clone();
    let b_owner = h.user_token(&b.owner)?;
    let import = |kind: AccountType, token: &str| {
        let req = bearer(
            org_api::ImportAccountRequest {
                organization_id: b.org.clone(),
                account_id: acct.clone(),
                r#type: kind as i32,
            },
            token,
        );
        let mut client = h.accounts();
        async move { client.import_account(req).await }
    };
    let hidden: Vec<&str> = a
        .secrets()
        .into_iter()
        .filter(|s| *s != acct)
        .chain(c.secrets())
        .collect();
    let mut sent = 0;
    // Members without the role may not import at all.
    for (role, cred) in attackers {
        if ![
            "ORG_ROLE_BILLING",
            "ORG_ROLE_DEVELOPER",
            "ORG_ROLE_USER",
            "WORKSPACE_API_KEY",
        ]
        .contains(&role.as_str())
        {
            continue;
        }
        sent += 1;
        let body = org_api::ImportAccountRequest {
            organization_id: b.org.clone(),
            account_id: acct.clone(),
            r#type: AccountType::Independent as i32,
        }
        .encode_to_vec();
        let r = call(h, &target("ImportAccount"), body, cred).await;
        expect(
            f,
            &format!("ImportAccount of A's account by B's {role}"),
            &r,
            &[Code::PermissionDenied],
        );
    }
    // MANAGED needs the owner's email domain VERIFIED in B: refused first, without A's data.
    sent += 1;
    let r = import(AccountType::Managed, &b_owner).await;
    expect(
        f,
        "ImportAccount MANAGED without the owner's domain verified in B",
        &r,
        &[Code::FailedPrecondition],
    );
    let mut observed = Vec::new();
    if let Err(s) = &r {
        check(
            f,
            !contains_any(s.message().as_bytes(), &hidden) && !contains_any(s.details(), &hidden),
            || format!("the refused MANAGED import names A's data: {}", s.message()),
        );
        // "The owner's domain is not named" (every user of the harness is `<id>@chaos.test`).
        check(
            f,
            !contains_any(s.details(), &["chaos.test"]) && !s.message().contains("chaos.test"),
            || format!("the refused MANAGED import names the owner's domain: {s:?}"),
        );
    }
    // A subaccount is refused as documented (ACCOUNT_IS_SUBACCOUNT), naming nothing else of A.
    sent += 1;
    let body = org_api::ImportAccountRequest {
        organization_id: b.org.clone(),
        account_id: a.accounts.subaccount.clone(),
        r#type: AccountType::Independent as i32,
    }
    .encode_to_vec();
    let r = call(
        h,
        &target("ImportAccount"),
        body,
        &Cred::Token(b_owner.clone()),
    )
    .await;
    expect(
        f,
        "ImportAccount of A's subaccount by B's OWNER",
        &r,
        &[Code::FailedPrecondition, Code::NotFound],
    );
    if let Err(s) = &r {
        let hidden_sub: Vec<&str> = hidden
            .iter()
            .copied()
            .filter(|x| *x != a.accounts.subaccount)
            .collect();
        check(
            f,
            !contains_any(s.message().as_bytes(), &hidden_sub)
                && !contains_any(s.details(), &hidden_sub),
            || {
                format!(
                    "the refused import of A's subaccount names A's data: {}",
                    s.message()
                )
            },
        );
        if s.code() == Code::FailedPrecondition {
            observed.push("ImportAccount tells a subaccount id from an account id (documented)");
        }
    }
    // The harness gives every user `<id>@chaos.test`.
    verified_domain(h, &b.org, &b_owner, "chaos.test").await?;
    let b_admin = format!(
        "user_b_{}",
        org_api::OrgRole::Admin.as_str_name().to_lowercase()
    );
    // B's log may repeat what B's requests named (A's account, subaccount and member).
    let audit_hidden: Vec<&str> = [a.org.as_str(), &a.owner, &a.accounts.name]
        .into_iter()
        .chain(c.secrets())
        .collect();
    for (kind, importer) in [
        (AccountType::Managed, b.owner.clone()),
        (AccountType::Independent, b_admin),
    ] {
        let name = kind.as_str_name();
        let token = h.user_token(&importer)?;
        sent += 1;
        let r = import(kind, &token).await;
        let Ok(resp) = r else {
            expect(f, &format!("ImportAccount {name} by B"), &r, &[Code::Ok]);
            continue;
        };
        let view = resp.into_inner().account.unwrap_or_default();
        let faults = pending_view_faults(&view, &view.encode_to_vec(), a, &b.org, kind);
        check(f, faults.is_empty(), || {
            format!("ImportAccount {name}: the PENDING entry {faults:?}")
        });
        // B's reads of its entry: GetAccount and ListAccounts by every caller of B.
        for (role, cred) in attackers {
            sent += 2;
            let body = org_api::GetAccountRequest {
                account_id: acct.clone(),
                organization_id: b.org.clone(),
            }
            .encode_to_vec();
            match call(h, &target("GetAccount"), body, cred).await {
                Ok(bytes) => {
                    let v = org_api::GetAccountResponse::decode(bytes.as_slice())?
                        .account
                        .unwrap_or_default();
                    let faults = pending_view_faults(&v, &bytes, a, &b.org, kind);
                    check(f, faults.is_empty(), || {
                        format!("GetAccount of the {name} import by B's {role}: {faults:?}")
                    });
                }
                Err(s) => expect(
                    f,
                    &format!("GetAccount of the {name} import by B's {role}"),
                    &Err::<(), _>(s),
                    &[Code::NotFound, Code::PermissionDenied],
                ),
            }
            let body = org_api::ListAccountsRequest {
                organization_id: b.org.clone(),
                page_size: 1000,
                show_closed: true,
                ..Default::default()
            }
            .encode_to_vec();
            if let Ok(bytes) = call(h, &target("ListAccounts"), body, cred).await {
                check(f, !contains_any(&bytes, &hidden), || {
                    format!("ListAccounts of B by B's {role} ({name} import) shows A's data")
                });
            }
        }
        // Nobody but A's account owner accepts: not B's callers (the probes), not A's member.
        sent += run_probes(h, f, (a, b, c), attackers, true, codes).await;
        sent += 1;
        let r = h
            .accounts()
            .accept_account_import(bearer(
                org_api::AcceptAccountImportRequest {
                    account_id: acct.clone(),
                    organization_id: b.org.clone(),
                },
                &h.user_token(&a.member)?,
            ))
            .await;
        expect(
            f,
            &format!("AcceptAccountImport of the {name} import by A's member (not the owner)"),
            &r,
            &[Code::NotFound],
        );
        audit_log_clean(h, f, b, &b_owner, &audit_hidden, name).await?;
        let now = snapshot(h, a).await?;
        check(f, &now == before, || {
            format!("A's account changed while B's {name} import was pending: {before:?} → {now:?}")
        });
        if kind == AccountType::Managed {
            // B withdraws; the answer is still only the PENDING entry.
            sent += 1;
            let r = h
                .accounts()
                .close_account(bearer(
                    org_api::CloseAccountRequest {
                        account_id: acct.clone(),
                        organization_id: b.org.clone(),
                        etag: String::new(),
                    },
                    &b_owner,
                ))
                .await;
            match r {
                Ok(resp) => {
                    let v = resp.into_inner().account.unwrap_or_default();
                    let faults = pending_view_faults(&v, &v.encode_to_vec(), a, &b.org, kind);
                    check(f, faults.is_empty(), || {
                        format!("CloseAccount withdrawing the MANAGED import: {faults:?}")
                    });
                }
                Err(s) => expect(
                    f,
                    "CloseAccount withdrawing the MANAGED import",
                    &Err::<(), _>(s),
                    &[Code::Ok],
                ),
            }
        }
    }
    sent += super::independent::accepted_independent(h, f, a, b, before).await?;
    Ok((sent, observed))
}

/// B's audit log, read by B's OWNER, holds nothing of A beyond the account id.
async fn audit_log_clean(
    h: &Harness,
    f: &mut Figures,
    b: &Tenant,
    b_owner: &str,
    hidden: &[&str],
    name: &str,
) -> anyhow::Result<()> {
    let mut page_token = String::new();
    let mut bytes = Vec::new();
    loop {
        let page = h
            .orgs()
            .list_audit_events(bearer(
                org_api::ListAuditEventsRequest {
                    organization_id: b.org.clone(),
                    page_size: 1000,
                    page_token,
                    filter: None,
                },
                b_owner,
            ))
            .await?
            .into_inner();
        bytes.extend(page.encode_to_vec());
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    check(f, !contains_any(&bytes, hidden), || {
        format!("B's audit log shows A's data after the {name} import")
    });
    Ok(())
}
