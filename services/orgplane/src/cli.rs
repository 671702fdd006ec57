//! Command line and environment configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use orgplane_platform::telemetry::LogFormat;

/// Orgplane: the organization control plane (identity, organization, workspace, billing-access).
#[derive(Debug, Parser)]
#[command(name = "orgplane", version, about)]
pub struct Cli {
    /// What to run; `all` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The address the gRPC server listens on.
    #[arg(
        long,
        env = "ORGPLANE_LISTEN",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub listen: SocketAddr,

    /// Where the default SQLite databases (and development mail) are kept.
    #[arg(
        long,
        env = "ORGPLANE_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// The identity database (default: SQLite file `<data-dir>/identity.db`).
    #[arg(long, env = "ORGPLANE_IDENTITY_DATABASE_URL", global = true)]
    pub identity_database_url: Option<String>,

    /// The organization database (default: `<data-dir>/organization.db`).
    #[arg(long, env = "ORGPLANE_ORGANIZATION_DATABASE_URL", global = true)]
    pub organization_database_url: Option<String>,

    /// The workspace database (default: `<data-dir>/workspace.db`).
    #[arg(long, env = "ORGPLANE_WORKSPACE_DATABASE_URL", global = true)]
    pub workspace_database_url: Option<String>,

    /// The billing-access database (default: `<data-dir>/billing-access.db`).
    #[arg(long, env = "ORGPLANE_BILLING_ACCESS_DATABASE_URL", global = true)]
    pub billing_access_database_url: Option<String>,

    /// URL of the identity service (default: this process's own address).
    #[arg(long, env = "ORGPLANE_IDENTITY_URL", global = true)]
    pub identity_url: Option<String>,

    /// URL of the organization service (default: this process's own address).
    #[arg(long, env = "ORGPLANE_ORGANIZATION_URL", global = true)]
    pub organization_url: Option<String>,

    /// URL of the workspace service (default: this process's own address).
    #[arg(long, env = "ORGPLANE_WORKSPACE_URL", global = true)]
    pub workspace_url: Option<String>,

    /// The `iss` of access tokens: identity issues them, every service checks it.
    #[arg(
        long,
        env = "ORGPLANE_ISSUER",
        default_value = "https://identity.orgplane.local",
        global = true
    )]
    pub issuer: String,

    /// This process's service account (client id) for internal calls.
    #[arg(
        long,
        env = "ORGPLANE_SERVICE_CLIENT_ID",
        default_value = "orgplane",
        global = true
    )]
    pub service_client_id: String,

    /// The secret of that service account.
    #[arg(
        long,
        env = "ORGPLANE_SERVICE_CLIENT_SECRET",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    pub service_client_secret: String,

    /// The key page tokens are signed with; every replica must share it (random when unset).
    #[arg(
        long,
        env = "ORGPLANE_PAGE_TOKEN_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub page_token_secret: Option<String>,

    /// The address of the HTTP listener (SCIM 2.0 under `/scim/v2`, `/healthz`, `/readyz`);
    /// `off` (or empty) disables it. Default: `127.0.0.1:50052` in `all`, off in `serve`. Bound
    /// only when a service run here has HTTP routes (identity).
    #[arg(long, env = "ORGPLANE_HTTP_LISTEN", global = true, value_parser = parse_http_listen)]
    pub http_listen: Option<HttpListen>,

    /// The largest HTTP request body, in bytes (larger ones get 413).
    #[arg(
        long,
        env = "ORGPLANE_HTTP_MAX_BODY_BYTES",
        default_value_t = 1024 * 1024,
        global = true
    )]
    pub http_max_body_bytes: usize,

    /// How long an HTTP request may take, in seconds, before it is answered 408 (body still
    /// arriving) or 503 (handler still working).
    #[arg(
        long,
        env = "ORGPLANE_HTTP_REQUEST_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    pub http_request_timeout_secs: u64,

    /// HTTP requests served at once; more wait up to 5 s (at most the timeout) for a slot, then
    /// get 503.
    #[arg(
        long,
        env = "ORGPLANE_HTTP_MAX_CONCURRENT_REQUESTS",
        default_value_t = 256,
        global = true
    )]
    pub http_max_concurrent_requests: usize,

    /// Database reads that event streams replaying a backlog make at once (per process); the
    /// other streams wait their turn, so that consumers catching up never take the database
    /// connections ordinary calls need. 0 lifts the bound.
    #[arg(
        long,
        env = "ORGPLANE_WATCH_BACKLOG_READS",
        default_value_t = orgplane_platform::events::watch::DEFAULT_BACKLOG_READS,
        global = true
    )]
    pub watch_backlog_reads: usize,

    /// Replayed (backlog) events per second that event streams send, all together (per
    /// process); streams that have caught up are not paced. Keeps consumers catching up from
    /// taking the CPU ordinary calls need. 0 lifts the pace.
    #[arg(
        long,
        env = "ORGPLANE_WATCH_REPLAY_RATE",
        default_value_t = orgplane_platform::events::watch::DEFAULT_REPLAY_RATE,
        global = true
    )]
    pub watch_replay_rate: usize,

    /// Serve Prometheus metrics (`/metrics`) on this address; off when unset.
    #[arg(long, env = "ORGPLANE_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// Log format.
    #[arg(
        long,
        env = "ORGPLANE_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// TLS of the listeners and internal clients.
    #[command(flatten, next_help_heading = "TLS")]
    pub tls: crate::tls::TlsArgs,

    /// Identity settings.
    #[command(flatten, next_help_heading = "Identity")]
    pub identity: orgplane_identity::Config,

    /// Organization settings.
    #[command(flatten, next_help_heading = "Organization")]
    pub organization: orgplane_organization::Config,

    /// Workspace settings.
    #[command(flatten, next_help_heading = "Workspace")]
    pub workspace: orgplane_workspace::Config,

    /// Billing-access settings.
    #[command(flatten, next_help_heading = "Billing access")]
    pub billing_access: orgplane_billing_access::Config,
}

/// The default HTTP address of `orgplane all`.
pub const DEFAULT_HTTP_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50052,
));

/// `--http-listen`: an address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpListen {
    /// No HTTP listener.
    Off,
    /// Listen here.
    At(SocketAddr),
}

fn parse_http_listen(value: &str) -> Result<HttpListen, String> {
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("off") {
        return Ok(HttpListen::Off);
    }
    value
        .parse()
        .map(HttpListen::At)
        .map_err(|e| format!("expected an address such as 127.0.0.1:50052, or `off`: {e}"))
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// All four services in one process, on one address.
    All,
    /// One service.
    Serve {
        /// The service to run.
        service: Service,
    },
    /// Run the database migrations of one service (or all) and exit.
    Migrate {
        /// The service whose database to migrate; all when omitted.
        service: Option<Service>,
    },
    /// Copy every SQLite database into a new directory while the services run, restorable
    /// together (see "Backup and restore" in the README).
    Backup {
        /// The directory to write the copies and `manifest.json` into; new or empty.
        #[arg(long)]
        to: PathBuf,
    },
    /// After restoring databases from separate backups (PostgreSQL point-in-time recovery) and
    /// before starting: make every consumer whose cursor is ahead of its producer's restored
    /// outbox re-sync from the producer's snapshot.
    ReconcileCursors,
    /// Ask this process's own gRPC server whether a service is SERVING (over TLS when the TLS
    /// options are set): the readiness and liveness probe where Kubernetes' gRPC probe cannot
    /// be used (it speaks no TLS). Exits 0 when SERVING, 1 otherwise.
    Health {
        /// The gRPC service to ask about (`liveness`, or a service name); the whole server when
        /// empty.
        #[arg(long, default_value = "")]
        service: String,
    },
}

/// One of the four services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// Users, credentials, tokens, API keys.
    Identity,
    /// Organizations, members, roles, invites, units, audit.
    Organization,
    /// Workspaces, workspace roles, access checks.
    Workspace,
    /// Billing access, billing accounts, usage and cost reports.
    BillingAccess,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 4] = [
        Service::Identity,
        Service::Organization,
        Service::Workspace,
        Service::BillingAccess,
    ];

    /// The service's name (also its SQLite file's name).
    pub fn name(self) -> &'static str {
        match self {
            Service::Identity => orgplane_identity::NAME,
            Service::Organization => orgplane_organization::NAME,
            Service::Workspace => orgplane_workspace::NAME,
            Service::BillingAccess => orgplane_billing_access::NAME,
        }
    }
}

impl Cli {
    /// The process's service name in traces and `orgplane_build_info`: `orgplane` for all four
    /// services in one process, `orgplane-<service>` for one.
    pub fn service_name(&self) -> String {
        match self.command {
            Some(Command::Serve { service }) => format!("orgplane-{}", service.name()),
            _ => "orgplane".to_owned(),
        }
    }

    /// Where the HTTP listener binds, if anywhere: the flag, else on by default only in `all`.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        match self.http_listen {
            Some(HttpListen::Off) => None,
            Some(HttpListen::At(addr)) => Some(addr),
            None => match self.command {
                None | Some(Command::All) => Some(DEFAULT_HTTP_LISTEN),
                Some(_) => None,
            },
        }
    }

    /// The HTTP listener's limits.
    pub fn http_config(&self) -> orgplane_platform::http::HttpConfig {
        orgplane_platform::http::HttpConfig {
            max_body_bytes: self.http_max_body_bytes,
            request_timeout: std::time::Duration::from_secs(self.http_request_timeout_secs.max(1)),
            max_concurrent_requests: self.http_max_concurrent_requests.max(1),
            ..Default::default()
        }
    }

    /// The database URL of `service`.
    pub fn database_url(&self, service: Service) -> String {
        let configured = match service {
            Service::Identity => &self.identity_database_url,
            Service::Organization => &self.organization_database_url,
            Service::Workspace => &self.workspace_database_url,
            Service::BillingAccess => &self.billing_access_database_url,
        };
        configured.clone().unwrap_or_else(|| {
            orgplane_platform::db::default_sqlite_url(&self.data_dir, service.name())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["orgplane", "serve", "billing-access"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Serve {
                service: Service::BillingAccess
            })
        ));
        assert!(
            cli.database_url(Service::BillingAccess)
                .ends_with("billing-access.db?mode=rwc")
        );
    }

    #[test]
    fn id_14_the_http_listener_is_on_in_all_and_off_in_serve_unless_set() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().http_addr();
        let default = Some(DEFAULT_HTTP_LISTEN);
        assert_eq!(default, Some("127.0.0.1:50052".parse().unwrap()));
        assert_eq!(parse(&["orgplane"]), default);
        assert_eq!(parse(&["orgplane", "all"]), default);
        assert_eq!(parse(&["orgplane", "serve", "identity"]), None);
        assert_eq!(
            parse(&[
                "orgplane",
                "serve",
                "identity",
                "--http-listen",
                "0.0.0.0:8080"
            ]),
            Some("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(parse(&["orgplane", "all", "--http-listen", "off"]), None);
        assert_eq!(parse(&["orgplane", "all", "--http-listen", ""]), None);
        assert_eq!(parse(&["orgplane", "--http-listen", "OFF", "all"]), None);
        assert!(Cli::try_parse_from(["orgplane", "all", "--http-listen", "nowhere"]).is_err());
    }

    #[test]
    fn id_14_the_http_limits_have_their_documented_defaults() {
        let config = Cli::try_parse_from(["orgplane"]).unwrap().http_config();
        assert_eq!(config.max_body_bytes, 1024 * 1024);
        assert_eq!(config.request_timeout, std::time::Duration::from_secs(30));
        let config = Cli::try_parse_from(["orgplane", "--http-max-body-bytes", "10"])
            .unwrap()
            .http_config();
        assert_eq!(config.max_body_bytes, 10);
    }
}
