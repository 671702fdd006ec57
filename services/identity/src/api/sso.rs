//! SSO connections and SSO sign-in (rule ID-13): CreateSsoConnection, GetSsoConnection,
//! ListSsoConnections, UpdateSsoConnection, DeleteSsoConnection, TestSsoConnection,
//! StartSsoLogin, CompleteSsoLogin. The client secret is read from requests, never answered.

use orgplane_platform::ApiError;
use orgplane_platform::convert::{etag, timestamp_ms};
use orgplane_proto::identity::v1::*;
use tonic::{Request, Response};

use super::convert::paths;
use super::{IdentityApi, R};
use crate::app::sessions::SignInOutcome;
use crate::app::sso_connections::{
    Connection, ConnectionSpec, NewSsoConnection, UpdateSsoConnection, split,
};
use crate::app::sso_login::StartSso;

impl From<&Connection> for SsoConnection {
    fn from(c: &Connection) -> SsoConnection {
        let r = &c.row;
        SsoConnection {
            id: r.id.clone(),
            organization_id: r.organization_id.clone(),
            display_name: r.display_name.clone(),
            oidc: Some(OidcSettings {
                issuer: r.issuer.clone(),
                client_id: r.client_id.clone(),
                client_secret: String::new(),
                client_secret_set: r.client_secret_sealed.is_some(),
                scopes: split(&r.scopes),
                allowed_algorithms: split(&r.algorithms),
                redirect_uris: split(&r.redirect_uris),
            }),
            domains: c.domains.clone(),
            enforced: r.enforced,
            jit_provisioning: r.jit_provisioning,
            default_role: r.default_role,
            trust_idp_mfa: r.trust_idp_mfa,
            enabled: r.enabled,
            create_time: Some(timestamp_ms(r.create_time_ms)),
            update_time: Some(timestamp_ms(r.update_time_ms)),
            etag: etag(r.version),
        }
    }
}

fn spec_of(c: SsoConnection) -> ConnectionSpec {
    let oidc = c.oidc.unwrap_or_default();
    ConnectionSpec {
        display_name: c.display_name,
        issuer: oidc.issuer,
        client_id: oidc.client_id,
        client_secret: oidc.client_secret,
        scopes: oidc.scopes,
        algorithms: oidc.allowed_algorithms,
        redirect_uris: oidc.redirect_uris,
        domains: c.domains,
        enforced: c.enforced,
        jit_provisioning: c.jit_provisioning,
        default_role: c.default_role,
        trust_idp_mfa: c.trust_idp_mfa,
        enabled: c.enabled,
    }
}

pub(super) async fn create_sso_connection(
    api: &IdentityApi,
    req: Request<CreateSsoConnectionRequest>,
) -> R<CreateSsoConnectionResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let spec = r
        .sso_connection
        .ok_or_else(|| ApiError::invalid_argument("sso_connection", "required"))?;
    let created = api
        .app
        .create_sso_connection(
            &call,
            NewSsoConnection {
                organization_id: r.organization_id,
                spec: spec_of(spec),
                request_id: r.request_id,
            },
        )
        .await?;
    Ok(Response::new(CreateSsoConnectionResponse {
        sso_connection: Some(SsoConnection::from(&created)),
    }))
}

pub(super) async fn get_sso_connection(
    api: &IdentityApi,
    req: Request<GetSsoConnectionRequest>,
) -> R<GetSsoConnectionResponse> {
    let call = api.call(&req).await?;
    let c = api
        .app
        .get_sso_connection(&call, &req.get_ref().sso_connection_id)
        .await?;
    Ok(Response::new(GetSsoConnectionResponse {
        sso_connection: Some(SsoConnection::from(&c)),
    }))
}

pub(super) async fn list_sso_connections(
    api: &IdentityApi,
    req: Request<ListSsoConnectionsRequest>,
) -> R<ListSsoConnectionsResponse> {
    let call = api.call(&req).await?;
    let r = req.get_ref();
    let (items, next) = api
        .app
        .list_sso_connections(&call, &r.organization_id, r.page_size, &r.page_token)
        .await?;
    Ok(Response::new(ListSsoConnectionsResponse {
        sso_connections: items.iter().map(SsoConnection::from).collect(),
        next_page_token: next,
    }))
}

pub(super) async fn update_sso_connection(
    api: &IdentityApi,
    req: Request<UpdateSsoConnectionRequest>,
) -> R<UpdateSsoConnectionResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let patch = r
        .sso_connection
        .ok_or_else(|| ApiError::invalid_argument("sso_connection", "required"))?;
    let id = patch.id.clone();
    let c = api
        .app
        .update_sso_connection(
            &call,
            UpdateSsoConnection {
                id,
                spec: spec_of(patch),
                paths: paths(r.update_mask),
                etag: r.etag,
            },
        )
        .await?;
    Ok(Response::new(UpdateSsoConnectionResponse {
        sso_connection: Some(SsoConnection::from(&c)),
    }))
}

pub(super) async fn delete_sso_connection(
    api: &IdentityApi,
    req: Request<DeleteSsoConnectionRequest>,
) -> R<DeleteSsoConnectionResponse> {
    let call = api.call(&req).await?;
    let r = req.get_ref();
    api.app
        .delete_sso_connection(&call, &r.sso_connection_id, &r.etag)
        .await?;
    Ok(Response::new(DeleteSsoConnectionResponse {}))
}

pub(super) async fn test_sso_connection(
    api: &IdentityApi,
    req: Request<TestSsoConnectionRequest>,
) -> R<TestSsoConnectionResponse> {
    let call = api.call(&req).await?;
    let checks = api
        .app
        .test_sso_connection(&call, &req.get_ref().sso_connection_id)
        .await?;
    Ok(Response::new(TestSsoConnectionResponse {
        ok: checks.iter().all(|c| c.ok),
        checks: checks
            .into_iter()
            .map(|c| SsoConnectionCheck {
                name: c.name.to_owned(),
                ok: c.ok,
                detail: c.detail,
            })
            .collect(),
    }))
}

pub(super) async fn start_sso_login(
    api: &IdentityApi,
    req: Request<StartSsoLoginRequest>,
) -> R<StartSsoLoginResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let started = api
        .app
        .start_sso_login(
            &call,
            StartSso {
                email: r.email,
                organization_id: r.organization_id,
                sso_connection_id: r.sso_connection_id,
                redirect_uri: r.redirect_uri,
            },
        )
        .await?;
    Ok(Response::new(StartSsoLoginResponse {
        authorization_url: started.authorization_url,
        state: started.state,
        expire_time: Some(timestamp_ms(started.expire_time_ms)),
        browser_binding: started.browser_binding,
        sso_connection_id: started.connection_id,
    }))
}

pub(super) async fn complete_sso_login(
    api: &IdentityApi,
    req: Request<CompleteSsoLoginRequest>,
) -> R<CompleteSsoLoginResponse> {
    let call = api.call(&req).await?;
    let r = req.get_ref();
    let done = api
        .app
        .complete_sso_login(&call, &r.state, &r.code, &r.browser_binding)
        .await?;
    let user = Some(User::from(&done.user));
    let (tokens, mfa_challenge, enrollment) = match done.outcome {
        SignInOutcome::Tokens {
            tokens,
            enrollment_required,
        } => (Some(tokens.into()), None, enrollment_required),
        SignInOutcome::Challenge(c) => (None, Some(c.into()), Vec::new()),
    };
    Ok(Response::new(CompleteSsoLoginResponse {
        tokens,
        user,
        mfa_challenge,
        mfa_enrollment_required_organization_ids: enrollment,
        user_created: done.user_created,
        membership_created: done.membership_created,
    }))
}
