//! The organization service: organizations, members and their roles, ownership, invites, units,
//! verified domains, accounts (`AccountService`, rules ACC-1 … ACC-5) and the audit log — the source of truth for org roles (rules ORG-1 …
//! ORG-16).
//!
//! Layout: [`api`] (the gRPC adapter: `Call` + decode → use case → encode, and the clients of
//! identity and the workspace service) → [`app`] (the use cases, one file per resource) →
//! [`domain`] (rules, validation, the service's errors) and [`store`] (sea-orm entities,
//! queries, migrations); [`sync`] applies the events of the streams this service consumes and
//! serves the role snapshot; [`config`] holds the flags; [`dns`] is the DNS TXT lookup that
//! domain verification asks. `shared/` provides everything mechanical.

pub mod api;
pub mod app;
pub mod config;
pub mod dns;
pub mod domain;
pub mod store;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use orgplane_platform::ApiResult;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::events::{ConsumerHandle, Outbox};
use orgplane_platform::host::{CancellationToken, ModuleContext, Readiness, ServiceModule};
use orgplane_platform::limit_messages;
use orgplane_platform::mail::Mailer;
use orgplane_platform::server::GrpcServer;
use orgplane_proto::events::v1::Producer;
use orgplane_proto::organization::v1::account_service_server::AccountServiceServer;
use orgplane_proto::organization::v1::organization_service_server::OrganizationServiceServer;
use sea_orm::{DatabaseConnection, DbErr};
use tonic::server::NamedService;

pub use crate::api::{AccountApi, OrganizationApi};
pub use crate::config::Config;
pub use crate::store::migration;

/// The service's name in configuration, logs and database file names.
pub const NAME: &str = "organization";

/// The service: its database, what it publishes, and its streams.
#[derive(Clone, Debug)]
pub struct Organization {
    app: app::SharedApp,
    identity_events: ConsumerHandle,
    workspace_events: ConsumerHandle,
}

impl Organization {
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

    /// The identity events consumer.
    pub fn identity_events(&self) -> &ConsumerHandle {
        &self.identity_events
    }

    /// The workspace events consumer.
    pub fn workspace_events(&self) -> &ConsumerHandle {
        &self.workspace_events
    }

    /// Runs one purge pass now (what the background job does on its interval) and returns the
    /// ids of the purged organizations.
    pub async fn purge_once(&self) -> ApiResult<Vec<String>> {
        self.app.purge_due().await
    }
}

#[tonic::async_trait]
impl ServiceModule for Organization {
    const NAME: &'static str = NAME;
    type Config = Config;

    async fn open(ctx: &mut ModuleContext<'_>, config: &Config) -> Result<Self, DbErr> {
        let db = ctx.database::<migration::Migrator>().await?;
        let outbox = config
            .group_commit
            .apply(Outbox::new(db.clone(), Producer::Organization));
        let mailer = Mailer::from_url(&config.mail_url)
            .map_err(|e| DbErr::Custom(format!("--organization-mail-url: {e}")))?;
        let mut runtime = ctx.runtime().clone();
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
        let users = orgplane_platform::clients::identity::Users::new(
            runtime.endpoints.identity.clone(),
            runtime.service_tokens.clone(),
        );
        let extra = match &config.consumer_mail_domains_file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                DbErr::Custom(format!(
                    "--organization-consumer-mail-domains-file {}: {e}",
                    path.display()
                ))
            })?,
            None => String::new(),
        };
        let consumer_domains =
            domain::domains::ConsumerDomains::with_additions(&extra).map_err(|e| {
                DbErr::Custom(format!("--organization-consumer-mail-domains-file: {e}"))
            })?;
        let dns = dns::HickoryTxt::new(
            &config.dns_servers,
            Duration::from_millis(config.dns_timeout_ms.max(1)),
        )
        .map_err(|e| DbErr::Custom(format!("--organization-dns-server: {e}")))?;
        let app = Arc::new(app::App {
            db: db.clone(),
            runtime,
            outbox,
            audit: AuditLogWriter::new(NAME),
            users,
            mailer,
            config: config.clone(),
            consumer_domains: Arc::new(consumer_domains),
            dns: Arc::new(dns),
        });
        let identity_events = ctx
            .subscribe(
                &db,
                Producer::Identity,
                Arc::new(sync::Events::new(app.clone(), Producer::Identity)),
            )
            .await?;
        let workspace_events = ctx
            .subscribe(
                &db,
                Producer::Workspace,
                Arc::new(sync::Events::new(app.clone(), Producer::Workspace)),
            )
            .await?;
        Ok(Self {
            app,
            identity_events,
            workspace_events,
        })
    }

    async fn register(&self, server: &mut GrpcServer) {
        let api = OrganizationApi::new(self.app.clone());
        let service = limit_messages!(OrganizationServiceServer::new(api), server.config());
        server.add_service(service).await;
        let accounts = AccountApi::new(self.app.clone());
        let service = limit_messages!(AccountServiceServer::new(accounts), server.config());
        server.add_service(service).await;
    }

    fn grpc_services(&self) -> Vec<&'static str> {
        vec![
            <OrganizationServiceServer<OrganizationApi> as NamedService>::NAME,
            <AccountServiceServer<AccountApi> as NamedService>::NAME,
        ]
    }

    fn outbox(&self) -> Option<Outbox> {
        Some(self.app.outbox.clone())
    }

    /// Ready once identity's stream caught up, or after `--organization-ready-timeout-ms`:
    /// identity and organization start each other, and a lagging stream only delays user
    /// deletions.
    fn readiness(&self) -> Readiness {
        Readiness::CaughtUp {
            streams: vec![self.identity_events.clone()],
            within: Some(Duration::from_millis(self.app.config.ready_timeout_ms)),
        }
    }

    /// The purge job (ORG-7).
    fn spawn_background(&self, _shutdown: &CancellationToken) {
        self.app.spawn_purge(Duration::from_secs(
            self.app.config.purge_interval_secs.max(1),
        ));
    }
}
