//! The workspace service: workspaces, workspace roles inherited from org roles, and the access check product services call on every request (rules WS-1 … WS-10).
//!
//! The crate exposes the service's gRPC implementation, its migrations and the start-up hooks the
//! `orgplane` binary calls; `shared/` provides everything mechanical. Inside: [`api`] holds the
//! handlers and proto conversion, [`app`] the use cases (CheckAccess included), [`domain`] the
//! role rules and refusals, [`store`] the tables, migrations and the in-memory mirror
//! CheckAccess reads, and [`sync`] what organization and identity events do here.

pub mod api;
pub mod app;
pub mod config;
pub mod domain;
pub mod store;
pub mod sync;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::events::{Consumer, ConsumerHandle, Outbox};
use orgplane_platform::limit_messages;
use orgplane_platform::replica::RoleReplica;
use orgplane_platform::runtime::Runtime;
use orgplane_platform::server::{GrpcServer, Health};
use orgplane_proto::events::v1::Producer;
use orgplane_proto::workspace::v1::workspace_service_server::WorkspaceServiceServer;
use sea_orm::{DatabaseConnection, DbErr};
use tonic::server::NamedService;

pub use api::WorkspaceApi;
pub use config::Config;
/// Kept at its old path for `orgplane migrate` (`services/orgplane/src/run.rs`).
pub use store::migration;

/// The service's name in configuration, logs and database file names.
pub const NAME: &str = "workspace";

type Consumers = Arc<Mutex<Option<(Consumer, Consumer)>>>;

/// The service: its database, what it publishes, and its consumers.
#[derive(Clone)]
pub struct Workspace {
    core: app::SharedCore,
    consumers: Consumers,
    refresh_interval: Duration,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace").finish_non_exhaustive()
    }
}

impl Workspace {
    /// Connects to `database_url`, runs the migrations, loads the replicas, and prepares the
    /// consumers of organization and identity events (started by [`Self::start`]).
    pub async fn open(
        database_url: &str,
        config: &Config,
        runtime: &Runtime,
    ) -> Result<Self, DbErr> {
        let db = orgplane_platform::db::open::<store::migration::Migrator>(database_url).await?;
        Self::with_db(db, config, runtime).await
    }

    /// The same on an open, migrated connection.
    pub async fn with_db(
        db: DatabaseConnection,
        config: &Config,
        runtime: &Runtime,
    ) -> Result<Self, DbErr> {
        let outbox = Outbox::new(db.clone(), Producer::Workspace);
        // Sessions that ended recently (from identity's events): refused from the first request on.
        runtime.revocations.load(&db).await?;
        let replica = RoleReplica::load(
            db.clone(),
            runtime.endpoints.organization.clone(),
            runtime.service_tokens.clone(),
        )
        .await?;
        let memory = store::memory::Memory::load(db.clone()).await?;
        let audit = AuditLogWriter::new(app::SERVICE);
        let (org_consumer, org_events) = runtime
            .consumer(
                NAME,
                &db,
                Producer::Organization,
                Arc::new(sync::organization::OrgEvents::new(
                    replica.clone(),
                    memory.clone(),
                    audit.clone(),
                )),
            )
            .await?;
        let (identity_consumer, identity_events) = runtime
            .consumer(
                NAME,
                &db,
                Producer::Identity,
                Arc::new(sync::identity::IdentityEvents::new(
                    db.clone(),
                    runtime.revocations.clone(),
                    memory.clone(),
                    audit.clone(),
                    Arc::new(api::identity::IdentityKeys::new(
                        runtime.endpoints.identity.clone(),
                        runtime.service_tokens.clone(),
                    )),
                )),
            )
            .await?;
        let core = app::Core {
            db,
            runtime: runtime.clone(),
            outbox,
            replica,
            memory,
            audit,
            limits: app::Limits {
                max_active_per_org: config.max_active_per_org,
            },
            org_events,
            identity_events,
        };
        Ok(Self {
            core: Arc::new(core),
            consumers: Arc::new(Mutex::new(Some((org_consumer, identity_consumer)))),
            refresh_interval: Duration::from_millis(config.refresh_interval_ms.max(10)),
        })
    }

    /// The service's database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.core.db
    }

    /// The outbox this service publishes its events through.
    pub fn outbox(&self) -> &Outbox {
        &self.core.outbox
    }

    /// The org-role replica.
    pub fn replica(&self) -> &RoleReplica {
        &self.core.replica
    }

    /// The in-memory mirror of workspaces, direct roles and API keys.
    pub fn memory(&self) -> &store::memory::Memory {
        &self.core.memory
    }

    /// The organization events consumer.
    pub fn organization_events(&self) -> &ConsumerHandle {
        &self.core.org_events
    }

    /// The identity events consumer.
    pub fn identity_events(&self) -> &ConsumerHandle {
        &self.core.identity_events
    }

    /// The gRPC handlers over this service's state (what [`Self::register`] serves); the load
    /// generator serves them without the auth layer to measure its cost.
    pub fn api(&self) -> WorkspaceApi {
        WorkspaceApi::new(self.core.clone())
    }

    /// Adds the gRPC service to `server` (NOT_SERVING until [`Self::start`] says it is ready).
    pub async fn register(&self, server: &mut GrpcServer) {
        let api = WorkspaceApi::new(self.core.clone());
        let service = limit_messages!(WorkspaceServiceServer::new(api), server.config());
        server.add_service(service).await;
    }

    /// Starts the consumers, the memory poller and outbox compaction without blocking, and
    /// reports the service ready once both consumers have caught up once.
    pub async fn start(&self, health: &Health) {
        let shutdown = self.core.runtime.shutdown.clone();
        self.core.outbox.spawn_compaction(
            orgplane_platform::events::outbox::DEFAULT_RETENTION,
            Duration::from_secs(3600),
            shutdown.clone(),
        );
        self.core
            .memory
            .poll(self.refresh_interval, shutdown.clone());
        let taken = self
            .consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((org, identity)) = taken {
            tokio::spawn(org.run(shutdown.clone()));
            tokio::spawn(identity.run(shutdown.clone()));
        }
        let org = self.core.org_events.clone();
        let identity = self.core.identity_events.clone();
        let health = health.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = async {
                    org.wait_caught_up().await;
                    identity.wait_caught_up().await;
                } => {
                    health
                        .set_ready(
                            <WorkspaceServiceServer<WorkspaceApi> as NamedService>::NAME,
                            true,
                        )
                        .await;
                }
            }
        });
    }
}
