//! The billing-access service: who may see billing, billing accounts, usage ingestion, and usage and cost reports (rules BILL-1 … BILL-5).
//!
//! - [`api`]: the gRPC adapter (handlers, proto conversion, calls to other services);
//! - [`app`]: the use cases as a plain Rust API ([`app::Billing`]);
//! - [`domain`]: pure rules and the service's [`domain::Error`];
//! - [`store`]: entities, report queries, migrations;
//! - [`sync`]: the organization and workspace event handlers. Roles come only from the
//!   organization service's events (BILL-1), which also create billing accounts (BILL-2) and
//!   purge an organization's billing data (BILL-5); ended sessions come from identity's events
//!   through the shared revocation consumer.

pub mod api;
pub mod app;
pub mod config;
pub mod domain;
pub mod store;
pub mod sync;

pub use config::Config;
pub use store::migration;

use std::sync::{Arc, Mutex};

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

use crate::api::BillingAccessApi;
use crate::api::clients::{IdentityDirectory, WorkspaceSnapshots};
use crate::app::Billing;
use crate::domain::prices::PriceTable;

/// The service's name in configuration, logs and database file names.
pub const NAME: &str = "billing-access";

/// The service: its database, its consumers and what its handlers share.
#[derive(Clone)]
pub struct BillingAccess {
    app: Arc<Billing>,
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
                Arc::new(sync::organization::OrganizationEvents::new(
                    replica.clone(),
                    audit.clone(),
                    runtime.clock.clone(),
                )),
            )
            .await?;
        let snapshots = WorkspaceSnapshots::new(
            runtime.endpoints.workspace.clone(),
            runtime.service_tokens.clone(),
        );
        let (ws_consumer, workspace_events) = runtime
            .consumer(
                NAME,
                &db,
                Producer::Workspace,
                Arc::new(sync::workspace::WorkspaceEvents::new(Arc::new(snapshots))),
            )
            .await?;
        let (identity_consumer, identity_events) = runtime.revocation_consumer(NAME, &db).await?;
        let directory = IdentityDirectory::new(
            runtime.endpoints.identity.clone(),
            runtime.service_tokens.clone(),
        );
        let app = Billing {
            db,
            runtime: runtime.clone(),
            replica,
            org_events,
            workspace_events,
            identity_events,
            prices,
            audit,
            directory: Arc::new(directory),
        };
        Ok(Self {
            app: Arc::new(app),
            consumers: Arc::new(Mutex::new(vec![
                org_consumer,
                ws_consumer,
                identity_consumer,
            ])),
        })
    }

    /// The service's database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.app.db
    }

    /// The organization consumer's progress.
    pub fn organization_events(&self) -> &ConsumerHandle {
        &self.app.org_events
    }

    /// The workspace consumer's progress.
    pub fn workspace_events(&self) -> &ConsumerHandle {
        &self.app.workspace_events
    }

    /// The identity consumer's progress (ended sessions).
    pub fn identity_events(&self) -> &ConsumerHandle {
        &self.app.identity_events
    }

    /// Adds the gRPC service to `server` (NOT_SERVING until [`Self::start`] says it is ready).
    pub async fn register(&self, server: &mut GrpcServer) {
        let api = BillingAccessApi::new(self.app.clone());
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
            tokio::spawn(consumer.run(self.app.runtime.shutdown.clone()));
        }
        let org = self.app.org_events.clone();
        let ws = self.app.workspace_events.clone();
        let identity = self.app.identity_events.clone();
        let health = health.clone();
        let shutdown = self.app.runtime.shutdown.clone();
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
