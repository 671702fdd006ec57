//! Outbound calls between Orgplane services, made one way: a lazily connecting channel
//! ([`connect_lazy`], a [`ServiceChannel`]: every call a client span and counted in the gRPC
//! client metrics), the caller's service token ([`ServiceTokenSource`]), and requests that
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
use tracing::Instrument;

use crate::error::{ApiError, ApiResult};
use crate::tls::client::ClientTls;

pub use identity::{IdentityServiceTokens, RemoteApiKeys, RemoteKeys};

/// A lazily connecting channel to a service URL: `http://host:port`, or `https://host:port`
/// dialled with `tls` (an `https://` URL without it is INVALID_ARGUMENT).
pub fn connect_lazy(url: &str, tls: Option<&ClientTls>) -> Result<ServiceChannel, ApiError> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| ApiError::invalid_argument("url", format!("{url}: {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    match (endpoint.uri().scheme_str(), tls) {
        (Some("https"), Some(tls)) => Ok(endpoint.connect_with_connector_lazy(tls.clone()).into()),
        (Some("https"), None) => Err(ApiError::invalid_argument(
            "url",
            format!("{url}: an https:// URL needs TLS client settings"),
        )),
        _ => Ok(endpoint.connect_lazy().into()),
    }
}

/// A channel to another Orgplane service: each call is a client span (OpenTelemetry RPC
/// conventions; its context, not the caller's, goes out as `traceparent`, so the server's span is
/// its child) and is counted in the gRPC client metrics. The status is the one the answer's
/// headers carry (errors arrive trailers-only); a call that reached no server is UNAVAILABLE.
#[derive(Debug, Clone)]
pub struct ServiceChannel {
    inner: Channel,
}

impl ServiceChannel {
    /// The plain tonic channel underneath (no client spans or metrics): for tests and tools
    /// that name `Channel`.
    pub fn into_inner(self) -> Channel {
        self.inner
    }
}

impl From<Channel> for ServiceChannel {
    fn from(inner: Channel) -> Self {
        Self { inner }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for ServiceChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let uri = request.uri().clone();
        let (service, method) = crate::context::split_path(uri.path());
        let span = tracing::info_span!(
            "rpc.client",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            server.address = uri.host().unwrap_or_default(),
        );
        if !span.is_disabled() {
            crate::telemetry::inject_span(&span, request.headers_mut());
        }
        let call = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            let started = std::time::Instant::now();
            let answered = call.instrument(span.clone()).await;
            let code = match &answered {
                Ok(response) => crate::context::status_in_headers(response.headers()),
                Err(_) => tonic::Code::Unavailable as i32,
            };
            if !span.is_disabled() {
                span.record("rpc.grpc.status_code", code);
                if crate::context::is_server_error(code) {
                    span.record("otel.status_code", "ERROR");
                }
            }
            crate::metrics::record_client(uri.path(), code, started.elapsed());
            answered
        })
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
