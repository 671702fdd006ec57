//! The command line: every command, its arguments and its `--help` text. The top-level
//! commands and the options every command takes live here; each group of subcommands in a
//! module of its own.

mod account;
mod accounts;
mod org;
mod reports;
mod values;
mod workspace;

pub use account::*;
pub use accounts::*;
pub use org::*;
pub use reports::*;
pub use values::*;
pub use workspace::*;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

/// The heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// orgctl: operate Orgplane from a terminal.
#[derive(Debug, Parser)]
#[command(
    name = "orgctl",
    version,
    about = "Operate Orgplane from a terminal: contexts, sign-in, organizations, members, invites, accounts, workspaces, API keys, access checks, audit logs and billing reports.",
    long_about = "Operate Orgplane from a terminal: contexts, sign-in, organizations, members, invites, accounts, workspaces, API keys, access checks, audit logs and billing reports.\n\nStart with a context (a server and your credentials there), then sign in:\n\n  orgctl context add local --server http://127.0.0.1:50051\n  orgctl signup --email olivia@example.com --name 'Olivia Owner'\n  orgctl verify-email <token from the mail>\n  orgctl login olivia@example.com\n  orgctl org create Acme\n\nOutput is a table for people; `-o json` prints canonical proto3 JSON (lists as one array).\nExit codes: 0 success, 1 the server refused the request, 2 wrong command line, 3 local configuration (file, context, credentials), 4 server unreachable, 5 `check` denied.",
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// The context to use instead of the current one.
    #[arg(long, global = true, env = "ORGCTL_CONTEXT", value_name = "NAME", help_heading = GLOBAL)]
    pub context: Option<String>,

    /// The output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table, env = "ORGCTL_OUTPUT", help_heading = GLOBAL)]
    pub output: Format,

    /// An organization revision the server must have applied before answering (the `revision`
    /// a write printed, e.g. `invites accept`). orgctl already sends the revisions of this
    /// context's own recent writes.
    #[arg(
        long,
        global = true,
        value_name = "REVISION",
        env = "ORGCTL_MIN_ORG_REVISION",
        help_heading = GLOBAL
    )]
    pub min_org_revision: Option<i64>,

    /// How long to wait for each answer.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECONDS", help_heading = GLOBAL)]
    pub timeout: u64,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage contexts: servers and the credentials to use there.
    #[command(subcommand)]
    Context(ContextCommand),

    /// Create an account; a verification link is mailed to the address.
    ///
    /// The password is asked for (hidden), or read from the first line of standard input with
    /// `--password-stdin`. Business accounts may create organizations once verified; personal
    /// accounts join organizations by invitation.
    Signup(SignupArgs),

    /// Verify your email address with the token from the verification mail.
    ///
    /// TOKEN is the `token=` value of the mailed link; the whole link is accepted too.
    VerifyEmail {
        /// The token (or the whole verification link).
        #[arg(allow_hyphen_values = true)]
        token: String,
    },

    /// Mail a new verification link (earlier links stop working).
    ResendVerification {
        /// The account's address.
        email: String,
    },

    /// Sign in and store the session in the context.
    ///
    /// The password is asked for (hidden), or read from the first line of standard input with
    /// `--password-stdin`. When the account has a second factor, the authenticator code (or a
    /// recovery code) is asked for next, or read from the next line of standard input, or taken
    /// from `--mfa-code`. The access token is refreshed automatically while the session lasts.
    Login(LoginArgs),

    /// End the context's session and forget its tokens.
    Logout {
        /// End every session of the user, not just this one.
        #[arg(long)]
        all_sessions: bool,
    },

    /// Show who the context's credentials are.
    Whoami,

    /// Organizations: create, show, list, change, delete.
    #[command(subcommand, name = "org", visible_alias = "orgs")]
    Org(OrgCommand),

    /// An organization's members and their roles.
    #[command(subcommand)]
    Members(MembersCommand),

    /// Invitations to join an organization.
    #[command(subcommand)]
    Invites(InvitesCommand),

    /// Organizational units (a tree that groups workspaces).
    #[command(subcommand)]
    Units(UnitsCommand),

    /// Accounts and subaccounts: billing and application boundaries of an organization.
    #[command(subcommand, visible_alias = "acct")]
    Accounts(AccountsCommand),

    /// Workspaces and their members.
    #[command(subcommand, visible_alias = "ws")]
    Workspaces(WorkspacesCommand),

    /// API keys of an organization (the secret is shown once, at creation).
    #[command(subcommand)]
    ApiKeys(ApiKeysCommand),

    /// Ask whether a user or API key may do something in a workspace (CheckAccess).
    ///
    /// Prints the answer; exits 0 when allowed and 5 when denied. A signed-in user may check
    /// only their own access (`--user` defaults to the signed-in user); an API key its own.
    Check(CheckArgs),

    /// The audit trail: records of every service about an organization.
    #[command(subcommand)]
    Audit(AuditCommand),

    /// Billing account and usage/cost reports.
    #[command(subcommand)]
    Billing(BillingCommand),

    /// Print a shell completion script.
    ///
    /// bash: `source <(orgctl completion bash)`; zsh: `orgctl completion zsh > "${fpath[1]}/_orgctl"`;
    /// fish: `orgctl completion fish > ~/.config/fish/completions/orgctl.fish`;
    /// PowerShell: `orgctl completion powershell | Out-String | Invoke-Expression`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The organization a command is about.
#[derive(Debug, Args, Clone)]
pub struct OrgArg {
    /// The organization's id (default: the context's, see `orgctl context set-org`).
    #[arg(long, env = "ORGCTL_ORG", value_name = "ORG_ID")]
    pub org: Option<String>,
}

/// Paging of list commands.
#[derive(Debug, Args, Clone, Default)]
pub struct PageArgs {
    /// How many items per page (the server's default when omitted).
    #[arg(long, value_name = "N")]
    pub page_size: Option<i32>,
    /// Continue from the page token a previous list printed.
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    pub page_token: Option<String>,
    /// Follow every page and print all items.
    #[arg(long)]
    pub all: bool,
}
