//! Handlers of the inherited-settings RPCs (rule ORG-13): GetBranding, UpdateBranding,
//! GetEffectiveSettings.

use orgplane_platform::Call;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response};

use super::{Reply, paths, wire};
use crate::app::branding::UpdateBranding;
use crate::app::settings::branding_message;
use crate::app::{App, Attempt, Scope};

pub(super) async fn get_branding(
    app: &App,
    request: Request<GetBrandingRequest>,
) -> Reply<GetBrandingResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let branding = wire(app.get_branding(&call, &req.organization_id).await)?;
    Ok(Response::new(GetBrandingResponse {
        branding: Some(branding_message(&branding)),
    }))
}

pub(super) async fn update_branding(
    app: &App,
    request: Request<UpdateBrandingRequest>,
) -> Reply<UpdateBrandingResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let id = req
        .branding
        .as_ref()
        .map(|b| b.organization_id.clone())
        .unwrap_or_default();
    let attempt = Attempt::new(
        Scope::Organization(id.clone()),
        "branding.update",
        "branding",
        &id,
    );
    let cmd = UpdateBranding {
        branding: req.branding,
        paths: paths(req.update_mask),
        etag: req.etag,
    };
    let result = wire(app.update_branding(&call, cmd).await);
    let updated = app.audited(&call, attempt, result).await?;
    Ok(Response::new(UpdateBrandingResponse {
        branding: Some(branding_message(&updated.value)),
        revision: updated.revision,
    }))
}

pub(super) async fn get_effective(
    app: &App,
    request: Request<GetEffectiveSettingsRequest>,
) -> Reply<GetEffectiveSettingsResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let settings = wire(
        app.get_effective_settings(&call, &req.organization_id)
            .await,
    )?;
    Ok(Response::new(GetEffectiveSettingsResponse {
        effective_settings: Some(settings.message()),
    }))
}
