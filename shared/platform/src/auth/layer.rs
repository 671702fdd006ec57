//! The tower layer that authenticates every request but health and reflection and puts the
//! [`Principal`] into its extensions.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use tower::{Layer, Service};

use super::*;
use crate::error::Reason;
use crate::error::{ApiError, ApiResult};
use crate::revocation::{SESSION_REVOKED, SessionRevocations};
use crate::tls::server::ConnectionInfo;
use crate::tls::{CertificateAccounts, ClientAuth, UNKNOWN_CLIENT_CERTIFICATE};

/// Paths that pass without credentials (Kubernetes probes and reflection clients send none).
const EXEMPT_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Turns request metadata into a [`Principal`].
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<TokenVerifier>,
    api_keys: Option<Arc<dyn ApiKeyResolver>>,
    revocations: Option<Arc<SessionRevocations>>,
    certificates: Option<Arc<CertificateAccounts>>,
    client_auth: ClientAuth,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator that verifies tokens with `tokens` and resolves API keys with `api_keys`
    /// (`None`: API keys are refused).
    pub fn new(tokens: Arc<TokenVerifier>, api_keys: Option<Arc<dyn ApiKeyResolver>>) -> Self {
        Self {
            tokens,
            api_keys,
            revocations: None,
            certificates: None,
            client_auth: ClientAuth::Optional,
        }
    }

    /// Admits a request without credentials on a connection whose verified client certificate
    /// names one of `accounts` as that service principal (mutual TLS); with
    /// [`ClientAuth::Required`], refuses every other request but health and reflection
    /// (UNAUTHENTICATED [`UNKNOWN_CLIENT_CERTIFICATE`]).
    pub fn with_client_certificates(
        mut self,
        accounts: Arc<CertificateAccounts>,
        client_auth: ClientAuth,
    ) -> Self {
        self.certificates = Some(accounts);
        self.client_auth = client_auth;
        self
    }

    /// The principal of a request on `connection` (`None`: plaintext): its credentials, else
    /// the service account its client certificate names, else `Anonymous`.
    pub async fn authenticate_connection(
        &self,
        headers: &HeaderMap,
        connection: Option<&ConnectionInfo>,
    ) -> ApiResult<Arc<Principal>> {
        let account = match (
            connection.and_then(|c| c.client_names.as_deref()),
            &self.certificates,
        ) {
            (Some(names), Some(accounts)) => accounts.account_of(names),
            _ => None,
        };
        if self.client_auth == ClientAuth::Required && account.is_none() {
            return Err(ApiError::unauthenticated(
                UNKNOWN_CLIENT_CERTIFICATE,
                "this server requires a client certificate naming a configured service account",
            ));
        }
        let principal = self.authenticate_shared(headers).await?;
        match (&*principal, account) {
            (Principal::Anonymous, Some(account)) => Ok(account),
            _ => Ok(principal),
        }
    }

    /// Refuses the access tokens of the sessions in `revocations` (UNAUTHENTICATED
    /// `SESSION_REVOKED`), cached verifications included.
    pub fn with_revocations(mut self, revocations: Arc<SessionRevocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// The principal behind `headers`; `Anonymous` when there are no credentials.
    /// See [`Self::authenticate_shared`].
    pub async fn authenticate(&self, headers: &HeaderMap) -> ApiResult<Principal> {
        self.authenticate_shared(headers)
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// [`Self::authenticate`], sharing a cached token's principal instead of copying it.
    ///
    /// Exactly one credential is accepted: an access token together with an API key, or a
    /// second copy of either header, is UNAUTHENTICATED [`AMBIGUOUS_CREDENTIALS`] (a proxy that
    /// checks one copy must not let another through).
    pub async fn authenticate_shared(&self, headers: &HeaderMap) -> ApiResult<Arc<Principal>> {
        let bearer = single(headers, http::header::AUTHORIZATION.as_str())?;
        let api_key = single(headers, API_KEY_HEADER)?;
        match (bearer, api_key) {
            (None, None) => Ok(Arc::new(Principal::Anonymous)),
            (Some(_), Some(_)) => Err(ApiError::unauthenticated(
                AMBIGUOUS_CREDENTIALS,
                "send either an access token or an API key, not both",
            )),
            (Some(value), None) => {
                let value = value
                    .to_str()
                    .map_err(|_| invalid_token("malformed authorization header"))?;
                let token = value
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim())
                    .ok_or_else(|| invalid_token("authorization must be `Bearer <token>`"))?;
                let principal = self.tokens.verify_shared(token).await?;
                if let Some(revocations) = &self.revocations {
                    refuse_ended_session(revocations, &principal)?;
                }
                Ok(principal)
            }
            (None, Some(value)) => {
                let key = value.to_str().map_err(|_| invalid_api_key())?;
                if key.is_empty() || key.len() > 256 {
                    return Err(invalid_api_key());
                }
                let resolver = self.api_keys.as_ref().ok_or_else(invalid_api_key)?;
                Ok(Arc::new(Principal::ApiKey(resolver.resolve(key).await?)))
            }
        }
    }
}

/// The reason of a request carrying more than one credential.
pub const AMBIGUOUS_CREDENTIALS: Reason = Reason::AmbiguousCredentials;

/// The one value of header `name`, `None` without one; UNAUTHENTICATED
/// [`AMBIGUOUS_CREDENTIALS`] for two or more.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> ApiResult<Option<&'h http::HeaderValue>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::unauthenticated(
            AMBIGUOUS_CREDENTIALS,
            format!("send one {name} header, not several"),
        ));
    }
    Ok(first)
}

/// The tower layer that runs an [`Authenticator`] on every request but health and reflection.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Authenticator,
}

impl AuthLayer {
    /// A layer around `auth`.
    pub fn new(auth: Authenticator) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service produced by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Authenticator,
}

impl<S, B, RB> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path();
        if EXEMPT_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Box::pin(inner.call(req));
        }
        let auth = self.auth.clone();
        Box::pin(async move {
            let connection = req.extensions().get::<ConnectionInfo>();
            match auth
                .authenticate_connection(req.headers(), connection)
                .await
            {
                Ok(principal) => {
                    if let Some(caller) = req.extensions().get::<crate::context::CallerSlot>() {
                        caller.set(&principal);
                    }
                    // Shared, not copied: `Principal::of` reads it from the `Arc`.
                    req.extensions_mut().insert(principal);
                    inner.call(req).await
                }
                Err(err) => Ok(tonic::Status::from(err).into_http()),
            }
        })
    }
}

/// UNAUTHENTICATED `SESSION_REVOKED` for a user whose session ended; `Ok` otherwise.
fn refuse_ended_session(revocations: &SessionRevocations, principal: &Principal) -> ApiResult<()> {
    match principal {
        Principal::User(u) if revocations.is_revoked(&u.session_id) => {
            Err(ApiError::unauthenticated(
                SESSION_REVOKED,
                "the session of this access token has ended; sign in again",
            ))
        }
        _ => Ok(()),
    }
}
