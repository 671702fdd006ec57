//! The SCIM token and settings handlers (rule ID-14): CreateScimToken, ListScimTokens,
//! UpdateScimToken, GetScimSettings, UpdateScimSettings. The secret is answered by
//! CreateScimToken only.

use orgplane_platform::ApiError;
use orgplane_proto::identity::v1::*;
use tonic::{Request, Response};

use super::convert::paths;
use super::{IdentityApi, R};
use crate::app::scim::settings::UpdateScimSettings;
use crate::app::scim::tokens::{NewScimToken, UpdateScimToken};

pub(super) async fn create_scim_token(
    api: &IdentityApi,
    req: Request<CreateScimTokenRequest>,
) -> R<CreateScimTokenResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let spec = r
        .scim_token
        .ok_or_else(|| ApiError::invalid_argument("scim_token", "required"))?;
    let created = api
        .app
        .create_scim_token(
            &call,
            NewScimToken {
                organization_id: r.organization_id,
                display_name: spec.display_name,
                allow_unverified_user_names: spec.allow_unverified_user_names,
                request_id: r.request_id,
            },
        )
        .await?;
    Ok(Response::new(CreateScimTokenResponse {
        scim_token: Some(ScimToken::from(&created.token)),
        token: created.secret,
    }))
}

pub(super) async fn list_scim_tokens(
    api: &IdentityApi,
    req: Request<ListScimTokensRequest>,
) -> R<ListScimTokensResponse> {
    let call = api.call(&req).await?;
    let r = req.get_ref();
    let (tokens, next) = api
        .app
        .list_scim_tokens(&call, &r.organization_id, r.page_size, &r.page_token)
        .await?;
    Ok(Response::new(ListScimTokensResponse {
        scim_tokens: tokens.iter().map(ScimToken::from).collect(),
        next_page_token: next,
    }))
}

pub(super) async fn update_scim_token(
    api: &IdentityApi,
    req: Request<UpdateScimTokenRequest>,
) -> R<UpdateScimTokenResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let patch = r
        .scim_token
        .ok_or_else(|| ApiError::invalid_argument("scim_token", "required"))?;
    let token = api
        .app
        .update_scim_token(
            &call,
            UpdateScimToken {
                id: patch.id,
                display_name: patch.display_name,
                state: patch.state,
                allow_unverified_user_names: patch.allow_unverified_user_names,
                paths: paths(r.update_mask),
                etag: r.etag,
            },
        )
        .await?;
    Ok(Response::new(UpdateScimTokenResponse {
        scim_token: Some(ScimToken::from(&token)),
    }))
}

pub(super) async fn get_scim_settings(
    api: &IdentityApi,
    req: Request<GetScimSettingsRequest>,
) -> R<GetScimSettingsResponse> {
    let call = api.call(&req).await?;
    let settings = api
        .app
        .get_scim_settings(&call, &req.get_ref().organization_id)
        .await?;
    Ok(Response::new(GetScimSettingsResponse {
        scim_settings: Some(ScimSettings::from(&settings)),
    }))
}

pub(super) async fn update_scim_settings(
    api: &IdentityApi,
    req: Request<UpdateScimSettingsRequest>,
) -> R<UpdateScimSettingsResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let patch = r
        .scim_settings
        .ok_or_else(|| ApiError::invalid_argument("scim_settings", "required"))?;
    let (settings, moved) = api
        .app
        .update_scim_settings(
            &call,
            UpdateScimSettings {
                organization_id: patch.organization_id,
                mappings: patch
                    .group_mappings
                    .into_iter()
                    .map(|m| (m.group_display_name, m.organization_role))
                    .collect(),
                default_role: patch.default_role,
                paths: paths(r.update_mask),
                etag: r.etag,
            },
        )
        .await?;
    Ok(Response::new(UpdateScimSettingsResponse {
        scim_settings: Some(ScimSettings::from(&settings)),
        roles_changed: moved,
    }))
}
