//! Handlers of the operator RPCs (rule ORG-13): CreateChildOrganization, ListChildOrganizations.

use orgplane_platform::Call;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response};

use super::convert::{invite_view, organization};
use super::organizations::fields;
use super::{Reply, wire};
use crate::app::hierarchy::{CreateChildOrganization, ListChildOrganizations};
use crate::app::organizations::ListOrganizations;
use crate::app::{App, Attempt, Scope};

pub(super) async fn create_child(
    app: &App,
    request: Request<CreateChildOrganizationRequest>,
) -> Reply<CreateChildOrganizationResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let attempt = Attempt::new(
        Scope::Organization(req.operator_organization_id.clone()),
        "child_organization.create",
        "organization",
        "",
    );
    let cmd = CreateChildOrganization {
        operator_organization_id: req.operator_organization_id,
        organization: fields(req.organization.unwrap_or_default()),
        owner_email: req.owner_email,
        request_id: req.request_id,
    };
    let result = wire(app.create_child_organization(&call, cmd).await);
    let created = app.audited(&call, attempt, result).await?;
    Ok(Response::new(CreateChildOrganizationResponse {
        organization: Some(organization(&created.organization)),
        owner_invite: Some(invite_view(&created.owner_invite)),
        revision: created.revision,
    }))
}

pub(super) async fn list_children(
    app: &App,
    request: Request<ListChildOrganizationsRequest>,
) -> Reply<ListChildOrganizationsResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let cmd = ListChildOrganizations {
        operator_organization_id: req.operator_organization_id,
        filters: ListOrganizations {
            page_size: req.page_size,
            page_token: req.page_token,
            name_contains: req.name_contains,
            state: req.state,
            org_type: req.r#type,
            order_by: req.order_by,
            show_deleted: req.show_deleted,
        },
    };
    let page = wire(app.list_child_organizations(&call, cmd).await)?;
    Ok(Response::new(ListChildOrganizationsResponse {
        organizations: page.items.iter().map(organization).collect(),
        next_page_token: page.next_page_token,
    }))
}
