//! `orgctl org`, `members`, `invites` and `units`.

use clap::Subcommand;

use super::*;

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
    /// Merge a candidate organization into a prime (OWNER of both, recent sign-in).
    ///
    /// With --preview, prints the conflicts and what would move without merging. The prime needs
    /// a verified domain holding your address, the candidate none.
    Merge {
        /// The organization that absorbs the other.
        prime_organization_id: String,
        /// The organization absorbed (it becomes MERGED).
        candidate_organization_id: String,
        /// Only compute and print the plan.
        #[arg(long)]
        preview: bool,
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
