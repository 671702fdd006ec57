//! ListBillingMembers and CheckBillingAccess (rule BILL-1).

use orgplane_platform::Call;
use orgplane_platform::error::ApiError;
use orgplane_platform::pagination::page_size;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::billing::v1::check_billing_access_request::Subject as ProtoSubject;
use orgplane_proto::billing::v1::*;
use orgplane_proto::organization::v1::OrgRole;
use tonic::{Request, Response, Status};

use crate::app::Billing;
use crate::app::access::{AccessCheck, MembersQuery};
use crate::domain::access::Subject;

/// ListBillingMembers: OWNER, ADMIN and BILLING members by user id, paginated.
pub async fn list_billing_members(
    app: &Billing,
    request: Request<ListBillingMembersRequest>,
) -> Result<Response<ListBillingMembersResponse>, Status> {
    let call = Call::of(&request)?;
    let body = request.into_inner();
    app.admit(&call, &body.organization_id, OrgAction::ManageBilling)
        .await?;
    let query = MembersQuery {
        page_size: page_size(body.page_size)?,
        organization_id: body.organization_id,
        page_token: body.page_token,
    };
    let organization_id = query.organization_id.clone();
    let (members, next_page_token) = app.billing_members(query).await?;
    let billing_members = members
        .into_iter()
        .map(|m| BillingMember {
            organization_id: organization_id.clone(),
            user_id: m.user_id,
            email: m.email,
            display_name: m.display_name,
            org_role: m.role as i32,
        })
        .collect();
    Ok(Response::new(ListBillingMembersResponse {
        billing_members,
        next_page_token,
    }))
}

/// CheckBillingAccess: answers, not errors; users and API keys only about themselves.
pub async fn check_billing_access(
    app: &Billing,
    request: Request<CheckBillingAccessRequest>,
) -> Result<Response<CheckBillingAccessResponse>, Status> {
    let call = Call::of(&request)?;
    call.principal.require_authenticated()?;
    let body = request.into_inner();
    if body.organization_id.is_empty() {
        return Err(ApiError::invalid_argument("organization_id", "required").into());
    }
    let subject = match body.subject {
        Some(ProtoSubject::UserId(u)) if !u.is_empty() => Subject::User(u),
        Some(ProtoSubject::ApiKeyId(k)) if !k.is_empty() => Subject::ApiKey(k),
        _ => {
            return Err(ApiError::invalid_argument("subject", "set user_id or api_key_id").into());
        }
    };
    let answer = app
        .check_access(
            &call,
            AccessCheck {
                organization_id: body.organization_id,
                subject,
                min_organization_revision: body.min_organization_revision,
            },
        )
        .await?;
    Ok(Response::new(CheckBillingAccessResponse {
        allowed: answer.allowed,
        org_role: answer.role.unwrap_or(OrgRole::Unspecified) as i32,
        organization_revision: answer.revision,
    }))
}
