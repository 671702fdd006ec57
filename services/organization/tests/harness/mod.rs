//! The test rig: the real organization service in-process on 127.0.0.1, next to a fake identity
//! service (GetUser/BatchGetUsers), fake identity and workspace event producers, and an API-key
//! resolver, all on one gRPC server; SQLite or PostgreSQL.

#![allow(dead_code)] // each test crate uses its part of the rig

pub mod dns;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orgplane_organization::{Config, Organization};
use orgplane_platform::auth::{Authenticator, Claims, StaticKeys, TokenVerifier, USER_AUDIENCE};
use orgplane_platform::clock::OffsetClock;
use orgplane_platform::events::{EventServer, Outbox};
use orgplane_platform::host::{Host, ServiceModule};
use orgplane_platform::server::{GrpcServer, ServerConfig};
use orgplane_platform::testkit::{FakeApiKeys, ProducerTables};
use orgplane_platform::testkit::{RunningServer, TEST_ISSUER, TestAuth, TestDb};
use orgplane_proto::audit::v1::AuditEvent;
use orgplane_proto::events::v1::event_service_client::EventServiceClient;
use orgplane_proto::events::v1::event_service_server::EventServiceServer;
use orgplane_proto::events::v1::{Event, Producer, WatchRequest, event};
use orgplane_proto::identity::v1::identity_service_server::{
    IdentityService, IdentityServiceServer,
};
use orgplane_proto::identity::v1::{
    AccountType, BatchGetUsersRequest, BatchGetUsersResponse, GetUserRequest, GetUserResponse, User,
};
use orgplane_proto::organization::v1::organization_service_client::OrganizationServiceClient;
use orgplane_proto::organization::v1::{
    AcceptInviteRequest, CreateInviteRequest, Invite, ListAuditEventsRequest, OrgRole,
};
use sea_orm::TransactionTrait;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Which database the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The fake identity service: every `user_…` id is a verified BUSINESS user with email
/// `<id>@example.com` unless overridden; `down` makes it answer UNAVAILABLE.
#[derive(Clone, Default)]
pub struct FakeIdentity {
    pub overrides: Arc<Mutex<HashMap<String, User>>>,
    pub down: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeIdentity {
    pub fn user(&self, id: &str) -> Option<User> {
        if id.contains("unknown") {
            return None;
        }
        if let Some(u) = self.overrides.lock().unwrap().get(id) {
            return Some(u.clone());
        }
        Some(User {
            id: id.to_owned(),
            email: format!("{id}@example.com"),
            email_verified: true,
            display_name: format!("Name of {id}"),
            account_type: AccountType::Business as i32,
            ..Default::default()
        })
    }

    pub fn set(&self, id: &str, f: impl FnOnce(&mut User)) {
        let mut u = self.user(id).unwrap();
        f(&mut u);
        self.overrides.lock().unwrap().insert(id.to_owned(), u);
    }

    fn check(&self) -> Result<(), Status> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(Status::unavailable("identity is down"))
        } else {
            Ok(())
        }
    }
}

#[tonic::async_trait]
impl IdentityService for FakeIdentity {
    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        self.check()?;
        let id = request.into_inner().user_id;
        match self.user(&id) {
            Some(u) => Ok(Response::new(GetUserResponse { user: Some(u) })),
            None => Err(Status::not_found("no such user")),
        }
    }

    async fn batch_get_users(
        &self,
        request: Request<BatchGetUsersRequest>,
    ) -> Result<Response<BatchGetUsersResponse>, Status> {
        self.check()?;
        let mut out = BatchGetUsersResponse::default();
        for id in request.into_inner().user_ids {
            match self.user(&id) {
                Some(u) => out.users.push(u),
                None => out.missing_user_ids.push(id),
            }
        }
        Ok(Response::new(out))
    }
}

/// The running service with its fakes.
pub struct Rig {
    pub auth: TestAuth,
    pub org: Arc<Organization>,
    pub identity: FakeIdentity,
    pub identity_events: Outbox,
    pub workspace_events: Outbox,
    pub clock: Arc<OffsetClock>,
    pub server: RunningServer,
    pub mail_dir: tempfile::TempDir,
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The API keys the service accepts (insert one to call with it).
    pub api_keys: FakeApiKeys,
    _dbs: Vec<TestDb>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.server.shutdown.cancel();
    }
}

impl Rig {
    /// A rig on `backend`, or `None` (after saying "skipped") when PostgreSQL is not configured.
    pub async fn new(backend: Backend) -> Option<Rig> {
        Self::with(backend, |_| {}).await
    }

    /// As [`Self::new`], with a chance to adjust the runtime (for example to point identity at
    /// a dead address).
    pub async fn with(
        backend: Backend,
        adjust: impl FnOnce(&mut orgplane_platform::runtime::Runtime),
    ) -> Option<Rig> {
        Self::with_config(backend, adjust, |_| {}).await
    }

    /// As [`Self::with`], with a chance to adjust the service's configuration too (the DNS
    /// servers of domain checks, their interval, the consumer mail domains file).
    pub async fn with_config(
        backend: Backend,
        adjust: impl FnOnce(&mut orgplane_platform::runtime::Runtime),
        configure: impl FnOnce(&mut Config),
    ) -> Option<Rig> {
        let db = match backend {
            Backend::Sqlite => TestDb::sqlite(),
            Backend::Postgres => match TestDb::postgres().await {
                Some(db) => db,
                None => {
                    eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
                    return None;
                }
            },
        };
        let producers = TestDb::sqlite();
        let producers_db = producers.open::<ProducerTables>().await;
        let identity_events = Outbox::new(producers_db.clone(), Producer::Identity);
        // Two producers cannot share one outbox table: the workspace one gets its own file.
        let ws_db = TestDb::sqlite();
        let workspace_events =
            Outbox::new(ws_db.open::<ProducerTables>().await, Producer::Workspace);

        let auth = TestAuth::new();
        let addr = std::net::SocketAddr::from((
            [127, 0, 0, 1],
            orgplane_platform::testkit::reserved_ports(1)[0],
        ));
        let url = format!("http://{addr}");
        let clock = Arc::new(OffsetClock::new());
        let mut runtime = orgplane_platform::testkit::runtime(&url, &auth, clock.clone());
        adjust(&mut runtime);
        let shutdown = runtime.shutdown.clone();
        let mail_dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            mail_url: format!("file://{}", mail_dir.path().display()),
            purge_interval_secs: 3600,
            ready_timeout_ms: 3000,
            ..Config::default()
        };
        configure(&mut config);
        let mut host = Host::new(runtime);
        let org = host.open::<Organization>(&db.url, &config).await.unwrap();

        let mut server = GrpcServer::new(ServerConfig::default());
        let identity = FakeIdentity::default();
        server
            .add_ready_service(IdentityServiceServer::new(identity.clone()))
            .await;
        org.register(&mut server).await;
        let events = EventServer::new(
            [
                org.outbox().clone(),
                identity_events.clone(),
                workspace_events.clone(),
            ],
            server.shutdown_token(),
        )
        .with_poll_interval(Duration::from_millis(50));
        server
            .add_ready_service(EventServiceServer::new(events))
            .await;
        let health = server.health();
        let verifier = TokenVerifier::new(
            TEST_ISSUER,
            Arc::new(StaticKeys(vec![auth.signer.public_key()])),
        );
        let api_keys = FakeApiKeys::default();
        let authenticator =
            Authenticator::new(Arc::new(verifier), Some(Arc::new(api_keys.clone())));
        let server = RunningServer::start(server, authenticator, Some(addr)).await;
        host.start(&health);
        Some(Rig {
            api_keys,
            auth,
            org,
            identity,
            identity_events,
            workspace_events,
            clock,
            server,
            mail_dir,
            shutdown,
            _dbs: vec![db, producers, ws_db],
        })
    }

    pub fn channel(&self) -> Channel {
        self.server.channel()
    }

    pub fn client(&self) -> OrganizationServiceClient<Channel> {
        OrganizationServiceClient::new(self.channel()).max_decoding_message_size(64 << 20)
    }

    /// Invites `user`@example.com to `org` with `role` (as `inviter`) and accepts as `user`;
    /// returns the acceptance's revision.
    pub async fn add_member(&self, org: &str, inviter: &str, user: &str, role: OrgRole) -> i64 {
        let mut c = self.client();
        let inv = c
            .create_invite(self.as_user(
                inviter,
                CreateInviteRequest {
                    organization_id: org.into(),
                    invite: Some(Invite {
                        email: format!("{user}@example.com"),
                        role: role as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .invite
            .unwrap();
        c.accept_invite(self.as_user(user, AcceptInviteRequest { invite_id: inv.id }))
            .await
            .unwrap()
            .into_inner()
            .revision
    }

    /// Every audit record of `org` (up to 1000), newest first, as `reader` lists them.
    pub async fn audit_log(&self, reader: &str, org: &str) -> Vec<AuditEvent> {
        self.client()
            .list_audit_events(self.as_user(
                reader,
                ListAuditEventsRequest {
                    organization_id: org.into(),
                    page_size: 1000,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .audit_events
    }

    /// The service's events after revision `after`: at least `count` of them when there are;
    /// with `count` 0, as far as the stream goes until it is caught up (each read waits at most
    /// two seconds).
    pub async fn events_after(&self, after: i64, count: usize) -> Vec<Event> {
        let mut client = EventServiceClient::new(self.channel());
        let mut stream = client
            .watch(self.as_service(WatchRequest {
                producer: Producer::Organization as i32,
                after_revision: after,
                max_batch_size: 100,
            }))
            .await
            .unwrap()
            .into_inner();
        let mut events = Vec::new();
        while let Ok(Ok(Some(m))) =
            tokio::time::timeout(Duration::from_secs(2), stream.message()).await
        {
            events.extend(m.events);
            let enough = events.len() >= count && (count > 0 || m.caught_up);
            if enough || (m.caught_up && m.head_revision <= after + events.len() as i64) {
                break;
            }
        }
        events
    }

    /// A request as user `user_id`, signed in just now.
    pub fn as_user<T>(&self, user_id: &str, msg: T) -> Request<T> {
        orgplane_platform::testkit::bearer(msg, &self.auth.user_token(user_id))
    }

    /// A request as user `user_id` whose sign-in is `age_secs` old.
    pub fn as_user_signed_in_ago<T>(&self, user_id: &str, age_secs: i64, msg: T) -> Request<T> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: TEST_ISSUER.into(),
            sub: user_id.into(),
            aud: USER_AUDIENCE.into(),
            exp: now + 900,
            iat: now,
            nbf: now,
            jti: uuid_like(),
            auth_time: Some(now - age_secs),
            sid: Some("ses_test".into()),
            ..Default::default()
        };
        orgplane_platform::testkit::bearer(msg, &self.auth.signer.sign(&claims).unwrap())
    }

    /// A request as user `user_id` whose token's claims `shape` adjusts (`amr`, `mfa_enrolled`,
    /// `risk`, `auth_time`); by default signed in with a password just now.
    pub fn as_user_with<T>(
        &self,
        user_id: &str,
        shape: impl FnOnce(&mut Claims),
        msg: T,
    ) -> Request<T> {
        orgplane_platform::testkit::bearer(msg, &self.auth.user_token_with(user_id, shape))
    }

    /// A request as user `user_id` signed in just now with a password and a one-time code.
    pub fn as_user_mfa<T>(&self, user_id: &str, msg: T) -> Request<T> {
        self.as_user_with(user_id, mfa, msg)
    }

    /// A request with API key `key`.
    pub fn with_key<T>(&self, key: &str, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert("x-api-key", key.parse().unwrap());
        r
    }

    /// A request as identity's service account (what it holds: provisioning, domain lookups,
    /// organization reads, the organization stream).
    pub fn as_service<T>(&self, msg: T) -> Request<T> {
        orgplane_platform::testkit::bearer(msg, &self.auth.service_token("identity"))
    }

    /// Publishes an event from the fake identity producer.
    pub async fn publish_identity(&self, payload: event::Payload) -> i64 {
        publish(&self.identity_events, payload).await
    }

    /// Publishes an event from the fake workspace producer.
    pub async fn publish_workspace(&self, payload: event::Payload) -> i64 {
        publish(&self.workspace_events, payload).await
    }
}

async fn publish(outbox: &Outbox, payload: event::Payload) -> i64 {
    let txn = outbox.connection().begin().await.unwrap();
    let r = outbox.append(&txn, payload, "req-test").await.unwrap();
    txn.commit().await.unwrap();
    outbox.committed(r);
    r
}

fn uuid_like() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    t ^ (std::process::id() as u128) << 64
}

/// Claims of a sign-in with a password and a one-time code by a user with an active factor.
pub fn mfa(c: &mut Claims) {
    c.amr = vec!["pwd".into(), "otp".into(), "mfa".into()];
    c.mfa_enrolled = true;
}

/// The `ErrorInfo` and `BadRequest` details of a status, decoded from its
/// `grpc-status-details-bin` (a `google.rpc.Status`) by hand: the crate has no protobuf
/// runtime of its own for the `google.rpc` types.
#[derive(Debug, Default)]
pub struct Details {
    pub reason: String,
    pub metadata: HashMap<String, String>,
    /// `(field, description)` of each field violation.
    pub field_violations: Vec<(String, String)>,
}

pub fn details(status: &Status) -> Details {
    let mut out = Details::default();
    for (n, any) in fields(status.details()) {
        if n != 3 {
            continue;
        }
        let any = fields(&any);
        let type_url = any.iter().find(|(n, _)| *n == 1).map(|(_, v)| text(v));
        let value = any
            .iter()
            .find(|(n, _)| *n == 2)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        match type_url.as_deref() {
            Some("type.googleapis.com/google.rpc.ErrorInfo") => {
                for (n, v) in fields(&value) {
                    match n {
                        1 => out.reason = text(&v),
                        3 => {
                            let entry = fields(&v);
                            let get = |k| {
                                entry
                                    .iter()
                                    .find(|(n, _)| *n == k)
                                    .map(|(_, v)| text(v))
                                    .unwrap_or_default()
                            };
                            out.metadata.insert(get(1), get(2));
                        }
                        _ => {}
                    }
                }
            }
            Some("type.googleapis.com/google.rpc.BadRequest") => {
                for (n, v) in fields(&value) {
                    if n == 1 {
                        let violation = fields(&v);
                        let get = |k| {
                            violation
                                .iter()
                                .find(|(n, _)| *n == k)
                                .map(|(_, v)| text(v))
                                .unwrap_or_default()
                        };
                        out.field_violations.push((get(1), get(2)));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// The length-delimited fields of a protobuf message as `(number, bytes)`; varints are skipped.
fn fields(mut b: &[u8]) -> Vec<(u64, Vec<u8>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        match key & 7 {
            0 => {
                varint(&mut b);
            }
            2 => {
                let len = usize::try_from(varint(&mut b)).unwrap();
                out.push((key >> 3, b[..len].to_vec()));
                b = &b[len..];
            }
            w => panic!("unexpected wire type {w}"),
        }
    }
    out
}
