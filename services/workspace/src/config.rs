//! The service's own settings (flags and environment variables of the `orgplane` binary), with
//! their defaults written once.

use clap::Args;

/// Default of [`Config::max_active_per_org`].
const MAX_ACTIVE_PER_ORG: i64 = 100;
/// Default of [`Config::refresh_interval_ms`].
const REFRESH_INTERVAL_MS: u64 = 500;

/// The service's own settings.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct Config {
    /// Most ACTIVE workspaces per organization (rule WS-1); archived ones do not count.
    #[arg(
        long = "workspace-max-active-per-org",
        env = "ORGPLANE_WORKSPACE_MAX_ACTIVE_PER_ORG",
        default_value_t = MAX_ACTIVE_PER_ORG
    )]
    pub max_active_per_org: i64,
    /// How often (milliseconds) a replica checks for writes made by other replicas of the
    /// workspace service on the same database.
    #[arg(
        long = "workspace-refresh-interval-ms",
        env = "ORGPLANE_WORKSPACE_REFRESH_INTERVAL_MS",
        default_value_t = REFRESH_INTERVAL_MS
    )]
    pub refresh_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_active_per_org: MAX_ACTIVE_PER_ORG,
            refresh_interval_ms: REFRESH_INTERVAL_MS,
        }
    }
}
