//! The client side: how tonic channels dial `https://` URLs. The other services' certificates
//! are verified against `--tls-ca` (the bundled Web PKI roots without it), and the process's
//! own certificate (re-read on change) is presented when a server asks for one.

use std::sync::Arc;

use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::Uri;

use super::server::ALPN_H2;
use super::{CertificateFiles, TlsError, TlsSettings, provider};

/// A TLS client configuration and the connector tonic dials `https://` URLs with.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Verifies servers against `settings.ca` (Web PKI roots when unset) and presents
    /// `identity` to servers that ask for a client certificate.
    pub fn new(
        settings: &TlsSettings,
        identity: Option<Arc<CertificateFiles>>,
    ) -> Result<Self, TlsError> {
        let roots = match &settings.ca {
            Some(ca) => super::read_roots(ca)?,
            None => Arc::new(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(files) => builder.with_client_cert_resolver(files),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: None,
        })
    }

    /// Verifies every server's certificate for `name` instead of the URL's host: how a process
    /// dials itself (or its health probe dials it) at a loopback address.
    pub fn with_server_name(mut self, name: ServerName<'static>) -> Self {
        self.server_name = Some(name);
        self
    }
}

impl tower::Service<Uri> for ClientTls {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.connector.clone();
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri}: no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let name = match server_name {
                Some(name) => name,
                None => ServerName::try_from(host.clone())
                    .map_err(|e| invalid(format!("{host}: not a server name: {e}")))?,
            };
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
