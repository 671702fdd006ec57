//! The HTTP listener (`--http-listen`), for what a standard makes HTTP rather than gRPC (SCIM 2.0,
//! rule ID-14). Services contribute routes through
//! [`ServiceModule::http_routes`](crate::host::ServiceModule::http_routes); this module wraps them
//! in what every server here has, once:
//!
//! - on the service routes: a body limit (bodies are read here, so an oversized one is refused
//!   with 413 before a handler runs), a concurrency limit (a caller waits a little for a slot,
//!   then gets 503 with `Retry-After`), and one request timeout covering the body's arrival (408) and
//!   the handler (503);
//! - on every route: an `x-request-id` (the caller's when sane, else generated; echoed), a
//!   tracing span parented to the caller's W3C `traceparent`, the [`RequestContext`] in the
//!   request's extensions, one access-log line (method, path without its query string, status,
//!   duration, request id — never a header's or the query's values) and the request metrics;
//! - `GET /healthz` (liveness) and `GET /readyz` (every service SERVING) from the same [`Health`]
//!   the gRPC server reports through;
//! - graceful shutdown on the process's cancellation token: stop accepting, drain the requests in
//!   flight.
//!
//! The listener's own refusals (413, 408, 503, 400) are one JSON error document,
//! [`error_response`], shaped as a SCIM error (`schemas`, `status`, `detail`), which SCIM
//! clients understand and any other JSON client can read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::{REQUEST_ID_HEADER, RequestContext, new_request_id, sane_request_id};
use crate::server::Health;

/// The schema URN of the listener's error documents (RFC 7644 §3.12).
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The metric and span label of a request that matched no route (never the raw path: unbounded).
const UNMATCHED_ROUTE: &str = "unmatched";

/// The longest path written to the access log; longer ones are cut (the rest is not needed).
const MAX_LOGGED_PATH: usize = 512;

/// Limits of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The largest request body, in bytes; larger ones are refused with 413.
    pub max_body_bytes: usize,
    /// How long a request may take, from its arrival to the response's head (waiting for a
    /// concurrency slot and reading the body included).
    pub request_timeout: Duration,
    /// Requests served at once; more wait for a slot, up to `max_queue_wait`.
    pub max_concurrent_requests: usize,
    /// How long a request waits for a slot before it is refused with 503 (and `Retry-After`);
    /// bounded by `request_timeout`. Shorter than it, so that a saturated server sheds load
    /// instead of queueing every caller until its deadline.
    pub max_queue_wait: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 256,
            max_queue_wait: Duration::from_secs(5),
        }
    }
}

/// The JSON error of the HTTP listener: `{"schemas":[ERROR_SCHEMA],"status":"413","detail":…}`.
pub fn error_response(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// The whole HTTP application: `routes` (the services' routes) behind the limits of `config`,
/// `/healthz` and `/readyz` from `health`, and the request layer around all of it.
pub fn app(routes: Router, health: Health, config: &HttpConfig) -> Router {
    let limits = Arc::new(Limits {
        max_body_bytes: config.max_body_bytes,
        timeout: config.request_timeout,
        queue_wait: config.max_queue_wait.min(config.request_timeout),
        slots: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
    });
    let routes = routes
        .layer(from_fn_with_state(limits, enforce_limits))
        // The bodies are already bounded above; this keeps axum's extractors from applying their
        // own, different default.
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
        .merge(routes)
        .layer(from_fn(observe))
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` is cancelled, then stops
/// accepting and drains the requests in flight (each bounded by the request timeout).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<&crate::tls::server::ServerTls>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let drained = async move {
        shutdown.cancelled().await;
        tracing::info!("http: shutting down, draining requests in flight");
    };
    match tls {
        Some(tls) => {
            let listener = tls.incoming(listener, "http").listener();
            axum::serve(listener, app)
                .with_graceful_shutdown(drained)
                .await
        }
        None => {
            let listener = listener.tap_io(|stream| {
                let _ = stream.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(drained)
                .await
        }
    }
}

struct Limits {
    max_body_bytes: usize,
    timeout: Duration,
    queue_wait: Duration,
    slots: Arc<Semaphore>,
}

async fn enforce_limits(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let arrived = tokio::time::Instant::now();
    let deadline = arrived + limits.timeout;
    let queued = tokio::time::timeout_at(
        arrived + limits.queue_wait,
        limits.slots.clone().acquire_owned(),
    );
    let _slot = match queued.await {
        Ok(Ok(slot)) => slot,
        _ => {
            let mut response = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy; retry later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    };
    let (parts, body) = req.into_parts();
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the request body is larger than {} bytes",
                limits.max_body_bytes
            ),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return too_large();
    }
    let collected = tokio::time::timeout_at(
        deadline,
        Limited::new(body, limits.max_body_bytes).collect(),
    )
    .await;
    let bytes = match collected {
        Err(_) => {
            return error_response(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            );
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Ok(Err(_)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    match tokio::time::timeout_at(deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the request took too long to answer",
        ),
    }
}

async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(sane_request_id)
        .unwrap_or_else(new_request_id);
    let method = metric_method(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let path = logged_path(req.uri().path()).to_owned();
    let span = tracing::info_span!(
        "http",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = %route,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
    );
    if !span.is_disabled() {
        if req.headers().contains_key("traceparent") {
            crate::telemetry::set_parent_from_headers(&span, req.headers());
        }
        span.record("trace_id", crate::telemetry::trace_id_of(&span));
    }
    req.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
    });
    let mut response = next.run(req).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            method,
            path = %path,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            request_id = %request_id,
            "http request"
        );
    });
    crate::metrics::record_http(method, &route, status, elapsed);
    response
}

/// The method as a metric label: the standard ones, every other as `OTHER` (bounded labels).
fn metric_method(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn logged_path(path: &str) -> &str {
    if path.len() <= MAX_LOGGED_PATH {
        return path;
    }
    let mut end = MAX_LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// Liveness: the process answers. Lists each service's readiness for people reading it.
async fn healthz(State(health): State<Health>) -> Response {
    health_document(StatusCode::OK, "SERVING", &health)
}

/// Readiness: 200 while every service registered here is SERVING, else 503 (also while the
/// process shuts down).
async fn readyz(State(health): State<Health>) -> Response {
    let services = health.snapshot();
    let ready = !services.is_empty() && services.iter().all(|(_, ready)| *ready);
    if ready {
        health_document(StatusCode::OK, "SERVING", &health)
    } else {
        health_document(StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING", &health)
    }
}

fn health_document(status: StatusCode, overall: &str, health: &Health) -> Response {
    let services: serde_json::Map<String, serde_json::Value> = health
        .snapshot()
        .into_iter()
        .map(|(name, ready)| {
            let state = if ready { "SERVING" } else { "NOT_SERVING" };
            (name, serde_json::Value::from(state))
        })
        .collect();
    let body = serde_json::json!({ "status": overall, "services": services });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let path = format!("/{}", "é".repeat(400));
        let cut = logged_path(&path);
        assert!(cut.len() <= MAX_LOGGED_PATH);
        assert!(path.starts_with(cut));
        assert_eq!(logged_path("/scim/v2/Users"), "/scim/v2/Users");
    }

    #[test]
    fn unusual_methods_share_one_label() {
        let custom = http::Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(metric_method(&custom), "OTHER");
        assert_eq!(metric_method(&http::Method::PATCH), "PATCH");
    }
}
