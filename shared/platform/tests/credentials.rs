//! The auth layer over real gRPC with raw metadata: exactly one credential per request (rules
//! ID-4, ID-7), and a service token's capabilities deciding what its account may watch
//! (least-privilege service accounts).
//!
//! The server is the platform's own (`GrpcServer` + `AuthLayer`) serving `EventService/Watch`,
//! which tells the kinds of callers apart: a service token holding `watch:organization` opens
//! the stream, an API key is authenticated and then refused as not a service
//! (PERMISSION_DENIED), a bad credential is UNAUTHENTICATED.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use orgplane_platform::auth::{
    AMBIGUOUS_CREDENTIALS, Authenticator, CAPABILITY_REQUIRED, Capabilities, Capability,
    StaticKeys, TokenVerifier,
};
use orgplane_platform::error::reason_of;
use orgplane_platform::events::migration::CreateOutbox;
use orgplane_platform::events::{EventServer, Outbox};
use orgplane_platform::server::{GrpcServer, ServerConfig};
use orgplane_platform::testkit::{FakeApiKeys, RunningServer, TEST_ISSUER, TestAuth, TestDb};
use orgplane_proto::events::v1::event_service_client::EventServiceClient;
use orgplane_proto::events::v1::event_service_server::EventServiceServer;
use orgplane_proto::events::v1::{Producer, WatchRequest};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic_types::StatusExt;

struct M;
impl MigratorTrait for M {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOutbox)]
    }
}

struct Rig {
    auth: TestAuth,
    server: RunningServer,
    _db: TestDb,
}

/// A server with the organization's event stream, trusting `auth`'s key and the fake API keys.
async fn rig() -> Rig {
    let db = TestDb::sqlite();
    let conn = db.open::<M>().await;
    let auth = TestAuth::new();
    let mut server = GrpcServer::new(ServerConfig::default());
    let events = EventServer::new(
        [Outbox::new(conn, Producer::Organization)],
        server.shutdown_token(),
    );
    server.add_service(EventServiceServer::new(events)).await;
    let verifier = TokenVerifier::new(
        TEST_ISSUER,
        Arc::new(StaticKeys(vec![auth.signer.public_key()])),
    );
    let authenticator =
        Authenticator::new(Arc::new(verifier), Some(Arc::new(FakeApiKeys::default())));
    let server = RunningServer::start(server, authenticator, None).await;
    Rig {
        auth,
        server,
        _db: db,
    }
}

/// Watch of the organization's events with `metadata` appended as given (duplicates kept):
/// `Ok` once the first message arrived, else the status's code and reason.
async fn watch(rig: &Rig, metadata: &[(&'static str, String)]) -> Result<(), (Code, String)> {
    let mut req = tonic::Request::new(WatchRequest {
        producer: Producer::Organization as i32,
        after_revision: 0,
        max_batch_size: 0,
    });
    for (key, value) in metadata {
        let value: MetadataValue<_> = value.parse().unwrap();
        req.metadata_mut().append(*key, value);
    }
    let refused = |s: tonic::Status| (s.code(), reason_of(&s).unwrap_or_default());
    let mut stream = EventServiceClient::new(rig.server.channel())
        .watch(req)
        .await
        .map_err(refused)?
        .into_inner();
    stream.message().await.map_err(refused)?;
    Ok(())
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

fn api_key(key: &str) -> (&'static str, String) {
    ("x-api-key", key.to_owned())
}

fn ambiguous() -> Result<(), (Code, String)> {
    Err((
        Code::Unauthenticated,
        AMBIGUOUS_CREDENTIALS.as_str_name().into(),
    ))
}

#[tokio::test]
async fn id_4_a_second_authorization_header_is_refused_not_ignored() {
    let rig = rig().await;
    let good = rig.auth.service_token("workspace");
    let other = rig.auth.service_token("billing-access");

    // Control: each copy alone is judged on its own (the good one opens the stream, the forged
    // one is refused) — so with both, the first copy must not silently win.
    assert_eq!(watch(&rig, &[bearer(&good)]).await, Ok(()));
    assert_eq!(
        watch(&rig, &[bearer("forged")]).await,
        Err((Code::Unauthenticated, "INVALID_TOKEN".into()))
    );

    assert_eq!(
        watch(&rig, &[bearer(&good), bearer("forged")]).await,
        ambiguous()
    );
    assert_eq!(
        watch(&rig, &[bearer("forged"), bearer(&good)]).await,
        ambiguous()
    );
    assert_eq!(
        watch(&rig, &[bearer(&good), bearer(&other)]).await,
        ambiguous(),
        "two valid tokens are still two credentials"
    );
    assert_eq!(
        watch(&rig, &[bearer(&good), bearer(&good)]).await,
        ambiguous(),
        "even two equal copies"
    );
    rig.server.stop().await;
}

#[tokio::test]
async fn id_7_a_second_x_api_key_header_is_refused_not_ignored() {
    let rig = rig().await;
    // Control: one key authenticates (then Watch refuses a key as not a service).
    assert_eq!(
        watch(&rig, &[api_key("opk_admin_org_a")]).await,
        Err((Code::PermissionDenied, "SERVICE_PRINCIPAL_REQUIRED".into()))
    );
    assert_eq!(
        watch(
            &rig,
            &[api_key("opk_admin_org_a"), api_key("opk_admin_org_b")]
        )
        .await,
        ambiguous()
    );
    assert_eq!(
        watch(&rig, &[api_key("opk_nonsense"), api_key("opk_admin_org_a")]).await,
        ambiguous()
    );
    // An API key together with an access token, in either order.
    let token = rig.auth.service_token("workspace");
    assert_eq!(
        watch(&rig, &[api_key("opk_admin_org_a"), bearer(&token)]).await,
        ambiguous()
    );
    assert_eq!(
        watch(&rig, &[bearer(&token), api_key("opk_admin_org_a")]).await,
        ambiguous()
    );
    rig.server.stop().await;
}

#[tokio::test]
async fn service_accounts_watch_needs_the_producers_capability() {
    let rig = rig().await;
    let status = |token: &str| {
        let token = token.to_owned();
        let rig = &rig;
        async move {
            let mut req = tonic::Request::new(WatchRequest {
                producer: Producer::Organization as i32,
                after_revision: 0,
                max_batch_size: 0,
            });
            req.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            EventServiceClient::new(rig.server.channel())
                .watch(req)
                .await
                .map(|_| ())
        }
    };
    // Control: the capability of this producer opens the stream.
    let watcher = rig
        .auth
        .service_token_with("search", Capabilities::of(&[Capability::WatchOrganization]));
    assert!(status(&watcher).await.is_ok());

    for caps in [
        Capabilities::NONE,
        Capabilities::of(&[Capability::CheckAccess]),
        Capabilities::of(&[Capability::WatchIdentity, Capability::WatchWorkspace]),
    ] {
        let token = rig.auth.service_token_with("search", caps);
        let refused = status(&token).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{caps:?}");
        assert_eq!(
            reason_of(&refused).as_deref(),
            Some(CAPABILITY_REQUIRED.as_str_name())
        );
        let info = refused.get_details_error_info().unwrap();
        assert_eq!(info.metadata["capability"], "watch:organization");
        assert_eq!(info.metadata["service_account"], "search");
    }
    rig.server.stop().await;
}
