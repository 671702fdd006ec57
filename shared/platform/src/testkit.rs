//! Helpers for tests across the workspace (feature `testkit`): throw-away SQLite and PostgreSQL
//! databases, signing keys with tokens minted from them, and a server on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tokio_util::sync::CancellationToken;

use crate::auth::{
    Authenticator, Claims, SERVICE_AUDIENCE, Signer, StaticKeys, StaticServiceToken, TokenVerifier,
    USER_AUDIENCE,
};
use crate::server::GrpcServer;

/// The environment variable naming the PostgreSQL server tests may use.
pub const POSTGRES_ENV: &str = "ORGPLANE_TEST_POSTGRES_URL";

/// The issuer of tokens minted by [`TestAuth`].
pub const TEST_ISSUER: &str = "https://identity.orgplane.test";

/// A database that exists for one test: a SQLite file in a temporary directory, or a fresh
/// PostgreSQL database that is dropped when this value is dropped.
pub struct TestDb {
    /// The URL to connect to.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// A SQLite file in a new temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let url = crate::db::default_sqlite_url(dir.path(), "test");
        Self {
            url,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A new PostgreSQL database on the server in `ORGPLANE_TEST_POSTGRES_URL`, or `None` when
    /// the variable is unset (the caller then skips, saying so).
    pub async fn postgres() -> Option<Self> {
        let admin = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())?;
        let name = format!("orgplane_t_{}", uuid::Uuid::new_v4().simple());
        let conn = Database::connect(admin.as_str())
            .await
            .unwrap_or_else(|e| panic!("connect {POSTGRES_ENV}: {e}"));
        conn.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("CREATE DATABASE {name}"),
        ))
        .await
        .unwrap_or_else(|e| panic!("create database: {e}"));
        let _ = conn.close().await;
        let url = with_database(&admin, &name);
        Some(Self {
            url,
            _dir: None,
            pg: Some((admin, name)),
        })
    }

    /// Connects and runs `M`'s migrations.
    pub async fn open<M: sea_orm_migration::MigratorTrait>(&self) -> DatabaseConnection {
        crate::db::open::<M>(&self.url)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee: use a small one on its own thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(conn) = Database::connect(admin.as_str()).await {
                    let _ = conn
                        .execute_raw(Statement::from_string(
                            DbBackend::Postgres,
                            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                        ))
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// A signing key and the authenticator that trusts it.
pub struct TestAuth {
    /// The key tokens are signed with.
    pub signer: Signer,
}

impl Default for TestAuth {
    fn default() -> Self {
        Self::new()
    }
}

impl TestAuth {
    /// A fresh random key.
    pub fn new() -> Self {
        Self {
            signer: Signer::generate("test-key").unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// An authenticator trusting this key (API keys refused).
    pub fn authenticator(&self) -> Authenticator {
        let verifier = TokenVerifier::new(
            TEST_ISSUER,
            Arc::new(StaticKeys(vec![self.signer.public_key()])),
        );
        Authenticator::new(Arc::new(verifier), None)
    }

    fn claims(&self, sub: &str, aud: &str) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            iss: TEST_ISSUER.into(),
            sub: sub.into(),
            aud: aud.into(),
            exp: now + 900,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            auth_time: None,
            sid: None,
        }
    }

    /// A service token for service account `name`.
    pub fn service_token(&self, name: &str) -> String {
        self.signer
            .sign(&self.claims(name, SERVICE_AUDIENCE))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same, as a token source for consumers.
    pub fn service_tokens(&self, name: &str) -> Arc<StaticServiceToken> {
        Arc::new(StaticServiceToken(self.service_token(name)))
    }

    /// A user access token.
    pub fn user_token(&self, user_id: &str) -> String {
        let mut claims = self.claims(user_id, USER_AUDIENCE);
        claims.sid = Some("ses_test".into());
        claims.auth_time = Some(claims.iat);
        self.signer.sign(&claims).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A server running on loopback for a test.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Cancel to shut it down.
    pub shutdown: CancellationToken,
    /// Resolves when it has stopped.
    pub task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Starts `server` on `127.0.0.1:0` (or `addr`) with `auth`.
    pub async fn start(server: GrpcServer, auth: Authenticator, addr: Option<SocketAddr>) -> Self {
        let listener = bind(addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))).await;
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = server.serve(listener, auth, token).await {
                tracing::error!(error = %e, "test server failed");
            }
        });
        Self {
            addr,
            shutdown,
            task,
        }
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A lazily connecting channel to the server.
    pub fn channel(&self) -> tonic::transport::Channel {
        channel(&self.url())
    }

    /// Shuts the server down and waits until it stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Binds `addr`, retrying briefly while a previous server's port is released.
pub async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    let mut last = None;
    for _ in 0..100 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    panic!("bind {addr}: {last:?}")
}

/// A lazily connecting channel to `url`.
pub fn channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap_or_else(|e| panic!("endpoint {url}: {e}"))
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy()
}

/// Attaches `authorization: Bearer token` to a request.
pub fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    crate::auth::outgoing(message, Some(token), None)
}

/// A [`crate::runtime::Runtime`] for a service under test: every endpoint at `url` (where the
/// test serves the services it needs), service tokens minted by `auth`, a throw-away page-token
/// key, and `clock`.
pub fn runtime(
    url: &str,
    auth: &TestAuth,
    clock: crate::clock::SharedClock,
) -> crate::runtime::Runtime {
    crate::runtime::Runtime {
        issuer: TEST_ISSUER.to_owned(),
        service_account: crate::runtime::ServiceAccount {
            client_id: "orgplane-test".to_owned(),
            client_secret: "test-secret".to_owned(),
        },
        page_tokens: crate::pagination::PageTokens::ephemeral(),
        clock,
        service_tokens: auth.service_tokens("orgplane-test"),
        endpoints: crate::runtime::Endpoints {
            identity: channel(url),
            organization: channel(url),
            workspace: channel(url),
        },
        shutdown: CancellationToken::new(),
        revocations: crate::revocation::SessionRevocations::new(),
    }
}
