//! Accounts in the privilege-escalation suite ([`crate::escalation`]): members without the
//! OWNER or ADMIN role (BILLING, DEVELOPER, USER) try to create, rename, flag, close and take
//! over accounts and to change the compliance defaults (rules ACC-1, ACC-3, ACC-5) — refused
//! with PERMISSION_DENIED where they see the account (granted, or their own) and NOT_FOUND where
//! they do not (AccountService never says PERMISSION_DENIED about an account one cannot see);
//! output-only fields set beside a mutable path are ignored; and the rows that give the account
//! lists a second page for the page-token cases.

use org_api::{AccountState, AccountType, ComplianceDesignation, OrgRole};
use orgplane_proto::organization::v1 as org_api;
use tonic::Code;

use super::{create, create_subaccount, get, grant};
use crate::Figures;
use crate::escalation::case;
use crate::harness::{Harness, bearer, mask};

/// The accounts' fields the cases must leave as they were.
fn essentials(a: &org_api::Account) -> (String, String, String, i32, i32, i32) {
    (
        a.display_name.clone(),
        a.owner_user_id.clone(),
        a.home_organization_id.clone(),
        a.state,
        a.compliance,
        a.r#type,
    )
}

/// The role cases, in `org` whose OWNER is `owner`, by `members` (role and user id; OWNER and
/// ADMIN are skipped: they may do all of it).
pub async fn roles(
    h: &Harness,
    f: &mut Figures,
    org: &str,
    owner: &str,
    members: &[(OrgRole, String)],
) -> anyhow::Result<()> {
    let owner_token = h.user_token(owner)?;
    let members: Vec<&(OrgRole, String)> = members
        .iter()
        .filter(|(r, _)| ![OrgRole::Owner, OrgRole::Admin].contains(r))
        .collect();
    // One account granted to every member, one granted to none, one owned by each member.
    let shared = create(h, org, &owner_token, "escalation shared", "").await?;
    let hidden = create(h, org, &owner_token, "escalation hidden", "").await?;
    let mut owned = Vec::new();
    for (role, user) in &members {
        grant(h, &shared, org, user, &owner_token).await?;
        let name = format!("escalation owned by {}", role.as_str_name());
        owned.push(create(h, org, &owner_token, &name, user).await?);
    }
    let mut watched = vec![shared.clone(), hidden.clone()];
    watched.extend(owned.iter().cloned());
    let mut before = Vec::new();
    for id in &watched {
        before.push(essentials(&get(h, id, "", &owner_token).await?));
    }
    let defaults_before = compliance_defaults(h, org, &owner_token).await?;

    for ((role, user), own) in members.iter().zip(&owned) {
        let token = h.user_token(user)?;
        let name = role.as_str_name();
        let mut c = h.accounts();
        let r = c
            .create_account(bearer(
                org_api::CreateAccountRequest {
                    organization_id: org.into(),
                    account: Some(org_api::Account {
                        display_name: "escalated".into(),
                        owner_user_id: user.clone(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &token,
            ))
            .await;
        case(
            f,
            &format!("{name} CreateAccount"),
            &r,
            Code::PermissionDenied,
        );
        let r = c
            .update_compliance_defaults(bearer(
                org_api::UpdateComplianceDefaultsRequest {
                    organization_id: org.into(),
                    designation: ComplianceDesignation::Hipaa as i32,
                    etag: String::new(),
                },
                &token,
            ))
            .await;
        case(
            f,
            &format!("{name} UpdateComplianceDefaults"),
            &r,
            Code::PermissionDenied,
        );
        // Seen (granted or owned): PERMISSION_DENIED; not seen: NOT_FOUND.
        for (which, id, want) in [
            ("a granted account", &shared, Code::PermissionDenied),
            ("its own account", own, Code::PermissionDenied),
            ("an account it cannot see", &hidden, Code::NotFound),
        ] {
            for (path, value) in [("display_name", "renamed"), ("compliance", "")] {
                let r = c
                    .update_account(bearer(
                        org_api::UpdateAccountRequest {
                            account: Some(org_api::Account {
                                id: id.clone(),
                                display_name: value.into(),
                                compliance: ComplianceDesignation::Hipaa as i32,
                                ..Default::default()
                            }),
                            update_mask: mask(&[path]),
                            etag: String::new(),
                        },
                        &token,
                    ))
                    .await;
                case(
                    f,
                    &format!("{name} UpdateAccount [{path}] of {which}"),
                    &r,
                    want,
                );
            }
            let r = c
                .close_account(bearer(
                    org_api::CloseAccountRequest {
                        account_id: id.clone(),
                        organization_id: org.into(),
                        etag: String::new(),
                    },
                    &token,
                ))
                .await;
            case(f, &format!("{name} CloseAccount of {which}"), &r, want);
            let r = c
                .add_account_member(bearer(
                    org_api::AddAccountMemberRequest {
                        account_id: id.clone(),
                        organization_id: org.into(),
                        user_id: "user_esc_target".into(),
                    },
                    &token,
                ))
                .await;
            case(f, &format!("{name} AddAccountMember to {which}"), &r, want);
            if id != own {
                let r = c
                    .transfer_account_ownership(bearer(
                        org_api::TransferAccountOwnershipRequest {
                            account_id: id.clone(),
                            new_owner_user_id: user.clone(),
                            etag: String::new(),
                        },
                        &token,
                    ))
                    .await;
                case(
                    f,
                    &format!("{name} TransferAccountOwnership of {which} to itself"),
                    &r,
                    want,
                );
            }
        }
        // A grant of the hidden account to itself.
        let r = c
            .add_account_member(bearer(
                org_api::AddAccountMemberRequest {
                    account_id: hidden.clone(),
                    organization_id: org.into(),
                    user_id: user.clone(),
                },
                &token,
            ))
            .await;
        case(
            f,
            &format!("{name} AddAccountMember itself to an account it cannot see"),
            &r,
            Code::NotFound,
        );
        // Control: the owner of an account may open a subaccount under it (rule ACC-4).
        let r = c
            .create_subaccount(bearer(
                org_api::CreateSubaccountRequest {
                    parent_account_id: own.clone(),
                    subaccount: Some(org_api::Account {
                        display_name: format!("{name} own subaccount"),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &token,
            ))
            .await;
        case(
            f,
            &format!("{name} CreateSubaccount under its own account (allowed)"),
            &r,
            Code::Ok,
        );
    }
    // Nothing changed.
    for (id, was) in watched.iter().zip(&before) {
        let now = essentials(&get(h, id, "", &owner_token).await?);
        f.operations += 1;
        if &now != was {
            f.attacks_failed += 1;
            f.failures
                .push(format!("account {id} changed from {was:?} to {now:?}"));
        } else {
            f.attacks_passed += 1;
        }
    }
    let defaults_now = compliance_defaults(h, org, &owner_token).await?;
    f.operations += 1;
    if defaults_now != defaults_before {
        f.attacks_failed += 1;
        f.failures.push(format!(
            "compliance defaults changed from {defaults_before} to {defaults_now}"
        ));
    } else {
        f.attacks_passed += 1;
    }
    Ok(())
}

async fn compliance_defaults(h: &Harness, org: &str, token: &str) -> anyhow::Result<i32> {
    Ok(h.accounts()
        .get_compliance_defaults(bearer(
            org_api::GetComplianceDefaultsRequest {
                organization_id: org.into(),
            },
            token,
        ))
        .await?
        .into_inner()
        .defaults
        .unwrap_or_default()
        .designation)
}

/// UpdateAccount [display_name] with output-only fields (owner, home, type, state, parent,
/// compliance source) set beside it: the name changes, nothing else; and UpdateComplianceDefaults
/// (which has no mask) refuses an unspecified designation.
pub async fn output_only_ignored(
    h: &Harness,
    f: &mut Figures,
    org: &str,
    account: &str,
    owner: &str,
    other_member: &str,
) -> anyhow::Result<()> {
    let token = h.user_token(owner)?;
    let was = get(h, account, "", &token).await?;
    let r = h
        .accounts()
        .update_account(bearer(
            org_api::UpdateAccountRequest {
                account: Some(org_api::Account {
                    id: account.into(),
                    display_name: "renamed with extras".into(),
                    owner_user_id: other_member.into(),
                    home_organization_id: "org_elsewhere".into(),
                    r#type: AccountType::Independent as i32,
                    state: AccountState::Closed as i32,
                    parent_account_id: "acct_elsewhere".into(),
                    compliance_source: org_api::ComplianceSource::Explicit as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: String::new(),
            },
            &token,
        ))
        .await;
    case(
        f,
        "UpdateAccount [display_name] with owner/home/type/state/parent set alongside",
        &r,
        Code::Ok,
    );
    let now = get(h, account, "", &token).await?;
    f.operations += 1;
    let expected = org_api::Account {
        display_name: "renamed with extras".into(),
        ..was.clone()
    };
    if essentials(&now) == essentials(&expected)
        && now.parent_account_id == was.parent_account_id
        && now.compliance_source == was.compliance_source
    {
        f.attacks_passed += 1;
    } else {
        f.attacks_failed += 1;
        f.failures.push(format!(
            "UpdateAccount wrote output-only fields: {was:?} → {now:?}"
        ));
    }
    let r = h
        .accounts()
        .update_compliance_defaults(bearer(
            org_api::UpdateComplianceDefaultsRequest {
                organization_id: org.into(),
                designation: ComplianceDesignation::Unspecified as i32,
                etag: String::new(),
            },
            &token,
        ))
        .await;
    case(
        f,
        "UpdateComplianceDefaults with an unspecified designation",
        &r,
        Code::InvalidArgument,
    );
    Ok(())
}

/// Two pages' worth of rows for each account list of `org` (page size 1): two accounts, two
/// subaccounts under the first and two grants of it (to `grantees`, members of `org`). Answers
/// the first account, the parent the account lists' page-token cases name.
pub async fn page_rows(
    h: &Harness,
    org: &str,
    owner: &str,
    grantees: [&str; 2],
) -> anyhow::Result<String> {
    let token = h.user_token(owner)?;
    let account = create(h, org, &token, "page account 0", "").await?;
    create(h, org, &token, "page account 1", "").await?;
    for i in 0..2 {
        create_subaccount(h, &account, &token, &format!("page subaccount {i}")).await?;
    }
    for user in grantees {
        grant(h, &account, org, user, &token).await?;
    }
    Ok(account)
}
