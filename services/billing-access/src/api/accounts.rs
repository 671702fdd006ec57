//! GetBillingAccount, UpdateBillingAccount and ListBillingAccounts (rules BILL-2, BILL-6); the
//! billing accounts' proto form.

use orgplane_platform::Call;
use orgplane_platform::audit::{Attempt, AuditImage, proto_json};
use orgplane_platform::convert::{etag, timestamp_ms};
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::pagination::page_size;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::billing::v1::*;
use tonic::{Request, Response, Status};

use crate::app::Billing;
use crate::app::account_billing::{AccountsQuery, UpdateAccountBilling};
use crate::app::accounts::UpdateAccount;
use crate::domain::accounts::{
    AccountChanges, MAX_SEATS, MUTABLE_PATHS, RESOURCE, is_email, settable_plan, valid_seats,
};
use crate::domain::{Error, Result};
use crate::store::accounts::AccountBilling;
use crate::store::entity::account;

/// The API form of an account (also its audit image).
pub fn to_proto(m: &account::Model) -> BillingAccount {
    BillingAccount {
        organization_id: m.organization_id.clone(),
        plan: m.plan,
        billing_email: m.billing_email.clone(),
        seats: m.seats,
        create_time: Some(timestamp_ms(m.create_time_ms)),
        update_time: Some(timestamp_ms(m.update_time_ms)),
        etag: etag(m.version),
        ..Default::default()
    }
}

impl AuditImage for account::Model {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&to_proto(self))
    }
}

/// The API form of a managed account's billing account (also its audit image).
pub fn account_billing_to_proto(m: &AccountBilling) -> BillingAccount {
    let (a, b) = (&m.account, &m.billing);
    BillingAccount {
        organization_id: a.organization_id.clone(),
        plan: b.plan,
        billing_email: b.billing_email.clone(),
        seats: b.seats,
        create_time: Some(timestamp_ms(b.create_time_ms)),
        update_time: Some(timestamp_ms(b.update_time_ms)),
        etag: etag(b.version),
        account_id: a.account_id.clone(),
        account_display_name: a.display_name.clone(),
        account_state: a.state,
    }
}

impl AuditImage for AccountBilling {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&account_billing_to_proto(self))
    }
}

/// ListBillingAccounts (rule BILL-6).
pub async fn list(
    app: &Billing,
    request: Request<ListBillingAccountsRequest>,
) -> Result<Response<ListBillingAccountsResponse>, Status> {
    let call = Call::of(&request)?;
    let body = request.into_inner();
    app.admit(&call, &body.organization_id, OrgAction::ManageBilling)
        .await?;
    let query = AccountsQuery {
        page_size: page_size(body.page_size)?,
        organization_id: body.organization_id,
        page_token: body.page_token,
        show_closed: body.show_closed,
    };
    let (rows, next_page_token) = app.account_billings(query).await?;
    Ok(Response::new(ListBillingAccountsResponse {
        billing_accounts: rows.iter().map(account_billing_to_proto).collect(),
        next_page_token,
    }))
}

/// Validates `mask` against `account` and returns the changes (INVALID_ARGUMENT with a field
/// violation per problem).
pub fn changes_from_mask(account: &BillingAccount, mask: &[String]) -> Result<AccountChanges> {
    if mask.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            format!("name at least one of {MUTABLE_PATHS}"),
        ));
    }
    let mut changes = AccountChanges::default();
    let mut violations: Vec<(String, String)> = Vec::new();
    for path in mask {
        match path.as_str() {
            "plan" => match settable_plan(account.plan) {
                Some(plan) => changes.plan = Some(plan),
                None => violations.push((
                    "billing_account.plan".into(),
                    "must be FREE, TEAM or ENTERPRISE".into(),
                )),
            },
            "billing_email" => {
                let email = account.billing_email.trim();
                if is_email(email) {
                    changes.billing_email = Some(email.to_owned());
                } else {
                    violations.push((
                        "billing_account.billing_email".into(),
                        "not an email address".into(),
                    ));
                }
            }
            "seats" => {
                if valid_seats(account.seats) {
                    changes.seats = Some(account.seats);
                } else {
                    violations.push((
                        "billing_account.seats".into(),
                        format!("must be between 1 and {MAX_SEATS}"),
                    ));
                }
            }
            other => violations.push((
                "update_mask".into(),
                format!("{other:?} is not a mutable path ({MUTABLE_PATHS})"),
            )),
        }
    }
    if violations.is_empty() {
        Ok(changes)
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

/// GetBillingAccount.
pub async fn get(
    app: &Billing,
    request: Request<GetBillingAccountRequest>,
) -> Result<Response<GetBillingAccountResponse>, Status> {
    let call = Call::of(&request)?;
    let org = request.into_inner().organization_id;
    app.admit(&call, &org, OrgAction::ManageBilling).await?;
    let account = app.account(&org).await?;
    Ok(Response::new(GetBillingAccountResponse {
        billing_account: Some(to_proto(&account)),
    }))
}

/// UpdateBillingAccount: a refusal is audited as OUTCOME_FAILURE in the target organization
/// (ORG-10).
pub async fn update(
    app: &Billing,
    request: Request<UpdateBillingAccountRequest>,
) -> Result<Response<UpdateBillingAccountResponse>, Status> {
    let call = Call::of(&request)?;
    call.principal.require_authenticated()?;
    let body = request.into_inner();
    let (org, account_id) = body
        .billing_account
        .as_ref()
        .map(|a| (a.organization_id.clone(), a.account_id.clone()))
        .unwrap_or_default();
    let result = update_account(app, &call, body).await;
    let target = if account_id.is_empty() {
        &org
    } else {
        &account_id
    };
    let attempt = Attempt::new(org.clone(), "billing_account.update", RESOURCE, target);
    let updated = app.audited(&call, attempt, result).await?;
    Ok(Response::new(UpdateBillingAccountResponse {
        billing_account: Some(updated),
    }))
}

/// UpdateBillingAccount after authentication: decode, admit, validate, write (the
/// organization's billing account, or with `account_id` a managed account's).
async fn update_account(
    app: &Billing,
    call: &Call,
    body: UpdateBillingAccountRequest,
) -> ApiResult<BillingAccount> {
    let Some(account) = body.billing_account else {
        return Err(ApiError::invalid_argument("billing_account", "required"));
    };
    let org = account.organization_id.clone();
    if org.is_empty() {
        return Err(ApiError::invalid_argument(
            "billing_account.organization_id",
            "required",
        ));
    }
    app.admit(call, &org, OrgAction::ManageBilling).await?;
    let mask = body.update_mask.map(|m| m.paths).unwrap_or_default();
    let changes = changes_from_mask(&account, &mask)?;
    if !account.account_id.is_empty() {
        let update = UpdateAccountBilling {
            organization_id: org,
            account_id: account.account_id,
            changes,
            etag: body.etag,
        };
        let updated = app.update_account_billing(call, update).await?;
        return Ok(account_billing_to_proto(&updated));
    }
    let update = UpdateAccount {
        organization_id: org,
        changes,
        etag: body.etag,
    };
    Ok(to_proto(&app.update_account(call, update).await?))
}
