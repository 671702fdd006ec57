//! Accounts (`orgplane.organization.v1.AccountService`, rules ACC-1 … ACC-5) in the security
//! suites: what every tenant of the cross-tenant matrix holds (an account, a subaccount under it
//! and a member grant, [`seed`]), the account-specific attacks of that matrix
//! ([`cross_tenant`]: accounts named through the attacker's own organization or none;
//! `imports` and `independent`: imports of another tenant's account, pending and accepted), the
//! role escalation of accounts and their rows for the page-token cases ([`escalation`]), and the
//! mutations the audit suite runs ([`audit`]).

pub mod audit;
pub mod cross_tenant;
pub mod escalation;
mod imports;
mod independent;

use orgplane_proto::organization::v1 as org_api;

use crate::harness::{Harness, bearer};
use crate::security::Target;

pub(crate) use cross_tenant::cross_tenant;
pub(crate) use imports::verified_domain;

/// The service, as its RPCs' paths name it.
pub const SERVICE: &str = "orgplane.organization.v1.AccountService";

/// What [`seed`] created in one tenant.
#[derive(Debug, Clone, Default)]
pub struct Seeded {
    /// The account (`acct_…`), owned by the tenant's OWNER.
    pub account: String,
    /// A subaccount under it.
    pub subaccount: String,
    /// The account's display name (unique, so that a leak of it is found in any answer; the
    /// subaccount's name contains it).
    pub name: String,
}

/// The raw-call target of AccountService method `method`.
pub fn target(method: &str) -> Target {
    Target {
        path: format!("/{SERVICE}/{method}"),
        service: "organization",
        id_fields: Vec::new(),
    }
}

/// Creates an account named `display_name` in `org` as the holder of `token` (owned by
/// `owner_user_id`, or by the caller when empty); answers its id.
pub async fn create(
    h: &Harness,
    org: &str,
    token: &str,
    display_name: &str,
    owner_user_id: &str,
) -> anyhow::Result<String> {
    let created = h
        .accounts()
        .create_account(bearer(
            org_api::CreateAccountRequest {
                organization_id: org.into(),
                account: Some(org_api::Account {
                    display_name: display_name.into(),
                    owner_user_id: owner_user_id.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .map_err(|s| anyhow::anyhow!("CreateAccount {display_name:?} in {org}: {s:?}"))?;
    Ok(created.into_inner().account.unwrap_or_default().id)
}

/// Creates a subaccount named `display_name` under `parent` as the holder of `token`.
pub async fn create_subaccount(
    h: &Harness,
    parent: &str,
    token: &str,
    display_name: &str,
) -> anyhow::Result<String> {
    let created = h
        .accounts()
        .create_subaccount(bearer(
            org_api::CreateSubaccountRequest {
                parent_account_id: parent.into(),
                subaccount: Some(org_api::Account {
                    display_name: display_name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .map_err(|s| anyhow::anyhow!("CreateSubaccount under {parent}: {s:?}"))?;
    Ok(created.into_inner().subaccount.unwrap_or_default().id)
}

/// Grants `user` access to `account` through `org`, as the holder of `token`.
pub async fn grant(
    h: &Harness,
    account: &str,
    org: &str,
    user: &str,
    token: &str,
) -> anyhow::Result<()> {
    h.accounts()
        .add_account_member(bearer(
            org_api::AddAccountMemberRequest {
                account_id: account.into(),
                organization_id: org.into(),
                user_id: user.into(),
            },
            token,
        ))
        .await
        .map_err(|s| anyhow::anyhow!("AddAccountMember {user} to {account}: {s:?}"))?;
    Ok(())
}

/// An account as `token`'s holder reads it through `org` (empty: its home).
pub async fn get(
    h: &Harness,
    account: &str,
    org: &str,
    token: &str,
) -> Result<org_api::Account, tonic::Status> {
    Ok(h.accounts()
        .get_account(bearer(
            org_api::GetAccountRequest {
                account_id: account.into(),
                organization_id: org.into(),
            },
            token,
        ))
        .await?
        .into_inner()
        .account
        .unwrap_or_default())
}

/// Seeds tenant `name` (organization `org`, OWNER's token `owner_token`): an account owned by
/// the OWNER, a subaccount under it, and a grant of the account to `member`.
pub async fn seed(
    h: &Harness,
    name: &str,
    org: &str,
    owner_token: &str,
    member: &str,
) -> anyhow::Result<Seeded> {
    let display = format!("Account of {name} {}", uuid::Uuid::new_v4().simple());
    let account = create(h, org, owner_token, &display, "").await?;
    let subaccount =
        create_subaccount(h, &account, owner_token, &format!("{display} (sub)")).await?;
    grant(h, &account, org, member, owner_token).await?;
    Ok(Seeded {
        account,
        subaccount,
        name: display,
    })
}

/// Whether the request of AccountService method `input` names an existing account: an
/// `account_id` or `parent_account_id` field, or a nested `Account` without an
/// `organization_id` beside it (CreateAccount's nested account is a new one).
pub fn names_an_account(protos: &crate::escalation::Protos, input: &str) -> bool {
    let in_org = protos.field(input, "organization_id").is_some();
    protos.messages.get(input).is_some_and(|m| {
        m.field.iter().any(|f| {
            matches!(f.name(), "account_id" | "parent_account_id")
                || (!in_org && f.type_name() == ".orgplane.organization.v1.Account")
        })
    })
}
