//! The facts this service needs about users, from the identity service over gRPC with this
//! service's token: a caller's account type and verified email (rules ID-1, ORG-6) and members'
//! emails and names. Identity being unreachable is UNAVAILABLE, never INTERNAL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use orgplane_platform::Call;
use orgplane_platform::auth::{ServiceTokenSource, outgoing};
use orgplane_platform::{ApiError, ApiResult};
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::{BatchGetUsersRequest, GetUserRequest, User};
use tonic::transport::Channel;

/// How long one call to identity may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The most ids one BatchGetUsers call takes.
const BATCH: usize = 1000;

/// A client of identity's user RPCs.
#[derive(Clone)]
pub struct Users {
    channel: Channel,
    tokens: Arc<dyn ServiceTokenSource>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

fn unavailable(what: &str, status: &tonic::Status) -> ApiError {
    tracing::warn!(code = ?status.code(), message = status.message(), "{what} failed");
    ApiError::unavailable(
        "IDENTITY_UNAVAILABLE",
        format!("the identity service did not answer {what}; retry"),
    )
    .retry_after(Duration::from_secs(1))
}

impl Users {
    /// Users read over `channel` with `tokens`.
    pub fn new(channel: Channel, tokens: Arc<dyn ServiceTokenSource>) -> Self {
        Self { channel, tokens }
    }

    async fn token(&self) -> ApiResult<String> {
        self.tokens.token().await.map_err(|e| {
            tracing::warn!(error = %e, "no service token");
            ApiError::unavailable(
                "IDENTITY_UNAVAILABLE",
                "no service token from identity; retry",
            )
        })
    }

    /// The user `user_id`, or `None` when identity does not know them.
    pub async fn get(&self, user_id: &str, call: &Call) -> ApiResult<Option<User>> {
        let token = self.token().await?;
        let mut client = IdentityServiceClient::new(self.channel.clone());
        let mut request = outgoing(
            GetUserRequest {
                user_id: user_id.to_owned(),
            },
            Some(&token),
            Some(&call.context()),
        );
        request.set_timeout(CALL_TIMEOUT);
        match tokio::time::timeout(CALL_TIMEOUT, client.get_user(request)).await {
            Ok(Ok(r)) => Ok(r.into_inner().user),
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(None),
            Ok(Err(s)) => Err(unavailable("GetUser", &s)),
            Err(_) => Err(unavailable(
                "GetUser",
                &tonic::Status::deadline_exceeded("timeout"),
            )),
        }
    }

    /// The users among `user_ids` that identity knows, by id.
    pub async fn batch(
        &self,
        user_ids: &[String],
        call: &Call,
    ) -> ApiResult<HashMap<String, User>> {
        let mut out = HashMap::new();
        if user_ids.is_empty() {
            return Ok(out);
        }
        let token = self.token().await?;
        let mut client = IdentityServiceClient::new(self.channel.clone())
            .max_decoding_message_size(16 * 1024 * 1024);
        for chunk in user_ids.chunks(BATCH) {
            let mut request = outgoing(
                BatchGetUsersRequest {
                    user_ids: chunk.to_vec(),
                },
                Some(&token),
                Some(&call.context()),
            );
            request.set_timeout(CALL_TIMEOUT);
            let response =
                match tokio::time::timeout(CALL_TIMEOUT, client.batch_get_users(request)).await {
                    Ok(Ok(r)) => r.into_inner(),
                    Ok(Err(s)) => return Err(unavailable("BatchGetUsers", &s)),
                    Err(_) => {
                        return Err(unavailable(
                            "BatchGetUsers",
                            &tonic::Status::deadline_exceeded("timeout"),
                        ));
                    }
                };
            for u in response.users {
                out.insert(u.id.clone(), u);
            }
        }
        Ok(out)
    }
}
