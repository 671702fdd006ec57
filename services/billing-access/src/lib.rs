//! The billing-access service: who may see billing, billing accounts, usage ingestion, and usage and cost reports (rules BILL-1 … BILL-5).
//!
//! The crate exposes the service's gRPC implementation, its migrations and the start-up hooks the
//! `orgplane` binary calls; `shared/` provides everything mechanical.

pub mod migration;

use clap::Args;

use orgplane_platform::limit_messages;
use orgplane_platform::runtime::Runtime;
use orgplane_platform::server::{GrpcServer, Health};
use orgplane_proto::billing::v1::billing_access_service_server::{
    BillingAccessService, BillingAccessServiceServer,
};
use sea_orm::{DatabaseConnection, DbErr};
use tonic::server::NamedService;

/// The service's name in configuration, logs and database file names.
pub const NAME: &str = "billing-access";

/// The service's own settings (flags and environment variables of the `orgplane` binary).
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct Config {}

/// The service: its database and what it publishes.
#[derive(Clone, Debug)]
pub struct BillingAccess {
    db: DatabaseConnection,
    #[allow(dead_code)] // used once the service's RPCs land
    runtime: Runtime,
}

impl BillingAccess {
    /// Connects to `database_url`, runs the migrations, and prepares the service.
    pub async fn open(
        database_url: &str,
        _config: &Config,
        runtime: &Runtime,
    ) -> Result<Self, DbErr> {
        let db = orgplane_platform::db::open::<migration::Migrator>(database_url).await?;
        Ok(Self {
            db,
            runtime: runtime.clone(),
        })
    }

    /// The service's database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Adds the gRPC service to `server` (NOT_SERVING until [`Self::start`] says it is ready).
    pub async fn register(&self, server: &mut GrpcServer) {
        let api = BillingAccessApi {};
        let service = limit_messages!(BillingAccessServiceServer::new(api), server.config());
        server.add_service(service).await;
    }

    /// Starts the service's background work once the server is listening, and reports it ready.
    pub async fn start(&self, health: &Health) {
        health
            .set_ready(
                <BillingAccessServiceServer<BillingAccessApi> as NamedService>::NAME,
                true,
            )
            .await;
    }
}

/// The gRPC handlers. RPCs not yet built answer UNIMPLEMENTED through the generated defaults.
#[derive(Debug, Clone)]
pub struct BillingAccessApi {}

impl BillingAccessService for BillingAccessApi {}
