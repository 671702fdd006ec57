//! Connecting to a context's server: plaintext for `http://`, TLS (rustls on ring, the
//! workspace's TLS stack) for `https://`, and the credential metadata on every request.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint, Uri};

use orgplane_proto::billing::v1::billing_access_service_client::BillingAccessServiceClient;
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::organization::v1::account_service_client::AccountServiceClient;
use orgplane_proto::organization::v1::organization_service_client::OrganizationServiceClient;
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;

use crate::config::Context;
use crate::errors::Failure;

/// The metadata header of the organization revision a call must observe.
pub const MIN_ORGANIZATION_REVISION_HEADER: &str = "x-min-organization-revision";

/// Opens a (lazy) channel to the context's server.
pub fn channel(context: &Context) -> Result<Channel, Failure> {
    let server = context.server.trim();
    let endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|e| Failure::config(format!("the server URL {server:?} is invalid: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    match endpoint.uri().scheme_str() {
        Some("https") => {
            let tls = TlsConnector::new(context)?;
            Ok(endpoint.connect_with_connector_lazy(tls))
        }
        Some("http") => {
            if context.ca_cert.is_some() || context.client_cert.is_some() {
                return Err(Failure::config(format!(
                    "the context has TLS files but its server {server} is http://; use https://"
                )));
            }
            Ok(endpoint.connect_lazy())
        }
        _ => Err(Failure::config(format!(
            "the server URL {server:?} must start with http:// or https://"
        ))),
    }
}

/// Dials `https://` URLs with rustls: the server verified against the context's CA (the Web
/// PKI roots without one), the context's client certificate presented when asked.
#[derive(Clone)]
struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::config(format!("cannot read the {what} {}: {e}", path.display())))
}

impl TlsConnector {
    fn new(context: &Context) -> Result<Self, Failure> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match &context.ca_cert {
            Some(path) => {
                let pem = read_file(path, "CA certificate")?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| {
                        Failure::config(format!("{}: not a PEM certificate: {e}", path.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        Failure::config(format!("{}: unusable CA certificate: {e}", path.display()))
                    })?;
                }
                if roots.is_empty() {
                    return Err(Failure::config(format!(
                        "{}: no certificate in it",
                        path.display()
                    )));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Failure::config(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let mut config = match (&context.client_cert, &context.client_key) {
            (Some(cert), Some(key)) => {
                let pem = read_file(cert, "client certificate")?;
                let chain = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        Failure::config(format!("{}: not a PEM certificate: {e}", cert.display()))
                    })?;
                let key_pem = read_file(key, "client key")?;
                let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    Failure::config(format!("{}: not a PEM private key: {e}", key.display()))
                })?;
                builder.with_client_auth_cert(chain, private).map_err(|e| {
                    Failure::config(format!("the client certificate and key do not match: {e}"))
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(Failure::config(
                    "a client certificate needs its key and the other way round (--client-cert with --client-key)",
                ));
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

type Connecting = Pin<
    Box<
        dyn Future<
                Output = Result<
                    TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
                    std::io::Error,
                >,
            > + Send,
    >,
>;

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.connector.clone();
        Box::pin(async move {
            let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri}: no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone())
                .map_err(|e| invalid(format!("{host}: not a server name: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// The credential header a request carries.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No credentials (sign-up, sign-in, refresh).
    None,
    /// `authorization: Bearer <token>`.
    Bearer(String),
    /// `x-api-key: <key>`.
    ApiKey(String),
}

/// A connection with its credentials: builds requests and the four services' clients.
#[derive(Debug, Clone)]
pub struct Api {
    channel: Channel,
    auth: Auth,
    /// The organization revision each request asks the server to observe (0: none).
    pub min_org_revision: i64,
    timeout: Duration,
}

impl Api {
    /// A connection over `channel` sending `auth`.
    pub fn new(channel: Channel, auth: Auth, min_org_revision: i64, timeout: Duration) -> Self {
        Api {
            channel,
            auth,
            min_org_revision,
            timeout,
        }
    }

    /// A request carrying `message`, the credentials, the deadline and the revision header.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        let metadata = request.metadata_mut();
        let mut insert = |key: &'static str, value: String| {
            if let Ok(value) = AsciiMetadataValue::try_from(value) {
                metadata.insert(AsciiMetadataKey::from_static(key), value);
            }
        };
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(token) => insert("authorization", format!("Bearer {token}")),
            Auth::ApiKey(key) => insert("x-api-key", key.clone()),
        }
        if self.min_org_revision > 0 {
            insert(
                MIN_ORGANIZATION_REVISION_HEADER,
                self.min_org_revision.to_string(),
            );
        }
        request
    }

    /// The identity service's client.
    pub fn identity(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel.clone())
    }

    /// The organization service's client.
    pub fn organization(&self) -> OrganizationServiceClient<Channel> {
        OrganizationServiceClient::new(self.channel.clone())
    }

    /// The organization service's account client (rules ACC-1 … ACC-5).
    pub fn accounts(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(self.channel.clone())
    }

    /// The workspace service's client.
    pub fn workspace(&self) -> WorkspaceServiceClient<Channel> {
        WorkspaceServiceClient::new(self.channel.clone())
    }

    /// The billing-access service's client.
    pub fn billing(&self) -> BillingAccessServiceClient<Channel> {
        BillingAccessServiceClient::new(self.channel.clone())
    }
}
