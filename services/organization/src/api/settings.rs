//! Handlers of the inherited-settings RPCs (rule ORG-13): GetBranding, UpdateBranding,
//! GetEffectiveSettings.

use orgplane_proto::organization::v1::*;
use tonic::{Request, Status};

use super::Reply;
use crate::app::App;

pub(super) async fn get_branding(
    _app: &App,
    _request: Request<GetBrandingRequest>,
) -> Reply<GetBrandingResponse> {
    Err(Status::unimplemented("GetBranding is being built"))
}

pub(super) async fn update_branding(
    _app: &App,
    _request: Request<UpdateBrandingRequest>,
) -> Reply<UpdateBrandingResponse> {
    Err(Status::unimplemented("UpdateBranding is being built"))
}

pub(super) async fn get_effective(
    _app: &App,
    _request: Request<GetEffectiveSettingsRequest>,
) -> Reply<GetEffectiveSettingsResponse> {
    Err(Status::unimplemented("GetEffectiveSettings is being built"))
}
