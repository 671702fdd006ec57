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

/// A request of `bytes` padding bytes: an unknown field, so any request message decodes it.
#[derive(Clone, PartialEq, prost::Message)]
struct Padded {
    #[prost(bytes = "vec", tag = "1000")]
    pad: Vec<u8>,
}

/// Sends a 4.5 MiB request to a unary RPC (Health/Check) and a server-streaming one
/// (EventService/Watch) of the server at `url`; returns both answers' statuses.
async fn oversized_calls(url: &str, token: &str) -> Vec<tonic::Status> {
    let mut out = Vec::new();
    for (path, streaming) in [
        ("/grpc.health.v1.Health/Check", false),
        ("/orgplane.events.v1.EventService/Watch", true),
    ] {
        let mut grpc = tonic::client::Grpc::new(orgplane_platform::testkit::channel(url));
        grpc.ready().await.unwrap();
        let request = bearer(
            Padded {
                pad: vec![7; 4608 << 10],
            },
            token,
        );
        let path = http::uri::PathAndQuery::from_static(path);
        let codec = tonic_prost::ProstCodec::<Padded, Padded>::default();
        let status = if streaming {
            grpc.server_streaming(request, path, codec).await.err()
        } else {
            grpc.unary(request, path, codec).await.err()
        };
        out.push(status.expect("a 4.5 MiB request is refused"));
    }
    out
}

#[tokio::test]
async fn a_message_over_the_limit_is_resource_exhausted_with_the_limit_on_every_rpc() {
    use tonic_types::StatusExt;
    let db = TestDb::sqlite();
    let conn = db.open::<M>().await;
    let auth = TestAuth::new();
    let token = auth.service_token("workspace");
    let mut server = GrpcServer::new(ServerConfig::default());
    let events = EventServer::new(
        [Outbox::new(conn.clone(), Producer::Organization)],
        server.shutdown_token(),
    );
    server
        .add_ready_service(orgplane_platform::limit_messages!(
            EventServiceServer::new(events),
            server.config()
        ))
        .await;
    let running = RunningServer::start(server, auth.authenticator(), None).await;
    for status in oversized_calls(&running.url(), &token).await {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "MESSAGE_TOO_LARGE");
        assert_eq!(info.metadata["limit_bytes"], (4 << 20).to_string());
        let sent = prost::Message::encoded_len(&Padded {
            pad: vec![7; 4608 << 10],
        });
        assert_eq!(info.metadata["message_bytes"], sent.to_string());
        assert!(status.get_details_quota_failure().is_some());
    }
    // The server still answers at once.
    let mut health = HealthClient::new(running.channel());
    assert_eq!(status(&mut health, "").await, ServingStatus::Serving as i32);
    running.stop().await;

    // Control: the same services on a plain tonic server answer tonic's OUT_OF_RANGE, without
    // details.
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let events = EventServer::new(
        [Outbox::new(conn, Producer::Organization)],
        tokio_util::sync::CancellationToken::new(),
    );
    let plain = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(orgplane_platform::limit_messages!(
                EventServiceServer::new(events),
                ServerConfig::default()
            ))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    for status in oversized_calls(&url, &token).await {
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        assert!(status.get_details_error_info().is_none());
    }
    plain.abort();
}

/// Reflection serves the google.rpc error details every refusal carries (and what they import),
/// so that grpcurl decodes ErrorInfo, BadRequest, … instead of printing base64.
#[tokio::test]
async fn reflection_serves_the_error_detail_types() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let server = RunningServer::start(
        GrpcServer::new(ServerConfig::default()),
        TestAuth::new().authenticator(),
        None,
    )
    .await;
    let mut client = ServerReflectionClient::new(server.channel());
    for request in [
        MessageRequest::FileContainingSymbol("google.rpc.ErrorInfo".into()),
        MessageRequest::FileContainingSymbol("google.rpc.BadRequest".into()),
        MessageRequest::FileContainingSymbol("google.rpc.Status".into()),
        MessageRequest::FileByFilename("google/protobuf/duration.proto".into()),
    ] {
        let asked = format!("{request:?}");
        let mut answers = client
            .server_reflection_info(futures::stream::iter([ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request),
            }]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        match answer.message_response {
            Some(MessageResponse::FileDescriptorResponse(files)) => {
                assert!(!files.file_descriptor_proto.is_empty(), "{asked}")
            }
            other => panic!("{asked}: {other:?}"),
        }
    }
    server.stop().await;
}
