//! The billing-access service: who may see billing, billing accounts (per organization and per
//! managed account), usage ingestion, and usage and cost reports (rules BILL-1 … BILL-6).
//!
//! - [`api`]: the gRPC adapter (handlers, proto conversion, calls to other services);
//! - [`app`]: the use cases as a plain Rust API ([`app::Billing`]);
//! - [`domain`]: pure rules and the service's [`domain::Error`];
//! - [`store`]: entities, report queries, migrations;
//! - [`sync`]: the organization and workspace event handlers. Roles come only from the
//!   organization service's events (BILL-1), which also create billing accounts (BILL-2), keep
//!   managed accounts and their billing accounts (BILL-6), purge an organization's billing
//!   data (BILL-5) and re-attribute a merged organization's billing data to the prime (ORG-15,
//!   [`app::merge`]); ended sessions come from identity's events through the shared revocation
//!   consumer.

pub mod api;
pub mod app;
pub mod config;
pub mod domain;
pub mod store;
pub mod sync;

pub use config::Config;
pub use store::migration;

use std::sync::Arc;

use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::events::ConsumerHandle;
use orgplane_platform::host::{ModuleContext, Readiness, ServiceModule};
use orgplane_platform::limit_messages;
use orgplane_platform::replica::RoleReplica;
use orgplane_platform::server::GrpcServer;
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
}

impl std::fmt::Debug for BillingAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingAccess").finish_non_exhaustive()
    }
}

impl BillingAccess {
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

    /// The org-role replica (roles and security policies, from the organization's events).
    pub fn replica(&self) -> &RoleReplica {
        &self.app.replica
    }

    /// The identity consumer's progress (ended sessions).
    pub fn identity_events(&self) -> &ConsumerHandle {
        &self.app.identity_events
    }

    /// The gRPC handlers over this service (the load generator serves them without auth).
    pub fn api(&self) -> BillingAccessApi {
        BillingAccessApi::new(self.app.clone())
    }
}

#[tonic::async_trait]
impl ServiceModule for BillingAccess {
    const NAME: &'static str = NAME;
    type Config = Config;

    async fn open(ctx: &mut ModuleContext<'_>, config: &Config) -> Result<Self, DbErr> {
        let prices = PriceTable::load(config.price_table.as_deref())
            .map_err(|e| DbErr::Custom(format!("--billing-price-table: {e}")))?;
        let runtime = ctx.runtime();
        let db = ctx.database::<migration::Migrator>().await?;
        let replica = RoleReplica::load(
            db.clone(),
            runtime.endpoints.organization.clone(),
            runtime.service_tokens.clone(),
        )
        .await?;
        let audit = AuditLogWriter::new(NAME);
        let org_events = ctx
            .subscribe(
                &db,
                Producer::Organization,
                Arc::new(sync::organization::BillingAccounts::handler(
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
        let workspace_events = ctx
            .subscribe(
                &db,
                Producer::Workspace,
                Arc::new(sync::workspace::WorkspaceEvents::new(Arc::new(snapshots))),
            )
            .await?;
        let identity_events = ctx.subscribe_revocations(&db).await?;
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
        Ok(Self { app: Arc::new(app) })
    }

    async fn register(&self, server: &mut GrpcServer) {
        let service = limit_messages!(BillingAccessServiceServer::new(self.api()), server.config());
        server.add_service(service).await;
    }

    fn grpc_services(&self) -> Vec<&'static str> {
        vec![<BillingAccessServiceServer<BillingAccessApi> as NamedService>::NAME]
    }

    /// Ready once the organization, workspace and identity streams caught up once: billing
    /// answers from their replicas only.
    fn readiness(&self) -> Readiness {
        Readiness::CaughtUp {
            streams: vec![
                self.app.org_events.clone(),
                self.app.workspace_events.clone(),
                self.app.identity_events.clone(),
            ],
            within: None,
        }
    }
}
