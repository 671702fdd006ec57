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
}
