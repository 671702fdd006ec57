//! The HTTP listener (`--http-listen`, issue 17 item 1): served on port 0 by the real start-up
//! path, or by the platform's `http::app`/`http::serve` around small test routes where a test
//! needs a slow or body-reading handler. Every test talks real HTTP over TCP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use orgplane::{Cli, Service};
use orgplane_platform::http::{HttpConfig, app, serve};
use orgplane_platform::server::{GrpcServer, Health, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const READY_SERVICE: &str = "test.v1.ReadyService";

/// A health handle with one service registered, ready or not.
async fn health(ready: bool) -> Health {
    let health = GrpcServer::new(ServerConfig::default()).health();
    health.register(READY_SERVICE).await;
    health.set_ready(READY_SERVICE, ready).await;
    health
}

/// Test routes: `/echo` answers the body's length, `/slow` answers after `slow`, `/block`
/// answers once `gate` is released.
fn routes(slow: Duration, gate: Arc<tokio::sync::Semaphore>) -> Router {
    Router::new()
        .route(
            "/echo",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(slow).await;
                "done"
            }),
        )
        .route(
            "/block",
            get(move || async move {
                let _permit = gate.acquire().await;
                "released"
            }),
        )
}

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    gate: Arc<tokio::sync::Semaphore>,
}

async fn run(config: HttpConfig, ready: bool) -> Running {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let app = app(
        routes(Duration::from_millis(400), gate.clone()),
        health(ready).await,
        &config,
    );
    let task = tokio::spawn(serve(listener, app, None, shutdown.clone()));
    Running {
        addr,
        shutdown,
        task,
        gate,
    }
}

fn config() -> HttpConfig {
    HttpConfig {
        max_body_bytes: 1024,
        request_timeout: Duration::from_secs(5),
        max_concurrent_requests: 16,
        max_queue_wait: Duration::from_secs(5),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sends `head` and then `body` in pieces on a raw connection; returns the status line's code
/// and the whole answer.
async fn raw(addr: SocketAddr, head: &str, pieces: &[&[u8]], pause: Duration) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in pieces {
        // The server may answer (and close) before everything was sent.
        if stream.write_all(piece).await.is_err() {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn assert_error_document(body: &serde_json::Value, status: &str) {
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn id_14_http_healthz_and_readyz_answer_from_the_grpc_health() {
    let ready = run(config(), true).await;
    let not_ready = run(config(), false).await;
    let c = client();
    for (running, ready_code, state) in [(&ready, 200, "SERVING"), (&not_ready, 503, "NOT_SERVING")]
    {
        let live = c
            .get(format!("http://{}/healthz", running.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(live.status(), 200, "liveness does not depend on readiness");
        let r = c
            .get(format!("http://{}/readyz", running.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), ready_code);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], state, "{body}");
        assert_eq!(body["services"][READY_SERVICE], state, "{body}");
    }
}

#[tokio::test]
async fn id_14_http_request_id_is_echoed_or_generated() {
    let running = run(config(), true).await;
    let c = client();
    let url = format!("http://{}/healthz", running.addr);
    let r = c
        .get(&url)
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-42");
    let r = c
        .get(&url)
        .header("x-request-id", "has space")
        .send()
        .await
        .unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(generated != "has space" && !generated.is_empty());
}

#[tokio::test]
async fn id_14_http_body_over_the_limit_is_refused_413_with_a_json_error() {
    let running = run(config(), true).await;
    let c = client();
    let url = format!("http://{}/echo", running.addr);
    // Control arm: a body within the limit reaches the handler.
    let r = c.post(&url).body(vec![b'a'; 1024]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1024");

    let r = c.post(&url).body(vec![b'a'; 1025]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_error_document(&r.json().await.unwrap(), "413");

    // Without a Content-Length (chunked), the limit holds while the body is read.
    let chunk = format!("400\r\n{}\r\n", "b".repeat(0x400));
    let (code, text) = raw(
        running.addr,
        "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        &[chunk.as_bytes(), chunk.as_bytes(), b"0\r\n\r\n"],
        Duration::from_millis(10),
    )
    .await;
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("urn:ietf:params:scim:api:messages:2.0:Error"));
}

#[tokio::test]
async fn id_14_http_a_slow_handler_is_cut_at_the_timeout_and_a_slow_body_gets_408() {
    let running = run(
        HttpConfig {
            request_timeout: Duration::from_millis(200),
            ..config()
        },
        true,
    )
    .await;
    let r = client()
        .get(format!("http://{}/slow", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_error_document(&r.json().await.unwrap(), "503");

    let (code, text) = raw(
        running.addr,
        "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\nconnection: close\r\n\r\n",
        &[b"0123456789", b"0123456789"],
        Duration::from_millis(400),
    )
    .await;
    assert_eq!(code, 408, "{text}");

    // Control arm: with time to spare the same slow handler answers.
    let patient = run(config(), true).await;
    let r = client()
        .get(format!("http://{}/slow", patient.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn id_14_http_requests_beyond_the_concurrency_limit_wait_then_get_503() {
    let limited = run(
        HttpConfig {
            max_concurrent_requests: 1,
            max_queue_wait: Duration::from_millis(200),
            ..config()
        },
        true,
    )
    .await;
    let c = client();
    let blocked = tokio::spawn(c.get(format!("http://{}/block", limited.addr)).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c
        .post(format!("http://{}/echo", limited.addr))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("busy"), "{body}");
    // Health stays reachable while the service routes are saturated.
    let h = c
        .get(format!("http://{}/healthz", limited.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    limited.gate.add_permits(1);
    assert_eq!(blocked.await.unwrap().unwrap().status(), 200);

    // Control arm: with two slots the second request is served while the first blocks.
    let roomy = run(
        HttpConfig {
            max_concurrent_requests: 2,
            ..config()
        },
        true,
    )
    .await;
    let blocked = tokio::spawn(c.get(format!("http://{}/block", roomy.addr)).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c
        .post(format!("http://{}/echo", roomy.addr))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    roomy.gate.add_permits(1);
    assert_eq!(blocked.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn id_14_http_shutdown_drains_a_slow_request_and_stops_accepting() {
    let running = run(config(), true).await;
    let url = format!("http://{}/slow", running.addr);
    let in_flight = tokio::spawn(client().get(url).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.shutdown.cancel();
    let answer = in_flight.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200, "the request in flight was drained");
    assert_eq!(answer.text().await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("the server stops once drained")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(running.addr).await.is_err(),
        "no new connections after shutdown"
    );
}

/// A log sink for the access-log test.
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

#[tokio::test(flavor = "current_thread")]
async fn id_14_http_access_log_has_one_line_per_request_without_secrets_or_query_values() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let running = run(config(), true).await;
    let r = client()
        .post(format!(
            "http://{}/echo?filter=userName%20eq%20%22hidden-value%22",
            running.addr
        ))
        .header("authorization", "Bearer opscim_supersecret")
        .header("x-request-id", "req-log-1")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    running.shutdown.cancel();
    let _ = running.task.await;
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("http request"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    for expected in [
        "method=\"POST\"",
        "path=/echo",
        "status=200",
        "req-log-1",
        "duration_ms",
    ] {
        assert!(line.contains(expected), "{expected} missing: {line}");
    }
    assert!(!text.contains("opscim_supersecret"), "{text}");
    assert!(!text.contains("hidden-value"), "{text}");
    assert!(!text.contains("filter="), "{text}");
}

#[tokio::test]
async fn id_14_http_requests_are_counted_by_route_and_status() {
    let metrics = orgplane_platform::metrics::install_for_tests().unwrap();
    let running = run(config(), true).await;
    let c = client();
    let url = format!("http://{}/echo", running.addr);
    c.post(&url).body("x").send().await.unwrap();
    c.post(&url).body(vec![0u8; 2048]).send().await.unwrap();
    c.get(format!("http://{}/no/such/user-123", running.addr))
        .send()
        .await
        .unwrap();
    let text = metrics.render();
    for expected in [
        // Other tests here count into the same recorder: no exact numbers.
        r#"orgplane_http_requests_total{method="POST",route="/echo",status="200"} "#,
        r#"orgplane_http_requests_total{method="POST",route="/echo",status="413"} "#,
        r#"route="unmatched",status="404""#,
        "orgplane_http_duration_seconds_bucket",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
    assert!(!text.contains("user-123"), "raw paths never become labels");
}

fn cli(args: &[&str], dir: &std::path::Path) -> Cli {
    let mut argv = vec![
        "orgplane".to_owned(),
        "--data-dir".to_owned(),
        dir.display().to_string(),
        "--mail-url".to_owned(),
        format!("file://{}", dir.join("mail").display()),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    <Cli as clap::Parser>::try_parse_from(argv).unwrap()
}

async fn start(args: &[&str], services: &[Service]) -> (orgplane::Started, CancellationToken) {
    let dir = tempfile::tempdir().unwrap();
    let cli = cli(args, dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let started = orgplane::start(&cli, services, listener, shutdown.clone())
        .await
        .unwrap();
    // The data directory must outlive the servers; the test process ends first.
    std::mem::forget(dir);
    (started, shutdown)
}

#[tokio::test]
async fn id_14_http_serve_identity_binds_the_listener_only_when_asked() {
    let (started, shutdown) = start(&["serve", "identity"], &[Service::Identity]).await;
    assert_eq!(started.http_addr, None, "off by default in `serve`");
    shutdown.cancel();
    started.wait().await.unwrap();

    let (started, shutdown) = start(
        &["serve", "identity", "--http-listen", "127.0.0.1:0"],
        &[Service::Identity],
    )
    .await;
    let http = started
        .http_addr
        .expect("asked for, and identity has routes");
    let c = client();
    let mut ready = None;
    for _ in 0..100 {
        let r = c.get(format!("http://{http}/readyz")).send().await.unwrap();
        if r.status() == 200 {
            ready = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = ready.expect("identity became ready");
    assert_eq!(
        ready["services"]["orgplane.identity.v1.IdentityService"], "SERVING",
        "{ready}"
    );
    shutdown.cancel();
    started.wait().await.unwrap();
}

#[tokio::test]
async fn id_14_http_a_process_without_http_routes_binds_nothing_even_when_asked() {
    let (started, shutdown) = start(
        &["serve", "workspace", "--http-listen", "127.0.0.1:0"],
        &[Service::Workspace],
    )
    .await;
    assert_eq!(started.http_addr, None);
    shutdown.cancel();
    started.wait().await.unwrap();
}
