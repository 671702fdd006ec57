//! A TCP proxy the scenarios put between a client and a server (a consumer and the Watch it
//! follows, a service and its PostgreSQL server) to cut every open connection at a chosen moment
//! or to make the server unreachable for a while, without touching either process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A running proxy from [`Proxy::addr`] to its target; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct State {
    target: SocketAddr,
    down: AtomicBool,
    cut: watch::Sender<u64>,
    accepted: AtomicU64,
    severed: AtomicU64,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            target,
            down: AtomicBool::new(false),
            cut: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            severed: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, state.clone(), stop.clone()));
        Ok(Proxy { addr, state, stop })
    }

    /// The address clients connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection open now; new connections go through as before.
    pub fn cut(&self) {
        self.state.cut.send_modify(|g| *g += 1);
    }

    /// While `down`, every open connection is closed and new ones are closed as soon as they
    /// are accepted: the target looks unreachable.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
        if down {
            self.cut();
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::Relaxed)
    }

    /// Open connections closed by [`Proxy::cut`] or [`Proxy::set_down`] so far.
    pub fn severed(&self) -> u64 {
        self.state.severed.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((client, _)) = accepted else { continue };
        state.accepted.fetch_add(1, Ordering::Relaxed);
        if state.down.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, state.clone()));
    }
}

async fn forward(mut client: TcpStream, state: Arc<State>) {
    let mut cut = state.cut.subscribe();
    cut.mark_unchanged();
    let Ok(mut server) = TcpStream::connect(state.target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.changed() => {
            state.severed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn proxy_forwards_then_cuts_then_refuses_while_down() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(target).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        proxy.cut();
        let mut rest = Vec::new();
        let n = c.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "a cut connection ends");
        assert_eq!(proxy.severed(), 1);

        proxy.set_down(true);
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        let _ = c.write_all(b"ping").await;
        let n = c.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "nothing answers while down");

        proxy.set_down(false);
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"pong").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }
}
