//! API keys: CreateApiKey, GetApiKey, ListApiKeys, UpdateApiKey, AuthenticateApiKey.

use orgplane_platform::ApiError;
use orgplane_proto::identity::v1::*;
use tonic::{Request, Response};

use super::convert::paths;
use super::{IdentityApi, R};
use crate::app::API_KEY_CACHE_TTL;
use crate::app::api_keys::{ListApiKeys, NewApiKey, UpdateApiKey};

pub(super) async fn create_api_key(
    api: &IdentityApi,
    req: Request<CreateApiKeyRequest>,
) -> R<CreateApiKeyResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let spec = r.api_key.unwrap_or_default();
    let created = api
        .app
        .create_api_key(
            &call,
            NewApiKey {
                organization_id: r.organization_id,
                name: spec.name,
                kind: spec.kind,
                workspace_id: spec.workspace_id,
                request_id: r.request_id,
            },
        )
        .await?;
    Ok(Response::new(CreateApiKeyResponse {
        api_key: Some(ApiKey::from(&created.key)),
        secret: created.secret,
    }))
}

pub(super) async fn get_api_key(
    api: &IdentityApi,
    req: Request<GetApiKeyRequest>,
) -> R<GetApiKeyResponse> {
    let call = api.call(&req).await?;
    let key = api
        .app
        .get_api_key(&call, &req.get_ref().api_key_id)
        .await?;
    Ok(Response::new(GetApiKeyResponse {
        api_key: Some(ApiKey::from(&key)),
    }))
}

pub(super) async fn list_api_keys(
    api: &IdentityApi,
    req: Request<ListApiKeysRequest>,
) -> R<ListApiKeysResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let (keys, next) = api
        .app
        .list_api_keys(
            &call,
            ListApiKeys {
                organization_id: r.organization_id,
                page_size: r.page_size,
                page_token: r.page_token,
                status: r.status,
                kind: r.kind,
                workspace_id: r.workspace_id,
            },
        )
        .await?;
    Ok(Response::new(ListApiKeysResponse {
        api_keys: keys.iter().map(ApiKey::from).collect(),
        next_page_token: next,
    }))
}

pub(super) async fn update_api_key(
    api: &IdentityApi,
    req: Request<UpdateApiKeyRequest>,
) -> R<UpdateApiKeyResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let patch = r
        .api_key
        .ok_or_else(|| ApiError::invalid_argument("api_key", "required"))?;
    let key = api
        .app
        .update_api_key(
            &call,
            UpdateApiKey {
                id: patch.id,
                name: patch.name,
                status: patch.status,
                paths: paths(r.update_mask),
                etag: r.etag,
            },
        )
        .await?;
    Ok(Response::new(UpdateApiKeyResponse {
        api_key: Some(ApiKey::from(&key)),
    }))
}

pub(super) async fn authenticate_api_key(
    api: &IdentityApi,
    req: Request<AuthenticateApiKeyRequest>,
) -> R<AuthenticateApiKeyResponse> {
    let call = api.call(&req).await?;
    let key = api
        .app
        .authenticate_api_key(&call, &req.get_ref().key)
        .await?;
    Ok(Response::new(AuthenticateApiKeyResponse {
        api_key: Some(ApiKey::from(&key)),
        cache_ttl: Some(prost_types::Duration {
            seconds: i64::try_from(API_KEY_CACHE_TTL.as_secs()).unwrap_or(i64::MAX),
            nanos: 0,
        }),
    }))
}
