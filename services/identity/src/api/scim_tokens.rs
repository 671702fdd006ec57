//! PLACEHOLDER (replaced in this change): the SCIM token and settings handlers (rule ID-14).

use tonic::{Request, Status};

use super::{IdentityApi, R};
use orgplane_proto::identity::v1::*;

fn unfinished() -> Status {
    Status::unimplemented("SCIM tokens are being built")
}

pub(super) async fn create_scim_token(
    _api: &IdentityApi,
    _request: Request<CreateScimTokenRequest>,
) -> R<CreateScimTokenResponse> {
    Err(unfinished())
}

pub(super) async fn list_scim_tokens(
    _api: &IdentityApi,
    _request: Request<ListScimTokensRequest>,
) -> R<ListScimTokensResponse> {
    Err(unfinished())
}

pub(super) async fn update_scim_token(
    _api: &IdentityApi,
    _request: Request<UpdateScimTokenRequest>,
) -> R<UpdateScimTokenResponse> {
    Err(unfinished())
}

pub(super) async fn get_scim_settings(
    _api: &IdentityApi,
    _request: Request<GetScimSettingsRequest>,
) -> R<GetScimSettingsResponse> {
    Err(unfinished())
}

pub(super) async fn update_scim_settings(
    _api: &IdentityApi,
    _request: Request<UpdateScimSettingsRequest>,
) -> R<UpdateScimSettingsResponse> {
    Err(unfinished())
}
