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
use crate::tls::client::ClientTls;

pub use identity::{IdentityServiceTokens, RemoteApiKeys, RemoteKeys};

/// A lazily connecting channel to a service URL: `http://host:port`, or `https://host:port`
/// dialled with `tls` (an `https://` URL without it is INVALID_ARGUMENT).
pub fn connect_lazy(url: &str, tls: Option<&ClientTls>) -> Result<Channel, ApiError> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| ApiError::invalid_argument("url", format!("{url}: {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    match (endpoint.uri().scheme_str(), tls) {
        (Some("https"), Some(tls)) => Ok(endpoint.connect_with_connector_lazy(tls.clone())),
        (Some("https"), None) => Err(ApiError::invalid_argument(
            "url",
            format!("{url}: an https:// URL needs TLS client settings"),
        )),
        _ => Ok(endpoint.connect_lazy()),
    }
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
    /// A currently valid service token; `None` where the process is known to the others by its
    /// client certificate instead ([`CertificateIdentity`]).
    fn token(&self) -> BoxFuture<'_, ApiResult<Option<String>>>;
}

/// A fixed service token (tests).
#[derive(Debug, Clone)]
pub struct StaticServiceToken(pub String);

impl ServiceTokenSource for StaticServiceToken {
    fn token(&self) -> BoxFuture<'_, ApiResult<Option<String>>> {
        let t = self.0.clone();
        Box::pin(async move { Ok(Some(t)) })
    }
}

/// No service token: internal calls carry none, and the services called know this one by the
/// client certificate it presents (mutual TLS, `--service-auth certificate`).
#[derive(Debug, Clone, Copy)]
pub struct CertificateIdentity;

impl ServiceTokenSource for CertificateIdentity {
    fn token(&self) -> BoxFuture<'_, ApiResult<Option<String>>> {
        Box::pin(async { Ok(None) })
    }
}
