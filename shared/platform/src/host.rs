//! The one lifecycle every Orgplane service goes through, run by the host for all of them:
//!
//! 1. **open** ([`ServiceModule::open`] with a [`ModuleContext`]): connect and migrate the
//!    service's database, load the ended sessions the auth layer refuses, and subscribe to the
//!    event streams it consumes (the context builds the consumers; the service keeps only their
//!    [`ConsumerHandle`]s for its revision waits);
//! 2. **register** its gRPC services on the one server (NOT_SERVING until ready), and the
//!    `EventService` of every outbox in the process; collect the HTTP routes of the services
//!    that have some ([`ServiceModule::http_routes`]);
//! 3. **start** once the server listens: run the consumers, compact the outboxes, spawn the
//!    service's own background work, and report readiness by the policy the service states
//!    ([`Readiness`]).
//!
//! `services/orgplane` opens the modules a process runs and hands them to a [`Host`]; nothing
//! else in a service's `lib.rs` is lifecycle.

use std::sync::Arc;
use std::time::Duration;

use orgplane_proto::events::v1::Producer;
use orgplane_proto::events::v1::event_service_server::EventServiceServer;
use sea_orm::{DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;
pub use tokio_util::sync::CancellationToken;

use crate::events::outbox::DEFAULT_RETENTION;
use crate::events::{Consumer, ConsumerHandle, EventHandler, EventServer, Outbox};
use crate::runtime::Runtime;
use crate::server::{GrpcServer, Health};

/// How often outboxes are compacted (events older than [`DEFAULT_RETENTION`] are dropped).
const COMPACTION_INTERVAL: Duration = Duration::from_secs(3600);

/// When a service reports SERVING, stated once per service.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// As soon as the server listens: the service serves without its streams (identity, the
    /// root of trust every other service needs to start; waiting for the organization's
    /// events there would deadlock a cold start).
    Immediate,
    /// Once each of these streams has caught up with its producer once; with `within`, also
    /// after that long (logged), for a service whose answers stay correct while a stream lags.
    CaughtUp {
        /// The streams waited for.
        streams: Vec<ConsumerHandle>,
        /// The most the service waits before serving anyway.
        within: Option<Duration>,
    },
}

/// What the host opens for one service; see the module docs.
pub struct ModuleContext<'a> {
    runtime: &'a Runtime,
    name: &'static str,
    database_url: String,
    consumers: Vec<Consumer>,
}

impl std::fmt::Debug for ModuleContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleContext")
            .field("name", &self.name)
            .field("consumers", &self.consumers.len())
            .finish_non_exhaustive()
    }
}

impl<'a> ModuleContext<'a> {
    /// The context of service `name` on `database_url`.
    pub fn new(runtime: &'a Runtime, name: &'static str, database_url: &str) -> Self {
        Self {
            runtime,
            name,
            database_url: database_url.to_owned(),
            consumers: Vec::new(),
        }
    }

    /// The process's shared start-up dependencies.
    pub fn runtime(&self) -> &'a Runtime {
        self.runtime
    }

    /// The service's database URL (identity derives its default sealing key from it).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The service's name (its consumers' cursor key, its database file name).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Connects to the service's database, runs `M`'s migrations, and loads the ended sessions
    /// recorded there, so that their tokens are refused from the first request on.
    pub async fn database<M: MigratorTrait>(&self) -> Result<DatabaseConnection, DbErr> {
        let db = crate::db::open::<M>(&self.database_url).await?;
        self.prepare(&db).await?;
        Ok(db)
    }

    /// The same on an open, migrated connection (tests that share one).
    pub async fn prepare(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        self.runtime.revocations.load(db).await?;
        Ok(())
    }

    /// Subscribes to `producer`'s events, applied into `db` by `handler`. The host runs the
    /// consumer once the server listens; the handle tells how far it has applied.
    pub async fn subscribe(
        &mut self,
        db: &DatabaseConnection,
        producer: Producer,
        handler: Arc<dyn EventHandler>,
    ) -> Result<ConsumerHandle, DbErr> {
        let (consumer, handle) = self
            .runtime
            .consumer(self.name, db, producer, handler)
            .await?;
        self.consumers.push(consumer);
        Ok(handle)
    }

    /// Subscribes to identity's events for the ended sessions and deactivated keys only (what
    /// every service but identity needs from that stream when it needs nothing else).
    pub async fn subscribe_revocations(
        &mut self,
        db: &DatabaseConnection,
    ) -> Result<ConsumerHandle, DbErr> {
        let (consumer, handle) = self.runtime.revocation_consumer(self.name, db).await?;
        self.consumers.push(consumer);
        Ok(handle)
    }
}

/// One Orgplane service as the host runs it; see the module docs.
#[tonic::async_trait]
pub trait ServiceModule: Send + Sync + 'static {
    /// The service's name in configuration, logs, database file names and cursors.
    const NAME: &'static str;
    /// The service's own settings.
    type Config: Send + Sync;

    /// Opens the service: database, replicas, subscriptions (see [`ModuleContext`]).
    async fn open(ctx: &mut ModuleContext<'_>, config: &Self::Config) -> Result<Self, DbErr>
    where
        Self: Sized;

    /// Adds the service's gRPC services to `server`.
    async fn register(&self, server: &mut GrpcServer);

    /// The fully qualified gRPC service names whose readiness [`Self::readiness`] decides.
    fn grpc_services(&self) -> Vec<&'static str>;

    /// The outbox this service publishes through, if it produces events.
    fn outbox(&self) -> Option<Outbox> {
        None
    }

    /// When the service reports SERVING.
    fn readiness(&self) -> Readiness;

    /// Spawns the service's own background work (purges, key rotation, refreshes), ending on
    /// `shutdown`.
    fn spawn_background(&self, shutdown: &CancellationToken) {
        let _ = shutdown;
    }

    /// The service's HTTP routes (full paths, e.g. `/scim/v2/…`), served on the HTTP listener
    /// (see [`crate::http`]) where a standard demands HTTP; `None` (the default) for a service
    /// with none. Routes must not overlap another service's or `/healthz`, `/readyz`.
    fn http_routes(&self) -> Option<axum::Router> {
        None
    }
}

/// The object-safe face of a [`ServiceModule`] the host keeps.
#[tonic::async_trait]
trait Hosted: Send + Sync {
    fn name(&self) -> &'static str;
    async fn register(&self, server: &mut GrpcServer);
    fn grpc_services(&self) -> Vec<&'static str>;
    fn outbox(&self) -> Option<Outbox>;
    fn readiness(&self) -> Readiness;
    fn spawn_background(&self, shutdown: &CancellationToken);
    fn http_routes(&self) -> Option<axum::Router>;
}

#[tonic::async_trait]
impl<M: ServiceModule> Hosted for M {
    fn name(&self) -> &'static str {
        M::NAME
    }
    async fn register(&self, server: &mut GrpcServer) {
        ServiceModule::register(self, server).await;
    }
    fn grpc_services(&self) -> Vec<&'static str> {
        ServiceModule::grpc_services(self)
    }
    fn outbox(&self) -> Option<Outbox> {
        ServiceModule::outbox(self)
    }
    fn readiness(&self) -> Readiness {
        ServiceModule::readiness(self)
    }
    fn spawn_background(&self, shutdown: &CancellationToken) {
        ServiceModule::spawn_background(self, shutdown);
    }
    fn http_routes(&self) -> Option<axum::Router> {
        ServiceModule::http_routes(self)
    }
}

/// A service opened by [`Host::opening`]: the service and the consumers it subscribed, which
/// [`Host::add`] hands to the host.
pub struct Opening<M> {
    module: Arc<M>,
    consumers: Vec<Consumer>,
}

impl<M> std::fmt::Debug for Opening<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opening")
            .field("consumers", &self.consumers.len())
            .finish_non_exhaustive()
    }
}

/// The services of one process and their lifecycle; see the module docs.
pub struct Host {
    runtime: Runtime,
    modules: Vec<Arc<dyn Hosted>>,
    consumers: Vec<Consumer>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.modules.iter().map(|m| m.name()).collect();
        f.debug_struct("Host").field("modules", &names).finish()
    }
}

impl Host {
    /// A host of no services yet, sharing `runtime`.
    pub fn new(runtime: Runtime) -> Self {
        Self {
            runtime,
            modules: Vec::new(),
            consumers: Vec::new(),
        }
    }

    /// The shared runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Opens service `M` on `database_url` and adds it to the process. The returned handle is
    /// for callers that need the typed service (tests, the load generator).
    pub async fn open<M: ServiceModule>(
        &mut self,
        database_url: &str,
        config: &M::Config,
    ) -> Result<Arc<M>, DbErr>
    where
        M::Config: Clone + 'static,
    {
        let opening = self.opening::<M>(database_url, config.clone()).await?;
        Ok(self.add(opening))
    }

    /// Opens service `M` on `database_url` without adding it to the process yet: the future
    /// borrows nothing, so a process opens its services on tasks of their own, at once (each
    /// migrates its database and loads its replicas, seconds of work at a million members),
    /// then [`Host::add`]s them.
    pub fn opening<M: ServiceModule>(
        &self,
        database_url: &str,
        config: M::Config,
    ) -> impl Future<Output = Result<Opening<M>, DbErr>> + Send + 'static
    where
        M::Config: 'static,
    {
        let runtime = self.runtime.clone();
        let database_url = database_url.to_owned();
        async move {
            let mut ctx = ModuleContext::new(&runtime, M::NAME, &database_url);
            let module = Arc::new(M::open(&mut ctx, &config).await?);
            Ok(Opening {
                module,
                consumers: ctx.consumers,
            })
        }
    }

    /// Adds a service opened by [`Host::opening`] to the process.
    pub fn add<M: ServiceModule>(&mut self, opening: Opening<M>) -> Arc<M> {
        let Opening {
            module,
            mut consumers,
        } = opening;
        self.consumers.append(&mut consumers);
        self.modules.push(module.clone());
        module
    }

    /// Registers every service on `server`, then one `EventService` serving every outbox here.
    pub async fn register(&self, server: &mut GrpcServer) {
        let mut outboxes = Vec::new();
        for module in &self.modules {
            module.register(server).await;
            outboxes.extend(module.outbox());
        }
        if !outboxes.is_empty() {
            let events = EventServer::new(outboxes, server.shutdown_token())
                .with_backlog_reads(server.config().watch_backlog_reads)
                .with_replay_rate(server.config().watch_replay_rate);
            let service = crate::limit_messages!(EventServiceServer::new(events), server.config());
            server.add_ready_service(service).await;
        }
    }

    /// The HTTP routes of every service here, in one router; `None` when no service has any
    /// (then the process binds no HTTP listener).
    pub fn http_routes(&self) -> Option<axum::Router> {
        self.modules
            .iter()
            .filter_map(|module| module.http_routes())
            .reduce(axum::Router::merge)
    }

    /// Starts every service's background work and readiness policy (call it once the server
    /// listens: consumers of this process's own streams connect to it).
    pub fn start(self, health: &Health) {
        let shutdown = self.runtime.shutdown.clone();
        for consumer in self.consumers {
            tokio::spawn(consumer.run(shutdown.clone()));
        }
        for module in &self.modules {
            if let Some(outbox) = module.outbox() {
                outbox.spawn_compaction(DEFAULT_RETENTION, COMPACTION_INTERVAL, shutdown.clone());
            }
            module.spawn_background(&shutdown);
            spawn_readiness(module.as_ref(), health.clone(), shutdown.clone());
        }
    }
}

fn spawn_readiness(module: &dyn Hosted, health: Health, shutdown: CancellationToken) {
    let name = module.name();
    let services = module.grpc_services();
    let (streams, within) = match module.readiness() {
        Readiness::Immediate => (Vec::new(), None),
        Readiness::CaughtUp { streams, within } => (streams, within),
    };
    tokio::spawn(async move {
        let caught_up = async {
            for stream in &streams {
                wait_caught_up(name, stream).await;
            }
        };
        let on_time = match within {
            None => tokio::select! {
                _ = shutdown.cancelled() => return,
                () = caught_up => true,
            },
            Some(limit) => tokio::select! {
                _ = shutdown.cancelled() => return,
                waited = tokio::time::timeout(limit, caught_up) => waited.is_ok(),
            },
        };
        if !on_time {
            tracing::warn!(
                service = name,
                "an event stream has not caught up yet; serving anyway, its changes apply once it does"
            );
        }
        for service in services {
            health.set_ready(service, true).await;
        }
        tracing::info!(service = name, "ready");
    });
}

/// How often a service still waiting for a stream to catch up says so.
const STILL_WAITING_EVERY: Duration = Duration::from_secs(10);

/// Waits until `stream` has caught up, saying every [`STILL_WAITING_EVERY`] that `service` is
/// still waiting for it and why its stream last failed: a service that stays NOT_SERVING tells
/// its operator what it waits for.
async fn wait_caught_up(service: &str, stream: &ConsumerHandle) {
    let caught_up = stream.wait_caught_up();
    tokio::pin!(caught_up);
    let mut waited = Duration::ZERO;
    loop {
        match tokio::time::timeout(STILL_WAITING_EVERY, &mut caught_up).await {
            Ok(()) => return,
            Err(_) => {
                waited += STILL_WAITING_EVERY;
                let producer = crate::events::consumer::producer_name(stream.producer());
                let stats = stream.stats();
                tracing::warn!(
                    service,
                    producer,
                    waited_secs = waited.as_secs(),
                    applied = stream.applied_revision(),
                    head = stats
                        .head_revision
                        .load(std::sync::atomic::Ordering::Relaxed),
                    connects = stats.connects.load(std::sync::atomic::Ordering::Relaxed),
                    last_failure = stream.last_failure().as_deref().unwrap_or("none"),
                    "not ready yet: still waiting for an event stream to catch up"
                );
            }
        }
    }
}
