//! TLS as the platform serves it, over real connections on loopback: certificates of a CA made
//! in the test are verified (a client trusting another CA, or a certificate past its validity,
//! is refused), and a certificate replaced on disk is served to the next connection without a
//! restart while open connections continue (a pair that does not load is not served).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use orgplane_platform::server::{GrpcServer, ServerConfig};
use orgplane_platform::testkit::{RunningServer, TestAuth};
use orgplane_platform::tls::client::ClientTls;
use orgplane_platform::tls::server::{ALPN_H2, ServerTls};
use orgplane_platform::tls::testing::{TestCa, TestCert};
use orgplane_platform::tls::{CertificateFiles, TlsSettings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A gRPC server (health only) serving `cert.crt` / `cert.key` in `dir` over TLS.
async fn server(dir: &Path) -> RunningServer {
    let settings = TlsSettings {
        cert: Some(dir.join("cert.crt")),
        key: Some(dir.join("cert.key")),
        ..Default::default()
    };
    let files = settings.certificate().unwrap().unwrap();
    let mut server = GrpcServer::new(ServerConfig::default());
    server.with_tls(ServerTls::new(&settings, files, &[ALPN_H2]).unwrap());
    RunningServer::start(server, TestAuth::new().authenticator(), None).await
}

/// A channel to `server` trusting the CA at `ca`.
fn channel(server: &RunningServer, ca: &Path) -> tonic::transport::Channel {
    let settings = TlsSettings {
        ca: Some(ca.to_path_buf()),
        ..Default::default()
    };
    let tls = ClientTls::new(&settings, None).unwrap();
    orgplane_platform::clients::connect_lazy(&format!("https://{}", server.addr), Some(&tls))
        .unwrap()
        .into_inner()
}

async fn health(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// The leaf certificate a new connection to `server` is served, read by a rustls client
/// trusting `ca`.
async fn served_leaf(server: &RunningServer, ca: &TestCa) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&ca.pem())).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn issue(ca: &TestCa, dir: &Path) -> TestCert {
    let cert = ca.issue(&["127.0.0.1"]);
    cert.write(dir, "cert");
    cert
}

#[tokio::test]
async fn tls_a_client_trusting_another_ca_is_refused_and_the_right_ca_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ours");
    let other = TestCa::new("theirs");
    issue(&ca, dir.path());
    let ours = ca.write(dir.path(), "ours");
    let theirs = other.write(dir.path(), "theirs");
    let server = server(dir.path()).await;

    let refused = health(channel(&server, &theirs)).await.unwrap_err();
    assert!(
        format!("{refused:?}").contains("UnknownIssuer"),
        "the certificate does not chain to the client's CA: {refused:?}"
    );
    // Control: the same server, a client trusting its CA.
    health(channel(&server, &ours)).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn tls_an_expired_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ours");
    ca.issue_expired(&["127.0.0.1"]).write(dir.path(), "cert");
    let ca_path = ca.write(dir.path(), "ca");
    let server = server(dir.path()).await;
    let refused = health(channel(&server, &ca_path)).await.unwrap_err();
    assert!(
        format!("{refused:?}").contains("Expired"),
        "a certificate past its validity is refused: {refused:?}"
    );
    // Control: a current certificate of the same CA, picked up from the same files.
    issue(&ca, dir.path());
    health(channel(&server, &ca_path)).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn tls_a_replaced_certificate_is_served_to_the_next_connection_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ours");
    let ca_path = ca.write(dir.path(), "ca");
    let first = issue(&ca, dir.path());
    let server = server(dir.path()).await;
    assert_eq!(served_leaf(&server, &ca).await, der(&first.cert_pem));
    let open = channel(&server, &ca_path);
    health(open.clone()).await.unwrap();

    // cert-manager replaces both files in place.
    let second = issue(&ca, dir.path());
    assert_eq!(
        served_leaf(&server, &ca).await,
        der(&second.cert_pem),
        "the next connection gets the new certificate"
    );
    health(open).await.expect("the open connection continues");

    // A replacement that does not load (the key of another certificate, as while a writer is
    // halfway): the previous pair stays served; once the key follows, the new pair is.
    let third = ca.issue(&["127.0.0.1"]);
    TestCert {
        cert_pem: third.cert_pem.clone(),
        key_pem: second.key_pem.clone(),
    }
    .write(dir.path(), "cert");
    assert_eq!(served_leaf(&server, &ca).await, der(&second.cert_pem));
    third.write(dir.path(), "cert");
    assert_eq!(served_leaf(&server, &ca).await, der(&third.cert_pem));
    server.stop().await;
}

#[test]
fn tls_certificate_files_refuse_a_key_of_another_certificate_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ours");
    let a = ca.issue(&["a.example"]);
    let b = ca.issue(&["b.example"]);
    TestCert {
        cert_pem: a.cert_pem,
        key_pem: b.key_pem,
    }
    .write(dir.path(), "cert");
    let err = CertificateFiles::open(&dir.path().join("cert.crt"), &dir.path().join("cert.key"))
        .unwrap_err();
    assert!(err.to_string().contains("cert.key"), "{err}");
}

#[tokio::test]
async fn tls_an_https_url_without_client_settings_is_refused_with_a_clear_error() {
    let err = orgplane_platform::clients::connect_lazy("https://identity.example:50051", None)
        .unwrap_err();
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("needs TLS client settings"),
        "{status:?}"
    );
    // Plaintext URLs need none.
    orgplane_platform::clients::connect_lazy("http://identity.example:50051", None).unwrap();
}
