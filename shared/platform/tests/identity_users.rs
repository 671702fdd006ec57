//! `clients::identity::Users`: small user lookups made at the same time share BatchGetUsers calls
//! to identity (served here over real gRPC on loopback by a recorder of the calls it gets), each
//! caller gets the users it asked for and no others, and a failed shared call fails every lookup
//! in it with IDENTITY_UNAVAILABLE.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use orgplane_platform::Call;
use orgplane_platform::clients::StaticServiceToken;
use orgplane_platform::clients::identity::Users;
use orgplane_proto::identity::v1::identity_service_server::{
    IdentityService, IdentityServiceServer,
};
use orgplane_proto::identity::v1::{BatchGetUsersRequest, BatchGetUsersResponse, User};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Identity's BatchGetUsers as far as these tests need it: every id but `ghost*` is a user named
/// after it; each call is recorded and takes `delay` (100 ms by default), so that lookups made
/// meanwhile queue.
#[derive(Clone)]
struct Recorder {
    calls: Arc<Mutex<Vec<Vec<String>>>>,
    delay: Duration,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            calls: Arc::default(),
            delay: Duration::from_millis(100),
        }
    }
}

#[tonic::async_trait]
impl IdentityService for Recorder {
    async fn batch_get_users(
        &self,
        request: Request<BatchGetUsersRequest>,
    ) -> Result<Response<BatchGetUsersResponse>, Status> {
        let ids = request.into_inner().user_ids;
        self.calls.lock().unwrap().push(ids.clone());
        tokio::time::sleep(self.delay).await;
        let (missing, known): (Vec<String>, Vec<String>) =
            ids.into_iter().partition(|id| id.starts_with("ghost"));
        Ok(Response::new(BatchGetUsersResponse {
            users: known
                .into_iter()
                .map(|id| User {
                    display_name: format!("Name of {id}"),
                    email: format!("{id}@example.com"),
                    id,
                    ..Default::default()
                })
                .collect(),
            missing_user_ids: missing,
        }))
    }
}

async fn serve(recorder: Recorder) -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IdentityServiceServer::new(recorder))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

fn users(channel: Channel) -> Users {
    Users::new(channel, Arc::new(StaticServiceToken("token".into())))
}

fn users_without_sharing(channel: Channel) -> Users {
    users(channel).without_sharing()
}

/// Twelve lookups at once, each of its own user and one each of the same shared user and of an
/// unknown one; checks what each got and returns the number of calls identity saw.
async fn twelve_lookups_at_once(users: &Users, recorder: &Recorder) -> usize {
    let asks: Vec<Vec<String>> = (0..12)
        .map(|i| vec![format!("u{i}"), "shared".into(), format!("ghost{i}")])
        .collect();
    let call = Call::system();
    let answers = join_all(asks.iter().map(|ids| users.batch(ids, &call))).await;
    for (ids, answer) in asks.iter().zip(answers) {
        let found = answer.expect("lookup failed");
        let mut got: Vec<&str> = found.keys().map(String::as_str).collect();
        got.sort();
        assert_eq!(
            got,
            vec!["shared", ids[0].as_str()],
            "only the users asked for"
        );
        assert_eq!(found[&ids[0]].display_name, format!("Name of {}", ids[0]));
    }
    let calls = recorder.calls.lock().unwrap();
    for call in calls.iter() {
        let mut sorted = call.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            call.len(),
            "a shared call asks for each id once"
        );
    }
    calls.len()
}

#[tokio::test]
async fn small_lookups_at_the_same_time_share_batch_get_users_calls() {
    let recorder = Recorder::default();
    let users = users(serve(recorder.clone()).await);
    let calls = twelve_lookups_at_once(&users, &recorder).await;
    // At most two calls start while the others are in flight; the rest wait and go together.
    assert!(calls <= 3, "12 lookups made {calls} calls");

    // Control: lookups that do not share make a call each.
    let recorder = Recorder::default();
    let alone = users_without_sharing(serve(recorder.clone()).await);
    assert_eq!(twelve_lookups_at_once(&alone, &recorder).await, 12);
}

#[tokio::test]
async fn large_lookups_make_their_own_calls() {
    let recorder = Recorder::default();
    let users = users(serve(recorder.clone()).await);
    let page: Vec<String> = (0..500).map(|i| format!("u{i}")).collect();
    let call = Call::system();
    let (a, b) = tokio::join!(users.batch(&page, &call), users.batch(&page, &call));
    assert_eq!(a.unwrap().len(), 500);
    assert_eq!(b.unwrap().len(), 500);
    assert_eq!(recorder.calls.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_failed_shared_call_fails_every_lookup_in_it_with_identity_unavailable() {
    // Nothing listens here: every call fails to connect.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let users = users(
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy(),
    );
    let call = Call::system();
    let asks: Vec<Vec<String>> = (0..6).map(|i| vec![format!("u{i}")]).collect();
    for answer in join_all(asks.iter().map(|ids| users.batch(ids, &call))).await {
        let status = tonic::Status::from(answer.expect_err("identity is not there"));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            orgplane_platform::error::reason_of(&status).as_deref(),
            Some("IDENTITY_UNAVAILABLE")
        );
    }
}

#[tokio::test]
async fn lookups_queued_behind_calls_that_hang_fail_within_one_call_timeout() {
    let recorder = Recorder {
        delay: Duration::from_secs(60),
        ..Recorder::default()
    };
    let users = users(serve(recorder.clone()).await);
    let started = std::time::Instant::now();
    let mut lookups = Vec::new();
    for i in 0..6 {
        let users = users.clone();
        lookups.push(tokio::spawn(async move {
            users.batch(&[format!("u{i}")], &Call::system()).await
        }));
        if i < 2 {
            // The first two calls are in flight before the others are asked.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for lookup in lookups {
        let status = tonic::Status::from(lookup.await.unwrap().expect_err("identity hangs"));
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
    // Two calls hang; the four lookups queued behind them give up after one call timeout
    // (5 s), as a call of their own would have, not when a call made for them after the hanging
    // ones times out (the third call, if it started before they gave up).
    let calls = recorder.calls.lock().unwrap().len();
    assert!((2..=3).contains(&calls), "{calls} calls");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(8), "waited {waited:?}");
}
