//! GetBillingAccount and UpdateBillingAccount (rule BILL-2); the account's proto form.

use orgplane_platform::Call;
use orgplane_platform::audit::{Attempt, AuditImage, proto_json};
use orgplane_platform::convert::{etag, timestamp_ms};
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::roles::OrgAction;
use orgplane_proto::billing::v1::*;
use tonic::{Request, Response, Status};

use crate::app::Billing;
use crate::app::accounts::UpdateAccount;
use crate::domain::accounts::{
    AccountChanges, MAX_SEATS, MUTABLE_PATHS, RESOURCE, is_email, settable_plan, valid_seats,
};
use crate::domain::{Error, Result};
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
    }
}

impl AuditImage for account::Model {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&to_proto(self))
    }
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
    let org = body
        .billing_account
        .as_ref()
        .map(|a| a.organization_id.clone())
        .unwrap_or_default();
    let result = update_account(app, &call, body).await;
    let attempt = Attempt::new(org.clone(), "billing_account.update", RESOURCE, &org);
    let updated = app.audited(&call, attempt, result).await?;
    Ok(Response::new(UpdateBillingAccountResponse {
        billing_account: Some(to_proto(&updated)),
    }))
}

/// UpdateBillingAccount after authentication: decode, admit, validate, write.
async fn update_account(
    app: &Billing,
    call: &Call,
    body: UpdateBillingAccountRequest,
) -> ApiResult<account::Model> {
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
    let update = UpdateAccount {
        organization_id: org,
        changes,
        etag: body.etag,
    };
    Ok(app.update_account(call, update).await?)
}
