//! `orgctl accounts …`: an organization's accounts and subaccounts (rules ACC-1 … ACC-5).

use clap::Subcommand;

use super::*;

/// `orgctl accounts …`.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create a managed account (OWNER or ADMIN); it takes the organization's compliance default.
    Create {
        /// The account's display name.
        name: String,
        /// Its owner, a member of the organization (default: you).
        #[arg(long, value_name = "USER_ID")]
        owner: Option<String>,
        #[command(flatten)]
        org: OrgArg,
    },
    /// Show an account.
    Get {
        /// The account's id (`acct_…`).
        account_id: String,
        /// Read it as this organization sees it (default: its home organization).
        #[arg(long, value_name = "ORG_ID")]
        through: Option<String>,
    },
    /// List an organization's accounts (open ones unless --state or --show-closed).
    List {
        #[command(flatten)]
        org: OrgArg,
        /// Only accounts of this type.
        #[arg(long = "type", value_enum)]
        account_type: Option<AccountListType>,
        /// Only accounts in this state.
        #[arg(long, value_enum, conflicts_with = "show_closed")]
        state: Option<AccountState>,
        /// Include closed accounts.
        #[arg(long)]
        show_closed: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Rename an account or flag its compliance designation (OWNER or ADMIN of its home).
    Update {
        /// The account's id.
        account_id: String,
        /// The new display name.
        #[arg(long)]
        name: Option<String>,
        /// The designation, set explicitly on this account.
        #[arg(long, value_enum)]
        compliance: Option<Compliance>,
    },
    /// Close a managed account for good, withdraw a pending import, or remove an independent
    /// account from the organization's list.
    Close {
        /// The account's id.
        account_id: String,
        /// The organization acting (default: the account's home).
        #[arg(long, value_name = "ORG_ID")]
        through: Option<String>,
    },
    /// Ask to import another organization's account; it is PENDING until its owner accepts.
    Import {
        /// The account's id.
        account_id: String,
        /// What it becomes once accepted.
        #[arg(long = "as", value_enum, default_value_t = ImportType::Managed)]
        import_type: ImportType,
        #[command(flatten)]
        org: OrgArg,
    },
    /// Accept, as the account's owner, an organization's import of your account.
    Accept {
        /// The account's id.
        account_id: String,
        /// The importing organization.
        #[arg(long = "into", value_name = "ORG_ID")]
        organization_id: String,
    },
    /// Give an account to another member of its home organization.
    Transfer {
        /// The account's id.
        account_id: String,
        /// The new owner's user id.
        new_owner_user_id: String,
    },
    /// Subaccounts: billed to their parent, which reaches all of them.
    #[command(subcommand)]
    Subaccounts(SubaccountsCommand),
    /// Members granted access to an account.
    #[command(subcommand)]
    Members(AccountMembersCommand),
    /// The organization's compliance default for accounts created from now on.
    #[command(subcommand)]
    Compliance(ComplianceCommand),
}

/// `orgctl accounts subaccounts …`.
#[derive(Debug, Subcommand)]
pub enum SubaccountsCommand {
    /// Create a subaccount (it takes its parent's compliance designation).
    Create {
        /// The parent account's id.
        parent_account_id: String,
        /// The subaccount's display name.
        name: String,
    },
    /// List an account's subaccounts.
    List {
        /// The parent account's id.
        parent_account_id: String,
        /// Include closed subaccounts.
        #[arg(long)]
        show_closed: bool,
        #[command(flatten)]
        page: PageArgs,
    },
}

/// `orgctl accounts members …`.
#[derive(Debug, Subcommand)]
pub enum AccountMembersCommand {
    /// Grant a member of the organization access to an account.
    Add {
        /// The account's id.
        account_id: String,
        /// The member's user id.
        user_id: String,
        #[command(flatten)]
        org: OrgArg,
    },
    /// List the members granted access to an account.
    List {
        /// The account's id.
        account_id: String,
        #[command(flatten)]
        org: OrgArg,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Withdraw a member's access to an account.
    Remove {
        /// The account's id.
        account_id: String,
        /// The member's user id.
        user_id: String,
        #[command(flatten)]
        org: OrgArg,
    },
}

/// `orgctl accounts compliance …`.
#[derive(Debug, Subcommand)]
pub enum ComplianceCommand {
    /// Show the organization's compliance default.
    Get {
        #[command(flatten)]
        org: OrgArg,
    },
    /// Set the default for accounts created from now on (existing ones keep theirs).
    Set {
        /// The designation.
        #[arg(value_enum)]
        designation: Compliance,
        #[command(flatten)]
        org: OrgArg,
    },
}
