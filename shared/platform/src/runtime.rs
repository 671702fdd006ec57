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

/// Shared start-up dependencies; see the module docs.
#[derive(Clone)]
pub struct Runtime {
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
