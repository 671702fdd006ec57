//! What the `orgplane` binary hands every service at start-up: the shared page-token key, the
//! clock, this process's service credentials, channels to the other services, and the shutdown
//! token background tasks stop on. Inter-service calls always go through these gRPC channels,
//! also when every service runs in one process.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::auth::ServiceTokenSource;
use crate::clock::SharedClock;
use crate::pagination::PageTokens;

/// Channels to the services, by URL.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// The identity service.
    pub identity: Channel,
    /// The organization service.
    pub organization: Channel,
    /// The workspace service.
    pub workspace: Channel,
}

/// The service account this process presents on internal calls.
#[derive(Clone)]
pub struct ServiceAccount {
    /// Its client id (the `sub` of its service tokens).
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Shared start-up dependencies; see the module docs.
#[derive(Clone)]
pub struct Runtime {
    /// The `iss` of access tokens (identity signs with it, everyone checks it).
    pub issuer: String,
    /// This process's own service account. An identity service in the same process trusts it
    /// without configuration (in `all` mode a random secret is generated at start-up).
    pub service_account: ServiceAccount,
    /// Signs and checks page tokens (shared by every replica).
    pub page_tokens: PageTokens,
    /// The clock (moved forward in tests to reach purge times).
    pub clock: SharedClock,
    /// This process's service token for internal calls.
    pub service_tokens: Arc<dyn ServiceTokenSource>,
    /// Where the other services are.
    pub endpoints: Endpoints,
    /// Cancelled at shutdown.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}
