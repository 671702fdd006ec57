//! `orgctl accounts …`: an organization's accounts, subaccounts, their members and the
//! compliance default (rules ACC-1 … ACC-5), on AccountService.

use orgplane_proto::organization::v1 as pb;

use crate::app::{App, note_next_page, paginate};
use crate::cli::{AccountMembersCommand, AccountsCommand, ComplianceCommand, SubaccountsCommand};
use crate::errors::Failure;
use crate::output::{self, Column, col, enum_col, proto_json};

const ACCOUNT_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("NAME", "displayName"),
    enum_col("TYPE", "type", "ACCOUNT_TYPE_"),
    enum_col("STATE", "state", "ACCOUNT_STATE_"),
    col("OWNER", "ownerUserId"),
    enum_col("COMPLIANCE", "compliance", "COMPLIANCE_DESIGNATION_"),
    enum_col("FROM", "complianceSource", "COMPLIANCE_SOURCE_"),
];

const MEMBER_COLUMNS: &[Column] = &[
    col("USER", "userId"),
    col("ACCOUNT", "accountId"),
    col("GRANTED", "createTime"),
];

/// Runs `orgctl accounts …`.
pub async fn run(app: &mut App, command: AccountsCommand) -> Result<(), Failure> {
    let api = app.api().await?;
    let mut client = api.accounts();
    match command {
        AccountsCommand::Create { name, owner, org } => {
            let organization_id = app.org(&org)?;
            let answer = client
                .create_account(api.request(pb::CreateAccountRequest {
                    organization_id,
                    account: Some(pb::Account {
                        display_name: name,
                        owner_user_id: owner.unwrap_or_default(),
                        ..Default::default()
                    }),
                    request_id: uuid::Uuid::new_v4().to_string(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "account");
        }
        AccountsCommand::Get {
            account_id,
            through,
        } => {
            let answer = client
                .get_account(api.request(pb::GetAccountRequest {
                    account_id,
                    organization_id: through.unwrap_or_default(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "account");
        }
        AccountsCommand::List {
            org,
            account_type,
            state,
            show_closed,
            page,
        } => {
            let organization_id = app.org(&org)?;
            let (items, next) = paginate(&page, |page_token, page_size| {
                let mut client = client.clone();
                let request = api.request(pb::ListAccountsRequest {
                    organization_id: organization_id.clone(),
                    r#type: account_type.map(|t| t.number()).unwrap_or_default(),
                    state: state.map(|s| s.number()).unwrap_or_default(),
                    show_closed,
                    page_size,
                    page_token,
                });
                async move {
                    let r = client.list_accounts(request).await?.into_inner();
                    Ok((r.accounts, r.next_page_token))
                }
            })
            .await?;
            let items: Vec<_> = items.iter().map(proto_json).collect();
            output::print_list(app.format, &items, ACCOUNT_COLUMNS);
            note_next_page(&next);
        }
        AccountsCommand::Update {
            account_id,
            name,
            compliance,
        } => {
            let mut account = pb::Account {
                id: account_id,
                ..Default::default()
            };
            let mut paths = Vec::new();
            if let Some(name) = name {
                account.display_name = name;
                paths.push("display_name".to_owned());
            }
            if let Some(c) = compliance {
                account.compliance = c.number();
                paths.push("compliance".to_owned());
            }
            if paths.is_empty() {
                return Err(Failure::usage(
                    "nothing to change: pass --name or --compliance",
                ));
            }
            let answer = client
                .update_account(api.request(pb::UpdateAccountRequest {
                    account: Some(account),
                    update_mask: Some(prost_types::FieldMask { paths }),
                    etag: String::new(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "account");
        }
        AccountsCommand::Close {
            account_id,
            through,
        } => {
            let answer = client
                .close_account(api.request(pb::CloseAccountRequest {
                    account_id,
                    organization_id: through.unwrap_or_default(),
                    etag: String::new(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "account");
        }
        AccountsCommand::Import {
            account_id,
            import_type,
            org,
        } => {
            let organization_id = app.org(&org)?;
            let answer = client
                .import_account(api.request(pb::ImportAccountRequest {
                    organization_id,
                    account_id,
                    r#type: import_type.number(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "account");
        }
        AccountsCommand::Accept {
            account_id,
            organization_id,
        } => {
            let answer = client
                .accept_account_import(api.request(pb::AcceptAccountImportRequest {
                    account_id,
                    organization_id,
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "account");
        }
        AccountsCommand::Transfer {
            account_id,
            new_owner_user_id,
        } => {
            let answer = client
                .transfer_account_ownership(api.request(pb::TransferAccountOwnershipRequest {
                    account_id,
                    new_owner_user_id,
                    etag: String::new(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "account");
        }
        AccountsCommand::Subaccounts(c) => subaccounts(app, &api, c).await?,
        AccountsCommand::Members(c) => members(app, &api, c).await?,
        AccountsCommand::Compliance(c) => compliance(app, &api, c).await?,
    }
    Ok(())
}

async fn subaccounts(
    app: &mut App,
    api: &crate::conn::Api,
    command: SubaccountsCommand,
) -> Result<(), Failure> {
    let client = api.accounts();
    match command {
        SubaccountsCommand::Create {
            parent_account_id,
            name,
        } => {
            let answer = client
                .clone()
                .create_subaccount(api.request(pb::CreateSubaccountRequest {
                    parent_account_id,
                    subaccount: Some(pb::Account {
                        display_name: name,
                        ..Default::default()
                    }),
                    request_id: uuid::Uuid::new_v4().to_string(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "subaccount");
        }
        SubaccountsCommand::List {
            parent_account_id,
            show_closed,
            page,
        } => {
            let (items, next) = paginate(&page, |page_token, page_size| {
                let mut client = client.clone();
                let request = api.request(pb::ListSubaccountsRequest {
                    parent_account_id: parent_account_id.clone(),
                    show_closed,
                    page_size,
                    page_token,
                });
                async move {
                    let r = client.list_subaccounts(request).await?.into_inner();
                    Ok((r.subaccounts, r.next_page_token))
                }
            })
            .await?;
            let items: Vec<_> = items.iter().map(proto_json).collect();
            output::print_list(app.format, &items, ACCOUNT_COLUMNS);
            note_next_page(&next);
        }
    }
    Ok(())
}

async fn members(
    app: &mut App,
    api: &crate::conn::Api,
    command: AccountMembersCommand,
) -> Result<(), Failure> {
    let client = api.accounts();
    match command {
        AccountMembersCommand::Add {
            account_id,
            user_id,
            org,
        } => {
            let organization_id = app.org(&org)?;
            let answer = client
                .clone()
                .add_account_member(api.request(pb::AddAccountMemberRequest {
                    account_id,
                    organization_id,
                    user_id,
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "member");
        }
        AccountMembersCommand::List {
            account_id,
            org,
            page,
        } => {
            let organization_id = app.org(&org)?;
            let (items, next) = paginate(&page, |page_token, page_size| {
                let mut client = client.clone();
                let request = api.request(pb::ListAccountMembersRequest {
                    account_id: account_id.clone(),
                    organization_id: organization_id.clone(),
                    page_size,
                    page_token,
                });
                async move {
                    let r = client.list_account_members(request).await?.into_inner();
                    Ok((r.members, r.next_page_token))
                }
            })
            .await?;
            let items: Vec<_> = items.iter().map(proto_json).collect();
            output::print_list(app.format, &items, MEMBER_COLUMNS);
            note_next_page(&next);
        }
        AccountMembersCommand::Remove {
            account_id,
            user_id,
            org,
        } => {
            let organization_id = app.org(&org)?;
            client
                .clone()
                .remove_account_member(api.request(pb::RemoveAccountMemberRequest {
                    account_id: account_id.clone(),
                    organization_id,
                    user_id: user_id.clone(),
                }))
                .await?;
            if app.format == output::Format::Table {
                eprintln!("{user_id} no longer has access to {account_id}");
            }
        }
    }
    Ok(())
}

async fn compliance(
    app: &mut App,
    api: &crate::conn::Api,
    command: ComplianceCommand,
) -> Result<(), Failure> {
    let mut client = api.accounts();
    let answer = match command {
        ComplianceCommand::Get { org } => {
            let organization_id = app.org(&org)?;
            let r = client
                .get_compliance_defaults(
                    api.request(pb::GetComplianceDefaultsRequest { organization_id }),
                )
                .await?
                .into_inner();
            proto_json(&r)
        }
        ComplianceCommand::Set { designation, org } => {
            let organization_id = app.org(&org)?;
            let r = client
                .update_compliance_defaults(api.request(pb::UpdateComplianceDefaultsRequest {
                    organization_id,
                    designation: designation.number(),
                    etag: String::new(),
                }))
                .await?
                .into_inner();
            proto_json(&r)
        }
    };
    output::print_one(app.format, &answer, "defaults");
    Ok(())
}
