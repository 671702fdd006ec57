//! The billing-access service: who may see billing, billing accounts, usage ingestion, and usage and cost reports (rules BILL-1 … BILL-5).
//!
//! The crate exposes the service's gRPC implementation, its migrations and the start-up hooks the
//! `orgplane` binary calls; `shared/` provides everything mechanical.
//!
//! - Roles come only from the organization service's events, through the shared
//!   [`RoleReplica`] wrapped in [`consumers::OrganizationEvents`], which also creates billing
//!   accounts (BILL-2) and purges an organization's billing data (BILL-5) in the same
//!   transaction as the event.
//! - Workspace names and archival come from the workspace service's events
//!   ([`consumers::WorkspaceEvents`]).
//! - Ended sessions come from identity's events, through the shared
//!   [`RevocationEvents`](orgplane_platform::revocation::RevocationEvents); the auth layer
//!   refuses their access tokens.
//! - Usage is ingested by [`usage`] (idempotent by a unique key) into raw records and per-minute
//!   rollups; [`reports`] aggregates the rollups in SQL and prices them with [`prices`].

pub mod access;
pub mod accounts;
pub mod consumers;
pub mod entity;
pub mod grpc;
pub mod identity;
pub mod migration;
pub mod prices;
pub mod reports;
pub mod usage;

use std::sync::{Arc, Mutex};

use clap::Args;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::events::{Consumer, ConsumerHandle};
use orgplane_platform::limit_messages;
use orgplane_platform::replica::RoleReplica;
use orgplane_platform::runtime::Runtime;
use orgplane_platform::server::{GrpcServer, Health};
use orgplane_proto::billing::v1::billing_access_service_server::BillingAccessServiceServer;
use orgplane_proto::events::v1::Producer;
use sea_orm::{DatabaseConnection, DbErr};
use tonic::server::NamedService;

use crate::grpc::BillingAccessApi;
use crate::prices::PriceTable;

/// The service's name in configuration, logs and database file names.
pub const NAME: &str = "billing-access";

/// The service's own settings (flags and environment variables of the `orgplane` binary).
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct Config {
    /// The price table for cost reports: a JSON file path, or inline JSON starting with `{`.
    /// Format: `{"currency_code":"USD","models":{"<model>":{"input_per_million":"3.00",
    /// "output_per_million":"15.00"}}}` (prices as decimal strings). Default: a built-in USD
    /// table for `orgmodel-small-1`, `orgmodel-medium-1` and `orgmodel-large-2`.
    #[arg(long = "billing-price-table", env = "ORGPLANE_BILLING_PRICE_TABLE")]
    pub price_table: Option<String>,
}

/// What the handlers and the consumers share.
pub struct Core {
    /// The service's database.
    pub db: DatabaseConnection,
    /// Shared start-up dependencies.
    pub runtime: Runtime,
    /// Organization roles, from the organization service's events.
    pub replica: RoleReplica,
    /// The organization consumer's progress (for `min_revision` waits).
    pub org_events: ConsumerHandle,
    /// The workspace consumer's progress.
    pub workspace_events: ConsumerHandle,
    /// The identity consumer's progress (ended sessions, rule ID-4).
    pub identity_events: ConsumerHandle,
    /// The configured prices.
    pub prices: PriceTable,
    /// The audit log.
    pub audit: AuditLogWriter,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

/// The service: its database, its consumers and what its handlers share.
#[derive(Clone)]
pub struct BillingAccess {
    core: Arc<Core>,
    consumers: Arc<Mutex<Vec<Consumer>>>,
}

impl std::fmt::Debug for BillingAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingAccess").finish_non_exhaustive()
    }
}

impl BillingAccess {
    /// Connects to `database_url`, runs the migrations, and prepares the service and its three
    /// consumers (started by [`Self::start`]).
    pub async fn open(
        database_url: &str,
        config: &Config,
        runtime: &Runtime,
    ) -> Result<Self, DbErr> {
        let prices = PriceTable::load(config.price_table.as_deref())
            .map_err(|e| DbErr::Custom(format!("--billing-price-table: {e}")))?;
        let db = orgplane_platform::db::open::<migration::Migrator>(database_url).await?;
        // Sessions that ended recently (from identity's events): refused from the first request on.
        runtime.revocations.load(&db).await?;
        let replica = RoleReplica::load(
            db.clone(),
            runtime.endpoints.organization.clone(),
            runtime.service_tokens.clone(),
        )
        .await?;
        let audit = AuditLogWriter::new(NAME);
        let (org_consumer, org_events) = runtime
            .consumer(
                NAME,
                &db,
                Producer::Organization,
                Arc::new(consumers::OrganizationEvents::new(
                    replica.clone(),
                    audit.clone(),
                    runtime.clock.clone(),
                )),
            )
            .await?;
        let (ws_consumer, workspace_events) = runtime
            .consumer(
                NAME,
                &db,
                Producer::Workspace,
                Arc::new(consumers::WorkspaceEvents::new(
                    runtime.endpoints.workspace.clone(),
                    runtime.service_tokens.clone(),
                )),
            )
            .await?;
        let (identity_consumer, identity_events) = runtime.revocation_consumer(NAME, &db).await?;
        let core = Core {
            db,
            runtime: runtime.clone(),
            replica,
            org_events,
            workspace_events,
            identity_events,
            prices,
            audit,
        };
        Ok(Self {
            core: Arc::new(core),
            consumers: Arc::new(Mutex::new(vec![
                org_consumer,
                ws_consumer,
                identity_consumer,
            ])),
        })
    }

    /// The service's database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.core.db
    }

    /// The organization consumer's progress.
    pub fn organization_events(&self) -> &ConsumerHandle {
        &self.core.org_events
    }

    /// The workspace consumer's progress.
    pub fn workspace_events(&self) -> &ConsumerHandle {
        &self.core.workspace_events
    }

    /// The identity consumer's progress (ended sessions).
    pub fn identity_events(&self) -> &ConsumerHandle {
        &self.core.identity_events
    }

    /// Adds the gRPC service to `server` (NOT_SERVING until [`Self::start`] says it is ready).
    pub async fn register(&self, server: &mut GrpcServer) {
        let api = BillingAccessApi::new(self.core.clone());
        let service = limit_messages!(BillingAccessServiceServer::new(api), server.config());
        server.add_service(service).await;
    }

    /// Starts the three consumers and, without waiting, a task that reports the service ready
    /// once each has caught up with its producer once.
    pub async fn start(&self, health: &Health) {
        let consumers: Vec<Consumer> = {
            let mut guard = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *guard)
        };
        for consumer in consumers {
            tokio::spawn(consumer.run(self.core.runtime.shutdown.clone()));
        }
        let org = self.core.org_events.clone();
        let ws = self.core.workspace_events.clone();
        let identity = self.core.identity_events.clone();
        let health = health.clone();
        let shutdown = self.core.runtime.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = async {
                    org.wait_caught_up().await;
                    ws.wait_caught_up().await;
                    identity.wait_caught_up().await;
                } => {
                    health
                        .set_ready(
                            <BillingAccessServiceServer<BillingAccessApi> as NamedService>::NAME,
                            true,
                        )
                        .await;
                    tracing::info!("billing-access ready: organization, workspace and identity events caught up");
                }
            }
        });
    }
}
