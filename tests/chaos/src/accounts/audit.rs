//! The AccountService mutations of the audit suite ([`crate::audit`]): each run once
//! successfully with its own `x-request-id`, so that the suite can count its records.
//! ImportAccount imports (INDEPENDENT) an account of a second organization into the audited one,
//! and its owner accepts: the acceptance is recorded in both organizations.

use orgplane_proto::organization::v1 as org_api;
use tonic::{Response, Status};

use crate::harness::{Harness, bearer_with_id, mask};

/// One call: (method, request id, outcome).
pub type Done = (&'static str, String, Result<Response<()>, Status>);

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn unit<T>(r: Result<Response<T>, Status>) -> Result<Response<()>, Status> {
    r.map(|resp| resp.map(|_| ()))
}

/// Runs every AccountService mutation in `org` as its OWNER (`owner_token`); `admin` and
/// `member` are members of `org` (the new owner of an account, and a grantee).
pub async fn mutations(
    h: &Harness,
    org: &str,
    owner_token: &str,
    admin: &str,
    member: &str,
) -> anyhow::Result<Vec<Done>> {
    let mut done: Vec<Done> = Vec::new();
    let mut c = h.accounts();
    let id = rid();
    let r = c
        .update_compliance_defaults(bearer_with_id(
            org_api::UpdateComplianceDefaultsRequest {
                organization_id: org.into(),
                designation: org_api::ComplianceDesignation::Hipaa as i32,
                etag: String::new(),
            },
            owner_token,
            &id,
        ))
        .await;
    done.push(("UpdateComplianceDefaults", id, unit(r)));
    let id = rid();
    let r = c
        .create_account(bearer_with_id(
            org_api::CreateAccountRequest {
                organization_id: org.into(),
                account: Some(org_api::Account {
                    display_name: crate::audit::HOSTILE.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            owner_token,
            &id,
        ))
        .await;
    let account = r
        .as_ref()
        .ok()
        .and_then(|x| x.get_ref().account.clone())
        .unwrap_or_default()
        .id;
    done.push(("CreateAccount", id, unit(r)));
    let id = rid();
    let r = c
        .update_account(bearer_with_id(
            org_api::UpdateAccountRequest {
                account: Some(org_api::Account {
                    id: account.clone(),
                    display_name: format!("{} renamed", crate::audit::HOSTILE),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: String::new(),
            },
            owner_token,
            &id,
        ))
        .await;
    done.push(("UpdateAccount", id, unit(r)));
    let id = rid();
    let r = c
        .create_subaccount(bearer_with_id(
            org_api::CreateSubaccountRequest {
                parent_account_id: account.clone(),
                subaccount: Some(org_api::Account {
                    display_name: "audited subaccount".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            owner_token,
            &id,
        ))
        .await;
    done.push(("CreateSubaccount", id, unit(r)));
    let id = rid();
    let r = c
        .add_account_member(bearer_with_id(
            org_api::AddAccountMemberRequest {
                account_id: account.clone(),
                organization_id: org.into(),
                user_id: member.into(),
            },
            owner_token,
            &id,
        ))
        .await;
    done.push(("AddAccountMember", id, unit(r)));
    let id = rid();
    let r = c
        .remove_account_member(bearer_with_id(
            org_api::RemoveAccountMemberRequest {
                account_id: account.clone(),
                organization_id: org.into(),
                user_id: member.into(),
            },
            owner_token,
            &id,
        ))
        .await;
    done.push(("RemoveAccountMember", id, unit(r)));
    let id = rid();
    let r = c
        .transfer_account_ownership(bearer_with_id(
            org_api::TransferAccountOwnershipRequest {
                account_id: account.clone(),
                new_owner_user_id: admin.into(),
                etag: String::new(),
            },
            owner_token,
            &id,
        ))
        .await;
    done.push(("TransferAccountOwnership", id, unit(r)));
    // A second account, without subaccounts, to close.
    let closing = super::create(h, org, owner_token, "audited closing", "").await?;
    let id = rid();
    let r = c
        .close_account(bearer_with_id(
            org_api::CloseAccountRequest {
                account_id: closing,
                organization_id: org.into(),
                etag: String::new(),
            },
            owner_token,
            &id,
        ))
        .await;
    done.push(("CloseAccount", id, unit(r)));
    // An account of another organization, imported INDEPENDENT here and accepted by its owner.
    let home_owner = "user_audit_account_home";
    let (home, _) = h.seed_org(home_owner).await?;
    let home_token = h.user_token(home_owner)?;
    let foreign = super::create(h, &home, &home_token, "audited import", "").await?;
    let id = rid();
    let r = c
        .import_account(bearer_with_id(
            org_api::ImportAccountRequest {
                organization_id: org.into(),
                account_id: foreign.clone(),
                r#type: org_api::AccountType::Independent as i32,
            },
            owner_token,
            &id,
        ))
        .await;
    done.push(("ImportAccount", id, unit(r)));
    let id = rid();
    let r = c
        .accept_account_import(bearer_with_id(
            org_api::AcceptAccountImportRequest {
                account_id: foreign,
                organization_id: org.into(),
            },
            &home_token,
            &id,
        ))
        .await;
    done.push(("AcceptAccountImport", id, unit(r)));
    Ok(done)
}
