//! The foundation as a new user meets it: the real `orgplane` binary in both process layouts, on
//! SQLite and PostgreSQL, with health, reflection (v1 and v1alpha), request ids and graceful
//! shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::cluster::start_four_processes;
use support::{Orgplane, wait_serving};
use tokio_stream::StreamExt;

const SERVICES: [&str; 4] = [
    "orgplane.identity.v1.IdentityService",
    "orgplane.organization.v1.OrganizationService",
    "orgplane.workspace.v1.WorkspaceService",
    "orgplane.billing.v1.BillingAccessService",
];

async fn list_services_v1(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    match resp.message_response.unwrap() {
        MessageResponse::ListServicesResponse(l) => l.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

async fn list_services_v1alpha(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    match resp.message_response.unwrap() {
        MessageResponse::ListServicesResponse(l) => l.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn foundation_orgplane_all_serves_every_service_with_health_and_reflection() {
    let dir = tempfile::tempdir().unwrap();
    let app = Orgplane::start(&[], dir.path(), &[]).await;
    assert!(
        app.banner
            .iter()
            .any(|l| l.contains("identity") && l.contains("sqlite://"))
    );
    for s in SERVICES {
        wait_serving(app.channel(), s).await;
    }
    wait_serving(app.channel(), "").await;
    for names in [
        list_services_v1(app.channel()).await,
        list_services_v1alpha(app.channel()).await,
    ] {
        for expected in SERVICES
            .iter()
            .chain(&["orgplane.events.v1.EventService", "grpc.health.v1.Health"])
        {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
    }
    for s in ["identity", "organization", "workspace", "billing-access"] {
        assert!(
            dir.path().join(format!("data/{s}.db")).exists(),
            "one SQLite file per service: {s}.db"
        );
    }

    // x-request-id: echoed when sent, generated when absent.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    let mut req = tonic::Request::new(tonic_health::pb::HealthCheckRequest::default());
    req.metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().unwrap());
    let resp = health.check(req).await.unwrap();
    assert_eq!(resp.metadata().get("x-request-id").unwrap(), "trace-me-42");
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    assert!(!resp.metadata().get("x-request-id").unwrap().is_empty());

    // Business RPCs need credentials: a bad token is UNAUTHENTICATED, with the request id echoed.
    let mut orgs = orgplane_proto::organization::v1::organization_service_client::OrganizationServiceClient::new(app.channel());
    let mut req = tonic::Request::new(Default::default());
    req.metadata_mut()
        .insert("authorization", "Bearer not-a-jwt".parse().unwrap());
    let err = orgs.get_organization(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(err.metadata().get("x-request-id").is_some());

    let status = app.terminate().await;
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
}

#[tokio::test]
async fn foundation_serve_runs_one_service_per_process() {
    let dir = tempfile::tempdir().unwrap();
    let procs = start_four_processes(dir.path(), None).await;
    for ((name, app), grpc) in procs.iter().zip(SERVICES) {
        wait_serving(app.channel(), grpc).await;
        let names = list_services_v1(app.channel()).await;
        for other in SERVICES.iter().filter(|s| **s != grpc) {
            assert!(
                !names.iter().any(|n| n == other),
                "{name} serves only itself"
            );
        }
        let files: Vec<_> = std::fs::read_dir(dir.path().join(name).join("data"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".db"))
            .collect();
        assert_eq!(files, [format!("{name}.db")]);
    }
    for (_, p) in procs {
        assert!(p.terminate().await.success());
    }
}

#[tokio::test]
async fn foundation_migrate_creates_every_database_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(support::orgplane_binary())
        .arg("migrate")
        .env("ORGPLANE_DATA_DIR", dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in ["identity", "organization", "workspace", "billing-access"] {
        assert!(dir.path().join(format!("data/{s}.db")).exists());
    }
}

#[tokio::test]
async fn foundation_orgplane_all_runs_on_postgres() {
    let mut dbs = Vec::new();
    let mut env = Vec::new();
    for var in [
        "ORGPLANE_IDENTITY_DATABASE_URL",
        "ORGPLANE_ORGANIZATION_DATABASE_URL",
        "ORGPLANE_WORKSPACE_DATABASE_URL",
        "ORGPLANE_BILLING_ACCESS_DATABASE_URL",
    ] {
        let Some(db) = orgplane_platform::testkit::TestDb::postgres().await else {
            eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
            return;
        };
        env.push((var, db.url.clone()));
        dbs.push(db);
    }
    let dir = tempfile::tempdir().unwrap();
    let app = Orgplane::start(&["all"], dir.path(), &env).await;
    assert!(app.banner.iter().any(|l| l.contains("postgres://")));
    for s in SERVICES {
        wait_serving(app.channel(), s).await;
    }
    assert!(
        !dir.path().join("data/identity.db").exists(),
        "no SQLite file when PostgreSQL is configured"
    );
    assert!(app.terminate().await.success());
}

/// Metrics: after a few calls the Prometheus endpoint shows per-RPC counters and latency.
#[tokio::test]
async fn foundation_metrics_endpoint_counts_rpcs() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let app = Orgplane::start(
        &[],
        dir.path(),
        &[("ORGPLANE_METRICS_LISTEN", format!("127.0.0.1:{port}"))],
    )
    .await;
    wait_serving(app.channel(), SERVICES[0]).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    for _ in 0..3 {
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap();
    }
    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            conn.write_all(
                b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
            body.clear();
            conn.read_to_string(&mut body).await.unwrap();
            if body.contains("grpc_server_handled_total")
                && body.contains("orgplane_consumer_lag_revisions")
            {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        body.lines()
            .any(|l| l.starts_with("grpc_server_handled_total")
                && l.contains("grpc_service=\"grpc.health.v1.Health\"")
                && l.contains("grpc_code=\"OK\"")),
        "{body}"
    );
    assert!(
        body.contains("grpc_server_handling_seconds_bucket"),
        "{body}"
    );
    assert!(app.terminate().await.success());
}
