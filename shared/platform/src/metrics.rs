//! Prometheus metrics: per-RPC and per-HTTP-request counts and latency histograms (recorded by
//! the RPC layer and the HTTP listener)
//! and per-consumer event lag (recorded by the events consumer), served in the Prometheus text
//! format on an admin HTTP port (`--metrics-listen`). Without an installed recorder the
//! recording calls cost next to nothing.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter of finished RPCs, by `service`, `method` and gRPC `code`.
pub const RPC_REQUESTS: &str = "orgplane_rpc_requests_total";
/// Histogram of RPC latency in seconds, by `service` and `method`.
pub const RPC_DURATION: &str = "orgplane_rpc_duration_seconds";
/// Counter of finished HTTP requests, by `method`, `route` (the matched route, never the raw
/// path) and `status`.
pub const HTTP_REQUESTS: &str = "orgplane_http_requests_total";
/// Histogram of HTTP request latency in seconds, by `method` and `route`.
pub const HTTP_DURATION: &str = "orgplane_http_duration_seconds";
/// Gauge: how many revisions a consumer is behind its producer, by `consumer` and `producer`.
pub const CONSUMER_LAG_REVISIONS: &str = "orgplane_consumer_lag_revisions";
/// Gauge: how old the newest event a consumer has not yet applied is, in seconds.
pub const CONSUMER_LAG_SECONDS: &str = "orgplane_consumer_lag_seconds";
/// Counter of events a consumer applied, by `consumer` and `producer`.
pub const CONSUMER_EVENTS_APPLIED: &str = "orgplane_consumer_events_applied_total";

const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(RPC_DURATION.to_owned()), &LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &LATENCY_BUCKETS)
}

/// How often histograms and other recorder state are brought up to date between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the global recorder (inside the Tokio runtime) and returns the router serving it as
/// `/metrics`, for the caller to serve on the metrics address (over TLS when configured).
pub fn install() -> Result<axum::Router, metrics_exporter_prometheus::BuildError> {
    let handle = builder()?.install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    let render = move || {
        let handle = handle.clone();
        async move {
            (
                [(
                    http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                handle.render(),
            )
        }
    };
    Ok(axum::Router::new().route("/metrics", axum::routing::get(render)))
}

/// Installs the global recorder without a listener and returns a handle that renders the text
/// format (tests). Installing twice returns an error.
pub fn install_for_tests() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    builder()?.install_recorder()
}

/// Records one finished RPC.
pub fn record_rpc(service: &str, method: &str, code: i32, elapsed: Duration) {
    let labels = [
        ("service", service.to_owned()),
        ("method", method.to_owned()),
    ];
    metrics::counter!(
        RPC_REQUESTS,
        "service" => service.to_owned(),
        "method" => method.to_owned(),
        "code" => code_name(code)
    )
    .increment(1);
    metrics::histogram!(RPC_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// Records one finished HTTP request.
pub fn record_http(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    metrics::counter!(
        HTTP_REQUESTS,
        "method" => method,
        "route" => route.to_owned(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route.to_owned())
        .record(elapsed.as_secs_f64());
}

/// Records a consumer's position after it applied events or heard a heartbeat.
pub fn record_consumer_lag(
    consumer: &str,
    producer: &str,
    behind_revisions: i64,
    behind: Duration,
    applied_now: u64,
) {
    let labels = [
        ("consumer", consumer.to_owned()),
        ("producer", producer.to_owned()),
    ];
    metrics::gauge!(CONSUMER_LAG_REVISIONS, &labels).set(behind_revisions.max(0) as f64);
    metrics::gauge!(CONSUMER_LAG_SECONDS, &labels).set(behind.as_secs_f64());
    if applied_now > 0 {
        metrics::counter!(CONSUMER_EVENTS_APPLIED, &labels).increment(applied_now);
    }
}

/// The canonical name of a gRPC status code number.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}
