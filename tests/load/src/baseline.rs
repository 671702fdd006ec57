//! The baseline: tonic-health's `Check` on a bare `Server::builder()` with no layers, on loopback
//! with TCP_NODELAY like the real server: the practical limit of a tonic unary call here.

use std::net::SocketAddr;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

/// A bare health server running until `shutdown`.
pub async fn start(shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    tokio::spawn(async move {
        let _keep = reporter;
        let _ = Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await;
    });
    Ok(addr)
}
