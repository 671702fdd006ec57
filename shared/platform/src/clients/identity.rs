//! How a service reaches identity: its signing keys (`GetJwks`) for local token verification,
//! API-key resolution (`AuthenticateApiKey`), this service's own service token
//! (`IssueServiceToken`, cached until shortly before it expires), and the facts it needs about
//! users ([`Users`]: `GetUser`, `BatchGetUsers`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::ServiceChannel;
use futures::future::BoxFuture;
use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
use orgplane_proto::identity::v1::{
    AccountType, ApiKeyKind as ProtoKind, AuthenticateApiKeyRequest, BatchGetUsersRequest,
    GetJwksRequest, GetUserRequest, IssueServiceTokenRequest, User,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

use crate::auth::{
    API_KEY_INACTIVE, ApiKeyKind, ApiKeyPrincipal, ApiKeyResolver, KeySource, PublicKey,
    inactive_api_key, invalid_api_key,
};
use crate::call::Call;
use crate::clients::{ServiceTokenSource, outgoing};
use crate::context::RequestContext;
use crate::error::Reason;
use crate::error::{ApiError, ApiResult};

fn unavailable(what: &str, status: &tonic::Status) -> ApiError {
    tracing::warn!(code = ?status.code(), message = status.message(), "{what} failed");
    ApiError::unavailable(Reason::IdentityUnavailable, format!("{what} failed; retry"))
}

/// Signing keys from identity's `GetJwks`.
#[derive(Clone, Debug)]
pub struct RemoteKeys {
    channel: ServiceChannel,
}

impl RemoteKeys {
    /// Keys fetched over `channel`.
    pub fn new(channel: impl Into<ServiceChannel>) -> Self {
        let channel: ServiceChannel = channel.into();
        Self { channel }
    }
}

impl KeySource for RemoteKeys {
    fn fetch(&self) -> BoxFuture<'_, ApiResult<Vec<PublicKey>>> {
        Box::pin(async move {
            let mut client = IdentityServiceClient::new(self.channel.clone());
            let response = client
                .get_jwks(outgoing(GetJwksRequest {}, None, None))
                .await
                .map_err(|s| unavailable("GetJwks", &s))?
                .into_inner();
            Ok(response
                .keys
                .into_iter()
                .filter(|k| k.alg == "EdDSA" && k.crv == "Ed25519")
                .map(|k| PublicKey { kid: k.kid, x: k.x })
                .collect())
        })
    }
}

/// API keys resolved by identity's `AuthenticateApiKey`, called with this service's token.
#[derive(Clone)]
pub struct RemoteApiKeys {
    channel: ServiceChannel,
    tokens: Arc<dyn ServiceTokenSource>,
}

impl RemoteApiKeys {
    /// A resolver calling identity over `channel` as the holder of `tokens`.
    pub fn new(channel: impl Into<ServiceChannel>, tokens: Arc<dyn ServiceTokenSource>) -> Self {
        let channel: ServiceChannel = channel.into();
        Self { channel, tokens }
    }
}

impl ApiKeyResolver for RemoteApiKeys {
    fn resolve<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ApiResult<ApiKeyPrincipal>> {
        Box::pin(async move {
            let token = self.tokens.token().await?;
            let mut client = IdentityServiceClient::new(self.channel.clone());
            let response = client
                .authenticate_api_key(outgoing(
                    AuthenticateApiKeyRequest {
                        key: key.to_owned(),
                    },
                    token.as_deref(),
                    None,
                ))
                .await
                .map_err(|s| match s.code() {
                    tonic::Code::Unauthenticated
                        if crate::error::reason_of(&s).as_deref()
                            == Some(API_KEY_INACTIVE.as_str_name()) =>
                    {
                        inactive_api_key()
                    }
                    tonic::Code::Unauthenticated | tonic::Code::InvalidArgument => {
                        invalid_api_key()
                    }
                    _ => unavailable("AuthenticateApiKey", &s),
                })?
                .into_inner();
            let key = response.api_key.ok_or_else(invalid_api_key)?;
            let kind = match ProtoKind::try_from(key.kind) {
                Ok(ProtoKind::Admin) => ApiKeyKind::Admin,
                Ok(ProtoKind::Workspace) => ApiKeyKind::Workspace,
                _ => return Err(invalid_api_key()),
            };
            Ok(ApiKeyPrincipal {
                key_id: key.id,
                organization_id: key.organization_id,
                workspace_id: (!key.workspace_id.is_empty()).then_some(key.workspace_id),
                kind,
            })
        })
    }
}

/// This service's service token, minted by identity from a client id and secret and reused
/// until a minute before it expires.
pub struct IdentityServiceTokens {
    channel: ServiceChannel,
    client_id: String,
    client_secret: String,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for IdentityServiceTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityServiceTokens")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl IdentityServiceTokens {
    /// Tokens for service account `client_id`.
    pub fn new(
        channel: impl Into<ServiceChannel>,
        client_id: String,
        client_secret: String,
    ) -> Self {
        let channel: ServiceChannel = channel.into();
        Self {
            channel,
            client_id,
            client_secret,
            cached: tokio::sync::Mutex::new(None),
        }
    }
}

impl ServiceTokenSource for IdentityServiceTokens {
    fn token(&self) -> BoxFuture<'_, ApiResult<Option<String>>> {
        Box::pin(async move {
            let mut cached = self.cached.lock().await;
            if let Some((token, renew_at)) = cached.as_ref()
                && Instant::now() < *renew_at
            {
                return Ok(Some(token.clone()));
            }
            let mut client = IdentityServiceClient::new(self.channel.clone());
            let response = client
                .issue_service_token(outgoing(
                    IssueServiceTokenRequest {
                        client_id: self.client_id.clone(),
                        client_secret: self.client_secret.clone(),
                    },
                    None,
                    None,
                ))
                .await
                .map_err(|s| unavailable("IssueServiceToken", &s))?
                .into_inner();
            let lifetime = response
                .expire_time
                .map(|t| t.seconds - chrono::Utc::now().timestamp())
                .unwrap_or(60)
                .max(0) as u64;
            let renew_in = Duration::from_secs(lifetime.saturating_sub(60).max(lifetime / 2));
            *cached = Some((response.access_token.clone(), Instant::now() + renew_in));
            Ok(Some(response.access_token))
        })
    }
}

/// How long one call to identity may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The most ids one BatchGetUsers call takes.
const BATCH: usize = 1000;

/// The most ids a lookup may ask for and still share a BatchGetUsers call with others; larger
/// lookups (pages of members) are calls of their own.
const COALESCED_IDS: usize = 100;
/// Shared BatchGetUsers calls in flight at once. A lookup made while fewer are in flight goes at
/// once, alone; lookups made while all are busy wait for the next call and share it.
const COALESCED_CALLS: usize = 2;

/// The facts services need about users, from identity's user RPCs (GetUser, BatchGetUsers in
/// chunks) with the caller's service token; identity being unreachable is UNAVAILABLE
/// `IDENTITY_UNAVAILABLE` with a retry hint, never INTERNAL.
///
/// Small [`Users::batch`] lookups made at the same time share BatchGetUsers calls: a burst of
/// mutations that each answer with their member's name (UpdateMemberRole, 16 in flight) made one
/// call each (without those calls the bench's `role_burst` ran 35 % faster). A shared call is made
/// after every lookup in it was asked, so none is answered from older facts than its own call
/// would have read.
#[derive(Clone)]
pub struct Users {
    fetch: Fetch,
    /// The queue of the task that shares calls, started by the first small lookup; `None` when
    /// lookups do not share calls.
    shared: Option<Arc<OnceLock<mpsc::UnboundedSender<Lookup>>>>,
}

/// What one BatchGetUsers or GetUser call needs.
#[derive(Clone)]
struct Fetch {
    channel: ServiceChannel,
    tokens: Arc<dyn ServiceTokenSource>,
}

/// A small lookup waiting for a shared call.
struct Lookup {
    ids: Vec<String>,
    context: RequestContext,
    /// The caller's span: the shared call is made in the first lookup's.
    span: tracing::Span,
    answer: oneshot::Sender<ApiResult<HashMap<String, UserFacts>>>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

/// What a service knows of a user from identity.
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

fn identity_unavailable(what: &str, status: &tonic::Status) -> ApiError {
    tracing::warn!(code = ?status.code(), message = status.message(), "{what} failed");
    ApiError::unavailable(
        Reason::IdentityUnavailable,
        format!("the identity service did not answer {what}; retry"),
    )
    .retry_after(Duration::from_secs(1))
}

impl Fetch {
    async fn token(&self) -> ApiResult<Option<String>> {
        self.tokens.token().await.map_err(|e| {
            tracing::warn!(error = %e, "no service token");
            ApiError::unavailable(
                Reason::IdentityUnavailable,
                "no service token from identity; retry",
            )
            .retry_after(Duration::from_secs(1))
        })
    }

    /// BatchGetUsers of `user_ids`, in chunks of [`BATCH`].
    async fn batch(
        &self,
        user_ids: &[String],
        context: &RequestContext,
    ) -> ApiResult<HashMap<String, UserFacts>> {
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
                token.as_deref(),
                Some(context),
            );
            request.set_timeout(CALL_TIMEOUT);
            let response =
                match tokio::time::timeout(CALL_TIMEOUT, client.batch_get_users(request)).await {
                    Ok(Ok(r)) => r.into_inner(),
                    Ok(Err(s)) => return Err(identity_unavailable("BatchGetUsers", &s)),
                    Err(_) => {
                        return Err(identity_unavailable(
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

    /// Serves the lookups of `queue` until every [`Users`] holding it is gone: takes the next
    /// lookup once a call may start, with it every lookup already waiting (up to [`BATCH`] ids),
    /// and answers each from one call for them all.
    async fn share(self, mut queue: mpsc::UnboundedReceiver<Lookup>) {
        let calls = Arc::new(Semaphore::new(COALESCED_CALLS));
        loop {
            let Ok(turn) = calls.clone().acquire_owned().await else {
                return;
            };
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut ids: BTreeSet<String> = BTreeSet::new();
            let mut group = Vec::new();
            let mut next = Some(first);
            while let Some(lookup) = next {
                // A caller that stopped waiting (its deadline) is not asked for.
                if !lookup.answer.is_closed() {
                    ids.extend(lookup.ids.iter().cloned());
                    group.push(lookup);
                }
                next = if ids.len() < BATCH {
                    queue.try_recv().ok()
                } else {
                    None
                };
            }
            if group.is_empty() {
                continue;
            }
            let fetch = self.clone();
            let span = group[0].span.clone();
            tokio::spawn(
                async move {
                    let _turn = turn;
                    let ids: Vec<String> = ids.into_iter().collect();
                    let found = fetch.batch(&ids, &group[0].context).await;
                    for lookup in group {
                        let answer = match &found {
                            Ok(found) => Ok(lookup
                                .ids
                                .iter()
                                .filter_map(|id| found.get(id).map(|u| (id.clone(), u.clone())))
                                .collect()),
                            Err(e) => Err(e.clone()),
                        };
                        // A caller that stopped waiting dropped its receiver: nothing to tell.
                        let _ = lookup.answer.send(answer);
                    }
                }
                .instrument(span),
            );
        }
    }
}

impl Users {
    /// Users read over `channel` with `tokens`; small lookups at the same time share calls.
    pub fn new(channel: impl Into<ServiceChannel>, tokens: Arc<dyn ServiceTokenSource>) -> Self {
        let channel: ServiceChannel = channel.into();
        Self {
            fetch: Fetch { channel, tokens },
            shared: Some(Arc::default()),
        }
    }

    /// Every lookup makes its own calls (the control arm of the test that shows calls are
    /// shared).
    pub fn without_sharing(mut self) -> Self {
        self.shared = None;
        self
    }

    /// The user `user_id`, or `None` when identity does not know them.
    pub async fn get(&self, user_id: &str, call: &Call) -> ApiResult<Option<UserFacts>> {
        let token = self.fetch.token().await?;
        let mut client = IdentityServiceClient::new(self.fetch.channel.clone());
        let mut request = outgoing(
            GetUserRequest {
                user_id: user_id.to_owned(),
            },
            token.as_deref(),
            Some(&call.context()),
        );
        request.set_timeout(CALL_TIMEOUT);
        match tokio::time::timeout(CALL_TIMEOUT, client.get_user(request)).await {
            Ok(Ok(r)) => Ok(r.into_inner().user.map(UserFacts::from)),
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(None),
            Ok(Err(s)) => Err(identity_unavailable("GetUser", &s)),
            Err(_) => Err(identity_unavailable(
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
    ) -> ApiResult<HashMap<String, UserFacts>> {
        let Some(shared) = self
            .shared
            .as_ref()
            .filter(|_| !user_ids.is_empty() && user_ids.len() <= COALESCED_IDS)
        else {
            return self.fetch.batch(user_ids, &call.context()).await;
        };
        let queue = shared.get_or_init(|| {
            let (queue, lookups) = mpsc::unbounded_channel();
            tokio::spawn(self.fetch.clone().share(lookups));
            queue
        });
        let (answer, answered) = oneshot::channel();
        let lookup = Lookup {
            ids: user_ids.to_vec(),
            context: call.context(),
            span: tracing::Span::current(),
            answer,
        };
        let gone = || {
            ApiError::unavailable(
                Reason::IdentityUnavailable,
                "the lookup of users in identity was cancelled (shutting down?); retry",
            )
            .retry_after(Duration::from_secs(1))
        };
        queue.send(lookup).map_err(|_| gone())?;
        // A lookup queued behind calls to an identity that does not answer waits no longer than
        // a call of its own would have.
        match tokio::time::timeout(CALL_TIMEOUT, answered).await {
            Ok(answer) => answer.map_err(|_| gone())?,
            Err(_) => Err(identity_unavailable(
                "BatchGetUsers",
                &tonic::Status::deadline_exceeded("timeout"),
            )),
        }
    }
}
