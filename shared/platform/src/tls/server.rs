//! The server side: a TLS acceptor over a TCP listener for tonic ([`TlsIncoming::stream`]) and
//! axum ([`TlsIncoming::listener`]). Handshakes run in their own tasks (bounded by
//! [`HANDSHAKE_TIMEOUT`]) so that a slow or silent client never holds up the accept loop; a
//! failed handshake is logged at debug and counted, never fatal.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::{CertificateFiles, ClientAuth, TlsError, TlsSettings, certificate_names, provider};

/// The longest a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The ALPN protocol of gRPC.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol of the HTTP/1.1 listeners (SCIM, health, metrics).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A server-side TLS configuration: the certificate of [`CertificateFiles`] (re-read on
/// change), TLS 1.2 and 1.3 with rustls' defaults, and client certificates per the settings.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The configuration for `settings` serving `certificate`, offering `alpn`.
    pub fn new(
        settings: &TlsSettings,
        certificate: Arc<CertificateFiles>,
        alpn: &[&[u8]],
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match &settings.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(super::read_roots(ca)?, provider);
                let verifier = match settings.client_auth {
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                    ClientAuth::Required => verifier,
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Rustls(format!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(certificate);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// Accepts TLS connections on `listener`; `name` labels its logs and failure counts.
    pub fn incoming(&self, listener: TcpListener, name: &'static str) -> TlsIncoming {
        // Exported from the start (at 0), so that a rate over it works before the first failure.
        metrics::counter!(crate::metrics::TLS_HANDSHAKE_FAILURES, "listener" => name).increment(0);
        let local = listener.local_addr().ok();
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        tokio::spawn(accept_loop(listener, acceptor, tx, name));
        TlsIncoming { rx, local }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: mpsc::Sender<TlsConnection>,
    name: &'static str,
) {
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(TlsConnection::new(stream)).await;
                }
                Ok(Err(e)) => handshake_failed(name, remote, &e.to_string()),
                Err(_) => handshake_failed(name, remote, "timed out"),
            }
        });
    }
}

fn handshake_failed(listener: &'static str, remote: SocketAddr, why: &str) {
    metrics::counter!(crate::metrics::TLS_HANDSHAKE_FAILURES, "listener" => listener).increment(1);
    tracing::debug!(listener, %remote, why, "TLS handshake failed");
}

/// Connections that completed their handshake, in arrival order.
#[derive(Debug)]
pub struct TlsIncoming {
    rx: mpsc::Receiver<TlsConnection>,
    local: Option<SocketAddr>,
}

impl TlsIncoming {
    /// The connections as the stream tonic's `serve_with_incoming` takes.
    pub fn stream(
        self,
    ) -> impl futures::Stream<Item = Result<TlsConnection, std::io::Error>> + Send + 'static {
        futures::stream::unfold(self.rx, |mut rx| async move {
            rx.recv().await.map(|c| (Ok(c), rx))
        })
    }

    /// The connections as the listener `axum::serve` takes.
    pub fn listener(self) -> TlsListener {
        TlsListener(self)
    }
}

/// [`TlsIncoming`] as an axum listener.
#[derive(Debug)]
pub struct TlsListener(TlsIncoming);

impl axum::serve::Listener for TlsListener {
    type Io = TlsConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.0.rx.recv().await {
            Some(conn) => {
                let addr = conn
                    .info
                    .remote_addr()
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                (conn, addr)
            }
            // The accept loop ended (only when this receiver is gone): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0
            .local
            .ok_or_else(|| std::io::Error::other("the listener has no local address"))
    }
}

/// What a TLS connection tells its requests (in their extensions, as tonic's `TcpConnectInfo`
/// for plaintext ones): the addresses, and the client certificate's names when one was
/// presented and verified.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    tcp: TcpConnectInfo,
    /// The SAN URIs and DNS names of the verified client certificate; `None` without one.
    pub client_names: Option<Arc<Vec<String>>>,
}

impl ConnectionInfo {
    /// The client's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.tcp.remote_addr()
    }
}

/// A server-side TLS connection.
#[derive(Debug)]
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: ConnectionInfo,
}

impl TlsConnection {
    fn new(stream: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        let (tcp, session) = stream.get_ref();
        let client_names = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|leaf| Arc::new(certificate_names(leaf)));
        let info = ConnectionInfo {
            tcp: tcp.connect_info(),
            client_names,
        };
        Self { stream, info }
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
