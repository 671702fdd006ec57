//! TLS everywhere: the real `orgplane` binary as four `serve` processes terminating TLS with
//! certificates of a CA made in the test, calling each other over `https://` (service calls and
//! event streams), and with mutual TLS, knowing each other by their certificates instead of
//! service tokens. Plaintext beyond loopback is refused at start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use orgplane_platform::error::reason_of;
use orgplane_platform::testkit::bearer;
use orgplane_platform::tls::client::ClientTls;
use orgplane_platform::tls::testing::{TestCa, TestCert};
use orgplane_platform::tls::{TlsSettings, UNKNOWN_CLIENT_CERTIFICATE};
use orgplane_proto::billing::v1 as billing;
use orgplane_proto::organization::v1 as org;
use orgplane_proto::workspace::v1 as ws;
use support::cluster::{Cluster, Layout, PRODUCT_CLIENT_ID, PRODUCT_CLIENT_SECRET, SERVICE_NAMES};
use support::people;

use billing::billing_access_service_client::BillingAccessServiceClient;
use org::organization_service_client::OrganizationServiceClient;
use ws::workspace_service_client::WorkspaceServiceClient;

/// The SPIFFE-style name of `service`'s certificate.
fn spiffe(service: &str) -> String {
    format!("spiffe://orgplane.test/{service}")
}

/// Writes `cert` as `tls.crt` / `tls.key` into each process's directory (the processes run in
/// `<root>/<service>`, so one relative path names each one's own certificate).
fn install(root: &Path, service: &str, cert: &TestCert) {
    let dir = root.join(service);
    std::fs::create_dir_all(&dir).unwrap();
    cert.write(&dir, "tls");
}

/// A client trusting `ca`, presenting `identity` when a server asks.
fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> ClientTls {
    let settings = TlsSettings {
        ca: Some(ca.to_path_buf()),
        ..Default::default()
    };
    let identity = identity
        .map(|(cert, key)| orgplane_platform::tls::CertificateFiles::open(cert, key).unwrap());
    ClientTls::new(&settings, identity).unwrap()
}

/// The owner's story across the four services: sign up, verify, sign in, create an organization
/// and a workspace; then a backend asks CheckAccess and CheckBillingAccess about the owner (both
/// answered from the organization's event stream, which crossed TLS). `backend` authorizes the
/// backend's requests (a service token, or nothing where its certificate speaks for it).
async fn story(cluster: &Cluster, backend: impl Fn(&mut tonic::metadata::MetadataMap)) {
    let (token, user_id) =
        people::signed_up_user(cluster, "olivia@tls.example", "correct horse battery").await;
    let created = OrganizationServiceClient::new(cluster.channel("organization"))
        .create_organization(bearer(
            org::CreateOrganizationRequest {
                organization: Some(org::Organization {
                    name: "Encrypted Inc".into(),
                    r#type: org::OrganizationType::Company as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let org_id = created.organization.unwrap().id;
    let mut create = bearer(
        ws::CreateWorkspaceRequest {
            organization_id: org_id.clone(),
            workspace: Some(ws::Workspace {
                name: "production".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        },
        &token,
    );
    // Read-your-writes: the workspace service waits until the organization's event stream
    // (over TLS) has brought it the new organization.
    create.metadata_mut().insert(
        orgplane_platform::call::MIN_ORGANIZATION_REVISION_HEADER,
        created.revision.to_string().parse().unwrap(),
    );
    let workspace = WorkspaceServiceClient::new(cluster.channel("workspace"))
        .create_workspace(create)
        .await
        .unwrap()
        .into_inner()
        .workspace
        .unwrap();
    let mut check = tonic::Request::new(ws::CheckAccessRequest {
        organization_id: org_id.clone(),
        workspace_id: workspace.id,
        subject: Some(ws::check_access_request::Subject::UserId(user_id.clone())),
        permission: ws::Permission::Admin as i32,
        min_organization_revision: created.revision,
        min_workspace_revision: 0,
    });
    backend(check.metadata_mut());
    let access = WorkspaceServiceClient::new(cluster.channel("workspace"))
        .check_access(check)
        .await
        .unwrap()
        .into_inner();
    assert!(
        access.allowed,
        "the owner administers the workspace: {access:?}"
    );
    let mut billing_check = tonic::Request::new(billing::CheckBillingAccessRequest {
        organization_id: org_id,
        subject: Some(billing::check_billing_access_request::Subject::UserId(
            user_id,
        )),
        min_organization_revision: created.revision,
    });
    backend(billing_check.metadata_mut());
    let billing = BillingAccessServiceClient::new(cluster.channel("billing-access"))
        .check_billing_access(billing_check)
        .await
        .unwrap()
        .into_inner();
    assert!(billing.allowed, "the owner sees billing: {billing:?}");
}

/// A product backend's service token, issued over TLS.
async fn product_token(cluster: &Cluster) -> String {
    use orgplane_proto::identity::v1 as identity;
    identity::identity_service_client::IdentityServiceClient::new(cluster.channel("identity"))
        .issue_service_token(identity::IssueServiceTokenRequest {
            client_id: PRODUCT_CLIENT_ID.into(),
            client_secret: PRODUCT_CLIENT_SECRET.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_four_processes_run_the_story_over_tls_with_service_tokens() {
    let root = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Orgplane test CA");
    let ca_path = ca.write(root.path(), "ca");
    for service in SERVICE_NAMES {
        install(root.path(), service, &ca.issue(&["127.0.0.1", "localhost"]));
    }
    let env = vec![
        ("ORGPLANE_TLS_CERT", "tls.crt".to_string()),
        ("ORGPLANE_TLS_KEY", "tls.key".to_string()),
        ("ORGPLANE_TLS_CA", ca_path.display().to_string()),
    ];
    let cluster = Cluster::start_with(
        Layout::FourProcesses,
        root.path(),
        None,
        env,
        Some(client(&ca_path, None)),
    )
    .await;
    for service in SERVICE_NAMES {
        assert!(
            cluster.url(service).starts_with("https://"),
            "{service} announces TLS"
        );
    }
    let token = product_token(&cluster).await;
    story(&cluster, |metadata| {
        metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
    })
    .await;

    // A plaintext client reaches nothing.
    let plain = cluster.url("workspace").replace("https://", "http://");
    let refused = tonic_health::pb::health_client::HealthClient::new(
        orgplane_platform::testkit::channel(&plain),
    )
    .check(tonic_health::pb::HealthCheckRequest::default())
    .await;
    assert!(
        refused.is_err(),
        "plaintext to a TLS listener fails: {refused:?}"
    );
    cluster.stop().await;
}

/// Mutual TLS, required: the services present their own certificates and send no service
/// token (identity trusts no service account but its own), a backend's certificate is its
/// service account, and a certificate naming no account, or none, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_4_mutual_tls_certificates_replace_service_tokens_and_unknown_ones_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Orgplane test CA");
    let ca_path = ca.write(root.path(), "ca");
    for service in SERVICE_NAMES {
        install(
            root.path(),
            service,
            &ca.issue(&["127.0.0.1", &spiffe(service)]),
        );
    }
    let mut accounts: Vec<String> = SERVICE_NAMES
        .iter()
        .map(|s| format!("{}={s}:@{s}", spiffe(s)))
        .collect();
    accounts.push(format!("{}=gateway:check-access", spiffe("gateway")));
    let env = vec![
        ("ORGPLANE_TLS_CERT", "tls.crt".to_string()),
        ("ORGPLANE_TLS_KEY", "tls.key".to_string()),
        ("ORGPLANE_TLS_CA", ca_path.display().to_string()),
        ("ORGPLANE_TLS_CLIENT_CA", ca_path.display().to_string()),
        ("ORGPLANE_TLS_CLIENT_AUTH", "required".to_string()),
        ("ORGPLANE_TLS_CLIENT_ACCOUNTS", accounts.join(",")),
        ("ORGPLANE_SERVICE_AUTH", "certificate".to_string()),
        // No service account but identity's own may get a token: the services must do without.
        ("ORGPLANE_SERVICE_ACCOUNTS", String::new()),
    ];
    let gateway = ca.issue(&[spiffe("gateway").as_str()]);
    let (gateway_cert, gateway_key) = gateway.write(root.path(), "gateway");
    let cluster = Cluster::start_with(
        Layout::FourProcesses,
        root.path(),
        None,
        env,
        Some(client(&ca_path, Some((&gateway_cert, &gateway_key)))),
    )
    .await;
    // The gateway forwards the user's tokens, and asks CheckAccess as itself (no token).
    story(&cluster, |_| {}).await;

    // A certificate of the same CA naming no configured account: refused with its reason.
    let stranger = ca.issue(&[spiffe("stranger").as_str()]);
    let (cert, key) = stranger.write(root.path(), "stranger");
    let channel = orgplane_platform::clients::connect_lazy(
        &cluster.url("organization"),
        Some(&client(&ca_path, Some((&cert, &key)))),
    )
    .unwrap();
    let status = OrganizationServiceClient::new(channel)
        .list_organizations(org::ListOrganizationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(
        reason_of(&status).as_deref(),
        Some(UNKNOWN_CLIENT_CERTIFICATE.as_str_name())
    );

    // No certificate at all: the handshake fails.
    let channel = orgplane_platform::clients::connect_lazy(
        &cluster.url("organization"),
        Some(&client(&ca_path, None)),
    )
    .unwrap();
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap_err();
    // Refused at the handshake: with TLS 1.3 the client learns it after its own half completed,
    // as an alert or as the connection closing, depending on timing; the server never answered.
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ) && reason_of(&status).is_none(),
        "{status:?}"
    );

    // The health probe as Kubernetes runs it in the production overlay (`orgplane health` in the
    // container, with the process's own certificate) passes.
    let probe = tokio::process::Command::new(support::orgplane_binary())
        .args(["health", "--service", "liveness"])
        .current_dir(root.path().join("organization"))
        .env(
            "ORGPLANE_LISTEN",
            cluster.url("organization").trim_start_matches("https://"),
        )
        .env("ORGPLANE_TLS_CERT", "tls.crt")
        .env("ORGPLANE_TLS_KEY", "tls.key")
        .env("ORGPLANE_TLS_CA", &ca_path)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        probe.status.success(),
        "orgplane health: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    cluster.stop().await;
}

/// The control of the test above: with client certificates optional, the same clients are let
/// in (the stranger as anonymous, the certificate-less one at the handshake), so it is
/// `required` that refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_4_control_optional_client_certificates_let_strangers_in() {
    let root = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Orgplane test CA");
    let ca_path = ca.write(root.path(), "ca");
    let (cert, key) = ca.issue(&["127.0.0.1"]).write(root.path(), "tls");
    let env = vec![
        ("ORGPLANE_TLS_CERT", cert.display().to_string()),
        ("ORGPLANE_TLS_KEY", key.display().to_string()),
        ("ORGPLANE_TLS_CA", ca_path.display().to_string()),
        ("ORGPLANE_TLS_CLIENT_CA", ca_path.display().to_string()),
    ];
    let cluster = Cluster::start_with(
        Layout::All,
        root.path(),
        None,
        env,
        Some(client(&ca_path, None)),
    )
    .await;
    let stranger = ca.issue(&[spiffe("stranger").as_str()]);
    let (s_cert, s_key) = stranger.write(root.path(), "stranger");
    let channel = orgplane_platform::clients::connect_lazy(
        &cluster.url("organization"),
        Some(&client(&ca_path, Some((&s_cert, &s_key)))),
    )
    .unwrap();
    let status = OrganizationServiceClient::new(channel)
        .list_organizations(org::ListOrganizationsRequest::default())
        .await
        .unwrap_err();
    assert_ne!(
        reason_of(&status).as_deref(),
        Some(UNKNOWN_CLIENT_CERTIFICATE.as_str_name()),
        "without `required`, the stranger is only an anonymous caller: {status:?}"
    );
    tonic_health::pb::health_client::HealthClient::new(cluster.channel("organization"))
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("a client without a certificate connects");
    cluster.stop().await;
}

#[tokio::test]
async fn tls_plaintext_beyond_loopback_is_refused_at_start_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let refused = tokio::process::Command::new(support::orgplane_binary())
        .args(["all", "--listen", "0.0.0.0:0", "--http-listen", "off"])
        .current_dir(dir.path())
        .env("ORGPLANE_DATA_DIR", dir.path().join("data"))
        .env("RUST_LOG", "error")
        .output();
    let refused = tokio::time::timeout(Duration::from_secs(30), refused)
        .await
        .expect("orgplane exits at once")
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to listen in plaintext on 0.0.0.0:0")
            && stderr.contains("--allow-plaintext"),
        "a clear message: {stderr}"
    );

    // Control: the same command with --allow-plaintext serves.
    let allowed = support::Orgplane::start(
        &["all", "--listen", "0.0.0.0:0", "--allow-plaintext"],
        dir.path(),
        &[],
    )
    .await;
    assert!(
        allowed.url.starts_with("http://0.0.0.0:"),
        "{}",
        allowed.url
    );
    assert!(allowed.terminate().await.success());
}
