//! The command line: every command, its arguments and its `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::Format;

/// The heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// orgctl: operate Orgplane from a terminal.
#[derive(Debug, Parser)]
#[command(
    name = "orgctl",
    version,
    about = "Operate Orgplane from a terminal: contexts, sign-in, organizations, members, invites, workspaces, API keys, access checks, audit logs and billing reports.",
    long_about = "Operate Orgplane from a terminal: contexts, sign-in, organizations, members, invites, workspaces, API keys, access checks, audit logs and billing reports.\n\nStart with a context (a server and your credentials there), then sign in:\n\n  orgctl context add local --server http://127.0.0.1:50051\n  orgctl signup --email olivia@example.com --name 'Olivia Owner'\n  orgctl verify-email <token from the mail>\n  orgctl login olivia@example.com\n  orgctl org create Acme\n\nOutput is a table for people; `-o json` prints canonical proto3 JSON (lists as one array).\nExit codes: 0 success, 1 the server refused the request, 2 wrong command line, 3 local configuration (file, context, credentials), 4 server unreachable, 5 `check` denied.",
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

/// `orgctl context …`.
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Add a context (a server and its TLS settings); the first one becomes current.
    ///
    /// `http://` servers are plaintext gRPC (loopback and development); `https://` servers use
    /// TLS, verified against --ca-cert or the Web PKI roots, with an optional client
    /// certificate for mutual TLS.
    Add {
        /// The context's name.
        name: String,
        /// The gRPC URL, e.g. http://127.0.0.1:50051 or https://orgplane.example.com.
        #[arg(long, value_name = "URL")]
        server: String,
        /// CA certificates (PEM) that verify an https:// server.
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// A client certificate chain (PEM) for mutual TLS.
        #[arg(long, value_name = "FILE", requires = "client_key")]
        client_cert: Option<PathBuf>,
        /// The client certificate's private key (PEM).
        #[arg(long, value_name = "FILE", requires = "client_cert")]
        client_key: Option<PathBuf>,
        /// Replace an existing context of this name (its credentials are dropped).
        #[arg(long)]
        force: bool,
    },
    /// Make a context the current one.
    Use {
        /// The context's name.
        name: String,
    },
    /// List the contexts; `*` marks the current one.
    List,
    /// Delete a context and its credentials.
    Delete {
        /// The context's name.
        name: String,
    },
    /// Show a context (the current one by default), without secrets.
    Show {
        /// The context's name.
        name: Option<String>,
    },
    /// Set the organization commands use when `--org` is not given.
    SetOrg {
        /// The organization's id; omit it to clear.
        organization_id: Option<String>,
    },
    /// Store non-session credentials: an API key or a service token, read from standard input.
    ///
    /// An admin API key (`opk_admin_…`) acts with ADMIN rights in its organization. A service
    /// token is sent as a bearer token as is; with `--client-id` and `--client-secret-stdin`
    /// orgctl mints a fresh service token (IssueServiceToken) for every command instead.
    SetCredentials(SetCredentialsArgs),
}

/// `orgctl context set-credentials`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("credential").required(true).multiple(false).args(["api_key_stdin", "service_token_stdin", "client_id"])))]
pub struct SetCredentialsArgs {
    /// Read an API key from the first line of standard input.
    #[arg(long)]
    pub api_key_stdin: bool,
    /// Read a service token from the first line of standard input.
    #[arg(long)]
    pub service_token_stdin: bool,
    /// A service account's client id; its secret is read from standard input.
    #[arg(long, requires = "client_secret_stdin", value_name = "ID")]
    pub client_id: Option<String>,
    /// Read the service account's secret from the first line of standard input.
    #[arg(long, requires = "client_id")]
    pub client_secret_stdin: bool,
}

/// `orgctl signup`.
#[derive(Debug, Args)]
pub struct SignupArgs {
    /// The sign-in address; the verification link is mailed to it.
    #[arg(long)]
    pub email: String,
    /// The name other members see.
    #[arg(long)]
    pub name: String,
    /// Business accounts may create organizations; personal accounts join by invitation.
    #[arg(long, value_enum, default_value_t = AccountType::Business)]
    pub account_type: AccountType,
    /// Read the password from the first line of standard input instead of asking.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `orgctl login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The sign-in address (asked for when omitted).
    pub email: Option<String>,
    /// Read the password (and then an MFA code, when asked) from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The authenticator code (or a recovery code), when the account has a second factor.
    #[arg(long, value_name = "CODE", allow_hyphen_values = true)]
    pub mfa_code: Option<String>,
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

/// `orgctl org …`.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization; you become its OWNER (needs a verified business account).
    Create {
        /// The organization's name.
        name: String,
        /// What kind of organization it is.
        #[arg(long = "type", value_enum, default_value_t = OrgType::Company)]
        org_type: OrgType,
        /// A contact address for the organization.
        #[arg(long)]
        primary_email: Option<String>,
        /// Make it the context's default organization (it becomes the default anyway when the
        /// context has none).
        #[arg(long)]
        set_default: bool,
    },
    /// Show an organization.
    Get {
        /// The organization's id (default: `--org` or the context's).
        organization_id: Option<String>,
    },
    /// List the organizations you are a member of.
    List {
        /// Only names containing this text.
        #[arg(long)]
        name_contains: Option<String>,
        /// Include deleted organizations (you own).
        #[arg(long)]
        show_deleted: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change an organization's name, type or primary email (OWNER or ADMIN).
    Update {
        /// The organization's id (default: `--org` or the context's).
        organization_id: Option<String>,
        /// The new name.
        #[arg(long)]
        name: Option<String>,
        /// The new type.
        #[arg(long = "type", value_enum)]
        org_type: Option<OrgType>,
        /// The new primary email.
        #[arg(long)]
        primary_email: Option<String>,
    },
    /// Delete an organization (OWNER, recent sign-in); it is purged 7 days later.
    Delete {
        /// The organization's id.
        organization_id: String,
        /// The organization's exact name, as confirmation.
        #[arg(long, value_name = "NAME")]
        confirm: String,
    },
}

/// `orgctl members …`.
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// List an organization's members with their roles.
    List {
        #[command(flatten)]
        org: OrgArg,
        /// Only members with this role.
        #[arg(long, value_enum)]
        role: Option<OrgRole>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change a member's organization role (OWNER or ADMIN).
    SetRole {
        /// The member's user id.
        user_id: String,
        /// The new role.
        #[arg(value_enum)]
        role: OrgRole,
        #[command(flatten)]
        org: OrgArg,
    },
    /// Remove a member from the organization (and its workspaces).
    Remove {
        /// The member's user id.
        user_id: String,
        #[command(flatten)]
        org: OrgArg,
    },
}

/// `orgctl invites …`.
#[derive(Debug, Subcommand)]
pub enum InvitesCommand {
    /// Invite an address to join with a role; the invitation is mailed.
    Create {
        /// The invitee's address.
        email: String,
        /// The role they get when they accept.
        #[arg(long, value_enum, default_value_t = OrgRole::User)]
        role: OrgRole,
        #[command(flatten)]
        org: OrgArg,
    },
    /// List an organization's invites.
    List {
        #[command(flatten)]
        org: OrgArg,
        /// Only invites in this state.
        #[arg(long, value_enum)]
        state: Option<InviteState>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Withdraw a pending invite.
    Revoke {
        /// The invite's id (`inv_…`).
        invite_id: String,
    },
    /// Accept an invite addressed to you; prints the revision that carries your new role.
    ///
    /// TOKEN is the invite id from the mailed link (`…/invites/inv_…`); the whole link is
    /// accepted too.
    Accept {
        /// The invite id (or the whole invitation link).
        #[arg(allow_hyphen_values = true)]
        token: String,
    },
}

/// `orgctl units …`.
#[derive(Debug, Subcommand)]
pub enum UnitsCommand {
    /// Create a unit (under --parent, else at the top).
    Create {
        /// The unit's name.
        name: String,
        /// The parent unit's id.
        #[arg(long, value_name = "UNIT_ID")]
        parent: Option<String>,
        #[command(flatten)]
        org: OrgArg,
    },
    /// List units (the children of --parent, else the top-level ones).
    List {
        /// The parent unit's id.
        #[arg(long, value_name = "UNIT_ID")]
        parent: Option<String>,
        #[command(flatten)]
        org: OrgArg,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Delete a unit without children or workspaces.
    Delete {
        /// The unit's id.
        unit_id: String,
    },
}

/// `orgctl workspaces …`.
#[derive(Debug, Subcommand)]
pub enum WorkspacesCommand {
    /// Create a workspace in an organization (OWNER or ADMIN).
    Create {
        /// The workspace's name.
        name: String,
        /// The unit it belongs to.
        #[arg(long, value_name = "UNIT_ID")]
        unit: Option<String>,
        #[command(flatten)]
        org: OrgArg,
    },
    /// List an organization's workspaces.
    List {
        #[command(flatten)]
        org: OrgArg,
        /// Include archived workspaces.
        #[arg(long)]
        include_archived: bool,
        /// Only workspaces of this unit.
        #[arg(long, value_name = "UNIT_ID")]
        unit: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a workspace.
    Get {
        /// The workspace's id.
        workspace_id: String,
    },
    /// Archive a workspace: it becomes read-only and grants no access.
    Archive {
        /// The workspace's id.
        workspace_id: String,
    },
    /// A workspace's members and their workspace roles.
    #[command(subcommand)]
    Members(WorkspaceMembersCommand),
}

/// `orgctl workspaces members …`.
#[derive(Debug, Subcommand)]
pub enum WorkspaceMembersCommand {
    /// Give an organization member a role in a workspace.
    Add {
        /// The workspace's id.
        workspace_id: String,
        /// The member's user id.
        user_id: String,
        /// The workspace role.
        #[arg(long, value_enum, default_value_t = WorkspaceRole::Developer)]
        role: WorkspaceRole,
    },
    /// List a workspace's members with their effective roles.
    List {
        /// The workspace's id.
        workspace_id: String,
        /// Only members with this role.
        #[arg(long, value_enum)]
        role: Option<WorkspaceRole>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change a member's direct workspace role.
    SetRole {
        /// The workspace's id.
        workspace_id: String,
        /// The member's user id.
        user_id: String,
        /// The new role.
        #[arg(value_enum)]
        role: WorkspaceRole,
    },
    /// Remove a member's direct workspace role.
    Remove {
        /// The workspace's id.
        workspace_id: String,
        /// The member's user id.
        user_id: String,
    },
}

/// `orgctl api-keys …`.
#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Create an API key and print its secret (shown this once).
    ///
    /// Admin keys act with ADMIN rights in the organization (OWNER or ADMIN with a recent
    /// sign-in); workspace keys work in one workspace (--workspace; the Default Workspace
    /// without it).
    Create {
        /// A name for people.
        name: String,
        /// What the key is for.
        #[arg(long, value_enum, default_value_t = ApiKeyKind::Workspace)]
        kind: ApiKeyKind,
        /// The workspace of a workspace key.
        #[arg(long, value_name = "WORKSPACE_ID")]
        workspace: Option<String>,
        #[command(flatten)]
        org: OrgArg,
    },
    /// List an organization's API keys (never their secrets), newest first.
    List {
        #[command(flatten)]
        org: OrgArg,
        /// Only keys in this status.
        #[arg(long, value_enum)]
        status: Option<ApiKeyStatus>,
        /// Only keys of this kind.
        #[arg(long, value_enum)]
        kind: Option<ApiKeyKind>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revoke an API key: it becomes INACTIVE and is refused everywhere within moments.
    Revoke {
        /// The key's id (`key_…`).
        api_key_id: String,
    },
}

/// `orgctl check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub org: OrgArg,
    /// The workspace (empty: the organization's Default Workspace).
    #[arg(long, value_name = "WORKSPACE_ID")]
    pub workspace: Option<String>,
    /// The user to check (default: the signed-in user).
    #[arg(long, value_name = "USER_ID", conflicts_with = "api_key")]
    pub user: Option<String>,
    /// The API key to check.
    #[arg(long, value_name = "KEY_ID")]
    pub api_key: Option<String>,
    /// What they want to do.
    #[arg(long, value_enum, default_value_t = Permission::Use)]
    pub permission: Permission,
    /// A workspace revision the answer must reflect (the `workspaceRevision` of a write).
    #[arg(long, value_name = "REVISION")]
    pub min_workspace_revision: Option<i64>,
}

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

/// Declares a clap value enum mapped onto a proto enum's values.
macro_rules! proto_enum {
    ($(#[$meta:meta])* $name:ident => $proto:ty { $($(#[$vmeta:meta])* $variant:ident => $value:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl From<$name> for $proto {
            fn from(v: $name) -> $proto {
                match v {
                    $($name::$variant => <$proto>::$value),+
                }
            }
        }

        impl $name {
            /// The proto enum's number.
            pub fn number(self) -> i32 {
                <$proto>::from(self) as i32
            }
        }
    };
}

use orgplane_proto::audit::v1 as audit_pb;
use orgplane_proto::billing::v1 as billing_pb;
use orgplane_proto::identity::v1 as identity_pb;
use orgplane_proto::organization::v1 as org_pb;
use orgplane_proto::workspace::v1 as ws_pb;

proto_enum!(
    /// A kind of account.
    AccountType => identity_pb::AccountType {
        /// May create and own organizations.
        Business => Business,
        /// Joins organizations by invitation.
        Personal => Personal,
    }
);

proto_enum!(
    /// An organization role.
    OrgRole => org_pb::OrgRole {
        /// Owns the organization (changes only by transfer).
        Owner => Owner,
        /// Administers the organization.
        Admin => Admin,
        /// Manages billing.
        Billing => Billing,
        /// Develops in the workspaces they are given.
        Developer => Developer,
        /// Uses the workspaces they are given.
        User => User,
    }
);

proto_enum!(
    /// A kind of organization.
    OrgType => org_pb::OrganizationType {
        /// A company.
        Company => Company,
        /// A nonprofit.
        Nonprofit => Nonprofit,
        /// A government body.
        Government => Government,
        /// An education institution.
        Education => Education,
        /// Something else.
        Other => Other,
    }
);

proto_enum!(
    /// An invite's state.
    InviteState => org_pb::InviteState {
        /// Waiting for the invitee.
        Pending => Pending,
        /// Accepted.
        Accepted => Accepted,
        /// Expired unaccepted.
        Expired => Expired,
        /// Withdrawn.
        Deleted => Deleted,
    }
);

proto_enum!(
    /// A workspace role.
    WorkspaceRole => ws_pb::WorkspaceRole {
        /// Administers the workspace.
        Admin => Admin,
        /// Develops in the workspace.
        Developer => Developer,
        /// Uses the workspace.
        User => User,
        /// Sees the workspace's billing.
        Billing => Billing,
    }
);

proto_enum!(
    /// What CheckAccess asks about.
    Permission => ws_pb::Permission {
        /// Read the workspace.
        Read => Read,
        /// Use the workspace's product.
        Use => Use,
        /// Develop in the workspace.
        Develop => Develop,
        /// See its billing.
        Billing => Billing,
        /// Administer it.
        Admin => Admin,
    }
);

proto_enum!(
    /// A kind of API key.
    ApiKeyKind => identity_pb::ApiKeyKind {
        /// ADMIN rights in the organization.
        Admin => Admin,
        /// One workspace.
        Workspace => Workspace,
    }
);

proto_enum!(
    /// An API key's status.
    ApiKeyStatus => identity_pb::ApiKeyStatus {
        /// Accepted.
        Active => Active,
        /// Refused.
        Inactive => Inactive,
    }
);

proto_enum!(
    /// A kind of audit actor.
    ActorKind => audit_pb::ActorKind {
        /// A signed-in user.
        User => User,
        /// An API key.
        ApiKey => ApiKey,
        /// A service account.
        Service => Service,
        /// Orgplane itself.
        System => System,
        /// An operator organization.
        Operator => Operator,
    }
);

proto_enum!(
    /// An audit record's outcome.
    Outcome => audit_pb::Outcome {
        /// Succeeded.
        Success => Success,
        /// Was refused.
        Failure => Failure,
    }
);

proto_enum!(
    /// A usage report's bucket width.
    Bucket => billing_pb::BucketWidth {
        /// One minute.
        Minute => OneMinute,
        /// One hour.
        Hour => OneHour,
        /// One day.
        Day => OneDay,
    }
);

proto_enum!(
    /// A usage report dimension.
    UsageDimension => billing_pb::UsageDimension {
        /// By workspace.
        Workspace => Workspace,
        /// By API key.
        ApiKey => ApiKey,
        /// By model.
        Model => Model,
        /// By user.
        User => User,
    }
);

proto_enum!(
    /// A cost report dimension.
    CostDimension => billing_pb::CostDimension {
        /// By workspace.
        Workspace => Workspace,
        /// By description (model and token type).
        Description => Description,
    }
);

/// Which service's audit log to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditService {
    /// All four, merged newest first.
    All,
    /// The identity service (API keys, admin credential resets).
    Identity,
    /// The organization service (organizations, members, invites, units, policies).
    Organization,
    /// The workspace service (workspaces and their members).
    Workspace,
    /// The billing-access service (billing accounts).
    Billing,
}
