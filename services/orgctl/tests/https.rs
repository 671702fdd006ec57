//! orgctl over TLS: a context's `--ca-cert` verifies the server, its client certificate is
//! presented for mutual TLS, an untrusted server is refused, and TLS files with an `http://` URL
//! are a configuration error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

#[test]
fn https_contexts_verify_the_server_and_present_a_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    let ca = orgplane_platform::tls::testing::TestCa::new("orgctl test CA");
    let ca_path = ca.write(pki.path(), "ca");
    let (cert, key) = ca
        .issue(&["127.0.0.1", "localhost"])
        .write(pki.path(), "server");
    let (client_cert, client_key) = ca
        .issue(&["spiffe://orgctl/test"])
        .write(pki.path(), "client");
    let server = Server::start_with(
        &[
            "--tls-cert".to_owned(),
            cert.display().to_string(),
            "--tls-key".to_owned(),
            key.display().to_string(),
            "--tls-ca".to_owned(),
            ca_path.display().to_string(),
            "--tls-client-ca".to_owned(),
            ca_path.display().to_string(),
        ],
        "https",
    );
    let home = tempfile::tempdir().unwrap();
    let ctl = Orgctl {
        config: home.path().join("config.toml"),
    };
    let url = server.url();
    let ca = ca_path.display().to_string();
    let (client_cert, client_key) = (
        client_cert.display().to_string(),
        client_key.display().to_string(),
    );
    let signup = |context: &str, email: &str| {
        ctl.run(
            &[
                "--context",
                context,
                "signup",
                "--email",
                email,
                "--name",
                "T",
                "--password-stdin",
            ],
            Some(&format!("{OLIVIA_PASSWORD}\n")),
        )
    };

    // Verified against the given CA.
    ctl.ok(
        &["context", "add", "tls", "--server", &url, "--ca-cert", &ca],
        None,
    );
    let out = signup("tls", "tls@example.com");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With a client certificate (mutual TLS).
    ctl.ok(
        &[
            "context",
            "add",
            "mtls",
            "--server",
            &url,
            "--ca-cert",
            &ca,
            "--client-cert",
            &client_cert,
            "--client-key",
            &client_key,
        ],
        None,
    );
    let out = signup("mtls", "mtls@example.com");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the CA, the Web PKI roots do not know the server's certificate.
    ctl.ok(&["context", "add", "untrusted", "--server", &url], None);
    let out = signup("untrusted", "untrusted@example.com");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the server"));

    // TLS files with a plaintext URL, or a key without its certificate, are refused up front.
    ctl.fails(
        &[
            "context",
            "add",
            "mixed",
            "--server",
            &server.url().replace("https", "http"),
            "--ca-cert",
            &ca,
        ],
        None,
        2,
    );
    ctl.fails(
        &[
            "context",
            "add",
            "half",
            "--server",
            &url,
            "--client-key",
            &client_key,
        ],
        None,
        2,
    );
}
