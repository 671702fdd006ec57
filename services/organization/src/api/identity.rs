//! The client of identity's user RPCs: the facts this service needs about users, over gRPC with
//! this service's token — a caller's account type and verified email (rules ID-1, ORG-6) and
//! members' emails and names, handed to the use cases as plain [`UserFacts`]. Identity being
//! unreachable is UNAVAILABLE, never INTERNAL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use orgplane_platform::Call;
use orgplane_platform::clients::{ServiceTokenSource, outgoing};
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::{AccountType, BatchGetUsersRequest, GetUserRequest, User};
use tonic::transport::Channel;

use crate::domain::{Error, Result};

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

/// What this service knows of a user from identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    /// The user's id.
    pub id: String,
    /// Their email address.
    pub email: String,
    /// Whether they verified it.
    pub email_verified: bool,
    /// Their display name.
    pub display_name: String,
    /// Whether the account is a BUSINESS account (ID-1).
    pub business: bool,
}

impl From<User> for UserFacts {
    fn from(u: User) -> Self {
        Self {
            business: u.account_type == AccountType::Business as i32,
            id: u.id,
            email: u.email,
            email_verified: u.email_verified,
            display_name: u.display_name,
        }
    }
}

fn unavailable(what: &str, status: &tonic::Status) -> Error {
    tracing::warn!(code = ?status.code(), message = status.message(), "{what} failed");
    Error::IdentityUnavailable {
        what: format!("the identity service did not answer {what}; retry"),
    }
}

impl Users {
    /// Users read over `channel` with `tokens`.
    pub fn new(channel: Channel, tokens: Arc<dyn ServiceTokenSource>) -> Self {
        Self { channel, tokens }
    }

    async fn token(&self) -> Result<String> {
        self.tokens.token().await.map_err(|e| {
            tracing::warn!(error = %e, "no service token");
            Error::IdentityUnavailable {
                what: "no service token from identity; retry".to_owned(),
            }
        })
    }

    /// The user `user_id`, or `None` when identity does not know them.
    pub async fn get(&self, user_id: &str, call: &Call) -> Result<Option<UserFacts>> {
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
            Ok(Ok(r)) => Ok(r.into_inner().user.map(UserFacts::from)),
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
    ) -> Result<HashMap<String, UserFacts>> {
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
                out.insert(u.id.clone(), UserFacts::from(u));
            }
        }
        Ok(out)
    }
}
