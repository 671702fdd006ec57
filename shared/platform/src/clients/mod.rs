//! Outbound calls between Orgplane services, made one way: a lazily connecting channel
//! ([`connect_lazy`]), the caller's service token ([`ServiceTokenSource`]), and requests that
//! carry it with the request id and the W3C trace context ([`outgoing`]). [`identity`] holds the
//! calls every service makes to identity for authentication, [`organization`] identity's
//! internal calls to the organization service (domain lookups, provisioning), [`workspace`] the workspace
//! listing its consumers re-sync from.

pub mod identity;
pub mod organization;
pub mod workspace;

use std::time::Duration;

use futures::future::BoxFuture;
use tonic::transport::Channel;

use crate::error::{ApiError, ApiResult};

pub use identity::{IdentityServiceTokens, RemoteApiKeys, RemoteKeys};

/// A lazily connecting channel to a service URL (`http://host:port`).
pub fn connect_lazy(url: &str) -> Result<Channel, ApiError> {
    Ok(tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| ApiError::invalid_argument("url", format!("{url}: {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Builds an outgoing request carrying `bearer` (a service token), the caller's request id, and
/// the current W3C trace context: how every service-to-service call is made.
pub fn outgoing<T>(
    message: T,
    bearer: Option<&str>,
    ctx: Option<&crate::context::RequestContext>,
) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(token) = bearer
        && let Ok(v) = format!("Bearer {token}").parse()
    {
        req.metadata_mut().insert("authorization", v);
    }
    if let Some(ctx) = ctx
        && let Ok(v) = ctx.request_id.parse()
    {
        req.metadata_mut()
            .insert(crate::context::REQUEST_ID_HEADER, v);
    }
    crate::telemetry::inject_current(req.metadata_mut());
    req
}

/// Supplies the service token this service presents on internal calls.
pub trait ServiceTokenSource: Send + Sync + 'static {
    /// A currently valid service token.
    fn token(&self) -> BoxFuture<'_, ApiResult<String>>;
}

/// A fixed service token (tests).
#[derive(Debug, Clone)]
pub struct StaticServiceToken(pub String);

impl ServiceTokenSource for StaticServiceToken {
    fn token(&self) -> BoxFuture<'_, ApiResult<String>> {
        let t = self.0.clone();
        Box::pin(async move { Ok(t) })
    }
}
