//! The organization service: organizations, members and their roles, ownership, invites, units and the audit log — the source of truth for org roles (rules ORG-1 … ORG-12).
//!
//! The crate exposes the service's gRPC implementation, its migrations and the start-up hooks the
//! `orgplane` binary calls; `shared/` provides everything mechanical.
//!
//! Layout: [`grpc`] (thin handlers) → [`core`] and its siblings [`members`], [`invites`],
//! [`units`], [`sync`] (the domain) → [`store`] (sea-orm entities). [`authz`] is the one place
//! that decides who may do what; [`users`] asks identity for user facts.

pub mod authz;
pub mod convert;
pub mod core;
pub mod grpc;
pub mod invites;
pub mod members;
pub mod migration;
pub mod store;
pub mod sync;
pub mod units;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use orgplane_platform::ApiResult;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::clock::{Clock, SharedClock};
use orgplane_platform::events::{ConsumerHandle, Outbox};
use orgplane_platform::limit_messages;
use orgplane_platform::mail::Mailer;
use orgplane_platform::runtime::Runtime;
use orgplane_platform::server::{GrpcServer, Health};
use orgplane_proto::events::v1::Producer;
use orgplane_proto::organization::v1::organization_service_server::OrganizationServiceServer;
use sea_orm::{DatabaseConnection, DbErr};
use tonic::server::NamedService;

pub use crate::grpc::OrganizationApi;

/// The service's name in configuration, logs and database file names.
pub const NAME: &str = "organization";

/// The service's own settings (flags and environment variables of the `orgplane` binary). Every
/// flag starts with `organization-` so that it cannot clash with another service's.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct Config {
    /// Where invite mail goes: `file://DIR` (`.eml` files) or `smtp://` / `smtps://…`.
    #[arg(
        long = "organization-mail-url",
        env = "ORGPLANE_ORGANIZATION_MAIL_URL",
        default_value = "file://./data/mail"
    )]
    pub mail_url: String,

    /// The sender of invite mail.
    #[arg(
        long = "organization-mail-from",
        env = "ORGPLANE_ORGANIZATION_MAIL_FROM",
        default_value = "Orgplane <no-reply@orgplane.dev>"
    )]
    pub mail_from: String,

    /// The start of the link in invite mail; the invite id is appended.
    #[arg(
        long = "organization-invite-link-base",
        env = "ORGPLANE_ORGANIZATION_INVITE_LINK_BASE",
        default_value = "https://orgplane.local/invites/"
    )]
    pub invite_link_base: String,

    /// How recent a sign-in must be for delete, undelete and ownership transfer (rule ID-6),
    /// in seconds.
    #[arg(
        long = "organization-step-up-max-age-secs",
        env = "ORGPLANE_ORGANIZATION_STEP_UP_MAX_AGE_SECS",
        default_value_t = 300
    )]
    pub step_up_max_age_secs: i64,

    /// How often the purge job looks for organizations past their purge time, in seconds.
    #[arg(
        long = "organization-purge-interval-secs",
        env = "ORGPLANE_ORGANIZATION_PURGE_INTERVAL_SECS",
        default_value_t = 60
    )]
    pub purge_interval_secs: u64,

    /// The longest start-up waits for the identity event stream to catch up before reporting
    /// SERVING anyway (identity may be deployed later), in milliseconds.
    #[arg(
        long = "organization-ready-timeout-ms",
        env = "ORGPLANE_ORGANIZATION_READY_TIMEOUT_MS",
        default_value_t = 3000
    )]
    pub ready_timeout_ms: u64,

    /// Debugging and end-to-end tests only: runs this service's clock this many seconds ahead
    /// (purge times, invite expiry, step-up age), to reach a purge without waiting 7 days.
    #[arg(
        long = "organization-clock-offset-secs",
        env = "ORGPLANE_ORGANIZATION_CLOCK_OFFSET_SECS",
        default_value_t = 0,
        hide = true
    )]
    pub clock_offset_secs: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mail_url: "file://./data/mail".to_owned(),
            mail_from: "Orgplane <no-reply@orgplane.dev>".to_owned(),
            invite_link_base: "https://orgplane.local/invites/".to_owned(),
            step_up_max_age_secs: 300,
            purge_interval_secs: 60,
            ready_timeout_ms: 3000,
            clock_offset_secs: 0,
        }
    }
}

/// A clock running a fixed offset ahead of (or behind) another.
#[derive(Debug)]
struct ShiftedClock {
    inner: SharedClock,
    offset: chrono::Duration,
}

impl Clock for ShiftedClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.now() + self.offset
    }
}

/// The service: its database and what it publishes.
#[derive(Clone, Debug)]
pub struct Organization {
    core: core::SharedCore,
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
            runtime.clock = Arc::new(ShiftedClock {
                inner: runtime.clock.clone(),
                offset: chrono::Duration::seconds(config.clock_offset_secs),
            });
        }
        let users = users::Users::new(
            runtime.endpoints.identity.clone(),
            runtime.service_tokens.clone(),
        );
        let core = core::Core {
            db,
            runtime,
            outbox,
            audit: AuditLogWriter::new(NAME),
            users,
            mailer,
            config: config.clone(),
        };
        Ok(Self {
            core: Arc::new(core),
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

    /// The domain (for jobs and tests).
    pub fn core(&self) -> &core::SharedCore {
        &self.core
    }

    /// Runs one purge pass now (what the background job does on its interval) and returns the
    /// ids of the purged organizations.
    pub async fn purge_once(&self) -> ApiResult<Vec<String>> {
        self.core.purge_due().await
    }

    /// Adds the gRPC service to `server` (NOT_SERVING until [`Self::start`] says it is ready).
    pub async fn register(&self, server: &mut GrpcServer) {
        let api = OrganizationApi::new(self.core.clone());
        let service = limit_messages!(OrganizationServiceServer::new(api), server.config());
        server.add_service(service).await;
    }

    async fn consumer(&self, producer: Producer) -> Result<ConsumerHandle, DbErr> {
        let (consumer, handle) = self
            .core
            .runtime
            .consumer(
                NAME,
                &self.core.db,
                producer,
                Arc::new(sync::Events::new(self.core.clone(), producer)),
            )
            .await?;
        tokio::spawn(consumer.run(self.core.runtime.shutdown.clone()));
        Ok(handle)
    }

    /// Starts the service's background work once the server is listening — the outbox
    /// compaction, the purge job, and the consumers of identity's and the workspace service's
    /// events — and reports SERVING once identity's stream has caught up (or after the ready
    /// timeout). Never blocks.
    pub async fn start(&self, health: &Health) {
        self.core.outbox.spawn_compaction(
            orgplane_platform::events::outbox::DEFAULT_RETENTION,
            Duration::from_secs(3600),
            self.core.runtime.shutdown.clone(),
        );
        self.core.spawn_purge(Duration::from_secs(
            self.core.config.purge_interval_secs.max(1),
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
        let timeout = Duration::from_millis(self.core.config.ready_timeout_ms);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_offset_shifts_the_runtime_clock() {
        let clock = ShiftedClock {
            inner: orgplane_platform::clock::system(),
            offset: chrono::Duration::days(8),
        };
        let ahead = clock.now() - chrono::Utc::now();
        assert!(ahead >= chrono::Duration::days(8) - chrono::Duration::seconds(5));
        assert!(ahead <= chrono::Duration::days(8) + chrono::Duration::seconds(5));
    }
}
