//! What the `orgplane` binary hands every service at start-up: the shared page-token key, the
//! clock, this process's service credentials, channels to the other services, and the shutdown
//! token background tasks stop on. Inter-service calls always go through these gRPC channels,
//! also when every service runs in one process.

use std::sync::Arc;

use crate::clients::ServiceChannel;
use tokio_util::sync::CancellationToken;

use orgplane_proto::events::v1::Producer;
use sea_orm::{DatabaseConnection, DbErr};

use crate::auth::Capabilities;
use crate::clients::ServiceTokenSource;
use crate::clock::SharedClock;
use crate::events::consumer::ConsumerConfig;
use crate::events::handlers::RevocationEvents;
use crate::events::{Consumer, ConsumerHandle, EventHandler};
use crate::pagination::PageTokens;
use crate::revocation::SessionRevocations;

/// Channels to the services, by URL.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// The identity service.
    pub identity: ServiceChannel,
    /// The organization service.
    pub organization: ServiceChannel,
    /// The workspace service.
    pub workspace: ServiceChannel,
}

/// The service account this process presents on internal calls.
#[derive(Clone)]
pub struct ServiceAccount {
    /// Its client id (the `sub` of its service tokens).
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// What the services of this process call on the others
    /// ([`Capabilities::of_service`] of each): what an identity service in the same process
    /// puts into this account's tokens.
    pub capabilities: Capabilities,
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
    /// The ended sessions this process refuses tokens of: fed by identity (directly) and by
    /// each service's consumer of identity's events, read by the auth layer.
    pub revocations: Arc<SessionRevocations>,
}

impl Runtime {
    /// The channel to `producer`'s event stream.
    pub fn producer_channel(&self, producer: Producer) -> ServiceChannel {
        match producer {
            Producer::Organization => self.endpoints.organization.clone(),
            Producer::Workspace => self.endpoints.workspace.clone(),
            _ => self.endpoints.identity.clone(),
        }
    }

    /// A consumer of `producer`'s events for service `name`, applying them into `db` through
    /// `handler` with this process's service token (run it once the server listens).
    pub async fn consumer(
        &self,
        name: &'static str,
        db: &DatabaseConnection,
        producer: Producer,
        handler: Arc<dyn EventHandler>,
    ) -> Result<(Consumer, ConsumerHandle), DbErr> {
        let config = ConsumerConfig::new(
            producer,
            self.producer_channel(producer),
            self.service_tokens.clone(),
        )
        .with_consumer(name);
        Consumer::new(db.clone(), config, handler).await
    }

    /// The consumer of identity's stream for service `name` when all it needs from it is the
    /// ended sessions ([`RevocationEvents`]).
    pub async fn revocation_consumer(
        &self,
        name: &'static str,
        db: &DatabaseConnection,
    ) -> Result<(Consumer, ConsumerHandle), DbErr> {
        let handler = RevocationEvents::new(
            db.clone(),
            self.revocations.clone(),
            self.endpoints.identity.clone(),
            self.service_tokens.clone(),
        );
        self.consumer(name, db, Producer::Identity, Arc::new(handler))
            .await
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}
