//! The rig: fake organization and workspace producers, the real billing-access service, clients.

use std::sync::Arc;
use std::time::Duration;

use orgplane_billing_access::{BillingAccess, Config};
use orgplane_platform::auth::{Authenticator, StaticKeys, TokenVerifier};
use orgplane_platform::clock::OffsetClock;
use orgplane_platform::events::{EventServer, Outbox};
use orgplane_platform::host::Host;
use orgplane_platform::server::{GrpcServer, ServerConfig};
use orgplane_platform::testkit::{FakeApiKeys, ProducerTables};
use orgplane_platform::testkit::{
    MemberMove, RunningServer, TEST_ISSUER, TestAuth, TestDb, bearer, organizations_merged,
};
use orgplane_proto::billing::v1::billing_access_service_client::BillingAccessServiceClient;
use orgplane_proto::billing::v1::{RecordUsageRequest, UsageRecord, UsageRecordResult};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::event_service_server::EventServiceServer;
use orgplane_proto::events::v1::*;
use orgplane_proto::organization::v1::OrgRole;
use sea_orm::{DatabaseConnection, TransactionTrait};
use tonic::transport::Channel;

/// Which database the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The running rig.
pub struct Rig {
    pub auth: TestAuth,
    pub org_outbox: Outbox,
    pub ws_outbox: Outbox,
    /// Kept so that the producers keep serving.
    pub _producers: RunningServer,
    pub server: RunningServer,
    pub service: Arc<BillingAccess>,
    pub health: orgplane_platform::server::Health,
    _dbs: Vec<TestDb>,
}

impl Rig {
    /// A rig on SQLite.
    pub async fn sqlite() -> Rig {
        Self::new(Backend::Sqlite, Config::default()).await.unwrap()
    }

    /// A rig on `backend` with `config`; `None` (after saying so) when PostgreSQL is not set up.
    pub async fn new(backend: Backend, config: Config) -> Option<Rig> {
        let mut dbs = Vec::new();
        for _ in 0..4 {
            dbs.push(match backend {
                Backend::Sqlite => TestDb::sqlite(),
                Backend::Postgres => match TestDb::postgres().await {
                    Some(db) => db,
                    None => {
                        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
                        return None;
                    }
                },
            });
        }
        let auth = TestAuth::new();
        let org_outbox = Outbox::new(
            dbs[0].open::<ProducerTables>().await,
            Producer::Organization,
        );
        let ws_outbox = Outbox::new(dbs[1].open::<ProducerTables>().await, Producer::Workspace);
        // Identity's stream (ended sessions), empty here: the service waits for it to be ready.
        let identity_outbox =
            Outbox::new(dbs[3].open::<ProducerTables>().await, Producer::Identity);
        let mut producer_server = GrpcServer::new(ServerConfig::default());
        let events = EventServer::new(
            [org_outbox.clone(), ws_outbox.clone(), identity_outbox],
            producer_server.shutdown_token(),
        )
        .with_poll_interval(Duration::from_millis(50));
        producer_server
            .add_ready_service(EventServiceServer::new(events))
            .await;
        let producers = RunningServer::start(producer_server, auth.authenticator(), None).await;

        let (service, server, health) =
            start_service(&auth, &producers.url(), &dbs[2].url, &config).await;
        Some(Rig {
            auth,
            org_outbox,
            ws_outbox,
            _producers: producers,
            server,
            service,
            health,
            _dbs: dbs,
        })
    }

    /// Another process of the service on the same database and producers (a restart).
    pub async fn restarted(&self) -> (Arc<BillingAccess>, RunningServer) {
        let (service, server, _) = start_service(
            &self.auth,
            &self._producers.url(),
            &self._dbs[2].url,
            &Config::default(),
        )
        .await;
        (service, server)
    }

    /// The service's database.
    pub fn db(&self) -> &DatabaseConnection {
        self.service.db()
    }

    /// A client of the service.
    pub fn client(&self) -> BillingAccessServiceClient<Channel> {
        BillingAccessServiceClient::new(self.server.channel())
    }

    async fn emit(outbox: &Outbox, payloads: Vec<Payload>) -> i64 {
        let txn = outbox.connection().begin().await.unwrap();
        let mut last = 0;
        for p in payloads {
            last = outbox.append(&txn, p, "test-request").await.unwrap();
        }
        txn.commit().await.unwrap();
        outbox.committed(last);
        last
    }

    /// Appends organization events in one transaction; returns the last revision.
    pub async fn org_events(&self, payloads: Vec<Payload>) -> i64 {
        Self::emit(&self.org_outbox, payloads).await
    }

    /// Appends workspace events in one transaction; returns the last revision.
    pub async fn ws_events(&self, payloads: Vec<Payload>) -> i64 {
        Self::emit(&self.ws_outbox, payloads).await
    }

    /// Waits until the service applied organization revision `rev`.
    pub async fn org_synced(&self, rev: i64) {
        self.service
            .organization_events()
            .wait_for(rev, Duration::from_secs(20))
            .await
            .unwrap();
    }

    /// Publishes organization events (accounts, …) and waits until the service applied them.
    pub async fn org_applied(&self, payloads: Vec<Payload>) {
        let rev = self.org_events(payloads).await;
        self.org_synced(rev).await;
    }

    /// Waits until the service applied workspace revision `rev`.
    pub async fn ws_synced(&self, rev: i64) {
        self.service
            .workspace_events()
            .wait_for(rev, Duration::from_secs(20))
            .await
            .unwrap();
    }

    /// Creates `org` owned by `<org>_owner` with members `(user, role)` and waits for it.
    pub async fn create_org(&self, org: &str, members: &[(&str, OrgRole)]) -> i64 {
        let mut payloads = vec![Payload::OrganizationCreated(OrganizationCreated {
            organization_id: org.into(),
            name: format!("Org {org}"),
            owner_user_id: format!("{org}_owner"),
            primary_email: format!("billing@{org}.example"),
            ..Default::default()
        })];
        for (user, role) in members {
            payloads.push(Payload::MemberAdded(MemberAdded {
                organization_id: org.into(),
                user_id: (*user).into(),
                role: *role as i32,
            }));
        }
        let rev = self.org_events(payloads).await;
        self.org_synced(rev).await;
        rev
    }

    /// Creates workspace `ws` named `name` in `org` and waits for it.
    pub async fn create_workspace(&self, org: &str, ws: &str, name: &str) {
        let rev = self
            .ws_events(vec![Payload::WorkspaceCreated(WorkspaceCreated {
                organization_id: org.into(),
                workspace_id: ws.into(),
                name: name.into(),
                unit_id: String::new(),
            })])
            .await;
        self.ws_synced(rev).await;
    }

    /// A request with a user's token.
    pub fn as_user<T>(&self, user: &str, msg: T) -> tonic::Request<T> {
        bearer(msg, &self.auth.user_token(user))
    }

    /// A request with a service token.
    pub fn as_service<T>(&self, msg: T) -> tonic::Request<T> {
        bearer(msg, &self.auth.service_token("product"))
    }

    /// A request with an API key.
    pub fn as_key<T>(&self, key: &str, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert("x-api-key", key.parse().unwrap());
        req
    }

    /// Records `records` as a product service and returns the per-record results.
    pub async fn record(&self, records: Vec<UsageRecord>) -> Vec<UsageRecordResult> {
        self.client()
            .record_usage(self.as_service(RecordUsageRequest { records }))
            .await
            .unwrap()
            .into_inner()
            .results
    }

    /// Counts rows of `table` for `org`.
    pub async fn count(&self, table: &str, org: &str) -> i64 {
        use sea_orm::{ConnectionTrait, Statement};
        let db = self.db();
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                match db.get_database_backend() {
                    sea_orm::DbBackend::Postgres => {
                        format!("SELECT COUNT(*) FROM {table} WHERE organization_id = $1")
                    }
                    _ => format!("SELECT COUNT(*) FROM {table} WHERE organization_id = ?"),
                },
                [org.into()],
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }
}

/// Starts the billing-access service on `db_url`, fed by the producers at `producers_url`.
async fn start_service(
    auth: &TestAuth,
    producers_url: &str,
    db_url: &str,
    config: &Config,
) -> (
    Arc<BillingAccess>,
    RunningServer,
    orgplane_platform::server::Health,
) {
    let clock = Arc::new(OffsetClock::new());
    let runtime = orgplane_platform::testkit::runtime(producers_url, auth, clock);
    let mut host = Host::new(runtime);
    let service = host.open::<BillingAccess>(db_url, config).await.unwrap();
    let mut server = GrpcServer::new(ServerConfig::default());
    host.register(&mut server).await;
    let health = server.health();
    let verifier = TokenVerifier::new(
        TEST_ISSUER,
        Arc::new(StaticKeys(vec![auth.signer.public_key()])),
    );
    let authenticator =
        Authenticator::new(Arc::new(verifier), Some(Arc::new(FakeApiKeys::default())));
    let server = RunningServer::start(server, authenticator, None).await;
    host.start(&health);
    (service, server, health)
}

/// A usage record of `org` with idempotency key `key`: `[workspace, api key, user, model]`,
/// `(input, output)` tokens, at `time_ms`.
pub fn usage(
    org: &str,
    key: &str,
    [ws, api_key, user, model]: [&str; 4],
    (input, output): (i64, i64),
    time_ms: i64,
) -> UsageRecord {
    UsageRecord {
        organization_id: org.into(),
        workspace_id: ws.into(),
        api_key_id: api_key.into(),
        user_id: user.into(),
        model: model.into(),
        input_tokens: input,
        output_tokens: output,
        usage_time: Some(ts(time_ms)),
        idempotency_key: key.into(),
        account_id: String::new(),
    }
}

/// The same usage record, naming account `account`.
pub fn on_account(mut record: UsageRecord, account: &str) -> UsageRecord {
    record.account_id = account.into();
    record
}

/// An `AccountChanged` event as the organization service publishes it: account `id` with home
/// `org`, under `parent` (empty: top-level), closed at `closed_ms` when given, moved from
/// `previous` when not empty.
pub fn account_changed(
    id: &str,
    org: &str,
    parent: &str,
    closed_ms: Option<i64>,
    previous: &str,
) -> Payload {
    use orgplane_proto::organization::v1::{Account, AccountState, AccountType};
    Payload::AccountChanged(AccountChanged {
        account: Some(Account {
            id: id.into(),
            organization_id: org.into(),
            home_organization_id: org.into(),
            display_name: format!("Account {id}"),
            r#type: AccountType::Managed as i32,
            state: if closed_ms.is_some() {
                AccountState::Closed as i32
            } else {
                AccountState::Active as i32
            },
            owner_user_id: format!("{org}_owner"),
            parent_account_id: parent.into(),
            close_time: closed_ms.map(ts),
            ..Default::default()
        }),
        previous_organization_id: previous.into(),
    })
}

/// The `OrganizationsMerged` of `candidate` into `prime` moving `members`, with the planned
/// `workspaces` and `accounts`; the candidate's owner is `<candidate>_owner`.
pub fn merged(
    prime: &str,
    candidate: &str,
    members: &[MemberMove<'_>],
    workspaces: &[&str],
    accounts: &[&str],
) -> Payload {
    let owner = format!("{candidate}_owner");
    organizations_merged(prime, candidate, &owner, members, workspaces, accounts)
}

/// A timestamp at `ms`.
pub fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Midnight UTC `days` days before today.
pub fn days_ago(days: i64) -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now - now.rem_euclid(86_400_000) - days * 86_400_000
}

/// The ErrorInfo reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    orgplane_platform::error::reason_of(status).unwrap_or_default()
}
