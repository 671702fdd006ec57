//! What the events tests share: a producer and a consumer database (SQLite or PostgreSQL), the
//! producer's EventService on loopback, a handler that records every applied event, and readers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use orgplane_platform::ApiResult;
use orgplane_platform::events::consumer::ConsumerConfig;
use orgplane_platform::events::migration::{CreateConsumerCursors, CreateOutbox};
use orgplane_platform::events::{Consumer, ConsumerHandle, EventHandler, EventServer, Outbox};
use orgplane_platform::server::{GrpcServer, ServerConfig};
use orgplane_platform::testkit::{RunningServer, TestAuth, TestDb};
use orgplane_proto::events::v1::{Event, MemberAdded, Producer, event};
use rand::Rng;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, Statement, TransactionTrait,
};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;

pub struct ProducerMigrator;
impl MigratorTrait for ProducerMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOutbox)]
    }
}

pub struct ConsumerMigrator;
impl MigratorTrait for ConsumerMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateConsumerCursors)]
    }
}

pub fn payload(i: i64) -> event::Payload {
    event::Payload::MemberAdded(MemberAdded {
        organization_id: "org_1".into(),
        user_id: format!("user_{i}"),
        role: 5,
    })
}

pub async fn exec(db: &impl ConnectionTrait, sql: String) {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
}

pub async fn query_i64s(db: &impl ConnectionTrait, sql: &str) -> Vec<i64> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.try_get_by_index::<i64>(0).unwrap())
    .collect()
}

/// Records every applied event in `applied_events` with its application order; a second
/// application of the same revision violates the primary key and fails the batch.
pub struct Recorder {
    /// Where a re-sync reads the "snapshot" from.
    pub producer: Outbox,
}

impl EventHandler for Recorder {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            if event.revision % 97 == 0 {
                // Widen the window in which a kill lands mid-transaction.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            exec(
                txn,
                format!(
                    "INSERT INTO applied_events (revision, seq) VALUES ({}, \
                     (SELECT COALESCE(MAX(seq), 0) + 1 FROM applied_events))",
                    event.revision
                ),
            )
            .await;
            Ok(())
        })
    }

    fn resync<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<i64>> {
        Box::pin(async move {
            let head = self.producer.head().await?.revision;
            exec(txn, "DELETE FROM applied_events".into()).await;
            for r in 1..=head {
                exec(
                    txn,
                    format!("INSERT INTO applied_events (revision, seq) VALUES ({r}, {r})"),
                )
                .await;
            }
            Ok(head)
        })
    }
}

pub struct Rig {
    pub auth: TestAuth,
    pub _producer_db: TestDb,
    pub _consumer_db: TestDb,
    pub outbox: Outbox,
    pub consumer_db: DatabaseConnection,
    pub server: Option<RunningServer>,
}

pub enum Backend {
    Sqlite,
    Postgres,
}

impl Rig {
    pub async fn new(backend: Backend) -> Option<Rig> {
        let (p, c) = match backend {
            Backend::Sqlite => (TestDb::sqlite(), TestDb::sqlite()),
            Backend::Postgres => {
                let Some(p) = TestDb::postgres().await else {
                    eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
                    return None;
                };
                (p, TestDb::postgres().await?)
            }
        };
        let producer_db = p.open::<ProducerMigrator>().await;
        let consumer_db = c.open::<ConsumerMigrator>().await;
        exec(
            &consumer_db,
            "CREATE TABLE applied_events (revision BIGINT PRIMARY KEY, seq BIGINT NOT NULL)".into(),
        )
        .await;
        exec(
            &consumer_db,
            "CREATE UNIQUE INDEX applied_events_seq ON applied_events (seq)".into(),
        )
        .await;
        let outbox = Outbox::new(producer_db, Producer::Organization);
        let mut rig = Rig {
            auth: TestAuth::new(),
            _producer_db: p,
            _consumer_db: c,
            outbox,
            consumer_db,
            server: None,
        };
        rig.start_producer(None).await;
        Some(rig)
    }

    pub async fn start_producer(&mut self, addr: Option<std::net::SocketAddr>) {
        let (server, _) = serve_events(&self.auth, self.outbox.clone(), addr, |e| e).await;
        self.server = Some(server);
    }

    pub async fn restart_producer(&mut self) {
        let old = self.server.take().unwrap();
        let addr = old.addr;
        old.stop().await;
        self.start_producer(Some(addr)).await;
    }

    pub fn url(&self) -> String {
        self.server.as_ref().unwrap().url()
    }

    pub async fn consumer(&self) -> (Consumer, ConsumerHandle) {
        let mut config = ConsumerConfig::new(
            Producer::Organization,
            orgplane_platform::testkit::channel(&self.url()),
            self.auth.service_tokens("workspace"),
        );
        config.min_backoff = Duration::from_millis(10);
        config.max_backoff = Duration::from_millis(200);
        config.batch_size = 200;
        Consumer::new(
            self.consumer_db.clone(),
            config,
            Arc::new(Recorder {
                producer: self.outbox.clone(),
            }),
        )
        .await
        .unwrap()
    }

    /// Appends `total` events in transactions of 1-20 events; yields the number of transactions.
    pub fn spawn_writer(&self, total: i64) -> tokio::task::JoinHandle<u64> {
        let outbox = self.outbox.clone();
        let db = outbox_db(&outbox);
        tokio::spawn(async move {
            let mut written = 0;
            let mut commits = 0;
            while written < total {
                let n = rand::rng().random_range(1..=20).min(total - written);
                let txn = db.begin().await.unwrap();
                let mut last = 0;
                for i in 0..n {
                    last = outbox
                        .append(&txn, payload(written + i), "req")
                        .await
                        .unwrap();
                }
                txn.commit().await.unwrap();
                outbox.committed(last);
                written += n;
                commits += 1;
                if written % 500 < 20 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            commits
        })
    }

    pub async fn assert_applied_exactly_once_in_order(&self, total: i64) {
        let by_seq = query_i64s(
            &self.consumer_db,
            "SELECT revision FROM applied_events ORDER BY seq",
        )
        .await;
        assert_eq!(by_seq.len() as i64, total, "every event applied once");
        let expected: Vec<i64> = (1..=total).collect();
        assert_eq!(
            by_seq, expected,
            "applied in revision order, no gap, no repeat"
        );
    }
}

/// Serves `outbox`'s EventService (polling every 50 ms, adjusted by `configure`) on `addr`.
pub async fn serve_events(
    auth: &TestAuth,
    outbox: Outbox,
    addr: Option<std::net::SocketAddr>,
    configure: impl FnOnce(EventServer) -> EventServer,
) -> (RunningServer, EventServer) {
    let mut server = GrpcServer::new(ServerConfig::default());
    let events = configure(
        EventServer::new([outbox], server.shutdown_token())
            .with_poll_interval(Duration::from_millis(50)),
    );
    server
        .add_ready_service(
            orgplane_proto::events::v1::event_service_server::EventServiceServer::new(
                events.clone(),
            ),
        )
        .await;
    (
        RunningServer::start(server, auth.authenticator(), addr).await,
        events,
    )
}

/// The producer's connection, reached through a fresh outbox read (the Outbox keeps its own).
pub fn outbox_db(outbox: &Outbox) -> DatabaseConnection {
    outbox.connection().clone()
}

pub async fn run_until_applied(rig: &Rig, total: i64) -> ConsumerHandle {
    let (consumer, handle) = rig.consumer().await;
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(stop.clone()));
    handle
        .wait_for(total, Duration::from_secs(120))
        .await
        .unwrap();
    stop.cancel();
    task.await.unwrap();
    handle
}
