//! Handlers of the operator RPCs (rule ORG-13): CreateChildOrganization, ListChildOrganizations.

use orgplane_proto::organization::v1::*;
use tonic::{Request, Status};

use super::Reply;
use crate::app::App;

pub(super) async fn create_child(
    _app: &App,
    _request: Request<CreateChildOrganizationRequest>,
) -> Reply<CreateChildOrganizationResponse> {
    Err(Status::unimplemented(
        "CreateChildOrganization is being built",
    ))
}

pub(super) async fn list_children(
    _app: &App,
    _request: Request<ListChildOrganizationsRequest>,
) -> Reply<ListChildOrganizationsResponse> {
    Err(Status::unimplemented(
        "ListChildOrganizations is being built",
    ))
}
