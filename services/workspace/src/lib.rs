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

use std::sync::Arc;
use std::time::Duration;

use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::events::{ConsumerHandle, Outbox};
use orgplane_platform::host::{CancellationToken, ModuleContext, Readiness, ServiceModule};
use orgplane_platform::limit_messages;
use orgplane_platform::replica::RoleReplica;
use orgplane_platform::server::GrpcServer;
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

/// The service: its database, what it publishes, and its streams.
#[derive(Clone)]
pub struct Workspace {
    core: app::SharedCore,
    refresh_interval: Duration,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace").finish_non_exhaustive()
    }
}

impl Workspace {
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

    /// The gRPC handlers over this service's state (what it registers); the load
    /// generator serves them without the auth layer to measure its cost.
    pub fn api(&self) -> WorkspaceApi {
        WorkspaceApi::new(self.core.clone())
    }
}

#[tonic::async_trait]
impl ServiceModule for Workspace {
    const NAME: &'static str = NAME;
    type Config = Config;

    async fn open(ctx: &mut ModuleContext<'_>, config: &Config) -> Result<Self, DbErr> {
        let runtime = ctx.runtime();
        let db = ctx.database::<store::migration::Migrator>().await?;
        let outbox = Outbox::new(db.clone(), Producer::Workspace);
        let replica = RoleReplica::load(
            db.clone(),
            runtime.endpoints.organization.clone(),
            runtime.service_tokens.clone(),
        )
        .await?;
        let memory = store::memory::Memory::load(db.clone()).await?;
        let audit = AuditLogWriter::new(app::SERVICE);
        let org_events = ctx
            .subscribe(
                &db,
                Producer::Organization,
                Arc::new(sync::organization::OrgEvents::handler(
                    replica.clone(),
                    memory.clone(),
                    audit.clone(),
                    outbox.clone(),
                )),
            )
            .await?;
        let identity_events = ctx
            .subscribe(
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
            organizations: orgplane_platform::clients::organization::OrganizationClient::new(
                runtime.endpoints.organization.clone(),
                runtime.service_tokens.clone(),
            ),
        };
        Ok(Self {
            core: Arc::new(core),
            refresh_interval: Duration::from_millis(config.refresh_interval_ms.max(10)),
        })
    }

    async fn register(&self, server: &mut GrpcServer) {
        let service = limit_messages!(WorkspaceServiceServer::new(self.api()), server.config());
        server.add_service(service).await;
    }

    fn grpc_services(&self) -> Vec<&'static str> {
        vec![<WorkspaceServiceServer<WorkspaceApi> as NamedService>::NAME]
    }

    fn outbox(&self) -> Option<Outbox> {
        Some(self.core.outbox.clone())
    }

    /// Ready once the organization and identity streams caught up once: CheckAccess answers
    /// from their replicas.
    fn readiness(&self) -> Readiness {
        Readiness::CaughtUp {
            streams: vec![
                self.core.org_events.clone(),
                self.core.identity_events.clone(),
            ],
            within: None,
        }
    }

    /// The poll that picks up writes of other replicas sharing the database.
    fn spawn_background(&self, shutdown: &CancellationToken) {
        self.core
            .memory
            .poll(self.refresh_interval, shutdown.clone());
    }
}
