//! Prometheus metrics, in the names and labels the standard tools expect: the gRPC server and
//! client families of go-grpc-prometheus (`grpc_server_handled_total{grpc_type, grpc_service,
//! grpc_method, grpc_code}`, …, recorded by the RPC layer and by every inter-service channel),
//! refusals by ErrorInfo reason, the HTTP listener's requests, consumer lag, outbox heads, open
//! Watch streams, the password-hash queue, readiness, `orgplane_build_info` and the `process_*`
//! family. Every family has HELP and TYPE. Served in the Prometheus text format on the metrics
//! port (`--metrics-listen`); without an installed recorder the recording calls cost next to
//! nothing.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter of RPCs started on the server, by `grpc_type`, `grpc_service`, `grpc_method`.
pub const GRPC_SERVER_STARTED: &str = "grpc_server_started_total";
/// Counter of RPCs completed on the server, by `grpc_type`, `grpc_service`, `grpc_method`,
/// `grpc_code`.
pub const GRPC_SERVER_HANDLED: &str = "grpc_server_handled_total";
/// Histogram of the server's RPC handling time in seconds, by `grpc_type`, `grpc_service`,
/// `grpc_method`.
pub const GRPC_SERVER_HANDLING: &str = "grpc_server_handling_seconds";
/// Counter of RPCs this process started to another service.
pub const GRPC_CLIENT_STARTED: &str = "grpc_client_started_total";
/// Counter of RPCs to another service completed, with their `grpc_code`.
pub const GRPC_CLIENT_HANDLED: &str = "grpc_client_handled_total";
/// Histogram of RPCs to another service, in seconds until the answer arrived.
pub const GRPC_CLIENT_HANDLING: &str = "grpc_client_handling_seconds";
/// Counter of RPCs answered with an error, by `grpc_service`, `grpc_method`, `grpc_code` and the
/// ErrorInfo `reason` (empty without one).
pub const RPC_ERRORS: &str = "orgplane_rpc_errors_total";
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
/// Gauge: the newest revision in a producer's outbox, by `producer`.
pub const OUTBOX_HEAD: &str = "orgplane_outbox_head_revision";
/// Gauge: `EventService/Watch` streams open on this process, by `producer`.
pub const WATCH_STREAMS: &str = "orgplane_watch_streams_open";
/// Gauge: password hashes (argon2id) waiting for a slot.
pub const PASSWORD_HASH_QUEUE: &str = "orgplane_password_hash_queue_depth";
/// Gauge: 1 while a gRPC service reports SERVING, else 0, by `grpc_service`.
pub const READY: &str = "orgplane_ready";
/// Gauge, always 1: the running `version` and `service` (the OpenTelemetry service name).
pub const BUILD_INFO: &str = "orgplane_build_info";
/// Counter of failed TLS handshakes, by `listener` (see [`crate::tls::server`]).
pub const TLS_HANDSHAKE_FAILURES: &str = "orgplane_tls_handshake_failures_total";

/// Up to the default deadline (30 s) and beyond, so that slow calls are not one overflow bucket.
const LATENCY_BUCKETS: [f64; 18] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    let mut builder = PrometheusBuilder::new();
    for histogram in [GRPC_SERVER_HANDLING, GRPC_CLIENT_HANDLING, HTTP_DURATION] {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(histogram.to_owned()), &LATENCY_BUCKETS)?;
    }
    Ok(builder)
}

/// The HELP text of every family this process records.
fn describe() {
    let grpc = "by grpc_type, grpc_service and grpc_method";
    describe_counter!(
        GRPC_SERVER_STARTED,
        format!("RPCs started on the server, {grpc}.")
    );
    describe_counter!(
        GRPC_SERVER_HANDLED,
        format!("RPCs completed on the server, {grpc} and grpc_code.")
    );
    describe_histogram!(
        GRPC_SERVER_HANDLING,
        metrics::Unit::Seconds,
        format!("Time the server took to answer an RPC, {grpc}.")
    );
    describe_counter!(
        GRPC_CLIENT_STARTED,
        format!("RPCs this process started to another Orgplane service, {grpc}.")
    );
    describe_counter!(
        GRPC_CLIENT_HANDLED,
        format!("RPCs to another Orgplane service completed, {grpc} and grpc_code.")
    );
    describe_histogram!(
        GRPC_CLIENT_HANDLING,
        metrics::Unit::Seconds,
        format!("Time until another Orgplane service answered an RPC, {grpc}.")
    );
    describe_counter!(
        RPC_ERRORS,
        "RPCs answered with an error, by grpc_service, grpc_method, grpc_code and the ErrorInfo reason."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests (SCIM, health) finished, by method, matched route and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method and matched route."
    );
    describe_gauge!(
        CONSUMER_LAG_REVISIONS,
        "Revisions a consumer has not yet applied of its producer's events."
    );
    describe_gauge!(
        CONSUMER_LAG_SECONDS,
        metrics::Unit::Seconds,
        "Age of the oldest event a consumer has not yet applied (0 when caught up)."
    );
    describe_counter!(CONSUMER_EVENTS_APPLIED, "Events a consumer applied.");
    describe_gauge!(OUTBOX_HEAD, "The newest revision in a producer's outbox.");
    describe_gauge!(
        WATCH_STREAMS,
        "EventService/Watch streams open, by producer."
    );
    describe_gauge!(
        PASSWORD_HASH_QUEUE,
        "Password hashes (argon2id) waiting for a slot in identity."
    );
    describe_gauge!(READY, "1 while the gRPC service reports SERVING, else 0.");
    describe_gauge!(
        BUILD_INFO,
        "Always 1: the running version and service name."
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that failed, by listener."
    );
}

/// How often histograms and other recorder state are brought up to date between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the global recorder (inside the Tokio runtime), describes every family, sets
/// `orgplane_build_info` for `service`, and returns the router serving `/metrics` (the
/// `process_*` family is collected at each scrape) for the caller to serve on the metrics
/// address (over TLS when configured).
pub fn install(service: &str) -> Result<axum::Router, metrics_exporter_prometheus::BuildError> {
    let handle = builder()?.install_recorder()?;
    describe();
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "service" => service.to_owned()
    )
    .set(1.0);
    let process = metrics_process::Collector::default();
    process.describe();
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
        let process = process.clone();
        async move {
            process.collect();
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
    let handle = builder()?.install_recorder()?;
    describe();
    Ok(handle)
}

/// `(grpc_type, grpc_service, grpc_method)` of a request path: the known methods of the
/// services a process may serve (Orgplane's, health, reflection); `unknown` for any other path,
/// so that callers cannot create label values at will.
pub fn grpc_labels(path: &str) -> (&'static str, &'static str, &'static str) {
    static METHODS: OnceLock<HashMap<String, (&'static str, &'static str, &'static str)>> =
        OnceLock::new();
    let methods = METHODS.get_or_init(|| {
        let mut pool = prost_reflect::DescriptorPool::new();
        for set in [
            orgplane_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            if let Err(e) = pool.decode_file_descriptor_set(set) {
                tracing::warn!(error = %e, "a descriptor set did not decode; its methods are labelled unknown");
            }
        }
        let mut out = HashMap::new();
        for service in pool.services() {
            let service_name: &'static str = Box::leak(service.full_name().to_owned().into_boxed_str());
            for method in service.methods() {
                let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
                    (false, false) => "unary",
                    (false, true) => "server_stream",
                    (true, false) => "client_stream",
                    (true, true) => "bidi_stream",
                };
                let method_name: &'static str = Box::leak(method.name().to_owned().into_boxed_str());
                out.insert(
                    format!("/{service_name}/{method_name}"),
                    (kind, service_name, method_name),
                );
            }
        }
        out
    });
    methods
        .get(path)
        .copied()
        .unwrap_or(("unary", "unknown", "unknown"))
}

/// Records the start of an RPC on the server (`path`: `/package.Service/Method`).
pub fn record_server_started(path: &str) {
    let (kind, service, method) = grpc_labels(path);
    metrics::counter!(
        GRPC_SERVER_STARTED,
        "grpc_type" => kind, "grpc_service" => service, "grpc_method" => method
    )
    .increment(1);
}

/// Records an RPC the server answered with `code` (and ErrorInfo `reason` on errors).
pub fn record_server_handled(path: &str, code: i32, reason: Option<&str>, elapsed: Duration) {
    let (kind, service, method) = grpc_labels(path);
    metrics::counter!(
        GRPC_SERVER_HANDLED,
        "grpc_type" => kind, "grpc_service" => service, "grpc_method" => method,
        "grpc_code" => grpc_code(code)
    )
    .increment(1);
    metrics::histogram!(
        GRPC_SERVER_HANDLING,
        "grpc_type" => kind, "grpc_service" => service, "grpc_method" => method
    )
    .record(elapsed.as_secs_f64());
    if code != 0 {
        metrics::counter!(
            RPC_ERRORS,
            "grpc_service" => service, "grpc_method" => method, "grpc_code" => grpc_code(code),
            "reason" => reason.unwrap_or_default().to_owned()
        )
        .increment(1);
    }
}

/// Records an RPC this process made to another service: started, answered with `code` after
/// `elapsed`.
pub fn record_client(path: &str, code: i32, elapsed: Duration) {
    let (kind, service, method) = grpc_labels(path);
    metrics::counter!(
        GRPC_CLIENT_STARTED,
        "grpc_type" => kind, "grpc_service" => service, "grpc_method" => method
    )
    .increment(1);
    metrics::counter!(
        GRPC_CLIENT_HANDLED,
        "grpc_type" => kind, "grpc_service" => service, "grpc_method" => method,
        "grpc_code" => grpc_code(code)
    )
    .increment(1);
    metrics::histogram!(
        GRPC_CLIENT_HANDLING,
        "grpc_type" => kind, "grpc_service" => service, "grpc_method" => method
    )
    .record(elapsed.as_secs_f64());
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

/// Records whether `grpc_service` reports SERVING.
pub fn record_ready(grpc_service: &str, ready: bool) {
    metrics::gauge!(READY, "grpc_service" => grpc_service.to_owned()).set(if ready {
        1.0
    } else {
        0.0
    });
}

/// Records the newest revision of `producer`'s outbox.
pub fn record_outbox_head(producer: &str, revision: i64) {
    metrics::gauge!(OUTBOX_HEAD, "producer" => producer.to_owned()).set(revision as f64);
}

/// Counts an open Watch stream of `producer` until the returned guard is dropped.
pub fn watch_stream_open(producer: &str) -> WatchStreamGuard {
    let gauge = metrics::gauge!(WATCH_STREAMS, "producer" => producer.to_owned());
    gauge.increment(1.0);
    WatchStreamGuard(gauge)
}

/// Keeps a Watch stream counted in [`WATCH_STREAMS`]; see [`watch_stream_open`].
pub struct WatchStreamGuard(metrics::Gauge);

impl std::fmt::Debug for WatchStreamGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatchStreamGuard")
    }
}

impl Drop for WatchStreamGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Records how many password hashes wait for a slot.
pub fn record_password_hash_queue(waiting: usize) {
    metrics::gauge!(PASSWORD_HASH_QUEUE).set(waiting as f64);
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
    // Also by 0: the series exists from the first heartbeat on.
    metrics::counter!(CONSUMER_EVENTS_APPLIED, &labels).increment(applied_now);
}

/// A gRPC status code as go-grpc-prometheus labels it (`OK`, `InvalidArgument`, …): the value
/// dashboards and alerts written for gRPC services match.
pub fn grpc_code(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_labels_come_from_the_descriptors_and_unknown_paths_share_one_label() {
        assert_eq!(
            grpc_labels("/orgplane.workspace.v1.WorkspaceService/CheckAccess"),
            (
                "unary",
                "orgplane.workspace.v1.WorkspaceService",
                "CheckAccess"
            )
        );
        assert_eq!(
            grpc_labels("/orgplane.events.v1.EventService/Watch"),
            ("server_stream", "orgplane.events.v1.EventService", "Watch")
        );
        assert_eq!(
            grpc_labels("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo").0,
            "bidi_stream"
        );
        for made_up in [
            "/evil.Service/Method",
            "/orgplane.workspace.v1.WorkspaceService/Nope",
            "",
        ] {
            assert_eq!(
                grpc_labels(made_up),
                ("unary", "unknown", "unknown"),
                "{made_up:?}"
            );
        }
    }

    #[test]
    fn codes_are_labelled_as_go_grpc_prometheus_does() {
        let names: Vec<&str> = (0..=16).map(grpc_code).collect();
        assert_eq!(
            names,
            [
                "OK",
                "Canceled",
                "Unknown",
                "InvalidArgument",
                "DeadlineExceeded",
                "NotFound",
                "AlreadyExists",
                "PermissionDenied",
                "ResourceExhausted",
                "FailedPrecondition",
                "Aborted",
                "OutOfRange",
                "Unimplemented",
                "Internal",
                "Unavailable",
                "DataLoss",
                "Unauthenticated"
            ]
        );
        assert_eq!(grpc_code(99), "Unknown");
    }
}
