//! The per-RPC tower layer every server runs first: an `x-request-id` (kept from the caller when
//! it is sane, generated otherwise, echoed in the response), one tracing span per RPC named after
//! the method, parented to the caller's W3C `traceparent` and carrying the OpenTelemetry RPC
//! attributes (status ERROR for the codes that mean the server failed), the request's
//! [`RequestContext`] placed in its extensions for handlers, the gRPC server metrics, and one
//! access-log line per RPC (target `orgplane::access`, at info: method, code, reason, duration,
//! request id, trace id, principal kind and id — never a credential).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

/// The metadata key of the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The W3C trace context header a caller's span arrives in.
const TRACEPARENT_HEADER: &str = "traceparent";

/// What a handler knows about the call besides its message and principal.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The caller's `x-request-id`, or one generated for this call.
    pub request_id: String,
}

impl RequestContext {
    /// The context of a tonic request (a fresh one if the layer did not run, as in unit tests).
    pub fn of<T>(req: &tonic::Request<T>) -> RequestContext {
        req.extensions()
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(|| RequestContext {
                request_id: new_request_id(),
            })
    }
}

/// Who made a call, filled in by the auth layer for the access-log line of the RPC layer.
#[derive(Debug, Clone, Default)]
pub struct CallerSlot(Arc<OnceLock<Arc<crate::auth::Principal>>>);

impl CallerSlot {
    /// Notes the call's principal (the first one set stays).
    pub fn set(&self, principal: &Arc<crate::auth::Principal>) {
        let _ = self.0.set(principal.clone());
    }

    fn actor(&self) -> (&'static str, String) {
        self.0
            .get()
            .map_or(("anonymous", String::new()), |p| p.actor())
    }
}

/// The target of the access-log lines (`RUST_LOG=info,orgplane::access=off` silences them).
pub const ACCESS_LOG_TARGET: &str = "orgplane::access";

/// Whether a server answering `code` failed (status ERROR in the OpenTelemetry RPC conventions
/// for servers): UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
pub fn is_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// The gRPC status a response's headers carry: errors are trailers-only responses, whose
/// `grpc-status` is in the headers; OK (0) without one.
pub(crate) fn status_in_headers(headers: &http::HeaderMap) -> i32 {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

/// A new request id (UUIDv7: sortable by time).
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_owned())
}

/// Splits a gRPC path `/pkg.Service/Method` into service and method.
pub fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

/// The layer; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct RpcLayer;

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner }
    }
}

/// The service produced by [`RpcLayer`].
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for RpcService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(sane_request_id)
            .unwrap_or_else(new_request_id);
        // The path is shared (`Bytes`), so keeping it for the metric labels copies nothing.
        let uri = req.uri().clone();
        let (service, method) = split_path(uri.path());
        // The fields are only formatted when a subscriber wants the span.
        let span = tracing::info_span!(
            "rpc",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            request_id = %request_id,
            trace_id = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let mut trace_id = String::new();
        if !span.is_disabled() {
            // Without a `traceparent` there is no parent to extract: skip the propagator.
            if req.headers().contains_key(TRACEPARENT_HEADER) {
                crate::telemetry::set_parent_from_headers(&span, req.headers());
            }
            trace_id = crate::telemetry::trace_id_of(&span);
            span.record("trace_id", trace_id.as_str());
        }
        crate::metrics::record_server_started(uri.path());
        let header = HeaderValue::from_str(&request_id).ok();
        let caller = CallerSlot::default();
        req.extensions_mut().insert(caller.clone());
        req.extensions_mut().insert(RequestContext {
            request_id: request_id.clone(),
        });
        // Standard tower pattern: take the service that was driven to readiness.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let record_span = span.clone();
        let started = std::time::Instant::now();
        let answered = async move {
            let mut response = inner.call(req).await?;
            if let Some(header) = header {
                response.headers_mut().insert(REQUEST_ID_HEADER, header);
            }
            let mut code = status_in_headers(response.headers());
            if code == tonic::Code::Internal as i32 && is_decode_failure(response.headers()) {
                code = answer_undecodable(response.headers_mut());
            }
            if !record_span.is_disabled() {
                record_span.record("rpc.grpc.status_code", code);
                if is_server_error(code) {
                    record_span.record("otel.status_code", "ERROR");
                }
            }
            Ok::<_, S::Error>((response, code))
        }
        .instrument(span);
        Box::pin(async move {
            let (response, code) = answered.await?;
            let elapsed = started.elapsed();
            let reason = (code != 0)
                .then(|| tonic::Status::from_header_map(response.headers()))
                .flatten()
                .and_then(|status| crate::error::reason_of(&status));
            crate::metrics::record_server_handled(uri.path(), code, reason.as_deref(), elapsed);
            // Outside the RPC's span: a line of its own, not an event of the span.
            if tracing::enabled!(target: ACCESS_LOG_TARGET, tracing::Level::INFO) {
                let (principal, principal_id) = caller.actor();
                tracing::info!(
                    target: ACCESS_LOG_TARGET,
                    rpc = uri.path(),
                    code = crate::metrics::code_name(code),
                    reason = reason.as_deref().unwrap_or_default(),
                    duration_ms = elapsed.as_secs_f64() * 1000.0,
                    request_id = %request_id,
                    trace_id = %trace_id,
                    principal,
                    principal_id = %principal_id,
                    "rpc"
                );
            }
            Ok(response)
        })
    }
}

/// True when tonic refused the request message before any handler ran (it answers INTERNAL
/// "failed to decode Protobuf message", e.g. for invalid UTF-8 in a string field).
fn is_decode_failure(headers: &http::HeaderMap) -> bool {
    headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.contains("failed%20to%20decode") || m.contains("failed to decode"))
}

/// Rewrites an undecodable request's answer as INVALID_ARGUMENT with the usual details: the
/// caller sent bad input, the server did not fail. Returns the new code.
fn answer_undecodable(headers: &mut http::HeaderMap) -> i32 {
    let status: tonic::Status = crate::error::ApiError::invalid_argument(
        "request",
        "the request message could not be decoded (malformed protobuf or invalid UTF-8 in a string)",
    )
    .into();
    let replacement = status.into_http::<()>();
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
        if let Some(v) = replacement.headers().get(name) {
            headers.insert(name, v.clone());
        }
    }
    tonic::Code::InvalidArgument as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_requests_become_invalid_argument() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("13"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("failed%20to%20decode%20Protobuf%20message"),
        );
        assert!(is_decode_failure(&headers));
        assert_eq!(answer_undecodable(&mut headers), 3);
        assert_eq!(headers.get("grpc-status").unwrap(), "3");
        assert!(headers.get("grpc-status-details-bin").is_some());
        let mut other = http::HeaderMap::new();
        other.insert("grpc-message", HeaderValue::from_static("internal%20error"));
        assert!(!is_decode_failure(&other));
    }

    #[test]
    fn splits_grpc_paths() {
        assert_eq!(
            split_path("/orgplane.identity.v1.IdentityService/Login"),
            ("orgplane.identity.v1.IdentityService", "Login")
        );
        assert_eq!(split_path("/"), ("", ""));
    }

    #[test]
    fn only_sane_request_ids_are_kept() {
        assert_eq!(
            sane_request_id(&HeaderValue::from_static("abc-123")).as_deref(),
            Some("abc-123")
        );
        assert!(sane_request_id(&HeaderValue::from_static("")).is_none());
        assert!(sane_request_id(&HeaderValue::from_static("has space")).is_none());
        let long = "x".repeat(200);
        assert!(sane_request_id(&HeaderValue::from_str(&long).unwrap()).is_none());
    }
}
