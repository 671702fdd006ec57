//! The server bootstrap over real gRPC: per-service health that starts NOT_SERVING, health and
//! reflection reachable without credentials while other RPCs need them, and shutdown that ends
//! open streams and returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use orgplane_platform::events::migration::CreateOutbox;
use orgplane_platform::events::{EventServer, Outbox};
use orgplane_platform::server::{GrpcServer, ServerConfig};
use orgplane_platform::testkit::{RunningServer, TestAuth, TestDb, bearer};
use orgplane_proto::events::v1::event_service_client::EventServiceClient;
use orgplane_proto::events::v1::event_service_server::EventServiceServer;
use orgplane_proto::events::v1::{Producer, WatchRequest};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

struct M;
impl MigratorTrait for M {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOutbox)]
    }
}

async fn status(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test]
async fn health_is_per_service_and_not_serving_until_ready() {
    let db = TestDb::sqlite();
    let conn = db.open::<M>().await;
    let auth = TestAuth::new();
    let mut server = GrpcServer::new(ServerConfig::default());
    let events = EventServer::new(
        [Outbox::new(conn, Producer::Organization)],
        server.shutdown_token(),
    );
    server.add_service(EventServiceServer::new(events)).await;
    let health = server.health();
    let running = RunningServer::start(server, auth.authenticator(), None).await;
    let mut client = HealthClient::new(running.channel());
    let name = "orgplane.events.v1.EventService";
    assert_eq!(
        status(&mut client, name).await,
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        status(&mut client, "").await,
        ServingStatus::NotServing as i32
    );
    health.set_ready(name, true).await;
    assert_eq!(
        status(&mut client, name).await,
        ServingStatus::Serving as i32
    );
    assert_eq!(status(&mut client, "").await, ServingStatus::Serving as i32);

    // Health passes even with a credential the auth layer would refuse.
    let mut req = tonic::Request::new(HealthCheckRequest::default());
    req.metadata_mut()
        .insert("authorization", "Bearer garbage".parse().unwrap());
    assert!(client.check(req).await.is_ok());

    // A live Watch stream ends when the server shuts down, and the server stops.
    let mut events = EventServiceClient::new(running.channel());
    let mut stream = events
        .watch(bearer(
            WatchRequest {
                producer: Producer::Organization as i32,
                after_revision: 0,
                max_batch_size: 0,
            },
            &auth.service_token("workspace"),
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.caught_up);
    running.shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends at shutdown");
    tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("the server stops after draining")
        .unwrap();
}
