//! The organization service: organizations, members and their roles, ownership, invites, units and the audit log — the source of truth for org roles (rules ORG-1 … ORG-12).
//!
//! The crate exposes the service's gRPC implementation, its migrations and the start-up hooks the
//! `orgplane` binary calls; `shared/` provides everything mechanical.

pub mod migration;

use clap::Args;

use orgplane_platform::events::Outbox;
use orgplane_platform::limit_messages;
use orgplane_platform::runtime::Runtime;
use orgplane_platform::server::{GrpcServer, Health};
use orgplane_proto::events::v1::Producer;
use orgplane_proto::organization::v1::organization_service_server::{
    OrganizationService, OrganizationServiceServer,
};
use sea_orm::{DatabaseConnection, DbErr};
use tonic::server::NamedService;

/// The service's name in configuration, logs and database file names.
pub const NAME: &str = "organization";

/// The service's own settings (flags and environment variables of the `orgplane` binary).
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct Config {}

/// The service: its database and what it publishes.
#[derive(Clone, Debug)]
pub struct Organization {
    db: DatabaseConnection,
    runtime: Runtime,
    outbox: Outbox,
}

impl Organization {
    /// Connects to `database_url`, runs the migrations, and prepares the service.
    pub async fn open(
        database_url: &str,
        _config: &Config,
        runtime: &Runtime,
    ) -> Result<Self, DbErr> {
        let db = orgplane_platform::db::open::<migration::Migrator>(database_url).await?;
        let outbox = Outbox::new(db.clone(), Producer::Organization);
        Ok(Self {
            db,
            runtime: runtime.clone(),
            outbox,
        })
    }

    /// The service's database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The outbox this service publishes its events through.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Adds the gRPC service to `server` (NOT_SERVING until [`Self::start`] says it is ready).
    pub async fn register(&self, server: &mut GrpcServer) {
        let api = OrganizationApi {};
        let service = limit_messages!(OrganizationServiceServer::new(api), server.config());
        server.add_service(service).await;
    }

    /// Starts the service's background work once the server is listening, and reports it ready.
    pub async fn start(&self, health: &Health) {
        self.outbox.spawn_compaction(
            orgplane_platform::events::outbox::DEFAULT_RETENTION,
            std::time::Duration::from_secs(3600),
            self.runtime.shutdown.clone(),
        );
        health
            .set_ready(
                <OrganizationServiceServer<OrganizationApi> as NamedService>::NAME,
                true,
            )
            .await;
    }
}

/// The gRPC handlers. RPCs not yet built answer UNIMPLEMENTED through the generated defaults.
#[derive(Debug, Clone)]
pub struct OrganizationApi {}

impl OrganizationService for OrganizationApi {}
