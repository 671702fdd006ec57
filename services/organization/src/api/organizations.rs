//! Handlers of the organization RPCs (ORG-1, ORG-3, ORG-7, ORG-8, ORG-11) and of
//! ListAuditEvents (ORG-10).

use orgplane_platform::Call;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response};

use super::convert::organization;
use super::{Reply, paths, wire};
use crate::app::audit_log::ListAuditEvents;
use crate::app::lifecycle::DeleteOrganization;
use crate::app::organizations::{
    CreateOrganization, ListOrganizations, OrganizationFields, UpdateOrganization,
};
use crate::app::{App, Attempt, Scope};

/// The editable fields of a requested organization.
pub(super) fn fields(o: Organization) -> OrganizationFields {
    OrganizationFields {
        id: o.id,
        name: o.name,
        org_type: o.r#type,
        primary_email: o.primary_email,
        kind: o.kind,
    }
}

pub(super) async fn create(
    app: &App,
    request: Request<CreateOrganizationRequest>,
) -> Reply<CreateOrganizationResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let cmd = CreateOrganization {
        organization: fields(req.organization.unwrap_or_default()),
        request_id: req.request_id,
    };
    let created = wire(app.create_organization(&call, cmd).await)?;
    Ok(Response::new(CreateOrganizationResponse {
        organization: Some(organization(&created.value)),
        revision: created.revision,
    }))
}

pub(super) async fn get(
    app: &App,
    request: Request<GetOrganizationRequest>,
) -> Reply<GetOrganizationResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let org = wire(app.get_organization(&call, &req.organization_id).await)?;
    Ok(Response::new(GetOrganizationResponse {
        organization: Some(organization(&org)),
    }))
}

pub(super) async fn get_mine(
    app: &App,
    request: Request<GetMyOrganizationRequest>,
) -> Reply<GetMyOrganizationResponse> {
    let call = Call::of(&request)?;
    let org = wire(app.get_my_organization(&call).await)?;
    Ok(Response::new(GetMyOrganizationResponse {
        organization: Some(organization(&org)),
    }))
}

pub(super) async fn list(
    app: &App,
    request: Request<ListOrganizationsRequest>,
) -> Reply<ListOrganizationsResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let cmd = ListOrganizations {
        page_size: req.page_size,
        page_token: req.page_token,
        name_contains: req.name_contains,
        state: req.state,
        org_type: req.r#type,
        order_by: req.order_by,
        show_deleted: req.show_deleted,
    };
    let page = wire(app.list_organizations(&call, cmd).await)?;
    Ok(Response::new(ListOrganizationsResponse {
        organizations: page.items.iter().map(organization).collect(),
        next_page_token: page.next_page_token,
    }))
}

pub(super) async fn update(
    app: &App,
    request: Request<UpdateOrganizationRequest>,
) -> Reply<UpdateOrganizationResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let id = req
        .organization
        .as_ref()
        .map(|o| o.id.clone())
        .unwrap_or_default();
    let attempt = Attempt::new(
        Scope::Organization(id.clone()),
        "organization.update",
        "organization",
        &id,
    );
    let cmd = UpdateOrganization {
        organization: req.organization.map(fields),
        paths: paths(req.update_mask),
        etag: req.etag,
    };
    let result = wire(app.update_organization(&call, cmd).await);
    let updated = app.audited(&call, attempt, result).await?;
    Ok(Response::new(UpdateOrganizationResponse {
        organization: Some(organization(&updated.value)),
        revision: updated.revision,
    }))
}

pub(super) async fn delete(
    app: &App,
    request: Request<DeleteOrganizationRequest>,
) -> Reply<DeleteOrganizationResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let attempt = Attempt::new(
        Scope::Organization(req.organization_id.clone()),
        "organization.delete",
        "organization",
        &req.organization_id,
    );
    let cmd = DeleteOrganization {
        organization_id: req.organization_id,
        confirm_name: req.confirm_name,
        etag: req.etag,
    };
    let result = wire(app.delete_organization(&call, cmd).await);
    let deleted = app.audited(&call, attempt, result).await?;
    Ok(Response::new(DeleteOrganizationResponse {
        organization: Some(organization(&deleted.value)),
        revision: deleted.revision,
    }))
}

pub(super) async fn undelete(
    app: &App,
    request: Request<UndeleteOrganizationRequest>,
) -> Reply<UndeleteOrganizationResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let attempt = Attempt::new(
        Scope::Organization(req.organization_id.clone()),
        "organization.undelete",
        "organization",
        &req.organization_id,
    );
    let result = wire(
        app.undelete_organization(&call, &req.organization_id, &req.etag)
            .await,
    );
    let restored = app.audited(&call, attempt, result).await?;
    Ok(Response::new(UndeleteOrganizationResponse {
        organization: Some(organization(&restored.value)),
        revision: restored.revision,
    }))
}

pub(super) async fn list_audit_events(
    app: &App,
    request: Request<ListAuditEventsRequest>,
) -> Reply<ListAuditEventsResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let cmd = ListAuditEvents {
        organization_id: req.organization_id,
        filter: req.filter.unwrap_or_default(),
        page_size: req.page_size,
        page_token: req.page_token,
    };
    let page = wire(app.list_audit_events(&call, cmd).await)?;
    Ok(Response::new(ListAuditEventsResponse {
        audit_events: page.items,
        next_page_token: page.next_page_token,
    }))
}
