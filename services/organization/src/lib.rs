//! The organization service: organizations, members and their roles, ownership, invites, units
//! and the audit log — the source of truth for org roles (rules ORG-1 … ORG-12).
//!
//! Layout: [`api`] (the gRPC adapter: `Call` + decode → use case → encode, and the clients of
//! identity and the workspace service) → [`app`] (the use cases, one file per resource) →
//! [`domain`] (rules, validation, the service's errors) and [`store`] (sea-orm entities,
//! queries, migrations); [`sync`] applies the events of the streams this service consumes and
//! serves the role snapshot; [`config`] holds the flags. `shared/` provides everything
//! mechanical.

pub mod api;
pub mod app;
pub mod config;
pub mod domain;
pub mod store;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use orgplane_platform::ApiResult;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::events::{ConsumerHandle, Outbox};
use orgplane_platform::limit_messages;
use orgplane_platform::mail::Mailer;
use orgplane_platform::runtime::Runtime;
use orgplane_platform::server::{GrpcServer, Health};
use orgplane_proto::events::v1::Producer;
use orgplane_proto::organization::v1::organization_service_server::OrganizationServiceServer;
use sea_orm::{DatabaseConnection, DbErr};
use tonic::server::NamedService;

pub use crate::api::OrganizationApi;
pub use crate::config::Config;
pub use crate::store::migration;

/// The service's name in configuration, logs and database file names.
pub const NAME: &str = "organization";

/// The service: its database and what it publishes.
#[derive(Clone, Debug)]
pub struct Organization {
    app: app::SharedApp,
}

impl Organization {
    /// Connects to `database_url`, runs the migrations, and prepares the service.
    pub async fn open(
        database_url: &str,
        config: &Config,
        runtime: &Runtime,
    ) -> Result<Self, DbErr> {
        let db = orgplane_platform::db::open::<migration::Migrator>(database_url).await?;
        // Sessions that ended recently (from identity's events): refused from the first request on.
        runtime.revocations.load(&db).await?;
        let outbox = Outbox::new(db.clone(), Producer::Organization);
        let mailer = Mailer::from_url(&config.mail_url)
            .map_err(|e| DbErr::Custom(format!("--organization-mail-url: {e}")))?;
        let mut runtime = runtime.clone();
        if config.clock_offset_secs != 0 {
            tracing::warn!(
                offset_secs = config.clock_offset_secs,
                "the organization service's clock is shifted (--organization-clock-offset-secs)"
            );
            runtime.clock = Arc::new(config::ShiftedClock {
                inner: runtime.clock.clone(),
                offset: chrono::Duration::seconds(config.clock_offset_secs),
            });
        }
        let users = api::identity::Users::new(
            runtime.endpoints.identity.clone(),
            runtime.service_tokens.clone(),
        );
        let app = app::App {
            db,
            runtime,
            outbox,
            audit: AuditLogWriter::new(NAME),
            users,
            mailer,
            config: config.clone(),
        };
        Ok(Self { app: Arc::new(app) })
    }

    /// The service's database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.app.db
    }

    /// The outbox this service publishes its events through.
    pub fn outbox(&self) -> &Outbox {
        &self.app.outbox
    }

    /// The use cases (for jobs and tests).
    pub fn app(&self) -> &app::SharedApp {
        &self.app
    }

    /// Runs one purge pass now (what the background job does on its interval) and returns the
    /// ids of the purged organizations.
    pub async fn purge_once(&self) -> ApiResult<Vec<String>> {
        self.app.purge_due().await
    }

    /// Adds the gRPC service to `server` (NOT_SERVING until [`Self::start`] says it is ready).
    pub async fn register(&self, server: &mut GrpcServer) {
        let api = OrganizationApi::new(self.app.clone());
        let service = limit_messages!(OrganizationServiceServer::new(api), server.config());
        server.add_service(service).await;
    }

    async fn consumer(&self, producer: Producer) -> Result<ConsumerHandle, DbErr> {
        let (consumer, handle) = self
            .app
            .runtime
            .consumer(
                NAME,
                &self.app.db,
                producer,
                Arc::new(sync::Events::new(self.app.clone(), producer)),
            )
            .await?;
        tokio::spawn(consumer.run(self.app.runtime.shutdown.clone()));
        Ok(handle)
    }

    /// Starts the service's background work once the server is listening — the outbox
    /// compaction, the purge job, and the consumers of identity's and the workspace service's
    /// events — and reports SERVING once identity's stream has caught up (or after the ready
    /// timeout). Never blocks.
    pub async fn start(&self, health: &Health) {
        self.app.outbox.spawn_compaction(
            orgplane_platform::events::outbox::DEFAULT_RETENTION,
            Duration::from_secs(3600),
            self.app.runtime.shutdown.clone(),
        );
        self.app.spawn_purge(Duration::from_secs(
            self.app.config.purge_interval_secs.max(1),
        ));
        let identity = match self.consumer(Producer::Identity).await {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the identity event consumer");
                None
            }
        };
        if let Err(e) = self.consumer(Producer::Workspace).await {
            tracing::error!(error = %e, "cannot start the workspace event consumer");
        }
        let health = health.clone();
        let timeout = Duration::from_millis(self.app.config.ready_timeout_ms);
        tokio::spawn(async move {
            if let Some(h) = identity
                && tokio::time::timeout(timeout, h.wait_caught_up())
                    .await
                    .is_err()
            {
                tracing::warn!(
                    "identity's event stream has not caught up yet; serving anyway, user deletions apply once it does"
                );
            }
            health
                .set_ready(
                    <OrganizationServiceServer<OrganizationApi> as NamedService>::NAME,
                    true,
                )
                .await;
        });
    }
}
