//! Helpers for tests across the workspace (feature `testkit`): throw-away SQLite and PostgreSQL
//! databases, signing keys with tokens minted from them, fake API keys, producer and consumer
//! tables, request helpers (bearer, API key, update mask), and a server on `127.0.0.1:0`. The
//! end-to-end crate (`tests/e2e`) adds the whole-system cluster starter on top of it.

// Test support: failing loudly is what a test helper should do.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tokio_util::sync::CancellationToken;

use crate::auth::{
    ApiKeyKind, ApiKeyPrincipal, ApiKeyResolver, Authenticator, Capabilities, Claims,
    SERVICE_AUDIENCE, Signer, StaticKeys, TokenVerifier, USER_AUDIENCE,
};
use crate::clients::StaticServiceToken;
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
            ..Default::default()
        }
    }

    /// A service token for service account `name`: an Orgplane service's name (`identity`,
    /// `organization`, `workspace`, `billing-access`) holds what that service uses
    /// ([`Capabilities::of_service`]), any other name every capability (a caller standing in
    /// for the whole system); [`Self::service_token_with`] chooses.
    pub fn service_token(&self, name: &str) -> String {
        let caps = Capabilities::of_service(name).unwrap_or_else(Capabilities::all);
        self.service_token_with(name, caps)
    }

    /// A service token for service account `name` holding exactly `capabilities`.
    pub fn service_token_with(&self, name: &str, capabilities: Capabilities) -> String {
        let mut claims = self.claims(name, SERVICE_AUDIENCE);
        claims.scope = Some(capabilities.to_scope());
        self.signer.sign(&claims).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same, as a token source for consumers.
    pub fn service_tokens(&self, name: &str) -> Arc<StaticServiceToken> {
        Arc::new(StaticServiceToken(self.service_token(name)))
    }

    /// A user access token (signed in with a password just now).
    pub fn user_token(&self, user_id: &str) -> String {
        self.user_token_with(user_id, |_| {})
    }

    /// A user access token whose claims `shape` adjusts (`amr`, `auth_time`, `risk`, …).
    pub fn user_token_with(&self, user_id: &str, shape: impl FnOnce(&mut Claims)) -> String {
        let mut claims = self.claims(user_id, USER_AUDIENCE);
        claims.sid = Some("ses_test".into());
        claims.auth_time = Some(claims.iat);
        claims.amr = vec!["pwd".into()];
        shape(&mut claims);
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

/// `n` free loopback ports for servers a test starts later, often as child processes that are
/// killed and restarted on the same port. A port taken with `127.0.0.1:0` and released is in
/// the kernel's ephemeral range, where any outgoing connection (a database pool's, another
/// test's client) may be given it as its local port before the server binds it again. These
/// come from below that range, where the kernel never hands ports out, and each is checked free
/// by binding it; a process never gets the same port twice.
pub fn reserved_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let end = if ephemeral > LOWEST + 1_000 {
        ephemeral
    } else {
        49_152
    };
    let span = end - LOWEST;
    // Parallel test processes start at different places in the range.
    let _ = NEXT.compare_exchange(
        0,
        rand::random_range(1..=span),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let mut ports = Vec::with_capacity(n);
    for _ in 0..span {
        if ports.len() == n {
            break;
        }
        let port = LOWEST + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).unwrap_or_else(|_| panic!("port {port}"));
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    assert_eq!(ports.len(), n, "no {n} free ports below {end}");
    ports
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
    let mut request = tonic::Request::new(message);
    if let Ok(v) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", v);
    }
    request
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
            capabilities: crate::auth::Capabilities::all(),
        },
        page_tokens: crate::pagination::PageTokens::ephemeral(),
        clock,
        service_tokens: auth.service_tokens("orgplane-test"),
        endpoints: crate::runtime::Endpoints {
            identity: channel(url).into(),
            organization: channel(url).into(),
            workspace: channel(url).into(),
        },
        shutdown: CancellationToken::new(),
        revocations: crate::revocation::SessionRevocations::new(),
    }
}

/// Attaches `authorization: Bearer token` and `x-request-id: request_id` to a request (retries
/// of one logical request share its id, AIP-155).
pub fn bearer_with_id<T>(message: T, token: &str, request_id: &str) -> tonic::Request<T> {
    let mut request = bearer(message, token);
    if let Ok(v) = request_id.parse() {
        request
            .metadata_mut()
            .insert(crate::context::REQUEST_ID_HEADER, v);
    }
    request
}

/// Attaches `x-api-key: key` to a request.
pub fn api_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(v) = key.parse() {
        request
            .metadata_mut()
            .insert(crate::auth::API_KEY_HEADER, v);
    }
    request
}

/// An update mask of `paths`.
pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

/// The tables of a fake event producer: an outbox (and its counter).
#[derive(Debug, Clone, Copy)]
pub struct ProducerTables;

impl sea_orm_migration::MigratorTrait for ProducerTables {
    fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
        vec![Box::new(crate::events::migration::CreateOutbox)]
    }
}

/// The tables of a bare event consumer: its cursors.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerTables;

impl sea_orm_migration::MigratorTrait for ConsumerTables {
    fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
        vec![Box::new(crate::events::migration::CreateConsumerCursors)]
    }
}

/// Every table of the organization-role replica (roles, security policies, VERIFIED domains), for
/// tests that keep a replica outside a service: one list, so a new replica table reaches them all.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaTables;

impl sea_orm_migration::MigratorTrait for ReplicaTables {
    fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
        vec![
            Box::new(crate::replica::CreateRoleReplica),
            Box::new(crate::replica::CreateSecurityPolicyReplica),
            Box::new(crate::replica::CreateVerifiedDomainReplica),
        ]
    }
}

/// API keys a service under test accepts without identity: `opk_admin_<org>` is an admin key
/// of `<org>`, `opk_ws_<org>` a workspace key of `<org>` (id `key_<the key>`), and any key
/// [`FakeApiKeys::insert`]ed resolves to its principal.
#[derive(Debug, Clone, Default)]
pub struct FakeApiKeys(Arc<std::sync::Mutex<std::collections::HashMap<String, ApiKeyPrincipal>>>);

impl FakeApiKeys {
    /// Makes `key` resolve to `principal`.
    pub fn insert(&self, key: &str, principal: ApiKeyPrincipal) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), principal);
    }

    /// Makes `key` unknown again.
    pub fn remove(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

impl ApiKeyResolver for FakeApiKeys {
    fn resolve<'a>(
        &'a self,
        key: &'a str,
    ) -> futures::future::BoxFuture<'a, crate::error::ApiResult<ApiKeyPrincipal>> {
        let known = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        Box::pin(async move {
            if let Some(principal) = known {
                return Ok(principal);
            }
            let (kind, organization_id) = if let Some(org) = key.strip_prefix("opk_admin_") {
                (ApiKeyKind::Admin, org)
            } else if let Some(org) = key.strip_prefix("opk_ws_") {
                (ApiKeyKind::Workspace, org)
            } else {
                return Err(crate::auth::invalid_api_key());
            };
            Ok(ApiKeyPrincipal {
                key_id: format!("key_{key}"),
                organization_id: organization_id.to_owned(),
                workspace_id: None,
                kind,
            })
        })
    }
}

/// A member moved by a merge in a test event: (user, role in the candidate, role in the prime
/// before, role in the prime after).
pub type MemberMove<'a> = (
    &'a str,
    orgplane_proto::organization::v1::OrgRole,
    orgplane_proto::organization::v1::OrgRole,
    orgplane_proto::organization::v1::OrgRole,
);

/// The `OrganizationsMerged` payload of `candidate` (owned by `owner`) into `prime`, moving
/// `members` and listing the planned `workspaces` and `accounts` (rule ORG-15): what the
/// consumers' tests feed their services through a fake organization producer.
pub fn organizations_merged(
    prime: &str,
    candidate: &str,
    owner: &str,
    members: &[MemberMove<'_>],
    workspaces: &[&str],
    accounts: &[&str],
) -> orgplane_proto::events::v1::event::Payload {
    use orgplane_proto::events::v1::OrganizationsMerged;
    use orgplane_proto::organization::v1::MergeMemberMove;
    orgplane_proto::events::v1::event::Payload::OrganizationsMerged(OrganizationsMerged {
        prime_organization_id: prime.into(),
        candidate_organization_id: candidate.into(),
        members: members
            .iter()
            .map(|(user, c, p, r)| MergeMemberMove {
                user_id: (*user).into(),
                candidate_role: *c as i32,
                prime_role: *p as i32,
                resulting_role: *r as i32,
            })
            .collect(),
        workspace_ids: workspaces.iter().map(|w| (*w).to_owned()).collect(),
        account_ids: accounts.iter().map(|a| (*a).to_owned()).collect(),
        candidate_owner_user_id: owner.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::reserved_ports;

    /// The chaos harness's children are restarted on their ports: a port an outgoing connection
    /// can be given meanwhile (the ephemeral range) once kept one from coming back.
    #[test]
    fn reserved_ports_are_distinct_free_and_never_ephemeral() {
        let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok());
        let mut ports = reserved_ports(20);
        ports.extend(reserved_ports(20));
        for &port in &ports {
            if let Some(low) = ephemeral {
                assert!(port < low, "{port} is in the ephemeral range from {low}");
            }
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
        // The control: what a bound and released `127.0.0.1:0` gives is in that range.
        let released = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if let Some(low) = ephemeral {
            assert!(released >= low, "{released} below {low}");
        }
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 40, "a port was handed out twice");
    }
}
