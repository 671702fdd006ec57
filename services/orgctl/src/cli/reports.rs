//! `orgctl audit` and `billing`: the records and the reports.

use clap::{Args, Subcommand};

use super::*;

/// Filters of the audit commands.
#[derive(Debug, Args, Clone)]
pub struct AuditFilterArgs {
    #[command(flatten)]
    pub org: OrgArg,
    /// Which service's log to read (default: all four, merged newest first).
    #[arg(long, value_enum, default_value_t = AuditService::All)]
    pub service: AuditService,
    /// Only records of this action (e.g. `member.update_role`).
    #[arg(long)]
    pub action: Option<String>,
    /// Only records of this actor id.
    #[arg(long, value_name = "ID")]
    pub actor: Option<String>,
    /// Only records of this kind of actor.
    #[arg(long, value_enum)]
    pub actor_kind: Option<ActorKind>,
    /// Only records about this resource type (e.g. `workspace`).
    #[arg(long)]
    pub resource_type: Option<String>,
    /// Only records about this resource id.
    #[arg(long, value_name = "ID")]
    pub resource: Option<String>,
    /// Only successes or only failures.
    #[arg(long, value_enum)]
    pub outcome: Option<Outcome>,
    /// Only records of the call with this request id.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Only records at or after this time: RFC 3339, or an age such as `30m`, `2h`, `7d`.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

/// `orgctl audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit records, newest first.
    List {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Only records before this time: RFC 3339, or an age such as `1h`.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Print the newest records, then follow new ones as they are written (Ctrl-C stops).
    Tail {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// How many existing records to print first.
        #[arg(long, default_value_t = 10, value_name = "N")]
        lines: usize,
        /// How often to look for new records.
        #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
        interval: f64,
        /// Stop after printing this many records in all.
        #[arg(long, value_name = "N")]
        max_records: Option<usize>,
    },
}

/// `orgctl billing …`.
#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// Show the organization's billing account (plan, billing email, seats).
    Account {
        #[command(flatten)]
        org: OrgArg,
    },
    /// Token usage over a time range, in buckets (OWNER, ADMIN or BILLING).
    ///
    /// The whole range is fetched (every page) unless --page-size or --page-token is given.
    Usage {
        #[command(flatten)]
        org: OrgArg,
        #[command(flatten)]
        range: RangeArgs,
        /// The bucket width.
        #[arg(long, value_enum, default_value_t = Bucket::Day)]
        bucket: Bucket,
        /// Split the totals by these dimensions.
        #[arg(long, value_enum, value_delimiter = ',')]
        group_by: Vec<UsageDimension>,
        /// Only usage of these workspaces.
        #[arg(long = "workspace", value_name = "WORKSPACE_ID")]
        workspaces: Vec<String>,
        /// Only usage of these models.
        #[arg(long = "model")]
        models: Vec<String>,
        /// Only usage of these accounts (an account includes its subaccounts).
        #[arg(long = "account", value_name = "ACCOUNT_ID")]
        accounts: Vec<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// The cost of usage over a time range, in daily buckets (OWNER, ADMIN or BILLING).
    ///
    /// Priced from the server's price table. The whole range is fetched (every page) unless
    /// --page-size or --page-token is given.
    Cost {
        #[command(flatten)]
        org: OrgArg,
        #[command(flatten)]
        range: RangeArgs,
        /// Split the totals by these dimensions.
        #[arg(long, value_enum, value_delimiter = ',')]
        group_by: Vec<CostDimension>,
        /// Only usage of these workspaces.
        #[arg(long = "workspace", value_name = "WORKSPACE_ID")]
        workspaces: Vec<String>,
        /// Only usage of these accounts (an account includes its subaccounts).
        #[arg(long = "account", value_name = "ACCOUNT_ID")]
        accounts: Vec<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

/// A report's time range.
#[derive(Debug, Args, Clone)]
pub struct RangeArgs {
    /// The start: RFC 3339 or an age such as `7d` (default: 30 days ago).
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// The end: RFC 3339 or an age (default: now).
    #[arg(long, value_name = "TIME")]
    pub end: Option<String>,
}
