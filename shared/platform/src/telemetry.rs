//! Logs and traces: a `tracing` subscriber (text or JSON), an OpenTelemetry tracer so that every
//! span has W3C trace ids, OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and the helpers
//! that carry `traceparent` across gRPC metadata in both directions.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the span fields (request id, trace id).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

/// Keeps the tracer provider alive; dropping it flushes pending spans.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Where log lines go and how many, when not as [`init`] has it (stdout, `RUST_LOG` alone).
#[derive(Debug, Clone, Default)]
pub struct LogOutput {
    /// Directives (`EnvFilter` syntax, e.g. `warn`) for log lines only, applied after
    /// `RUST_LOG`'s filter. Spans and events still reach the OpenTelemetry layer as `RUST_LOG`
    /// says, so a quiet process (the load generator) keeps the tracing cost the binary has.
    pub filter: Option<String>,
    /// Write log lines to stderr instead of stdout.
    pub stderr: bool,
}

/// Installs the global subscriber for `service_name` (the OpenTelemetry `service.name`, unless
/// `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names one). Log levels come from `RUST_LOG`
/// (default `info`; `orgplane::access` is the per-RPC access log). Spans are exported over
/// OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(service_name: &str, format: LogFormat) -> TelemetryGuard {
    init_with(service_name, format, &LogOutput::default())
}

/// [`init`] with log lines filtered or redirected by `output`; spans are unaffected.
pub fn init_with(service_name: &str, format: LogFormat, output: &LogOutput) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // The standard variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) are read by the
    // resource's detectors and win over the process's own name.
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !service_name_configured() {
        resource = resource.with_service_name(service_name.to_owned());
    }
    let resource = resource.build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    let mut export_error = None;
    let mut exporting = false;
    if !endpoint.is_empty() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => {
                builder = builder.with_batch_exporter(exporter);
                exporting = true;
            }
            Err(e) => export_error = Some(e.to_string()),
        }
    }
    if !exporting && std::env::var_os("OTEL_TRACES_SAMPLER").is_none() {
        builder = builder.with_sampler(unexported_sampler());
    }
    let provider = builder.build();
    let tracer = provider.tracer("orgplane");
    opentelemetry::global::set_tracer_provider(provider.clone());
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sea_orm_migration=warn,sqlx=warn"));
    let writer = if output.stderr {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    let result = subscriber(tracer, filter, format, output.filter.as_deref(), writer).try_init();
    if result.is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
    if let Some(e) = export_error {
        tracing::warn!(error = %e, endpoint, "OTLP export disabled: exporter could not be built");
    } else if !endpoint.is_empty() {
        tracing::info!(endpoint, "exporting traces over OTLP");
    }
    TelemetryGuard { provider }
}

/// The sampler of a process that exports no spans (unless `OTEL_TRACES_SAMPLER` names one):
/// a span whose caller's trace is sampled is recorded, so the `sampled` flag it propagates
/// stays true for the services after it that do export; every other span gets its W3C ids
/// (log lines, audit records and outgoing `traceparent` still carry them) but is not recorded,
/// sparing each RPC the building of a span nobody receives.
fn unexported_sampler() -> opentelemetry_sdk::trace::Sampler {
    use opentelemetry_sdk::trace::Sampler;
    Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
}

/// Whether `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names the service.
fn service_name_configured() -> bool {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    set("OTEL_SERVICE_NAME").is_some()
        || set("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attributes| {
            attributes
                .split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        })
}

/// The layers: `filter` for everything, the OpenTelemetry layer, and the fmt layer writing to
/// `writer`, further filtered by `lines` when given.
fn subscriber(
    tracer: opentelemetry_sdk::trace::Tracer,
    filter: EnvFilter,
    format: LogFormat,
    lines: Option<&str>,
    writer: BoxMakeWriter,
) -> impl tracing::Subscriber + Send + Sync + 'static {
    // Access lines are emitted outside every span: the OpenTelemetry layer has nothing to attach
    // them to, and without its interest they cost nothing where the line filter drops them.
    // No code locations, thread names, busy/idle times or context activation: they cost
    // allocations and clock reads on every span and every poll, and nothing here reads them
    // (trace context is taken from the span itself, `OpenTelemetrySpanExt::context`).
    let otel = tracing_opentelemetry::layer()
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_tracer(tracer)
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing::Level::TRACE)
                .with_target(
                    crate::context::ACCESS_LOG_TARGET,
                    tracing_subscriber::filter::LevelFilter::OFF,
                ),
        );
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    };
    let fmt = match lines {
        Some(directives) => fmt.with_filter(EnvFilter::new(directives)).boxed(),
        None => fmt,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(fmt)
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct MapInjector<'a>(&'a mut std::collections::HashMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// Makes `span` a child of the W3C trace context in `headers`, if there is one.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject_current(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MetadataInjector(metadata))
    });
}

/// Writes `span`'s trace context into outgoing HTTP/2 headers (replacing any already there).
pub fn inject_span(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// The current span's `(traceparent, tracestate)`, empty when no trace is active. Stored with
/// outbox events so that consumers can link their work to the mutation's trace.
pub fn current_trace_headers() -> (String, String) {
    let cx = tracing::Span::current().context();
    let mut map = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MapInjector(&mut map))
    });
    (
        map.remove("traceparent").unwrap_or_default(),
        map.remove("tracestate").unwrap_or_default(),
    )
}

/// The current trace id as 32 hex characters, empty when none (for audit records and logs).
pub fn current_trace_id() -> String {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if sc.is_valid() {
        sc.trace_id().to_string()
    } else {
        String::new()
    }
}

/// The trace id of `span` as 32 hex characters, empty when it has none.
pub fn trace_id_of(span: &tracing::Span) -> String {
    let cx = span.context();
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    if sc.is_valid() {
        sc.trace_id().to_string()
    } else {
        String::new()
    }
}

/// Makes `span` part of the trace described by `traceparent`/`tracestate` (as stored on an
/// event): applying an event continues the trace of the mutation that produced it, so one trace
/// spans the producer and every consumer.
pub fn continue_trace(span: &tracing::Span, traceparent: &str, tracestate: &str) {
    if traceparent.is_empty() {
        return;
    }
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(traceparent) {
        headers.insert("traceparent", v);
    }
    if let Ok(v) = http::HeaderValue::from_str(tracestate) {
        headers.insert("tracestate", v);
    }
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(&headers)));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The subscriber of a process exporting no spans, at `info`, its lines filtered by `lines`.
    fn unexported_subscriber(
        lines: Option<&str>,
        writer: BoxMakeWriter,
    ) -> impl tracing::Subscriber + Send + Sync + 'static {
        let provider = SdkTracerProvider::builder()
            .with_sampler(unexported_sampler())
            .build();
        subscriber(
            provider.tracer("test"),
            EnvFilter::new("info"),
            LogFormat::Text,
            lines,
            writer,
        )
    }

    /// Logs an info and a warn line inside an info span; returns the span's trace id and the
    /// lines written.
    fn log_through(lines: Option<&str>) -> (String, String) {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = unexported_subscriber(lines, BoxMakeWriter::new(move || writer.clone()));
        let trace_id = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("rpc");
            let _entered = span.enter();
            tracing::info!("an info line");
            tracing::warn!("a warn line");
            current_trace_id()
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        (trace_id, text)
    }

    #[test]
    fn a_log_line_filter_quiets_lines_while_info_spans_still_get_w3c_trace_ids() {
        let (trace_id, text) = log_through(Some("warn"));
        assert_eq!(trace_id.len(), 32, "the OpenTelemetry layer saw the span");
        assert!(text.contains("a warn line"), "{text}");
        assert!(!text.contains("an info line"), "{text}");

        let (trace_id, text) = log_through(None);
        assert_eq!(trace_id.len(), 32);
        assert!(
            text.contains("an info line") && text.contains("a warn line"),
            "without it every enabled line is written: {text}"
        );
    }

    #[test]
    fn without_an_exporter_spans_keep_w3c_ids_and_a_sampled_callers_flag() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let subscriber = unexported_subscriber(Some("off"), BoxMakeWriter::new(std::io::sink));
        let sampled = |span: &tracing::Span| span.context().span().span_context().is_sampled();
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("rpc");
            assert_eq!(
                trace_id_of(&root).len(),
                32,
                "a root span still has a trace id"
            );
            assert!(!sampled(&root), "nobody receives it: not recorded");
            let (traceparent, _) = {
                let _entered = root.enter();
                current_trace_headers()
            };
            assert!(traceparent.ends_with("-00"), "{traceparent}");

            let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let child = tracing::info_span!("apply_event");
            continue_trace(&child, caller, "");
            assert_eq!(trace_id_of(&child), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(
                sampled(&child),
                "a sampled caller's trace stays sampled downstream"
            );
        });
    }
}
