//! `orgctl workspaces` (and their members), `api-keys` and `check`.

use clap::{Args, Subcommand};

use super::*;

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
