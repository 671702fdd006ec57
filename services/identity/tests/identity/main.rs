//! The identity service over real gRPC on loopback: the service as the `orgplane` binary wires
//! it (tokens verified through its own GetJwks, API keys through its own AuthenticateApiKey, its
//! own service token from IssueServiceToken), fed by a fake organization producer (an outbox on
//! the same server). One test per rule ID-1 … ID-9, the token-attack table, the secrets scan and
//! the sweep. SQLite by default; the core paths also on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orgplane_identity::{Config, Identity};
use orgplane_platform::auth::{
    Authenticator, CachedApiKeys, Claims, SERVICE_AUDIENCE, Signer, TokenVerifier, USER_AUDIENCE,
};
use orgplane_platform::clients::{IdentityServiceTokens, RemoteApiKeys, RemoteKeys};
use orgplane_platform::clock::OffsetClock;
use orgplane_platform::error::reason_of;
use orgplane_platform::events::{EventServer, Outbox};
use orgplane_platform::host::{Host, ServiceModule};
use orgplane_platform::pagination::PageTokens;
use orgplane_platform::revocation::SessionRevocations;
use orgplane_platform::runtime::{Endpoints, Runtime, ServiceAccount};
use orgplane_platform::server::{GrpcServer, ServerConfig};
use orgplane_platform::testkit::{RunningServer, TEST_ISSUER, TestDb, channel};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::event_service_server::EventServiceServer;
use orgplane_proto::events::v1::*;
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::*;
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;
use orgplane_proto::workspace::v1::{
    AddWorkspaceMemberRequest, ArchiveWorkspaceRequest, CreateWorkspaceRequest, Workspace,
    WorkspaceRole,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};

use sha2::Digest;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const PASSWORD: &str = "correct horse battery staple";

// ----- log capture ------------------------------------------------------------------------------

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,orgplane_identity=trace,orgplane_platform=trace",
            ))
            .with_writer(move || LogWriter(writer.clone()))
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ----- the rig ----------------------------------------------------------------------------------

use orgplane_platform::testkit::ProducerTables as OrgMigrator;

struct Rig {
    _db: TestDb,
    _org_db: TestDb,
    dir: tempfile::TempDir,
    db_url: String,
    identity: Arc<Identity>,
    org: Outbox,
    server: RunningServer,
    clock: Arc<OffsetClock>,
    /// The real workspace service on the same server, when the test asked for one.
    workspaces: Option<(Arc<orgplane_workspace::Workspace>, TestDb)>,
}

/// What answers identity's workspace checks (rule ID-7) in a rig.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Workspaces {
    /// Nothing: identity's own address, which serves no WorkspaceService.
    Absent,
    /// The real workspace service, on the rig's server, fed by the same organization events.
    Served,
    /// An address where nothing listens.
    Unreachable,
}

fn test_config(dir: &std::path::Path) -> Config {
    Config {
        mail_url: format!("file://{}", dir.join("mail").display()),
        public_url: "https://app.orgplane.test".into(),
        signing_key_encryption_key_file: Some(dir.join("signing.key")),
        service_accounts: format!(
            "billing:{}:@billing-access,product:{}:check-access",
            orgplane_identity::crypto::sha256_hex("billing-secret"),
            orgplane_identity::crypto::sha256_hex("product-secret")
        ),
        // Test-only: cheap argon2id (production defaults are OWASP's, see id_3).
        password_hash_memory_kib: 1024,
        password_hash_iterations: 1,
        ..Config::default()
    }
}

impl Rig {
    async fn sqlite() -> Rig {
        Self::start(TestDb::sqlite(), |_| {}).await
    }

    async fn with(tweak: impl FnOnce(&mut Config)) -> Rig {
        Self::start(TestDb::sqlite(), tweak).await
    }

    async fn with_workspaces(workspaces: Workspaces) -> Rig {
        Self::start_with(TestDb::sqlite(), |_| {}, workspaces).await
    }

    async fn start(db: TestDb, tweak: impl FnOnce(&mut Config)) -> Rig {
        Self::start_with(db, tweak, Workspaces::Absent).await
    }

    async fn start_with(
        db: TestDb,
        tweak: impl FnOnce(&mut Config),
        workspaces: Workspaces,
    ) -> Rig {
        Self::start_full(db, tweak, workspaces, None).await
    }

    /// A rig whose server also answers the organization service's internal RPCs with `org`
    /// (LookupDomain, ProvisionMember; rules ORG-14, ID-13).
    async fn start_full(
        db: TestDb,
        tweak: impl FnOnce(&mut Config),
        workspaces: Workspaces,
        fake_org: Option<fake_organization::FakeOrganization>,
    ) -> Rig {
        log_buffer();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let org_db = TestDb::sqlite();
        let org = Outbox::new(org_db.open::<OrgMigrator>().await, Producer::Organization);
        let addr = std::net::SocketAddr::from((
            [127, 0, 0, 1],
            orgplane_platform::testkit::reserved_ports(1)[0],
        ));
        let url = format!("http://{addr}");
        let mut server = GrpcServer::new(ServerConfig::default());
        let clock = Arc::new(OffsetClock::new());
        let own = ServiceAccount {
            client_id: "orgplane-test".into(),
            client_secret: "test-secret".into(),
            capabilities: orgplane_platform::auth::Capabilities::all(),
        };
        let tokens = Arc::new(IdentityServiceTokens::new(
            channel(&url),
            own.client_id.clone(),
            own.client_secret.clone(),
        ));
        let runtime = Runtime {
            issuer: TEST_ISSUER.into(),
            service_account: own,
            page_tokens: PageTokens::ephemeral(),
            clock: clock.clone(),
            service_tokens: tokens.clone(),
            endpoints: Endpoints {
                identity: channel(&url).into(),
                organization: channel(&url).into(),
                workspace: match workspaces {
                    Workspaces::Unreachable => {
                        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                        channel(&format!("http://{}", l.local_addr().unwrap())).into()
                    }
                    _ => channel(&url).into(),
                },
            },
            shutdown: server.shutdown_token(),
            revocations: SessionRevocations::new(),
        };
        let mut host = Host::new(runtime.clone());
        let identity = host.open::<Identity>(&db.url, &config).await.unwrap();
        ServiceModule::register(&*identity, &mut server).await;
        let workspaces = if workspaces == Workspaces::Served {
            let ws_db = TestDb::sqlite();
            let ws = host
                .open::<orgplane_workspace::Workspace>(&ws_db.url, &Default::default())
                .await
                .unwrap();
            ServiceModule::register(&*ws, &mut server).await;
            Some((ws, ws_db))
        } else {
            None
        };
        let events = EventServer::new(
            [identity.outbox().clone(), org.clone()],
            server.shutdown_token(),
        )
        .with_poll_interval(Duration::from_millis(50));
        server
            .add_ready_service(EventServiceServer::new(events))
            .await;
        if let Some(fake) = fake_org {
            fake.publish_through(org.clone());
            server
                .add_ready_service(
                    orgplane_proto::organization::v1::organization_service_server::OrganizationServiceServer::new(fake),
                )
                .await;
        }
        let verifier = TokenVerifier::new(TEST_ISSUER, Arc::new(RemoteKeys::new(channel(&url))))
            .with_min_refetch(Duration::from_millis(0));
        let api_keys = CachedApiKeys::new(
            Arc::new(RemoteApiKeys::new(channel(&url), tokens)),
            Duration::from_millis(1),
        );
        let auth = Authenticator::new(Arc::new(verifier), Some(Arc::new(api_keys)))
            .with_revocations(runtime.revocations.clone());
        let health = server.health();
        let server = RunningServer::start(server, auth, Some(addr)).await;
        host.start(&health);
        Rig {
            db_url: db.url.clone(),
            _db: db,
            _org_db: org_db,
            dir,
            identity,
            org,
            server,
            clock,
            workspaces,
        }
    }

    fn client(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.server.channel())
    }

    fn db(&self) -> &DatabaseConnection {
        self.identity.db()
    }

    /// Publishes an organization event and waits until identity applied it.
    async fn org_event(&self, payload: Payload) -> i64 {
        let txn = self.org.connection().begin().await.unwrap();
        let rev = self.org.append(&txn, payload, "test").await.unwrap();
        txn.commit().await.unwrap();
        self.org.committed(rev);
        self.identity
            .organization_events()
            .wait_for(rev, Duration::from_secs(10))
            .await
            .unwrap();
        if let Some((ws, _)) = &self.workspaces {
            ws.organization_events()
                .wait_for(rev, Duration::from_secs(10))
                .await
                .unwrap();
        }
        rev
    }

    /// Creates workspace `name` in `org` through the real workspace service; returns its id.
    async fn create_workspace(&self, token: &str, org: &str, name: &str) -> String {
        WorkspaceServiceClient::new(self.server.channel())
            .create_workspace(bearer(
                CreateWorkspaceRequest {
                    organization_id: org.into(),
                    workspace: Some(Workspace {
                        name: name.into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .workspace
            .unwrap()
            .id
    }

    async fn create_org(&self, org: &str, owner: &str) {
        self.org_event(Payload::OrganizationCreated(OrganizationCreated {
            organization_id: org.into(),
            name: format!("{org} Inc"),
            owner_user_id: owner.into(),
            primary_email: String::new(),
            ..Default::default()
        }))
        .await;
    }

    async fn add_member(&self, org: &str, user: &str, role: OrgRole) {
        self.org_event(Payload::MemberAdded(MemberAdded {
            organization_id: org.into(),
            user_id: user.into(),
            role: role as i32,
        }))
        .await;
    }

    async fn sign_up(&self, email: &str, kind: AccountType) -> User {
        self.client()
            .sign_up(SignUpRequest {
                email: email.into(),
                password: PASSWORD.into(),
                display_name: "Ada Lovelace".into(),
                account_type: kind as i32,
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
    }

    async fn login(&self, email: &str) -> LoginResponse {
        self.client()
            .login(LoginRequest {
                email: email.into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Signs up and in; returns (user, access token, refresh token).
    async fn user(&self, email: &str) -> (User, String, String) {
        let user = self.sign_up(email, AccountType::Business).await;
        let t = self.login(email).await.tokens.unwrap();
        (user, t.access_token, t.refresh_token)
    }

    async fn service_token(&self) -> String {
        self.client()
            .issue_service_token(IssueServiceTokenRequest {
                client_id: "orgplane-test".into(),
                client_secret: "test-secret".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .access_token
    }

    /// The token of the newest mail to `to` whose link contains `path`.
    fn mailed_token(&self, to: &str, path: &str) -> String {
        let mut found: Vec<(std::time::SystemTime, String)> = Vec::new();
        for entry in std::fs::read_dir(self.dir.path().join("mail")).unwrap() {
            let entry = entry.unwrap();
            let raw = std::fs::read_to_string(entry.path()).unwrap();
            let text = raw
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=");
            if !text.contains(&format!("To: {to}")) && !text.contains(&format!("<{to}>")) {
                continue;
            }
            let marker = format!("/{path}?token=");
            if let Some(i) = text.find(&marker) {
                let token: String = text[i + marker.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                found.push((entry.metadata().unwrap().modified().unwrap(), token));
            }
        }
        found.sort();
        found
            .pop()
            .unwrap_or_else(|| panic!("no {path} mail to {to}"))
            .1
    }

    async fn outbox_events(&self) -> Vec<Payload> {
        self.identity
            .outbox()
            .read(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| e.payload)
            .collect()
    }
}

fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    orgplane_platform::testkit::bearer(msg, token)
}

fn with_api_key<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    req
}

fn assert_status(err: &tonic::Status, code: Code, reason: &str) {
    assert_eq!(err.code(), code, "{err:?}");
    assert_eq!(reason_of(err).as_deref(), Some(reason), "{err:?}");
}

fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header_of(token: &str) -> serde_json::Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

async fn me(rig: &Rig, token: &str) -> Result<User, tonic::Status> {
    rig.client()
        .get_user(bearer(
            GetUserRequest {
                user_id: "me".into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().user.unwrap())
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn create_key(
    rig: &Rig,
    token: &str,
    org: &str,
    kind: ApiKeyKind,
    workspace: &str,
) -> Result<CreateApiKeyResponse, tonic::Status> {
    rig.client()
        .create_api_key(bearer(
            CreateApiKeyRequest {
                organization_id: org.into(),
                api_key: Some(ApiKey {
                    name: "ci".into(),
                    kind: kind as i32,
                    workspace_id: workspace.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn authenticate(rig: &Rig, secret: &str) -> Result<ApiKey, tonic::Status> {
    let token = rig.service_token().await;
    rig.client()
        .authenticate_api_key(bearer(
            AuthenticateApiKeyRequest { key: secret.into() },
            &token,
        ))
        .await
        .map(|r| r.into_inner().api_key.unwrap())
}

// ----- ID-1 -------------------------------------------------------------------------------------

#[tokio::test]
async fn id_1_accounts_are_business_or_personal_and_expose_it() {
    let rig = Rig::sqlite().await;
    let err = rig
        .client()
        .sign_up(SignUpRequest {
            email: "x@example.com".into(),
            password: PASSWORD.into(),
            display_name: "X".into(),
            account_type: 0,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["account_type"]);

    let business = rig.sign_up("Boss@Example.COM", AccountType::Business).await;
    assert_eq!(business.email, "Boss@example.com", "domain lower-cased");
    assert!(!business.email_verified);
    let personal = rig.sign_up("me@example.com", AccountType::Personal).await;
    // What organization reads for its ID-1 check, with a service token.
    let service = rig.service_token().await;
    let seen = rig
        .client()
        .get_user(bearer(
            GetUserRequest {
                user_id: business.id.clone(),
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(seen.account_type, AccountType::Business as i32);
    assert!(!seen.email_verified);

    // PERSONAL may become BUSINESS; never the other way.
    let t = rig
        .login("me@example.com")
        .await
        .tokens
        .unwrap()
        .access_token;
    let up = rig
        .client()
        .update_user(bearer(
            UpdateUserRequest {
                user: Some(User {
                    id: "me".into(),
                    account_type: AccountType::Business as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["account_type"]),
                etag: personal.etag.clone(),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(up.account_type, AccountType::Business as i32);
    let err = rig
        .client()
        .update_user(bearer(
            UpdateUserRequest {
                user: Some(User {
                    id: "me".into(),
                    account_type: AccountType::Personal as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["account_type"]),
                etag: String::new(),
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_status(
        &err,
        Code::FailedPrecondition,
        "ACCOUNT_TYPE_DOWNGRADE_NOT_ALLOWED",
    );
    // A stale etag is ABORTED.
    let err = rig
        .client()
        .update_user(bearer(
            UpdateUserRequest {
                user: Some(User {
                    id: "me".into(),
                    display_name: "New".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: personal.etag,
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    // Duplicates are refused, ignoring case.
    let err = rig
        .client()
        .sign_up(SignUpRequest {
            email: "boss@example.com".into(),
            password: PASSWORD.into(),
            display_name: "B".into(),
            account_type: AccountType::Business as i32,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "EMAIL_ALREADY_REGISTERED");
}

// ----- ID-2 -------------------------------------------------------------------------------------

#[tokio::test]
async fn id_2_email_verification_is_mailed_single_use_and_expires_after_24_hours() {
    let rig = Rig::sqlite().await;
    let user = rig.sign_up("ada@example.com", AccountType::Business).await;
    let token = rig.mailed_token("ada@example.com", "verify-email");
    let verified = rig
        .client()
        .verify_email(VerifyEmailRequest {
            token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.user.unwrap().email_verified);
    assert!(verified.revision > 0);
    assert!(rig.outbox_events().await.iter().any(|p| matches!(
        p,
        Payload::UserEmailVerified(e) if e.user_id == user.id && e.email == "ada@example.com"
    )));
    let err = rig
        .client()
        .verify_email(VerifyEmailRequest { token })
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "VERIFICATION_TOKEN_INVALID");

    rig.sign_up("bob@example.com", AccountType::Business).await;
    let first = rig.mailed_token("bob@example.com", "verify-email");
    rig.clock.advance(chrono::Duration::hours(25));
    let err = rig
        .client()
        .verify_email(VerifyEmailRequest {
            token: first.clone(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "VERIFICATION_TOKEN_EXPIRED");
    // A new mail supersedes the old link; unknown addresses get the same answer.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for email in ["bob@example.com", "nobody@example.com"] {
        rig.client()
            .resend_verification(ResendVerificationRequest {
                email: email.into(),
            })
            .await
            .unwrap();
    }
    let second = rig.mailed_token("bob@example.com", "verify-email");
    assert_ne!(first, second);
    rig.client()
        .verify_email(VerifyEmailRequest { token: second })
        .await
        .unwrap();
    let err = rig
        .client()
        .verify_email(VerifyEmailRequest {
            token: "not-a-token".into(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "VERIFICATION_TOKEN_INVALID");
}

// ----- ID-3 -------------------------------------------------------------------------------------

#[tokio::test]
async fn id_3_passwords_are_argon2id_with_policy_generic_failures_and_throttling() {
    // Production defaults are OWASP's argon2id parameters.
    let defaults = Config::default();
    assert_eq!(
        (
            defaults.password_hash_memory_kib,
            defaults.password_hash_iterations
        ),
        (19_456, 2)
    );
    let rig = Rig::with(|c| {
        c.login_failures_per_account = 3;
        c.login_failures_per_peer = 6;
    })
    .await;
    for (password, why) in [("short", "too short"), (&*"x".repeat(257), "too long")] {
        let err = rig
            .client()
            .sign_up(SignUpRequest {
                email: "p@example.com".into(),
                password: password.into(),
                display_name: "P".into(),
                account_type: AccountType::Personal as i32,
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{why}");
        assert_eq!(
            err.get_details_bad_request().unwrap().field_violations[0].field,
            "password"
        );
    }
    let user = rig.sign_up("ada@example.com", AccountType::Business).await;
    let row = rig
        .db()
        .query_one_raw(Statement::from_sql_and_values(
            rig.db().get_database_backend(),
            "SELECT password_hash FROM users WHERE id = $1",
            [user.id.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let hash: String = row.try_get_by_index(0).unwrap();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");

    let login = |email: &str, password: &str| {
        let mut c = rig.client();
        let req = LoginRequest {
            email: email.into(),
            password: password.into(),
        };
        async move { c.login(req).await }
    };
    let unknown = login("nobody@example.com", PASSWORD).await.unwrap_err();
    let wrong = login("ada@example.com", "wrong password!!")
        .await
        .unwrap_err();
    assert_status(&unknown, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_status(&wrong, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_eq!(unknown.message(), wrong.message(), "no account enumeration");

    // Per account: the 4th attempt within the window is refused, even with the right password.
    login("ada@example.com", "wrong password!!")
        .await
        .unwrap_err();
    login("ada@example.com", "wrong password!!")
        .await
        .unwrap_err();
    let err = login("ada@example.com", PASSWORD).await.unwrap_err();
    assert_status(&err, Code::ResourceExhausted, "RATE_LIMITED");
    assert!(err.get_details_retry_info().unwrap().retry_delay.is_some());
    // Per peer: failures on other accounts add up.
    for i in 0..3 {
        let _ = login(&format!("ghost{i}@example.com"), PASSWORD).await;
    }
    let err = login("other@example.com", PASSWORD).await.unwrap_err();
    assert_status(&err, Code::ResourceExhausted, "RATE_LIMITED");
}

/// A concurrent burst of guesses cannot slip past the per-account budget: attempts in flight
/// count before their hash is computed.
#[tokio::test]
async fn id_3_a_concurrent_burst_of_guesses_tries_only_the_account_budget() {
    let rig = Rig::with(|c| {
        c.login_failures_per_account = 5;
        c.login_failures_per_peer = 1000;
    })
    .await;
    rig.sign_up("ada@example.com", AccountType::Business).await;
    let guesses = (0..20).map(|_| {
        let mut c = rig.client();
        async move {
            c.login(LoginRequest {
                email: "ada@example.com".into(),
                password: "wrong password!!".into(),
            })
            .await
        }
    });
    let mut codes = std::collections::BTreeMap::new();
    for r in futures::future::join_all(guesses).await {
        let err = r.unwrap_err();
        *codes.entry(format!("{:?}", err.code())).or_insert(0) += 1;
        if err.code() == Code::ResourceExhausted {
            assert_status(&err, Code::ResourceExhausted, "RATE_LIMITED");
            assert!(err.get_details_retry_info().is_some());
        }
    }
    assert_eq!(
        codes,
        [
            ("ResourceExhausted".to_owned(), 15),
            ("Unauthenticated".to_owned(), 5)
        ]
        .into(),
        "exactly the budget was tried"
    );
}

/// Behind a trusted proxy (a product backend calling Login for its users), the per-address budget
/// is each forwarded client's, not the proxy's; a caller that is not a trusted proxy cannot pick
/// its address with the header.
#[tokio::test]
async fn id_3_behind_a_trusted_proxy_each_forwarded_client_has_its_own_address_budget() {
    async fn failures_from(rig: &Rig, client: &str, accounts: std::ops::Range<u32>) -> Vec<Code> {
        let mut codes = Vec::new();
        for i in accounts {
            let mut req = tonic::Request::new(LoginRequest {
                email: format!("ghost{i}@example.com"),
                password: "wrong password!!".into(),
            });
            req.metadata_mut().insert(
                "x-forwarded-for",
                format!("{client}, 10.9.8.7").parse().unwrap(),
            );
            codes.push(rig.client().login(req).await.unwrap_err().code());
        }
        codes
    }
    let limited = [
        Code::Unauthenticated,
        Code::Unauthenticated,
        Code::Unauthenticated,
        Code::ResourceExhausted,
    ];
    // The test's client connects from 127.0.0.1; 10.9.8.7 is a second proxy in the chain.
    let rig = Rig::with(|c| {
        c.login_failures_per_peer = 3;
        c.trusted_proxies = "127.0.0.1, 10.0.0.0/8".into();
    })
    .await;
    assert_eq!(failures_from(&rig, "203.0.113.1", 0..4).await, limited);
    assert_eq!(
        failures_from(&rig, "203.0.113.2", 4..8).await,
        limited,
        "another client behind the same proxies has a budget of its own"
    );

    // Not trusted: the header is ignored, and every guess counts against 127.0.0.1.
    let rig = Rig::with(|c| c.login_failures_per_peer = 3).await;
    assert_eq!(failures_from(&rig, "203.0.113.1", 0..4).await, limited);
    assert_eq!(
        failures_from(&rig, "203.0.113.2", 4..5).await,
        [Code::ResourceExhausted],
        "a forged x-forwarded-for does not escape the caller's own budget"
    );
}

/// A guessing attack on an account from elsewhere exhausts the account's budget for strangers
/// only: its owner still signs in from an address they signed in from before, while the
/// attacker — even with the right password — stays refused until the window has passed.
#[tokio::test]
async fn id_3_guesses_from_elsewhere_do_not_lock_the_owner_out_of_a_known_address() {
    async fn login_from(rig: &Rig, client: &str, password: &str) -> Result<(), tonic::Status> {
        let mut req = tonic::Request::new(LoginRequest {
            email: "ada@example.com".into(),
            password: password.into(),
        });
        req.metadata_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        rig.client().login(req).await.map(drop)
    }
    let rig = Rig::with(|c| {
        c.login_failures_per_account = 3;
        c.trusted_proxies = "127.0.0.1".into();
    })
    .await;
    rig.sign_up("ada@example.com", AccountType::Business).await;
    login_from(&rig, "198.51.100.7", PASSWORD).await.unwrap();

    let mut attack = Vec::new();
    for i in 0..6 {
        let client = format!("203.0.113.{i}");
        attack.push(
            login_from(&rig, &client, "wrong password!!")
                .await
                .unwrap_err()
                .code(),
        );
    }
    assert_eq!(
        attack,
        [
            Code::Unauthenticated,
            Code::Unauthenticated,
            Code::Unauthenticated,
            Code::ResourceExhausted,
            Code::ResourceExhausted,
            Code::ResourceExhausted,
        ],
        "the account's budget for strangers is spent"
    );
    let stranger = login_from(&rig, "203.0.113.99", PASSWORD)
        .await
        .unwrap_err();
    assert_status(&stranger, Code::ResourceExhausted, "RATE_LIMITED");
    // The owner, from where they signed in before: not locked out, twice over.
    login_from(&rig, "198.51.100.7", PASSWORD).await.unwrap();
    login_from(&rig, "198.51.100.7", PASSWORD).await.unwrap();
    // Their success did not refill the strangers' budget.
    let stranger = login_from(&rig, "203.0.113.100", PASSWORD)
        .await
        .unwrap_err();
    assert_status(&stranger, Code::ResourceExhausted, "RATE_LIMITED");
    // Guessing from the owner's address has a budget of its own, as bounded.
    for _ in 0..3 {
        let err = login_from(&rig, "198.51.100.7", "wrong password!!")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let err = login_from(&rig, "198.51.100.7", PASSWORD)
        .await
        .unwrap_err();
    assert_status(&err, Code::ResourceExhausted, "RATE_LIMITED");
}

// ----- ID-4 -------------------------------------------------------------------------------------

#[tokio::test]
async fn id_4_access_tokens_carry_the_claims_and_refresh_tokens_rotate_with_reuse_detection() {
    let rig = Rig::sqlite().await;
    let user = rig.sign_up("ada@example.com", AccountType::Business).await;
    let tokens = rig.login("ada@example.com").await.tokens.unwrap();
    let header = header_of(&tokens.access_token);
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].as_str().is_some());
    let claims = claims_of(&tokens.access_token);
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "auth_time",
        "sid",
    ] {
        assert!(claims.get(claim).is_some(), "claim {claim}");
    }
    assert_eq!(claims["iss"], TEST_ISSUER);
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["aud"], USER_AUDIENCE);
    assert_eq!(claims["sid"], tokens.session_id.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert_eq!(me(&rig, &tokens.access_token).await.unwrap().id, user.id);

    let first = tokens.refresh_token.clone();
    let second = rig
        .client()
        .refresh(RefreshRequest {
            refresh_token: first.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_ne!(second.refresh_token, first);
    assert_eq!(second.session_id, tokens.session_id);
    // Reusing the rotated token ends the session: even the newest refresh token stops working.
    let err = rig
        .client()
        .refresh(RefreshRequest {
            refresh_token: first,
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REFRESH_TOKEN_REUSED");
    let err = rig
        .client()
        .refresh(RefreshRequest {
            refresh_token: second.refresh_token,
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REFRESH_TOKEN_INVALID");

    // Logout with a refresh token ends that session only.
    let a = rig.login("ada@example.com").await.tokens.unwrap();
    let b = rig.login("ada@example.com").await.tokens.unwrap();
    let ended = rig
        .client()
        .logout(LogoutRequest {
            refresh_token: a.refresh_token.clone(),
            all_sessions: false,
        })
        .await
        .unwrap()
        .into_inner()
        .ended_session_count;
    assert_eq!(ended, 1);
    assert!(
        rig.client()
            .refresh(RefreshRequest {
                refresh_token: a.refresh_token
            })
            .await
            .is_err()
    );
    let ended = rig
        .client()
        .logout(bearer(
            LogoutRequest {
                refresh_token: String::new(),
                all_sessions: true,
            },
            &b.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .ended_session_count;
    assert_eq!(ended, 1, "the other sessions had already ended");
    assert!(
        rig.client()
            .refresh(RefreshRequest {
                refresh_token: b.refresh_token
            })
            .await
            .is_err()
    );
}

// ----- ID-5 -------------------------------------------------------------------------------------

#[tokio::test]
async fn id_5_signing_keys_rotate_and_jwks_keeps_the_previous_key_until_its_tokens_expire() {
    let rig = Rig::sqlite().await;
    let jwks = |rig: &Rig| {
        let mut c = rig.client();
        async move { c.get_jwks(GetJwksRequest {}).await.unwrap().into_inner() }
    };
    let before = jwks(&rig).await;
    assert_eq!(before.issuer, TEST_ISSUER);
    assert_eq!(before.keys.len(), 1);
    let k = &before.keys[0];
    assert_eq!(
        (
            k.kty.as_str(),
            k.crv.as_str(),
            k.alg.as_str(),
            k.r#use.as_str()
        ),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );
    assert_eq!(URL_SAFE_NO_PAD.decode(&k.x).unwrap().len(), 32);
    rig.sign_up("ada@example.com", AccountType::Business).await;
    let old = rig
        .login("ada@example.com")
        .await
        .tokens
        .unwrap()
        .access_token;
    assert_eq!(header_of(&old)["kid"], k.kid.as_str());

    rig.clock.advance(chrono::Duration::days(31));
    rig.identity.keys().refresh().await.unwrap();
    let after = jwks(&rig).await;
    assert_eq!(after.keys.len(), 2, "current and previous");
    assert_ne!(after.keys[0].kid, k.kid, "the new key comes first");
    assert_eq!(after.keys[1].kid, k.kid);
    let new = rig
        .login("ada@example.com")
        .await
        .tokens
        .unwrap()
        .access_token;
    assert_eq!(header_of(&new)["kid"], after.keys[0].kid.as_str());
    me(&rig, &old)
        .await
        .expect("tokens of the previous key stay valid");
    me(&rig, &new).await.unwrap();

    rig.clock.advance(chrono::Duration::hours(1));
    rig.identity.keys().refresh().await.unwrap();
    let later = jwks(&rig).await;
    assert_eq!(later.keys.len(), 1, "gone once its tokens have expired");
    assert_eq!(later.keys[0].kid, after.keys[0].kid);
}

fn forge(header: serde_json::Value, claims: &serde_json::Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[tokio::test]
async fn id_5_token_attack_table_is_unauthenticated_through_the_real_service() {
    let rig = Rig::sqlite().await;
    let user = rig.sign_up("ada@example.com", AccountType::Business).await;
    let good = rig
        .login("ada@example.com")
        .await
        .tokens
        .unwrap()
        .access_token;
    me(&rig, &good).await.expect("the genuine token works");
    let signer = rig.identity.keys().signer();
    let now = chrono::Utc::now().timestamp();
    let claims = |f: &dyn Fn(&mut Claims)| {
        let mut c = Claims {
            iss: TEST_ISSUER.into(),
            sub: user.id.clone(),
            aud: USER_AUDIENCE.into(),
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            auth_time: Some(now),
            sid: Some("sess_x".into()),
            ..Default::default()
        };
        f(&mut c);
        c
    };
    let sign = |c: Claims| signer.sign(&c).unwrap();
    let good_claims = claims_of(&good);
    let kid = header_of(&good)["kid"].as_str().unwrap().to_owned();
    let jwks = rig
        .client()
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    let public = URL_SAFE_NO_PAD.decode(&jwks.keys[0].x).unwrap();

    let hs256 = {
        use hmac::Mac;
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(good_claims.to_string())
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&public).unwrap();
        mac.update(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut c = good_claims.clone();
        c["sub"] = serde_json::json!("user_someone_else");
        parts[1] = URL_SAFE_NO_PAD.encode(c.to_string());
        parts.join(".")
    };
    let other_key_same_kid = Signer::generate(kid.clone())
        .unwrap()
        .sign(&claims(&|_| {}))
        .unwrap();
    let unknown_kid = Signer::generate("k-unknown")
        .unwrap()
        .sign(&claims(&|_| {}))
        .unwrap();
    let oversized = sign(claims(&|c| c.jti = "x".repeat(9 * 1024)));
    let table: Vec<(&str, String)> = vec![
        (
            "alg none",
            forge(
                serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid}),
                &good_claims,
                b"",
            ),
        ),
        ("HS256 signed with the public key", hs256),
        ("unknown kid", unknown_kid),
        (
            "expired",
            sign(claims(&|c| {
                c.iat = now - 3600;
                c.nbf = now - 3600;
                c.exp = now - 600;
            })),
        ),
        ("nbf in the future", sign(claims(&|c| c.nbf = now + 600))),
        (
            "wrong iss",
            sign(claims(&|c| c.iss = "https://evil.test".into())),
        ),
        (
            "wrong aud",
            sign(claims(&|c| c.aud = "someone-else".into())),
        ),
        ("tampered payload", tampered),
        ("signature from a different key", other_key_same_kid),
        ("over 8 KiB", oversized),
        (
            "malformed header",
            format!("!!!.{}", good.split_once('.').unwrap().1),
        ),
        ("not a JWT", "abc".into()),
    ];
    for (name, token) in table {
        let err = me(&rig, &token).await.expect_err(name);
        assert_eq!(err.code(), Code::Unauthenticated, "{name}: {err:?}");
    }
    // A service token (service audience) is not a user: `me` is refused, even for an account
    // that may read users.
    let service = sign(claims(&|c| {
        c.aud = SERVICE_AUDIENCE.into();
        c.sid = None;
        c.auth_time = None;
        c.scope = Some("read-users".into());
    }));
    let err = me(&rig, &service).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

// ----- ID-6 -------------------------------------------------------------------------------------

#[tokio::test]
async fn id_6_admin_keys_need_a_recent_sign_in_and_reauthenticate_refreshes_it() {
    let rig = Rig::with(|c| c.step_up_max_age_secs = 1).await;
    let (user, token, refresh) = rig.user("owner@example.com").await;
    rig.create_org("org_a", &user.id).await;
    create_key(&rig, &token, "org_a", ApiKeyKind::Admin, "")
        .await
        .expect("fresh sign-in");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = create_key(&rig, &token, "org_a", ApiKeyKind::Admin, "")
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");
    // Workspace keys are not sensitive.
    create_key(&rig, &token, "org_a", ApiKeyKind::Workspace, "")
        .await
        .unwrap();
    let err = rig
        .client()
        .reauthenticate(bearer(
            ReauthenticateRequest {
                password: "wrong password!!".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_CREDENTIALS");
    let fresh = rig
        .client()
        .reauthenticate(bearer(
            ReauthenticateRequest {
                password: PASSWORD.into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(
        claims_of(&fresh.access_token)["sid"],
        claims_of(&token)["sid"]
    );
    assert!(
        claims_of(&fresh.access_token)["auth_time"].as_i64()
            > claims_of(&token)["auth_time"].as_i64()
    );
    create_key(&rig, &fresh.access_token, "org_a", ApiKeyKind::Admin, "")
        .await
        .expect("after step-up");
    let err = rig
        .client()
        .refresh(RefreshRequest {
            refresh_token: refresh,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unauthenticated,
        "the previous refresh token is invalid"
    );
}

/// Defect: a wrong password on Reauthenticate said "invalid email or password", though the
/// request carries no email (the signed-in user is known). It keeps the reason
/// `INVALID_CREDENTIALS` and says what is wrong: the password.
#[tokio::test]
async fn id_6_a_wrong_password_on_reauthenticate_speaks_of_the_password_only() {
    let rig = Rig::sqlite().await;
    let (_, token, _) = rig.user("owner@example.com").await;
    let err = rig
        .client()
        .reauthenticate(bearer(
            ReauthenticateRequest {
                password: "wrong password!!".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert!(
        !err.message().to_lowercase().contains("email"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("password"), "{}", err.message());
    // Login keeps its one answer for unknown addresses and wrong passwords (rule ID-3).
    let err = rig
        .client()
        .login(LoginRequest {
            email: "owner@example.com".into(),
            password: "wrong password!!".into(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_eq!(err.message(), "invalid email or password");
}

// ----- ID-7 -------------------------------------------------------------------------------------

#[tokio::test]
async fn id_7_api_keys_by_role_shown_once_stored_hashed_listed_updated_and_disabled_on_purge() {
    let rig = Rig::with_workspaces(Workspaces::Served).await;
    let (owner, owner_t, _) = rig.user("owner@example.com").await;
    let (dev, dev_t, _) = rig.user("dev@example.com").await;
    let (member, member_t, _) = rig.user("user@example.com").await;
    let (_, outsider_t, _) = rig.user("out@example.com").await;
    rig.create_org("org_a", &owner.id).await;
    rig.add_member("org_a", &dev.id, OrgRole::Developer).await;
    rig.add_member("org_a", &member.id, OrgRole::User).await;
    let ws_1 = rig.create_workspace(&owner_t, "org_a", "Production").await;
    WorkspaceServiceClient::new(rig.server.channel())
        .add_workspace_member(bearer(
            AddWorkspaceMemberRequest {
                workspace_id: ws_1.clone(),
                user_id: dev.id.clone(),
                role: WorkspaceRole::Developer as i32,
                request_id: String::new(),
            },
            &owner_t,
        ))
        .await
        .unwrap();

    let admin = create_key(&rig, &owner_t, "org_a", ApiKeyKind::Admin, "")
        .await
        .unwrap();
    assert!(admin.secret.starts_with("opk_admin_"));
    let admin_key = admin.api_key.unwrap();
    assert!(admin_key.partial_key_hint.starts_with("opk_admin_…"));
    assert!(
        admin
            .secret
            .ends_with(&admin_key.partial_key_hint[admin_key.partial_key_hint.len() - 4..])
    );
    assert_eq!(admin_key.status, ApiKeyStatus::Active as i32);
    let dev_key = create_key(&rig, &dev_t, "org_a", ApiKeyKind::Workspace, &ws_1)
        .await
        .unwrap();
    assert!(dev_key.secret.starts_with("opk_") && !dev_key.secret.starts_with("opk_admin_"));
    let default_ws = create_key(&rig, &dev_t, "org_a", ApiKeyKind::Workspace, "")
        .await
        .unwrap();
    let err = create_key(&rig, &dev_t, "org_a", ApiKeyKind::Admin, "")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "DEVELOPER: no admin keys"
    );
    let err = create_key(&rig, &member_t, "org_a", ApiKeyKind::Workspace, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "USER: no keys");
    let err = create_key(&rig, &outsider_t, "org_a", ApiKeyKind::Workspace, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "outsiders learn nothing");
    let err = create_key(&rig, &owner_t, "org_a", ApiKeyKind::Admin, &ws_1)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "admin keys have no workspace"
    );
    // Never with an API key.
    let err = rig
        .client()
        .create_api_key(with_api_key(
            CreateApiKeyRequest {
                organization_id: "org_a".into(),
                api_key: Some(ApiKey {
                    name: "x".into(),
                    kind: ApiKeyKind::Workspace as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin.secret,
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "USER_CREDENTIALS_REQUIRED");

    // Idempotent retries never show the secret twice.
    let mut req = CreateApiKeyRequest {
        organization_id: "org_a".into(),
        api_key: Some(ApiKey {
            name: "retry".into(),
            kind: ApiKeyKind::Workspace as i32,
            ..Default::default()
        }),
        request_id: "6f1c1d8e-1111-4e0e-9d7a-9d1b2b3c4d5e".into(),
    };
    let once = rig
        .client()
        .create_api_key(bearer(req.clone(), &owner_t))
        .await
        .unwrap()
        .into_inner();
    req.api_key.as_mut().unwrap().name = "retry again".into();
    let err = rig
        .client()
        .create_api_key(bearer(req, &owner_t))
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "SECRET_ALREADY_RETURNED");
    assert_eq!(
        err.get_details_error_info().unwrap().metadata["api_key_id"],
        once.api_key.unwrap().id
    );

    // AuthenticateApiKey: internal, resolves org, workspace and kind.
    let resolved = authenticate(&rig, &dev_key.secret).await.unwrap();
    assert_eq!(resolved.organization_id, "org_a");
    assert_eq!(resolved.workspace_id, ws_1);
    assert_eq!(resolved.kind, ApiKeyKind::Workspace as i32);
    let err = rig
        .client()
        .authenticate_api_key(bearer(
            AuthenticateApiKeyRequest {
                key: dev_key.secret.clone(),
            },
            &owner_t,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "internal RPC");
    let mut typo = dev_key.secret.clone();
    // Another last character (a key ending in 'x' once made this "typo" the key itself).
    let last = typo.pop();
    typo.push(if last == Some('x') { 'y' } else { 'x' });
    assert_status(
        &authenticate(&rig, &typo).await.unwrap_err(),
        Code::Unauthenticated,
        "API_KEY_INVALID",
    );

    // An admin key works on identity's org-scoped RPCs; a workspace key does not.
    let listed = rig
        .client()
        .list_api_keys(with_api_key(
            ListApiKeysRequest {
                organization_id: "org_a".into(),
                ..Default::default()
            },
            &admin.secret,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.api_keys.len(), 4);
    assert!(
        listed.api_keys.windows(2).all(|w| {
            let key = |k: &ApiKey| {
                let t = k.create_time.unwrap();
                (t.seconds, t.nanos, k.id.clone())
            };
            key(&w[0]) >= key(&w[1])
        }),
        "newest first"
    );
    let err = rig
        .client()
        .list_api_keys(with_api_key(
            ListApiKeysRequest {
                organization_id: "org_a".into(),
                ..Default::default()
            },
            &dev_key.secret,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Filters and pages.
    let list = |req: ListApiKeysRequest| {
        let mut c = rig.client();
        let t = dev_t.clone();
        async move { c.list_api_keys(bearer(req, &t)).await.unwrap().into_inner() }
    };
    let page1 = list(ListApiKeysRequest {
        organization_id: "org_a".into(),
        page_size: 3,
        ..Default::default()
    })
    .await;
    assert_eq!(page1.api_keys.len(), 3);
    let page2 = list(ListApiKeysRequest {
        organization_id: "org_a".into(),
        page_size: 3,
        page_token: page1.next_page_token.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(page2.api_keys.len(), 1);
    assert!(page2.next_page_token.is_empty());
    let ws1 = list(ListApiKeysRequest {
        organization_id: "org_a".into(),
        workspace_id: Some(ws_1.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(ws1.api_keys.len(), 1);
    let admins = list(ListApiKeysRequest {
        organization_id: "org_a".into(),
        kind: ApiKeyKind::Admin as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(admins.api_keys.len(), 1);
    let err = rig
        .client()
        .list_api_keys(bearer(
            ListApiKeysRequest {
                organization_id: "org_a".into(),
                ..Default::default()
            },
            &member_t,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Rename and deactivate (etag-checked); an INACTIVE key is refused.
    let got = rig
        .client()
        .get_api_key(bearer(
            GetApiKeyRequest {
                api_key_id: dev_key.api_key.as_ref().unwrap().id.clone(),
            },
            &dev_t,
        ))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert!(got.last_used_time.is_some(), "use recorded");
    let updated = rig
        .client()
        .update_api_key(bearer(
            UpdateApiKeyRequest {
                api_key: Some(ApiKey {
                    id: got.id.clone(),
                    name: "renamed".into(),
                    status: ApiKeyStatus::Inactive as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["name", "status"]),
                etag: got.etag.clone(),
            },
            &dev_t,
        ))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_status(
        &authenticate(&rig, &dev_key.secret).await.unwrap_err(),
        Code::Unauthenticated,
        "API_KEY_INACTIVE",
    );
    let err = rig
        .client()
        .update_api_key(bearer(
            UpdateApiKeyRequest {
                api_key: Some(ApiKey {
                    id: got.id.clone(),
                    name: "again".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: got.etag,
            },
            &dev_t,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    let err = rig
        .client()
        .update_api_key(bearer(
            UpdateApiKeyRequest {
                api_key: Some(ApiKey {
                    id: admin_key.id.clone(),
                    status: ApiKeyStatus::Inactive as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["status"]),
                etag: String::new(),
            },
            &dev_t,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "admin keys: OWNER/ADMIN only"
    );

    // Keys belong to the organization: removing their creator leaves them as they are.
    rig.org_event(Payload::MemberRemoved(MemberRemoved {
        organization_id: "org_a".into(),
        user_id: dev.id.clone(),
        old_role: OrgRole::Developer as i32,
    }))
    .await;
    authenticate(&rig, &default_ws.secret)
        .await
        .expect("still accepted");

    // Purging the org disables its keys and says so.
    rig.org_event(Payload::OrganizationDeleted(OrganizationDeleted {
        organization_id: "org_a".into(),
        purge_time: None,
    }))
    .await;
    assert_status(
        &authenticate(&rig, &admin.secret).await.unwrap_err(),
        Code::Unauthenticated,
        "API_KEY_INACTIVE",
    );
    rig.org_event(Payload::OrganizationPurged(OrganizationPurged {
        organization_id: "org_a".into(),
    }))
    .await;
    let events = rig.outbox_events().await;
    let created = events
        .iter()
        .filter(
            |p| matches!(p, Payload::ApiKeyCreated(e) if e.organization_id == "org_a" && e.active),
        )
        .count();
    assert_eq!(created, 4);
    assert!(events.iter().any(|p| matches!(
        p,
        Payload::ApiKeyCreated(e) if e.admin && e.api_key_id == admin_key.id
    )));
    let disabled: Vec<&ApiKeyStatusChanged> = events
        .iter()
        .filter_map(|p| match p {
            Payload::ApiKeyStatusChanged(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(
        disabled.len(),
        4,
        "one by hand, three by the purge: {disabled:?}"
    );
    assert!(disabled.iter().all(|e| !e.active));
    let service = rig.service_token().await;
    let keys = rig
        .client()
        .list_api_keys(bearer(
            ListApiKeysRequest {
                organization_id: "org_a".into(),
                status: ApiKeyStatus::Active as i32,
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(keys.api_keys.is_empty(), "no active key after the purge");
}

#[tokio::test]
async fn id_7_ws_5_workspace_api_key_needs_a_live_workspace_its_developer_may_enter() {
    let rig = Rig::with_workspaces(Workspaces::Served).await;
    let (owner, owner_t, _) = rig.user("owner@example.com").await;
    let (dev, dev_t, _) = rig.user("dev@example.com").await;
    let (other, other_t, _) = rig.user("other@example.com").await;
    rig.create_org("org_a", &owner.id).await;
    rig.add_member("org_a", &dev.id, OrgRole::Developer).await;
    rig.create_org("org_b", &other.id).await;
    let live = rig.create_workspace(&owner_t, "org_a", "Live").await;
    let archived = rig.create_workspace(&owner_t, "org_a", "Old").await;
    WorkspaceServiceClient::new(rig.server.channel())
        .archive_workspace(bearer(
            ArchiveWorkspaceRequest {
                workspace_id: archived.clone(),
                etag: String::new(),
            },
            &owner_t,
        ))
        .await
        .unwrap();
    let foreign = rig.create_workspace(&other_t, "org_b", "Theirs").await;

    // WS-5: an org DEVELOPER has access only where added, and so has a key they create.
    let err = create_key(&rig, &dev_t, "org_a", ApiKeyKind::Workspace, &live)
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "INSUFFICIENT_ROLE");
    WorkspaceServiceClient::new(rig.server.channel())
        .add_workspace_member(bearer(
            AddWorkspaceMemberRequest {
                workspace_id: live.clone(),
                user_id: dev.id.clone(),
                role: WorkspaceRole::Developer as i32,
                request_id: String::new(),
            },
            &owner_t,
        ))
        .await
        .unwrap();
    let key = create_key(&rig, &dev_t, "org_a", ApiKeyKind::Workspace, &live)
        .await
        .unwrap();
    assert_eq!(key.api_key.unwrap().workspace_id, live);

    let unknown = "wrkspc_doesnotexist";
    let err_unknown = create_key(&rig, &dev_t, "org_a", ApiKeyKind::Workspace, unknown)
        .await
        .unwrap_err();
    assert_status(&err_unknown, Code::NotFound, "NOT_FOUND");
    let err_foreign = create_key(&rig, &dev_t, "org_a", ApiKeyKind::Workspace, &foreign)
        .await
        .unwrap_err();
    assert_status(&err_foreign, Code::NotFound, "NOT_FOUND");
    assert_eq!(
        err_foreign.message().replace(&foreign, "ID"),
        err_unknown.message().replace(unknown, "ID"),
        "another organization's workspace looks exactly like no workspace"
    );
    let err = create_key(&rig, &dev_t, "org_a", ApiKeyKind::Workspace, &archived)
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");

    let keys = rig
        .client()
        .list_api_keys(bearer(
            ListApiKeysRequest {
                organization_id: "org_a".into(),
                ..Default::default()
            },
            &owner_t,
        ))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(keys.len(), 1, "refused calls store no key: {keys:?}");
}

#[tokio::test]
async fn id_7_workspace_api_key_is_refused_unavailable_while_the_workspace_service_is_unreachable()
{
    let rig = Rig::with_workspaces(Workspaces::Unreachable).await;
    let (owner, owner_t, _) = rig.user("owner@example.com").await;
    rig.create_org("org_a", &owner.id).await;

    let err = create_key(&rig, &owner_t, "org_a", ApiKeyKind::Workspace, "wrkspc_any")
        .await
        .unwrap_err();
    assert_status(&err, Code::Unavailable, "WORKSPACE_SERVICE_UNAVAILABLE");
    // The Default Workspace and admin keys need no workspace service.
    create_key(&rig, &owner_t, "org_a", ApiKeyKind::Workspace, "")
        .await
        .unwrap();
    create_key(&rig, &owner_t, "org_a", ApiKeyKind::Admin, "")
        .await
        .unwrap();
}

// ----- ID-8 -------------------------------------------------------------------------------------

#[tokio::test]
async fn id_8_owner_and_admin_reset_a_members_password_and_mfa() {
    let rig = Rig::sqlite().await;
    let (owner, owner_t, _) = rig.user("owner@example.com").await;
    let (admin, admin_t, _) = rig.user("admin@example.com").await;
    let (member, _, member_refresh) = rig.user("member@example.com").await;
    let (plain, plain_t, _) = rig.user("plain@example.com").await;
    let (_, outsider_t, _) = rig.user("out@example.com").await;
    rig.create_org("org_a", &owner.id).await;
    rig.add_member("org_a", &admin.id, OrgRole::Admin).await;
    rig.add_member("org_a", &member.id, OrgRole::Developer)
        .await;
    rig.add_member("org_a", &plain.id, OrgRole::User).await;
    let reset = |token: &str, user: &str| {
        let mut c = rig.client();
        let req = bearer(
            AdminResetPasswordRequest {
                organization_id: "org_a".into(),
                user_id: user.into(),
            },
            token,
        );
        async move { c.admin_reset_password(req).await }
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let ended = reset(&admin_t, &member.id).await.unwrap().into_inner();
    assert_eq!(ended.ended_session_count, 1);
    let err = rig
        .client()
        .refresh(RefreshRequest {
            refresh_token: member_refresh,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "sessions ended");
    let err = rig
        .client()
        .login(LoginRequest {
            email: "member@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "INVALID_CREDENTIALS");
    let link = rig.mailed_token("member@example.com", "reset-password");
    rig.client()
        .reset_password(ResetPasswordRequest {
            token: link.clone(),
            new_password: "a brand new password".into(),
        })
        .await
        .unwrap();
    rig.client()
        .login(LoginRequest {
            email: "member@example.com".into(),
            password: "a brand new password".into(),
        })
        .await
        .unwrap();
    let err = rig
        .client()
        .reset_password(ResetPasswordRequest {
            token: link,
            new_password: "yet another password".into(),
        })
        .await
        .unwrap_err();
    assert_status(
        &err,
        Code::FailedPrecondition,
        "PASSWORD_RESET_TOKEN_INVALID",
    );

    assert_status(
        &reset(&admin_t, &owner.id).await.unwrap_err(),
        Code::PermissionDenied,
        "OWNER_PROTECTED",
    );
    assert_status(
        &reset(&plain_t, &member.id).await.unwrap_err(),
        Code::PermissionDenied,
        "INSUFFICIENT_ROLE",
    );
    assert_eq!(
        reset(&outsider_t, &member.id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        reset(&owner_t, "user_nobody").await.unwrap_err().code(),
        Code::NotFound
    );
    reset(&owner_t, &admin.id)
        .await
        .expect("the owner may reset an admin");

    // MFA: factors are removed (none enrolled is fine too).
    rig.db()
        .execute_raw(Statement::from_sql_and_values(
            rig.db().get_database_backend(),
            "INSERT INTO mfa_factors (id, user_id, kind, create_time_ms) VALUES ($1, $2, 'totp', 0)",
            ["mfa_1".into(), member.id.clone().into()],
        ))
        .await
        .unwrap();
    let mfa = |token: &str| {
        let mut c = rig.client();
        let req = bearer(
            AdminResetMfaRequest {
                organization_id: "org_a".into(),
                user_id: member.id.clone(),
            },
            token,
        );
        async move { c.admin_reset_mfa(req).await }
    };
    assert_eq!(
        mfa(&owner_t)
            .await
            .unwrap()
            .into_inner()
            .removed_factor_count,
        1
    );
    assert_eq!(
        mfa(&owner_t)
            .await
            .unwrap()
            .into_inner()
            .removed_factor_count,
        0
    );
    assert_eq!(
        mfa(&plain_t).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Self-service reset: same answer for unknown addresses.
    for email in ["plain@example.com", "ghost@example.com"] {
        rig.client()
            .request_password_reset(RequestPasswordResetRequest {
                email: email.into(),
            })
            .await
            .unwrap();
    }
    let token = rig.mailed_token("plain@example.com", "reset-password");
    rig.clock.advance(chrono::Duration::hours(25));
    let err = rig
        .client()
        .reset_password(ResetPasswordRequest {
            token,
            new_password: "a brand new password".into(),
        })
        .await
        .unwrap_err();
    assert_status(
        &err,
        Code::FailedPrecondition,
        "PASSWORD_RESET_TOKEN_EXPIRED",
    );
}

/// The comment above `rpc <name>(` in identity.proto: what the API documents for that RPC.
fn documented(rpc: &str) -> String {
    let proto = include_str!("../../../../proto/orgplane/identity/v1/identity.proto");
    let end = proto
        .find(&format!("rpc {rpc}("))
        .unwrap_or_else(|| panic!("no rpc {rpc}"));
    let start = proto[..end].rfind(");").unwrap_or(0);
    proto[start..end].to_owned()
}

/// Defect: AdminResetPassword on the OWNER answers `OWNER_PROTECTED` (rule ID-8), while
/// identity.proto documented only `INSUFFICIENT_ROLE`. The answer stays; the documentation now
/// tells it, for an ADMIN and for an admin API key alike, for passwords and factors.
#[tokio::test]
async fn id_8_an_admin_resetting_the_owner_gets_owner_protected_as_documented() {
    let doc = documented("AdminResetPassword");
    assert!(doc.contains("`OWNER_PROTECTED`"), "{doc}");
    assert!(doc.contains("`INSUFFICIENT_ROLE`"), "{doc}");
    assert!(documented("AdminResetMfa").contains("as AdminResetPassword"));

    let rig = Rig::sqlite().await;
    let (owner, owner_t, _) = rig.user("owner@example.com").await;
    let (admin, admin_t, _) = rig.user("admin@example.com").await;
    let (plain, plain_t, _) = rig.user("plain@example.com").await;
    rig.create_org("org_a", &owner.id).await;
    rig.add_member("org_a", &admin.id, OrgRole::Admin).await;
    rig.add_member("org_a", &plain.id, OrgRole::User).await;
    let admin_key = create_key(&rig, &owner_t, "org_a", ApiKeyKind::Admin, "")
        .await
        .unwrap()
        .secret;
    fn as_caller<T>(msg: T, cred: &str, is_key: bool) -> tonic::Request<T> {
        if is_key {
            with_api_key(msg, cred)
        } else {
            bearer(msg, cred)
        }
    }
    for (cred, is_key) in [(admin_t.as_str(), false), (admin_key.as_str(), true)] {
        let err = rig
            .client()
            .admin_reset_password(as_caller(
                AdminResetPasswordRequest {
                    organization_id: "org_a".into(),
                    user_id: owner.id.clone(),
                },
                cred,
                is_key,
            ))
            .await
            .unwrap_err();
        assert_status(&err, Code::PermissionDenied, "OWNER_PROTECTED");
        let err = rig
            .client()
            .admin_reset_mfa(as_caller(
                AdminResetMfaRequest {
                    organization_id: "org_a".into(),
                    user_id: owner.id.clone(),
                },
                cred,
                is_key,
            ))
            .await
            .unwrap_err();
        assert_status(&err, Code::PermissionDenied, "OWNER_PROTECTED");
    }
    // A member without the role: INSUFFICIENT_ROLE, as documented too.
    let err = rig
        .client()
        .admin_reset_password(bearer(
            AdminResetPasswordRequest {
                organization_id: "org_a".into(),
                user_id: admin.id.clone(),
            },
            &plain_t,
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "INSUFFICIENT_ROLE");
    // The owner still signs in: nothing was reset.
    rig.login("owner@example.com").await;
}

// ----- ID-9 -------------------------------------------------------------------------------------

async fn id_9_flow(rig: &Rig) {
    let (owner, owner_t, _) = rig.user("owner@example.com").await;
    let (admin, admin_t, _) = rig.user("admin@example.com").await;
    rig.create_org("org_a", &owner.id).await;
    rig.add_member("org_a", &admin.id, OrgRole::Admin).await;
    let key = create_key(rig, &owner_t, "org_a", ApiKeyKind::Workspace, "")
        .await
        .unwrap();
    let delete = |token: &str, id: &str| {
        let mut c = rig.client();
        let req = bearer(DeleteUserRequest { user_id: id.into() }, token);
        async move { c.delete_user(req).await }
    };
    let err = delete(&owner_t, "me").await.unwrap_err();
    assert_status(
        &err,
        Code::FailedPrecondition,
        "OWNERSHIP_TRANSFER_REQUIRED",
    );
    assert_eq!(
        delete(&admin_t, &owner.id).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let rev = rig
        .org_event(Payload::OwnershipTransferred(OwnershipTransferred {
            organization_id: "org_a".into(),
            previous_owner_user_id: owner.id.clone(),
            new_owner_user_id: admin.id.clone(),
            new_owner_previous_role: OrgRole::Admin as i32,
        }))
        .await;
    // The read-your-writes header is accepted.
    let mut req = bearer(
        DeleteUserRequest {
            user_id: "me".into(),
        },
        &owner_t,
    );
    req.metadata_mut().insert(
        "x-min-organization-revision",
        rev.to_string().parse().unwrap(),
    );
    let deleted = rig.client().delete_user(req).await.unwrap().into_inner();
    assert!(deleted.revision > 0);
    assert!(rig.outbox_events().await.iter().any(|p| matches!(
        p,
        Payload::UserDeleted(e) if e.user_id == owner.id
    )));
    let service = rig.service_token().await;
    let err = rig
        .client()
        .get_user(bearer(
            GetUserRequest {
                user_id: owner.id.clone(),
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = rig
        .client()
        .login(LoginRequest {
            email: "owner@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // ID-7: the deleted user's key still works; it belongs to the organization.
    authenticate(rig, &key.secret).await.unwrap();
}

#[tokio::test]
async fn id_9_an_owner_cannot_delete_their_account_and_deletion_publishes_user_deleted() {
    id_9_flow(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn id_9_and_id_4_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    let rig = Rig::start(db, |_| {}).await;
    id_9_flow(&rig).await;
    let (_, _, refresh) = rig.user("pg@example.com").await;
    let next = rig
        .client()
        .refresh(RefreshRequest {
            refresh_token: refresh.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let err = rig
        .client()
        .refresh(RefreshRequest {
            refresh_token: refresh,
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REFRESH_TOKEN_REUSED");
    assert!(
        rig.client()
            .refresh(RefreshRequest {
                refresh_token: next.refresh_token
            })
            .await
            .is_err()
    );
}

/// The sessions listed by the `SessionsRevoked` events of identity's outbox.
async fn revoked_sessions(rig: &Rig) -> Vec<String> {
    rig.outbox_events()
        .await
        .into_iter()
        .filter_map(|p| match p {
            Payload::SessionsRevoked(e) => Some(e.session_ids),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test]
async fn id_4_ended_sessions_publish_sessions_revoked_and_their_access_tokens_are_refused_at_once()
{
    let rig = Rig::sqlite().await;
    let email = "ended@example.com";
    rig.sign_up(email, AccountType::Business).await;
    let first = rig.login(email).await.tokens.unwrap();
    let second = rig.login(email).await.tokens.unwrap();
    me(&rig, &first.access_token).await.unwrap();
    me(&rig, &second.access_token).await.unwrap();

    // ResetPassword ends both sessions: one event names each, and this process refuses their
    // (already verified and cached) tokens as soon as the call answers.
    rig.client()
        .request_password_reset(RequestPasswordResetRequest {
            email: email.into(),
        })
        .await
        .unwrap();
    let link = rig.mailed_token(email, "reset-password");
    let ended = rig
        .client()
        .reset_password(ResetPasswordRequest {
            token: link,
            new_password: "a brand new password".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .ended_session_count;
    assert_eq!(ended, 2);
    let mut revoked = revoked_sessions(&rig).await;
    revoked.sort();
    let mut expected = vec![first.session_id.clone(), second.session_id.clone()];
    expected.sort();
    assert_eq!(revoked, expected);
    for token in [&first.access_token, &second.access_token] {
        let err = me(&rig, token).await.unwrap_err();
        assert_status(&err, Code::Unauthenticated, "SESSION_REVOKED");
    }

    // A session started right after (within the same second) is not affected: revocations
    // name sessions, not a time.
    let after = rig
        .client()
        .login(LoginRequest {
            email: email.into(),
            password: "a brand new password".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    me(&rig, &after.access_token).await.unwrap();

    // DeleteUser ends the remaining session too.
    rig.identity.organization_events().wait_caught_up().await;
    rig.client()
        .delete_user(bearer(
            DeleteUserRequest {
                user_id: "me".into(),
            },
            &after.access_token,
        ))
        .await
        .unwrap();
    assert!(revoked_sessions(&rig).await.contains(&after.session_id));
    let err = me(&rig, &after.access_token).await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "SESSION_REVOKED");

    // The revocations are durable: a restarted process loads them from the database.
    let reloaded = SessionRevocations::new();
    assert_eq!(reloaded.load(rig.db()).await.unwrap(), 3);
    for sid in [&first.session_id, &second.session_id, &after.session_id] {
        assert!(reloaded.is_revoked(sid), "{sid} is revoked after a restart");
    }
}

#[tokio::test]
async fn id_4_an_identity_replica_on_the_same_database_learns_the_sessions_another_replica_ended() {
    let rig = Rig::sqlite().await;
    let email = "replicas@example.com";
    rig.sign_up(email, AccountType::Business).await;
    let tokens = rig.login(email).await.tokens.unwrap();
    // A second replica: the same database and keys, its own process memory.
    let url = rig.server.url();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let own = ServiceAccount {
        client_id: "orgplane-test".into(),
        client_secret: "test-secret".into(),
        capabilities: orgplane_platform::auth::Capabilities::all(),
    };
    let runtime = Runtime {
        issuer: TEST_ISSUER.into(),
        service_tokens: Arc::new(IdentityServiceTokens::new(
            channel(&url),
            own.client_id.clone(),
            own.client_secret.clone(),
        )),
        service_account: own,
        page_tokens: PageTokens::ephemeral(),
        clock: Arc::new(OffsetClock::new()),
        endpoints: Endpoints {
            identity: channel(&url).into(),
            organization: channel(&url).into(),
            workspace: channel(&url).into(),
        },
        shutdown: shutdown.clone(),
        revocations: SessionRevocations::new(),
    };
    let mut host = Host::new(runtime.clone());
    let _replica = host
        .open::<Identity>(&rig.db_url, &test_config(rig.dir.path()))
        .await
        .unwrap();
    host.start(&GrpcServer::new(ServerConfig::default()).health());

    rig.client()
        .logout(bearer(LogoutRequest::default(), &tokens.access_token))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while !runtime.revocations.is_revoked(&tokens.session_id) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the other replica never learned the revocation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
}

// ----- users for other services, service tokens -------------------------------------------------

#[tokio::test]
async fn users_are_visible_to_themselves_co_members_and_services_and_service_tokens_need_credentials()
 {
    let rig = Rig::sqlite().await;
    let (a, a_t, _) = rig.user("a@example.com").await;
    let (b, _, _) = rig.user("b@example.com").await;
    let (c, _, _) = rig.user("c@example.com").await;
    rig.create_org("org_a", &a.id).await;
    rig.add_member("org_a", &b.id, OrgRole::User).await;
    let service = rig.service_token().await;
    let claims = claims_of(&service);
    assert_eq!(claims["aud"], SERVICE_AUDIENCE);
    assert_eq!(claims["sub"], "orgplane-test");
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 600);

    let batch = |token: &str, ids: Vec<String>| {
        let mut cl = rig.client();
        let req = bearer(BatchGetUsersRequest { user_ids: ids }, token);
        async move { cl.batch_get_users(req).await }
    };
    let all = batch(
        &service,
        vec![c.id.clone(), a.id.clone(), "user_gone".into(), c.id.clone()],
    )
    .await
    .unwrap()
    .into_inner();
    let ids: Vec<&str> = all.users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        ids,
        [c.id.as_str(), a.id.as_str()],
        "request order, duplicates once"
    );
    assert_eq!(all.missing_user_ids, ["user_gone"]);
    assert_eq!(all.users[0].email, "c@example.com");
    let mine = batch(&a_t, vec![a.id.clone(), b.id.clone(), c.id.clone()])
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.users.len(), 2, "self and co-member");
    assert_eq!(mine.missing_user_ids, vec![c.id.clone()]);
    assert_eq!(
        batch(&service, vec![]).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        batch(&service, vec!["x".into(); 1001])
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let err = rig
        .client()
        .get_user(bearer(
            GetUserRequest {
                user_id: c.id.clone(),
            },
            &a_t,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "strangers are not visible");

    // Configured service accounts (secret stored as SHA-256) and wrong secrets.
    let billing = rig
        .client()
        .issue_service_token(IssueServiceTokenRequest {
            client_id: "billing".into(),
            client_secret: "billing-secret".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claims_of(&billing.access_token)["sub"], "billing");
    for (id, secret) in [
        ("billing", "nope"),
        ("orgplane-test", "nope"),
        ("ghost", "x"),
    ] {
        let err = rig
            .client()
            .issue_service_token(IssueServiceTokenRequest {
                client_id: id.into(),
                client_secret: secret.into(),
            })
            .await
            .unwrap_err();
        assert_status(&err, Code::Unauthenticated, "INVALID_CLIENT_CREDENTIALS");
    }
}

// ----- secrets ----------------------------------------------------------------------------------

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_secret_is_stored_or_logged_in_plaintext() {
    let rig = Rig::sqlite().await;
    let (owner, token, refresh) = rig.user("owner@example.com").await;
    rig.create_org("org_a", &owner.id).await;
    let next = rig
        .client()
        .refresh(RefreshRequest {
            refresh_token: refresh.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let key = create_key(&rig, &token, "org_a", ApiKeyKind::Admin, "")
        .await
        .unwrap();
    authenticate(&rig, &key.secret).await.unwrap();
    let verify = rig.mailed_token("owner@example.com", "verify-email");
    rig.client()
        .request_password_reset(RequestPasswordResetRequest {
            email: "owner@example.com".into(),
        })
        .await
        .unwrap();
    let reset = rig.mailed_token("owner@example.com", "reset-password");
    let _ = rig
        .client()
        .login(LoginRequest {
            email: "owner@example.com".into(),
            password: "a wrong password".into(),
        })
        .await;
    let _ = rig
        .client()
        .issue_service_token(IssueServiceTokenRequest {
            client_id: "billing".into(),
            client_secret: "billing-secret-wrong".into(),
        })
        .await;
    let service = rig.service_token().await;

    // The private signing key, opened the way identity opens it.
    let key_file = std::fs::read_to_string(rig.dir.path().join("signing.key")).unwrap();
    let sealing: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(key_file.trim())
        .unwrap()
        .try_into()
        .unwrap();
    let row = rig
        .db()
        .query_one_raw(Statement::from_string(
            rig.db().get_database_backend(),
            "SELECT kid, sealed_seed FROM signing_keys WHERE retire_time_ms IS NULL",
        ))
        .await
        .unwrap()
        .unwrap();
    let kid: String = row.try_get_by_index(0).unwrap();
    let sealed: Vec<u8> = row.try_get_by_index(1).unwrap();
    let seed = orgplane_identity::crypto::Sealer::new(&sealing)
        .open(&sealed, &kid)
        .unwrap();
    assert_eq!(seed.len(), 32);

    let mut secrets: Vec<(&str, Vec<u8>)> = vec![
        ("password", PASSWORD.as_bytes().to_vec()),
        ("refresh token", refresh.as_bytes().to_vec()),
        (
            "rotated refresh token",
            next.refresh_token.as_bytes().to_vec(),
        ),
        ("API key secret", key.secret.as_bytes().to_vec()),
        (
            "API key secret body",
            key.secret.as_bytes()[10..40].to_vec(),
        ),
        ("verification token", verify.as_bytes().to_vec()),
        ("reset token", reset.as_bytes().to_vec()),
        ("service secret", b"test-secret".to_vec()),
        ("configured service secret", b"billing-secret".to_vec()),
        ("private key (raw)", seed.clone()),
        (
            "private key (base64url)",
            URL_SAFE_NO_PAD.encode(&seed).into_bytes(),
        ),
        (
            "private key (base64)",
            base64::engine::general_purpose::STANDARD
                .encode(&seed)
                .into_bytes(),
        ),
        (
            "private key (hex)",
            seed.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        ),
        ("sealing key", key_file.trim().as_bytes().to_vec()),
    ];
    // Access tokens are bearer credentials too: never logged.
    secrets.push(("access token", token.as_bytes().to_vec()));
    secrets.push(("service token", service.as_bytes().to_vec()));

    // Make SQLite write everything out, then read every file of the database.
    rig.db()
        .execute_raw(Statement::from_string(
            rig.db().get_database_backend(),
            "PRAGMA wal_checkpoint(FULL)",
        ))
        .await
        .unwrap();
    let db_path = PathBuf::from(
        rig.db_url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap(),
    );
    let mut files = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db_path.display()));
        if let Ok(bytes) = std::fs::read(&p) {
            files.push((p.display().to_string(), bytes));
        }
    }
    assert!(!files.is_empty());
    let logs = log_buffer().lock().unwrap().clone();
    assert!(!logs.is_empty(), "logs were captured");
    files.push(("captured logs".into(), logs));
    for (name, secret) in &secrets {
        for (file, bytes) in &files {
            if *name == "sealing key" && file == "captured logs" {
                continue;
            }
            assert!(!contains(bytes, secret), "{name} found in {file}");
        }
    }
    // What is stored instead: the SHA-256 of the API key.
    let digest = orgplane_identity::crypto::hex(&sha2::Sha256::digest(key.secret.as_bytes()));
    assert!(files.iter().any(|(_, b)| contains(b, digest.as_bytes())));
}

// ----- the sweep --------------------------------------------------------------------------------

#[tokio::test]
async fn sweep_every_rpc_with_an_empty_request_and_no_credentials_answers_a_deliberate_code() {
    let rig = Rig::sqlite().await;
    let mut c = rig.client();
    let results: Vec<(&str, Result<(), tonic::Status>)> = vec![
        (
            "SignUp",
            c.sign_up(SignUpRequest::default()).await.map(|_| ()),
        ),
        (
            "VerifyEmail",
            c.verify_email(VerifyEmailRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "ResendVerification",
            c.resend_verification(ResendVerificationRequest::default())
                .await
                .map(|_| ()),
        ),
        ("Login", c.login(LoginRequest::default()).await.map(|_| ())),
        (
            "Refresh",
            c.refresh(RefreshRequest::default()).await.map(|_| ()),
        ),
        (
            "Logout",
            c.logout(LogoutRequest::default()).await.map(|_| ()),
        ),
        (
            "Reauthenticate",
            c.reauthenticate(ReauthenticateRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "GetJwks",
            c.get_jwks(GetJwksRequest::default()).await.map(|_| ()),
        ),
        (
            "GetUser",
            c.get_user(GetUserRequest::default()).await.map(|_| ()),
        ),
        (
            "BatchGetUsers",
            c.batch_get_users(BatchGetUsersRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "UpdateUser",
            c.update_user(UpdateUserRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "DeleteUser",
            c.delete_user(DeleteUserRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "RequestPasswordReset",
            c.request_password_reset(RequestPasswordResetRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "ResetPassword",
            c.reset_password(ResetPasswordRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "AdminResetPassword",
            c.admin_reset_password(AdminResetPasswordRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "AdminResetMfa",
            c.admin_reset_mfa(AdminResetMfaRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "CreateApiKey",
            c.create_api_key(CreateApiKeyRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "GetApiKey",
            c.get_api_key(GetApiKeyRequest::default()).await.map(|_| ()),
        ),
        (
            "ListApiKeys",
            c.list_api_keys(ListApiKeysRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "UpdateApiKey",
            c.update_api_key(UpdateApiKeyRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "AuthenticateApiKey",
            c.authenticate_api_key(AuthenticateApiKeyRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "IssueServiceToken",
            c.issue_service_token(IssueServiceTokenRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "ListAuditEvents",
            c.list_audit_events(ListAuditEventsRequest::default())
                .await
                .map(|_| ()),
        ),
    ];
    assert_eq!(results.len(), 23, "every RPC of IdentityService");
    for (name, result) in results {
        match result {
            Ok(()) => assert_eq!(name, "GetJwks", "{name} succeeded without credentials"),
            Err(status) => {
                assert!(
                    matches!(
                        status.code(),
                        Code::Unauthenticated | Code::InvalidArgument | Code::PermissionDenied
                    ),
                    "{name}: {status:?}"
                );
                assert!(reason_of(&status).is_some(), "{name} has an ErrorInfo");
            }
        }
    }
}

// ----- ORG-10 -----------------------------------------------------------------------------------

fn with_request_id<T>(mut req: tonic::Request<T>, request_id: &str) -> tonic::Request<T> {
    req.metadata_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    req
}

/// `org`'s identity audit log as `token` (a bearer token or, with `api_key`, a key) reads it.
async fn audit_page(
    rig: &Rig,
    cred: (&str, bool),
    org: &str,
    filter: orgplane_proto::audit::v1::AuditEventFilter,
    page_size: i32,
    page_token: &str,
) -> Result<ListAuditEventsResponse, tonic::Status> {
    let msg = ListAuditEventsRequest {
        organization_id: org.into(),
        page_size,
        page_token: page_token.into(),
        filter: Some(filter),
    };
    let req = if cred.1 {
        with_api_key(msg, cred.0)
    } else {
        bearer(msg, cred.0)
    };
    rig.client()
        .list_audit_events(req)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn org_10_identity_api_key_audit_is_listed_for_owner_and_admin_only() {
    org_10_listing_flow(&Rig::sqlite().await).await;
}

async fn org_10_listing_flow(rig: &Rig) {
    use orgplane_proto::audit::v1::{ActorKind, AuditEventFilter, Outcome};
    let (owner, owner_t, _) = rig.user("owner@example.com").await;
    let (admin, admin_t, _) = rig.user("admin@example.com").await;
    let (dev, dev_t, _) = rig.user("dev@example.com").await;
    let (plain, plain_t, _) = rig.user("plain@example.com").await;
    let (other, other_t, _) = rig.user("other@example.com").await;
    rig.create_org("org_a", &owner.id).await;
    rig.add_member("org_a", &admin.id, OrgRole::Admin).await;
    rig.add_member("org_a", &dev.id, OrgRole::Developer).await;
    rig.add_member("org_a", &plain.id, OrgRole::User).await;
    rig.create_org("org_b", &other.id).await;

    // The owner mints an admin key under a known request id; the admin renames it.
    let created = rig
        .client()
        .create_api_key(with_request_id(
            bearer(
                CreateApiKeyRequest {
                    organization_id: "org_a".into(),
                    api_key: Some(ApiKey {
                        name: "deploy bot".into(),
                        kind: ApiKeyKind::Admin as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &owner_t,
            ),
            "req-org10-create",
        ))
        .await
        .unwrap()
        .into_inner();
    let key = created.api_key.unwrap();
    rig.client()
        .update_api_key(bearer(
            UpdateApiKeyRequest {
                api_key: Some(ApiKey {
                    id: key.id.clone(),
                    name: "deploy bot (renamed)".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            },
            &admin_t,
        ))
        .await
        .unwrap();
    // Account-level changes and another organization's key stay out of org_a's log.
    rig.client()
        .update_user(bearer(
            UpdateUserRequest {
                user: Some(User {
                    id: "me".into(),
                    display_name: "Ada the Owner".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: String::new(),
            },
            &owner_t,
        ))
        .await
        .unwrap();
    create_key(rig, &other_t, "org_b", ApiKeyKind::Admin, "")
        .await
        .unwrap();

    // The owner finds the creation by its request id: actor, kind, request id, no secret.
    let by_request = AuditEventFilter {
        request_id: "req-org10-create".into(),
        ..Default::default()
    };
    let found = audit_page(rig, (&owner_t, false), "org_a", by_request.clone(), 0, "")
        .await
        .unwrap();
    assert_eq!(found.audit_events.len(), 1, "{found:?}");
    let e = &found.audit_events[0];
    assert_eq!(e.action, "api_key.create");
    assert_eq!(e.service, "identity");
    assert_eq!(e.organization_id, "org_a");
    assert_eq!(e.resource_type, "api_key");
    assert_eq!(e.resource_id, key.id);
    assert_eq!(e.actor_kind, ActorKind::User as i32);
    assert_eq!(e.actor_id, owner.id);
    assert_eq!(e.request_id, "req-org10-create");
    assert_eq!(e.outcome, Outcome::Success as i32);
    assert!(e.create_time.is_some());
    let text = format!("{e:?}");
    assert!(text.contains("deploy bot"), "the after image names the key");
    assert!(
        !text.contains(&created.secret) && !text.contains(&created.secret[10..]),
        "no secret in the record"
    );

    // The admin and the org's admin API key read the whole log: org_a's records only.
    let all = audit_page(rig, (&admin_t, false), "org_a", Default::default(), 100, "")
        .await
        .unwrap();
    let actions: Vec<&str> = all.audit_events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["api_key.update", "api_key.create"],
        "newest first"
    );
    assert!(
        all.audit_events
            .iter()
            .all(|e| e.organization_id == "org_a")
    );
    assert_eq!(all.audit_events[0].actor_id, admin.id);
    let by_key = audit_page(
        rig,
        (&created.secret, true),
        "org_a",
        Default::default(),
        100,
        "",
    )
    .await
    .unwrap();
    assert_eq!(by_key.audit_events.len(), 2);
    let err = audit_page(
        rig,
        (&created.secret, true),
        "org_b",
        Default::default(),
        100,
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "another org's key: {err:?}");

    // Pagination and a filter.
    let first = audit_page(rig, (&owner_t, false), "org_a", Default::default(), 1, "")
        .await
        .unwrap();
    assert_eq!(first.audit_events.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second = audit_page(
        rig,
        (&owner_t, false),
        "org_a",
        Default::default(),
        1,
        &first.next_page_token,
    )
    .await
    .unwrap();
    assert_eq!(second.audit_events.len(), 1);
    assert_ne!(second.audit_events[0].id, first.audit_events[0].id);
    assert_eq!(second.audit_events[0].action, "api_key.create");
    let err = audit_page(
        rig,
        (&owner_t, false),
        "org_a",
        by_request,
        1,
        &first.next_page_token,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "token of another filter");
    let updates = audit_page(
        rig,
        (&owner_t, false),
        "org_a",
        AuditEventFilter {
            action: "api_key.update".into(),
            ..Default::default()
        },
        100,
        "",
    )
    .await
    .unwrap();
    assert_eq!(updates.audit_events.len(), 1);
    assert_eq!(updates.audit_events[0].resource_id, key.id);

    // Everyone else: DEVELOPER and USER lack the role, an outsider (another org's owner) and a
    // service principal do not get in either.
    for (who, token) in [("developer", &dev_t), ("user", &plain_t)] {
        let err = audit_page(rig, (token, false), "org_a", Default::default(), 10, "")
            .await
            .unwrap_err();
        assert_status(&err, Code::PermissionDenied, "INSUFFICIENT_ROLE");
        assert!(!format!("{err:?}").contains("api_key"), "{who}: {err:?}");
    }
    let err = audit_page(rig, (&other_t, false), "org_a", Default::default(), 10, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let service = rig.service_token().await;
    let err = audit_page(rig, (&service, false), "org_a", Default::default(), 10, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = audit_page(rig, (&owner_t, false), "", Default::default(), 10, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn org_10_identity_refused_org_mutations_are_audited_as_failures_without_secrets() {
    org_10_failure_flow(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn org_10_identity_audit_listing_and_failures_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    org_10_listing_flow(&Rig::start(db, |_| {}).await).await;
    // Both flows sign up the same emails: the second gets a database of its own.
    let db = TestDb::postgres().await.unwrap();
    org_10_failure_flow(&Rig::start(db, |_| {}).await).await;
}

async fn org_10_failure_flow(rig: &Rig) {
    use orgplane_proto::audit::v1::{AuditEventFilter, Outcome};
    let (owner, owner_t, _) = rig.user("owner@example.com").await;
    let (admin, admin_t, _) = rig.user("admin@example.com").await;
    let (dev, dev_t, _) = rig.user("dev@example.com").await;
    rig.create_org("org_a", &owner.id).await;
    rig.add_member("org_a", &admin.id, OrgRole::Admin).await;
    rig.add_member("org_a", &dev.id, OrgRole::Developer).await;
    let key = create_key(rig, &owner_t, "org_a", ApiKeyKind::Admin, "")
        .await
        .unwrap();
    let key_id = key.api_key.unwrap().id;

    // A DEVELOPER tries to mint an admin key and to deactivate the owner's one.
    let err = rig
        .client()
        .create_api_key(with_request_id(
            bearer(
                CreateApiKeyRequest {
                    organization_id: "org_a".into(),
                    api_key: Some(ApiKey {
                        name: "escalation".into(),
                        kind: ApiKeyKind::Admin as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &dev_t,
            ),
            "req-org10-refused-create",
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "INSUFFICIENT_ROLE");
    let err = rig
        .client()
        .update_api_key(with_request_id(
            bearer(
                UpdateApiKeyRequest {
                    api_key: Some(ApiKey {
                        id: key_id.clone(),
                        status: ApiKeyStatus::Inactive as i32,
                        ..Default::default()
                    }),
                    update_mask: mask(&["status"]),
                    etag: String::new(),
                },
                &dev_t,
            ),
            "req-org10-refused-update",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // The ADMIN tries to reset the OWNER's password; a stale etag is ABORTED.
    let err = rig
        .client()
        .admin_reset_password(with_request_id(
            bearer(
                AdminResetPasswordRequest {
                    organization_id: "org_a".into(),
                    user_id: owner.id.clone(),
                },
                &admin_t,
            ),
            "req-org10-refused-reset",
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "OWNER_PROTECTED");
    let err = rig
        .client()
        .update_api_key(with_request_id(
            bearer(
                UpdateApiKeyRequest {
                    api_key: Some(ApiKey {
                        id: key_id.clone(),
                        name: "renamed".into(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["name"]),
                    etag: "v99".into(),
                },
                &admin_t,
            ),
            "req-org10-stale",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    // Malformed requests are not recorded (INVALID_ARGUMENT is refused before any decision).
    let err = create_key(rig, &dev_t, "org_a", ApiKeyKind::Unspecified, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let failures = audit_page(
        rig,
        (&owner_t, false),
        "org_a",
        AuditEventFilter {
            outcome: Outcome::Failure as i32,
            ..Default::default()
        },
        100,
        "",
    )
    .await
    .unwrap();
    let got: Vec<(&str, &str, &str, &str, &str, &str)> = failures
        .audit_events
        .iter()
        .map(|e| {
            (
                e.request_id.as_str(),
                e.action.as_str(),
                e.actor_id.as_str(),
                e.resource_id.as_str(),
                e.status_code.as_str(),
                e.error_reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "req-org10-stale",
                "api_key.update",
                admin.id.as_str(),
                key_id.as_str(),
                "ABORTED",
                "ETAG_MISMATCH"
            ),
            (
                "req-org10-refused-reset",
                "user.admin_reset_password",
                admin.id.as_str(),
                owner.id.as_str(),
                "PERMISSION_DENIED",
                "OWNER_PROTECTED"
            ),
            (
                "req-org10-refused-update",
                "api_key.update",
                dev.id.as_str(),
                key_id.as_str(),
                "PERMISSION_DENIED",
                "INSUFFICIENT_ROLE"
            ),
            (
                "req-org10-refused-create",
                "api_key.create",
                dev.id.as_str(),
                "",
                "PERMISSION_DENIED",
                "INSUFFICIENT_ROLE"
            ),
        ],
        "{failures:?}"
    );
    for e in &failures.audit_events {
        assert_eq!(e.organization_id, "org_a");
        assert!(e.before.is_none() && e.after.is_none(), "ids only: {e:?}");
        assert!(!format!("{e:?}").contains(&key.secret[10..]));
    }
    // Nothing changed: the key is still active and named as before, and only the successful
    // creation is a success record.
    let successes = audit_page(
        rig,
        (&owner_t, false),
        "org_a",
        AuditEventFilter {
            outcome: Outcome::Success as i32,
            ..Default::default()
        },
        100,
        "",
    )
    .await
    .unwrap();
    let actions: Vec<&str> = successes
        .audit_events
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(actions, ["api_key.create"]);
}

/// `google.protobuf.Struct` as JSON.
fn struct_json(s: &prost_types::Struct) -> serde_json::Value {
    use prost_types::value::Kind;
    fn value(v: &prost_types::Value) -> serde_json::Value {
        match &v.kind {
            None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
            Some(Kind::BoolValue(b)) => (*b).into(),
            Some(Kind::NumberValue(n)) => (*n).into(),
            Some(Kind::StringValue(s)) => s.clone().into(),
            Some(Kind::ListValue(l)) => l.values.iter().map(value).collect(),
            Some(Kind::StructValue(s)) => struct_json(s),
        }
    }
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Every object key in `v`, at any depth.
fn json_keys(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::Object(o) => o
            .iter()
            .flat_map(|(k, v)| std::iter::once(k.clone()).chain(json_keys(v)))
            .collect(),
        serde_json::Value::Array(a) => a.iter().flat_map(json_keys).collect(),
        _ => Vec::new(),
    }
}

fn assert_camel_case(image: &serde_json::Value) {
    for key in json_keys(image) {
        assert!(
            !key.contains('_') && key.starts_with(|c: char| c.is_ascii_lowercase()),
            "{key} is not lowerCamelCase in {image}"
        );
    }
}

/// Rule ORG-10 (defect: enum values as bare numbers, snake_case names): identity's audit images
/// are the resource's proto message in canonical proto3 JSON — lowerCamelCase keys, enum value
/// names, RFC 3339 timestamps — for API keys (listed in the organization's log) and users
/// (account-level records), and never carry a secret or a hash.
#[tokio::test]
async fn org_10_identity_audit_images_are_canonical_proto3_json_without_secrets() {
    use orgplane_proto::audit::v1::AuditEventFilter;
    let rig = Rig::sqlite().await;
    let (owner, owner_t, _) = rig.user("owner@example.com").await;
    rig.create_org("org_a", &owner.id).await;
    let created = create_key(&rig, &owner_t, "org_a", ApiKeyKind::Admin, "")
        .await
        .unwrap();
    let key = created.api_key.unwrap();
    rig.client()
        .update_api_key(bearer(
            UpdateApiKeyRequest {
                api_key: Some(ApiKey {
                    id: key.id.clone(),
                    status: ApiKeyStatus::Inactive as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["status"]),
                etag: key.etag.clone(),
            },
            &owner_t,
        ))
        .await
        .unwrap();
    let page = audit_page(
        &rig,
        (&owner_t, false),
        "org_a",
        AuditEventFilter {
            resource_type: "api_key".into(),
            ..Default::default()
        },
        50,
        "",
    )
    .await
    .unwrap();
    let event = |action: &str| {
        page.audit_events
            .iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("no {action} in {:?}", page.audit_events))
            .clone()
    };
    let create = event("api_key.create");
    assert!(create.before.is_none());
    let after = struct_json(create.after.as_ref().unwrap());
    assert_camel_case(&after);
    assert_eq!(after["id"], key.id.as_str());
    assert_eq!(after["organizationId"], "org_a");
    assert_eq!(after["kind"], "API_KEY_KIND_ADMIN");
    assert_eq!(after["status"], "API_KEY_STATUS_ACTIVE");
    assert_eq!(after["etag"], "v1");
    assert!(
        after["createTime"].as_str().unwrap().ends_with('Z'),
        "{after}"
    );
    let update = event("api_key.update");
    let (before, after) = (
        struct_json(update.before.as_ref().unwrap()),
        struct_json(update.after.as_ref().unwrap()),
    );
    assert_camel_case(&before);
    assert_camel_case(&after);
    assert_eq!(before["status"], "API_KEY_STATUS_ACTIVE");
    assert_eq!(after["status"], "API_KEY_STATUS_INACTIVE");
    assert_eq!(after["etag"], "v2");
    for image in [&create.after, &update.before, &update.after] {
        let text = struct_json(image.as_ref().unwrap()).to_string();
        assert!(!text.contains(&created.secret), "{text}");
        assert!(!text.to_lowercase().contains("secret"), "{text}");
        assert!(!text.to_lowercase().contains("hash"), "{text}");
    }

    // Users: account-level records (no organization), read from the table.
    rig.client()
        .update_user(bearer(
            UpdateUserRequest {
                user: Some(User {
                    id: "me".into(),
                    display_name: "Owner Renamed".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: String::new(),
            },
            &owner_t,
        ))
        .await
        .unwrap();
    let images = |action: &'static str| {
        let db = rig.db();
        let owner_id = owner.id.clone();
        async move {
            let row = db
                .query_one_raw(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    "SELECT before_json, after_json FROM audit_log \
                     WHERE action = $1 AND resource_id = $2",
                    [action.into(), owner_id.into()],
                ))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("no {action} record"));
            let parse = |i: usize| {
                row.try_get_by_index::<Option<String>>(i)
                    .unwrap()
                    .map(|t| serde_json::from_str::<serde_json::Value>(&t).unwrap())
            };
            (parse(0), parse(1))
        }
    };
    let (before, after) = images("user.create").await;
    assert!(before.is_none());
    let after = after.unwrap();
    assert_camel_case(&after);
    assert_eq!(after["id"], owner.id.as_str());
    assert_eq!(after["accountType"], "ACCOUNT_TYPE_BUSINESS");
    assert_eq!(after["email"], "owner@example.com");
    let (before, after) = images("user.update").await;
    let (before, after) = (before.unwrap(), after.unwrap());
    assert_camel_case(&before);
    assert_camel_case(&after);
    assert_eq!(after["displayName"], "Owner Renamed");
    assert_ne!(before["displayName"], after["displayName"]);
    assert_eq!(after["accountType"], "ACCOUNT_TYPE_BUSINESS");
    assert!(after.get("email_verified").is_none() && after.get("account_type").is_none());
    for image in [&before, &after] {
        let text = image.to_string().to_lowercase();
        assert!(
            !text.contains("password") && !text.contains("argon2"),
            "{text}"
        );
    }
}

mod fake_organization;
mod merge;
mod mfa;
mod passkeys;
mod profiles;
mod replicas;
mod scim_delivery;
mod scim_tokens;
mod service_accounts;
mod shared_budgets;
mod sso;
mod sso_enforcement;
mod sso_signin;
mod sso_variants;
