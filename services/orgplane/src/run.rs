//! Start-up: bind, build the shared runtime, migrate and open the chosen services, assemble one
//! gRPC server (and the HTTP listener when a service here has HTTP routes), serve, and start each
//! service's background work once the servers are listening.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use orgplane_platform::auth::Capabilities;
use orgplane_platform::auth::{Authenticator, CachedApiKeys, TokenVerifier};
use orgplane_platform::clients::ServiceTokenSource;
use orgplane_platform::clients::{IdentityServiceTokens, RemoteApiKeys, RemoteKeys, connect_lazy};
use orgplane_platform::host::{Host, Opening, ServiceModule};
use orgplane_platform::pagination::PageTokens;
use orgplane_platform::revocation::SessionRevocations;
use orgplane_platform::runtime::{Endpoints, Runtime, ServiceAccount};
use orgplane_platform::server::{GrpcServer, ServerConfig};
use tokio_util::task::AbortOnDropHandle;

use crate::cli::{Cli, Command, Service};

/// Runs what the command line asks for.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None | Some(Command::All) => serve(&cli, &Service::ALL).await,
        Some(Command::Serve { service }) => serve(&cli, &[service]).await,
        Some(Command::Migrate { service }) => migrate(&cli, service).await,
        Some(Command::Backup { ref to }) => {
            let manifest = crate::backup::backup(&cli, to, Default::default()).await?;
            for d in &manifest.databases {
                println!("copied {} ({} bytes)", d.service, d.bytes);
            }
            for r in &manifest.resync_requested {
                println!("re-sync requested on restore: {r}");
            }
            println!(
                "backup written to {} ({})",
                to.display(),
                crate::backup::MANIFEST
            );
            Ok(())
        }
        Some(Command::Health { ref service }) => crate::tls::probe(&cli, service).await,
        Some(Command::ReconcileCursors) => {
            let checks = crate::backup::reconcile(&cli).await?;
            for r in crate::backup::resets(&checks) {
                println!("re-sync requested: {r}");
            }
            println!("{} cursors checked", checks.len());
            Ok(())
        }
    }
}

async fn migrate(cli: &Cli, service: Option<Service>) -> anyhow::Result<()> {
    use orgplane_platform::db::{open, redact};
    let services = service
        .map(|s| vec![s])
        .unwrap_or_else(|| Service::ALL.to_vec());
    for s in services {
        let url = cli.database_url(s);
        let migrated = match s {
            Service::Identity => open::<orgplane_identity::migration::Migrator>(&url).await,
            Service::Organization => open::<orgplane_organization::migration::Migrator>(&url).await,
            Service::Workspace => open::<orgplane_workspace::migration::Migrator>(&url).await,
            Service::BillingAccess => {
                open::<orgplane_billing_access::migration::Migrator>(&url).await
            }
        };
        migrated.with_context(|| format!("migrating the {} database", s.name()))?;
        println!("migrated {} ({})", s.name(), redact(&url));
    }
    Ok(())
}

/// The services a process runs, opened (databases migrated, replicas loaded).
#[derive(Default)]
pub struct Opened {
    /// The identity service, when run.
    pub identity: Option<Arc<orgplane_identity::Identity>>,
    /// The organization service, when run.
    pub organization: Option<Arc<orgplane_organization::Organization>>,
    /// The workspace service, when run.
    pub workspace: Option<Arc<orgplane_workspace::Workspace>>,
    /// The billing-access service, when run.
    pub billing_access: Option<Arc<orgplane_billing_access::BillingAccess>>,
}

impl Opened {
    /// Opens `services` each on a task of its own, at once (at a million members each replica
    /// load is seconds of CPU), then adds them to `host` in [`Service::ALL`]'s order.
    async fn open(cli: &Cli, services: &[Service], host: &mut Host) -> anyhow::Result<Self> {
        use orgplane_billing_access::BillingAccess;
        use orgplane_identity::Identity;
        use orgplane_organization::Organization;
        use orgplane_workspace::Workspace;
        let identity =
            spawn_opening::<Identity>(cli, services, host, Service::Identity, &cli.identity);
        let organization = spawn_opening::<Organization>(
            cli,
            services,
            host,
            Service::Organization,
            &cli.organization,
        );
        let workspace =
            spawn_opening::<Workspace>(cli, services, host, Service::Workspace, &cli.workspace);
        let billing_access = spawn_opening::<BillingAccess>(
            cli,
            services,
            host,
            Service::BillingAccess,
            &cli.billing_access,
        );
        let (identity, organization, workspace, billing_access) = (
            opened(identity).await?,
            opened(organization).await?,
            opened(workspace).await?,
            opened(billing_access).await?,
        );
        Ok(Opened {
            identity: identity.map(|o| host.add(o)),
            organization: organization.map(|o| host.add(o)),
            workspace: workspace.map(|o| host.add(o)),
            billing_access: billing_access.map(|o| host.add(o)),
        })
    }
}

/// A task opening service `M` when `services` holds `service`; aborted when dropped unfinished
/// (another service failed to open).
fn spawn_opening<M: ServiceModule>(
    cli: &Cli,
    services: &[Service],
    host: &Host,
    service: Service,
    config: &M::Config,
) -> Option<AbortOnDropHandle<anyhow::Result<Opening<M>>>>
where
    M::Config: Clone + 'static,
{
    services.contains(&service).then(|| {
        let opening = host.opening::<M>(&cli.database_url(service), config.clone());
        AbortOnDropHandle::new(tokio::spawn(async move {
            opening
                .await
                .with_context(|| format!("opening the {} database", service.name()))
        }))
    })
}

async fn opened<M>(
    task: Option<AbortOnDropHandle<anyhow::Result<Opening<M>>>>,
) -> anyhow::Result<Option<Opening<M>>> {
    match task {
        None => Ok(None),
        Some(task) => Ok(Some(task.await.context("opening a service")??)),
    }
}

async fn serve(cli: &Cli, services: &[Service]) -> anyhow::Result<()> {
    let addrs: Vec<_> = [Some(cli.listen), cli.http_addr(), cli.metrics_listen]
        .into_iter()
        .flatten()
        .collect();
    cli.tls.check_plaintext(&addrs)?;
    let shutdown = orgplane_platform::server::shutdown_on_signal();
    let metrics = match cli.metrics_listen {
        Some(addr) => Some((
            addr,
            orgplane_platform::metrics::install(&cli.service_name())?,
        )),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let started = start(cli, services, listener, shutdown.clone()).await?;
    if let Some((addr, router)) = metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics listener {addr}"))?;
        let tls = started.tls.http.clone();
        tokio::spawn(async move {
            orgplane_platform::http::serve(listener, router, tls.as_ref(), shutdown).await
        });
    }
    print_banner(cli, services, &started);
    started.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

/// The services of one process, serving.
pub struct Started {
    /// Where the gRPC server listens.
    pub addr: std::net::SocketAddr,
    /// Where the HTTP listener listens: `None` when it is off or no service here has HTTP routes.
    pub http_addr: Option<std::net::SocketAddr>,
    /// The services, opened and started.
    pub opened: Opened,
    /// Per-service readiness.
    pub health: orgplane_platform::server::Health,
    /// TLS as configured.
    pub tls: crate::tls::Tls,
    serving: tokio::task::JoinHandle<Result<(), orgplane_platform::server::ServeError>>,
    http_serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Started {
    /// `https` when the listeners terminate TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.grpc.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Waits until the servers stopped (after the shutdown token was cancelled and the calls in
    /// flight drained).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.serving
            .await
            .context("server task")?
            .context("serving")?;
        if let Some(http) = self.http_serving {
            http.await
                .context("HTTP server task")?
                .context("serving HTTP")?;
        }
        Ok(())
    }
}

/// Opens `services` as the command line configures them (migrating their databases), serves them
/// on `listener` (and their HTTP routes on the command line's HTTP address, see
/// [`Cli::http_addr`]) until `shutdown` is cancelled, and starts their background work. Returns
/// once the servers are listening; readiness follows through `health`.
pub async fn start(
    cli: &Cli,
    services: &[Service],
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Started> {
    let local = listener.local_addr()?;
    let tls = cli.tls.load()?;
    let own = crate::tls::reachable(local);
    let (own_url, own_tls) = match tls.grpc {
        Some(_) => (format!("https://{own}"), tls.self_client()?),
        None => (format!("http://{own}"), tls.client.clone()),
    };
    let connect = |configured: &Option<String>| match configured {
        Some(url) => connect_lazy(url, Some(&tls.client)),
        None => connect_lazy(&own_url, Some(&own_tls)),
    };
    let endpoints = Endpoints {
        identity: connect(&cli.identity_url)?,
        organization: connect(&cli.organization_url)?,
        workspace: connect(&cli.workspace_url)?,
    };
    let service_account = ServiceAccount {
        client_id: cli.service_client_id.clone(),
        client_secret: if cli.service_client_secret.is_empty() {
            // Only an identity service in this same process can know a generated secret.
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            cli.service_client_secret.clone()
        },
        // What the services of this process call on the others: an identity service here
        // issues this account's tokens with exactly that.
        capabilities: services
            .iter()
            .filter_map(|s| Capabilities::of_service(s.name()))
            .fold(Capabilities::NONE, Capabilities::union),
    };
    let service_tokens: Arc<dyn ServiceTokenSource> = match cli.tls.certificate_identity() {
        Some(certificate) => certificate,
        None => Arc::new(IdentityServiceTokens::new(
            endpoints.identity.clone(),
            service_account.client_id.clone(),
            service_account.client_secret.clone(),
        )),
    };
    let page_tokens = match &cli.page_token_secret {
        Some(secret) if !secret.is_empty() => PageTokens::new(secret.as_bytes()),
        _ => {
            if services.len() < Service::ALL.len() {
                tracing::warn!(
                    "ORGPLANE_PAGE_TOKEN_SECRET is unset: page tokens are valid only on this replica"
                );
            }
            PageTokens::ephemeral()
        }
    };
    let mut server = GrpcServer::new(ServerConfig {
        watch_replay_rate: cli.watch_replay_rate,
        watch_backlog_reads: match cli.watch_backlog_reads {
            0 => usize::MAX,
            n => n,
        },
        ..ServerConfig::default()
    });
    if let Some(grpc) = &tls.grpc {
        server.with_tls(grpc.clone());
    }
    // One set per process: every service here feeds it, the one auth layer reads it.
    let revocations = SessionRevocations::new();
    let runtime = Runtime {
        issuer: cli.issuer.clone(),
        service_account,
        page_tokens,
        clock: orgplane_platform::clock::system(),
        service_tokens: service_tokens.clone(),
        endpoints: endpoints.clone(),
        shutdown: server.shutdown_token(),
        revocations: revocations.clone(),
    };

    let mut host = Host::new(runtime.clone());
    let opened = Opened::open(cli, services, &mut host).await?;
    host.register(&mut server).await;

    let verifier = TokenVerifier::new(
        cli.issuer.clone(),
        Arc::new(RemoteKeys::new(endpoints.identity.clone())),
    );
    let api_keys = CachedApiKeys::new(
        Arc::new(RemoteApiKeys::new(
            endpoints.identity.clone(),
            service_tokens,
        )),
        Duration::from_secs(10),
    )
    .with_revocations(revocations.clone());
    let mut auth = Authenticator::new(Arc::new(verifier), Some(Arc::new(api_keys)))
        .with_revocations(revocations);
    if tls.settings.client_ca.is_some() {
        auth = auth.with_client_certificates(tls.accounts.clone(), tls.settings.client_auth);
    }

    let health = server.health();
    let http = match (host.http_routes(), cli.http_addr()) {
        (Some(routes), Some(addr)) => {
            let http_listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTP listener {addr}"))?;
            let app = orgplane_platform::http::app(routes, health.clone(), &cli.http_config());
            Some((http_listener.local_addr()?, http_listener, app))
        }
        _ => None,
    };
    let (http_addr, http_serving) = match http {
        Some((addr, http_listener, app)) => {
            let token = shutdown.clone();
            let http_tls = tls.http.clone();
            let task = tokio::spawn(async move {
                orgplane_platform::http::serve(http_listener, app, http_tls.as_ref(), token).await
            });
            (Some(addr), Some(task))
        }
        None => (None, None),
    };
    let serving = tokio::spawn(async move { server.serve(listener, auth, shutdown).await });
    host.start(&health);
    Ok(Started {
        addr: local,
        http_addr,
        opened,
        health,
        tls,
        serving,
        http_serving,
    })
}

fn print_banner(cli: &Cli, services: &[Service], started: &Started) {
    let addr = started.addr;
    let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
    let scheme = started.scheme();
    let transport = match (&started.tls.grpc, &started.tls.settings.client_ca) {
        (None, _) => "gRPC, plaintext",
        (Some(_), None) => "gRPC over TLS",
        (Some(_), Some(_)) => "gRPC over mutual TLS",
    };
    let databases: Vec<String> = services
        .iter()
        .map(|&s| {
            format!(
                "{}={}",
                s.name(),
                orgplane_platform::db::redact(&cli.database_url(s))
            )
        })
        .collect();
    let http = started.http_addr.map(|a| format!("{scheme}://{a}"));
    let metrics = cli
        .metrics_listen
        .map(|a| format!("{scheme}://{a}/metrics"));
    if cli.log_format == orgplane_platform::telemetry::LogFormat::Json {
        // One JSON line like every other: a log pipeline parses all of stdout.
        tracing::info!(
            target: "orgplane::start",
            version = env!("CARGO_PKG_VERSION"),
            services = %names.join(","),
            addr = %addr,
            transport,
            http = http.as_deref().unwrap_or_default(),
            metrics = metrics.as_deref().unwrap_or_default(),
            databases = %databases.join(" "),
            "serving"
        );
        return;
    }
    for &s in services {
        println!(
            "  {:<15} database {}",
            s.name(),
            orgplane_platform::db::redact(&cli.database_url(s))
        );
    }
    if let Some(metrics) = &metrics {
        println!("  metrics         {metrics}");
    }
    if let Some(http) = &http {
        println!("  http            {http} (/healthz, /readyz)");
        if started.opened.identity.is_some() {
            println!("  scim            {http}/scim/v2");
        }
    }
    println!(
        "orgplane {} serving {} on {addr} ({transport}; health and reflection enabled)",
        env!("CARGO_PKG_VERSION"),
        names.join(", ")
    );
    tracing::info!(%addr, http_addr = ?started.http_addr, services = ?names, "serving");
}
