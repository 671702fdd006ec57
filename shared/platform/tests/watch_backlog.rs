//! Watch backlog replay and the database pool, over real gRPC on loopback, on SQLite and
//! PostgreSQL: hundreds of streams replaying a backlog from a producer whose pool has two
//! connections, while an ordinary query runs on the same pool with a short acquire timeout.
//! With the process's bound on stream reads every stream completes and every ordinary query gets
//! a connection in time; the control arm lifts the bound and shows the pool taken from the
//! ordinary query (pool timeouts, for it or for the streams).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use orgplane_platform::events::{EventServer, Outbox};
use orgplane_platform::server::{GrpcServer, ServerConfig};
use orgplane_platform::testkit::{ProducerTables, RunningServer, TestAuth, TestDb, bearer};
use orgplane_proto::events::v1::event_service_client::EventServiceClient;
use orgplane_proto::events::v1::event_service_server::EventServiceServer;
use orgplane_proto::events::v1::{MemberAdded, Producer, WatchRequest, event};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, TransactionTrait};

/// Streams opened at once, each replaying the whole backlog.
const STREAMS: usize = 150;
/// Events before the streams open.
const BACKLOG: i64 = 4_000;
/// Events per Watch message.
const BATCH: i32 = 1_000;
/// Connections of the producer's pool.
const POOL: u32 = 2;
/// How long the ordinary query may wait for a connection.
const ACQUIRE: Duration = Duration::from_millis(500);

/// What one run saw.
#[derive(Debug)]
struct Outcome {
    failed_streams: Vec<String>,
    queries: u64,
    failed_queries: Vec<String>,
    slowest_query: Duration,
    elapsed: Duration,
}

/// Writes the backlog through the service's usual pool.
async fn write_backlog(db: &DatabaseConnection) {
    let outbox = Outbox::new(db.clone(), Producer::Organization);
    let mut written = 0;
    while written < BACKLOG {
        let txn = db.begin().await.unwrap();
        for _ in 0..500 {
            written += 1;
            let payload = event::Payload::MemberAdded(MemberAdded {
                organization_id: "org_1".into(),
                user_id: format!("user_{written:0>200}"),
                role: 5,
            });
            outbox.append(&txn, payload, "req").await.unwrap();
        }
        txn.commit().await.unwrap();
    }
}

/// The producer's pool for the run: [`POOL`] connections, [`ACQUIRE`] to get one.
async fn small_pool(url: &str) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .max_connections(POOL)
        .min_connections(POOL)
        .acquire_timeout(ACQUIRE);
    Database::connect(options).await.unwrap()
}

async fn replay_while_querying(db: &TestDb, bounded: bool) -> Outcome {
    write_backlog(&db.open::<ProducerTables>().await).await;
    let pool = small_pool(&db.url).await;
    let auth = TestAuth::new();
    let mut server = GrpcServer::new(ServerConfig::default());
    // Unpaced in both arms, so that only the bound on reads differs (the pace alone would
    // spread the reads out too).
    let mut events = EventServer::new(
        [Outbox::new(pool.clone(), Producer::Organization)],
        server.shutdown_token(),
    )
    .with_replay_rate(0);
    if !bounded {
        events = events.with_backlog_reads(usize::MAX);
    }
    server
        .add_ready_service(EventServiceServer::new(events))
        .await;
    let running = RunningServer::start(server, auth.authenticator(), None).await;
    let token = auth.service_token("workspace");
    let channels: Vec<_> = (0..4).map(|_| running.channel()).collect();
    let started = Instant::now();

    let done = Arc::new(AtomicBool::new(false));
    let querier = {
        let done = done.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            let (mut queries, mut failed, mut slowest) = (0, Vec::new(), Duration::ZERO);
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = pool
                    .execute_unprepared("SELECT revision FROM outbox_head")
                    .await;
                slowest = slowest.max(t.elapsed());
                queries += 1;
                if let Err(e) = r {
                    failed.push(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (queries, failed, slowest)
        })
    };

    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let mut client = EventServiceClient::new(channels[i % channels.len()].clone());
        let request = bearer(
            WatchRequest {
                producer: Producer::Organization as i32,
                after_revision: 0,
                max_batch_size: BATCH,
            },
            &token,
        );
        streams.push(tokio::spawn(async move {
            let mut stream = client.watch(request).await?.into_inner();
            let mut next = 1;
            while next <= BACKLOG {
                let Some(message) = stream.message().await? else {
                    return Err(tonic::Status::aborted("the stream ended early"));
                };
                for e in &message.events {
                    assert_eq!(e.revision, next, "in order, no gap, no repeat");
                    next += 1;
                }
            }
            Ok(())
        }));
    }
    let mut failed_streams = Vec::new();
    for s in streams {
        if let Err(status) = tokio::time::timeout(Duration::from_secs(120), s)
            .await
            .expect("a stream stalled")
            .unwrap()
        {
            failed_streams.push(format!("{:?} {}", status.code(), status.message()));
        }
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (queries, failed_queries, slowest_query) = querier.await.unwrap();
    running.stop().await;
    let outcome = Outcome {
        failed_streams,
        queries,
        failed_queries,
        slowest_query,
        elapsed,
    };
    println!(
        "bounded {bounded}: {STREAMS} streams x {BACKLOG} events in {:.1}s, {} streams failed, \
         {} of {} ordinary queries failed, slowest {:?}",
        outcome.elapsed.as_secs_f64(),
        outcome.failed_streams.len(),
        outcome.failed_queries.len(),
        outcome.queries,
        outcome.slowest_query
    );
    outcome
}

async fn backlog_replay_leaves_the_pool_to_other_calls(db: TestDb) {
    let bounded = replay_while_querying(&db, true).await;
    assert!(
        bounded.failed_streams.is_empty(),
        "streams failed: {:?}",
        &bounded.failed_streams[..bounded.failed_streams.len().min(5)]
    );
    assert!(
        bounded.failed_queries.is_empty(),
        "ordinary queries failed: {:?}",
        bounded.failed_queries
    );
    assert!(bounded.queries > 0, "the ordinary query ran");
    assert!(bounded.slowest_query < ACQUIRE);
}

async fn control_unbounded_replay_takes_the_pool(db: TestDb) {
    let unbounded = replay_while_querying(&db, false).await;
    assert!(
        !unbounded.failed_queries.is_empty() || !unbounded.failed_streams.is_empty(),
        "without the bound the replay should have taken the pool: {unbounded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_backlog_replay_leaves_the_pool_to_other_calls_sqlite() {
    backlog_replay_leaves_the_pool_to_other_calls(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_backlog_replay_leaves_the_pool_to_other_calls_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    backlog_replay_leaves_the_pool_to_other_calls(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_backlog_replay_control_without_the_bound_takes_the_pool_sqlite() {
    control_unbounded_replay_takes_the_pool(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_backlog_replay_control_without_the_bound_takes_the_pool_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    control_unbounded_replay_takes_the_pool(db).await;
}
