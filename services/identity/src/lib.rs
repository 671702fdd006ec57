//! The identity service: users and their credentials, sessions and tokens, signing keys and API
//! keys (rules ID-1 … ID-9).
//!
//! Layout: [`api`] (the gRPC adapter and proto conversion) → [`app`] (use cases, split by
//! concern) → [`domain`] (pure rules and the service's refusals) over [`store`] (rows and
//! migrations); [`sync`] consumes the organization service's events; its calls to the workspace
//! service go through `orgplane_platform::clients::workspace`. Mechanisms: [`crypto`] (argon2id, token digests, API-key format,
//! sealing), [`oidc`] (the OpenID Connect relying party of SSO, rule ID-13), [`keys`] (signing keys and rotation), [`throttle`] (sign-in and mail budgets).

pub mod api;
pub mod app;

mod config;
pub mod crypto;
pub mod domain;
pub mod keys;
pub mod oidc;
pub mod store;
pub mod sync;
pub mod throttle;

use std::sync::Arc;

use orgplane_platform::ApiError;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::events::handlers::OrgRoleEvents;
use orgplane_platform::events::{ConsumerHandle, Outbox};
use orgplane_platform::host::{CancellationToken, ModuleContext, Readiness, ServiceModule};
use orgplane_platform::limit_messages;
use orgplane_platform::mail::Mailer;
use orgplane_platform::replica::RoleReplica;
use orgplane_platform::server::GrpcServer;
use orgplane_proto::events::v1::Producer;
use orgplane_proto::identity::v1::identity_service_server::IdentityServiceServer;
use sea_orm::{DatabaseConnection, DbErr};
use tonic::server::NamedService;

pub use crate::api::IdentityApi;
pub use crate::config::{Config, ConfiguredAccount};
/// The rows (kept at their former path for the chaos and load suites).
pub use crate::store::{entity, migration};

/// The service's name in configuration, logs and database file names.
pub const NAME: &str = "identity";

fn db_err(e: ApiError) -> DbErr {
    DbErr::Custom(format!("identity: {}", e.message()))
}

/// The service: its database and what it publishes.
#[derive(Clone)]
pub struct Identity {
    db: DatabaseConnection,
    outbox: Outbox,
    app: Arc<app::App>,
    handle: ConsumerHandle,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

impl Identity {
    /// The service's database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The outbox this service publishes its events through.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The password hasher (its concurrency figures, for tests and the chaos suite).
    pub fn password_hasher(&self) -> &crypto::PasswordHasherPool {
        &self.app.hasher
    }

    /// The signing keys, also a [`orgplane_platform::auth::KeySource`] for in-process verifiers.
    pub fn keys(&self) -> &keys::KeyStore {
        &self.app.keys
    }

    /// The SCIM 2.0 routes (`/scim/v2/…`, rule ID-14), served on the HTTP listener.
    pub fn scim_router(&self) -> axum::Router {
        api::scim::router(self.app.clone())
    }

    /// The organization and token of a SCIM bearer secret, as every SCIM request resolves it
    /// ([`app::scim::tokens::authenticate`]); for tests and tools that check a token.
    pub async fn scim_principal(
        &self,
        secret: &str,
    ) -> orgplane_platform::ApiResult<app::scim::ScimPrincipal> {
        app::scim::tokens::authenticate(&self.app, secret).await
    }

    /// The organization-events consumer (applied revision, waits).
    pub fn organization_events(&self) -> &ConsumerHandle {
        &self.handle
    }

    /// Gives this replica sign-in budgets of its own, as before they were shared (rule ID-3):
    /// only the control arm of the tests that prove replicas share one budget calls this.
    #[doc(hidden)]
    pub fn isolate_sign_in_budgets_for_control_arm(&self) {
        self.app.throttles.sign_in.isolate_for_control_arm();
    }
}

#[tonic::async_trait]
impl ServiceModule for Identity {
    const NAME: &'static str = NAME;
    type Config = Config;

    async fn open(ctx: &mut ModuleContext<'_>, config: &Config) -> Result<Self, DbErr> {
        let runtime = ctx.runtime();
        let database_url = ctx.database_url().to_owned();
        let db = ctx.database::<migration::Migrator>().await?;
        let outbox = Outbox::new(db.clone(), Producer::Identity);
        let sealer = crypto::Sealer::new(&config.encryption_key(&database_url).map_err(db_err)?);
        let retain = chrono::Duration::seconds(app::ACCESS_TOKEN_TTL_SECS + 5 * 60);
        let clock = runtime.clock.clone();
        let passkeys =
            app::passkeys::Passkeys::from_config(config, sealer.clone()).map_err(db_err)?;
        let keys =
            keys::KeyStore::open(db.clone(), sealer.clone(), clock, config.rotation(), retain)
                .await
                .map_err(db_err)?;
        let replica = RoleReplica::load(
            db.clone(),
            runtime.endpoints.organization.clone(),
            runtime.service_tokens.clone(),
        )
        .await?;
        let audit = AuditLogWriter::new(NAME);
        let handler = OrgRoleEvents::new(
            replica.clone(),
            sync::organization::OrgEvents {
                outbox: outbox.clone(),
                audit: audit.clone(),
                clock: runtime.clock.clone(),
            },
        );
        let handle = ctx
            .subscribe(&db, Producer::Organization, Arc::new(handler))
            .await?;
        // Identity watches its own stream for ended sessions: replicas sharing this database
        // learn each other's revocations (the rows are already written by the producing
        // transaction; applying them again is harmless).
        ctx.subscribe_revocations(&db).await?;
        let app = app::App {
            db: db.clone(),
            outbox: outbox.clone(),
            audit,
            keys,
            replica,
            org_events: handle.clone(),
            revocations: runtime.revocations.clone(),
            hasher: config.password_hasher().map_err(db_err)?,
            mail: app::MailSettings {
                mailer: Mailer::from_url(&config.mail_url).map_err(db_err)?,
                from: config.mail_from.clone(),
                public_url: config.public_url.clone(),
            },
            issuer: runtime.issuer.clone(),
            own_account: runtime.service_account.clone(),
            service_accounts: service_accounts(config).map_err(db_err)?,
            clock: runtime.clock.clone(),
            page_tokens: runtime.page_tokens.clone(),
            step_up: config.step_up(),
            throttles: app::Throttles::new(&config.limits()),
            trusted_proxies: config.trusted_proxies().map_err(db_err)?,
            workspaces: orgplane_platform::clients::workspace::WorkspaceClient::new(
                runtime.endpoints.workspace.clone(),
                runtime.service_tokens.clone(),
            ),
            passkeys,
            sealer,
            totp_issuer: config.totp_issuer.clone(),
            oidc: Arc::new(
                oidc::OidcClient::new(config.sso_allow_http_issuers).map_err(DbErr::Custom)?,
            ),
            organizations: orgplane_platform::clients::organization::OrganizationClient::new(
                runtime.endpoints.organization.clone(),
                runtime.service_tokens.clone(),
            ),
            scim_delivery: tokio::sync::Mutex::new(()),
        };
        Ok(Self {
            db,
            outbox,
            app: Arc::new(app),
            handle,
        })
    }

    async fn register(&self, server: &mut GrpcServer) {
        let api = IdentityApi::new(self.app.clone());
        let service = limit_messages!(IdentityServiceServer::new(api), server.config());
        server.add_service(service).await;
    }

    fn grpc_services(&self) -> Vec<&'static str> {
        vec![<IdentityServiceServer<IdentityApi> as NamedService>::NAME]
    }

    fn outbox(&self) -> Option<Outbox> {
        Some(self.outbox.clone())
    }

    /// Ready at once: identity is the root of trust (every service, the organization service
    /// included, needs its keys and service tokens to start), so waiting for the organization's
    /// events here would deadlock a cold start. RPCs that depend on organization roles answer
    /// UNAVAILABLE `ROLES_NOT_SYNCED` until the consumer has caught up once.
    fn readiness(&self) -> Readiness {
        Readiness::Immediate
    }

    /// The SCIM 2.0 routes (rule ID-14).
    fn http_routes(&self) -> Option<axum::Router> {
        Some(self.scim_router())
    }

    /// Signing-key rotation; delivery of the membership changes SCIM writes owe (rule ID-14);
    /// the sweep of ended sign-in budget windows (rule ID-3).
    fn spawn_background(&self, shutdown: &CancellationToken) {
        self.app
            .keys
            .spawn_rotation(std::time::Duration::from_secs(60), shutdown.clone());
        app::scim::provisioning::spawn_delivery(self.app.clone(), shutdown.clone());
        app::spawn_sign_in_budget_sweep(self.app.clone(), shutdown.clone());
    }
}

/// The configured service accounts, with a warning for each that holds no capability.
fn service_accounts(
    config: &Config,
) -> orgplane_platform::ApiResult<std::collections::HashMap<String, ConfiguredAccount>> {
    let accounts = config.parse_service_accounts()?;
    for (client_id, account) in &accounts {
        if account.capabilities.is_empty() {
            tracing::warn!(
                client_id,
                "service account has no capabilities: its tokens are refused by every internal \
                 RPC; list them as client_id:sha256hex:check-access+record-usage (see README)"
            );
        }
    }
    Ok(accounts)
}
