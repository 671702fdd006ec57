//! The organization database: its sea-orm entities, their migrations ([`migration`]) and the
//! query helpers the use cases share ([`query`]). Times are Unix milliseconds; enums are stored
//! as their proto numbers; `version` counts changes and is the resource's etag (`v<version>`).

pub mod accounts;
pub mod domains;
pub mod email_keys;
pub mod merges;
pub mod migration;
pub mod profiles;
pub mod query;
pub mod settings;

pub use accounts::{account, account_entry, account_member, compliance_default};
pub use domains::domain;
pub use merges::merge_record;
pub use profiles::user_profile;
pub use settings::branding;

impl From<sea_orm::DbErr> for crate::domain::Error {
    fn from(e: sea_orm::DbErr) -> Self {
        crate::domain::Error::Api(e.into())
    }
}

/// Rows of `organizations`.
pub mod organization {
    use sea_orm::entity::prelude::*;

    /// One organization, ACTIVE, DELETED or MERGED (purged ones are gone).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "organizations")]
    pub struct Model {
        /// `org_…`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The display name as given (trimmed).
        pub name: String,
        /// The name lower-cased: uniqueness per creator and case-insensitive search.
        pub name_key: String,
        /// `OrganizationType` as its number.
        pub org_type: i32,
        /// The primary business email, or empty.
        pub primary_email: String,
        /// `OrganizationState` as its number.
        pub state: i32,
        /// The OWNER.
        pub owner_user_id: String,
        /// The account that created it, or for a child its operator's id: the name-uniqueness
        /// scope of ORG-1 (per creating account) and ORG-13 (per operator).
        pub creator_user_id: String,
        /// Created at.
        pub create_time_ms: i64,
        /// Last changed at.
        pub update_time_ms: i64,
        /// Soft-deleted at.
        pub delete_time_ms: Option<i64>,
        /// To be purged at.
        pub purge_time_ms: Option<i64>,
        /// Change counter (the etag).
        pub version: i64,
        /// `OrganizationKind` as its number (ORG-13).
        pub kind: i32,
        /// For a child organization, its operator's id; empty otherwise (ORG-13).
        pub operator_id: String,
        /// For a MERGED organization, the prime that absorbed it; empty otherwise (ORG-15).
        pub merged_into_id: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `members`.
pub mod member {
    use sea_orm::entity::prelude::*;

    /// One membership.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "members")]
    pub struct Model {
        /// The organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// The member.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// The member's verified email when they joined (identity emails never change), lower
        /// case; used to refuse invites to current members (ORG-6).
        pub email: String,
        /// `OrgRole` as its number.
        pub role: i32,
        /// Joined at (the list order, ties broken by user id).
        pub create_time_ms: i64,
        /// Role last changed at.
        pub update_time_ms: i64,
        /// Change counter (the etag).
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `invites`.
pub mod invite {
    use sea_orm::entity::prelude::*;

    /// One invite. EXPIRED is not stored: a PENDING invite past `expire_time_ms` is expired.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "invites")]
    pub struct Model {
        /// `inv_…`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The organization.
        pub organization_id: String,
        /// The invitee's address, lower case.
        pub email: String,
        /// `email` while the invite is pending (unique per organization), NULL otherwise.
        pub pending_key: Option<String>,
        /// `OrgRole` as its number.
        pub role: i32,
        /// `InviteState` as its number: PENDING, ACCEPTED or DELETED.
        pub state: i32,
        /// The user who sent it; empty when an admin API key did.
        pub inviter_user_id: String,
        /// Sent at.
        pub create_time_ms: i64,
        /// Acceptable until.
        pub expire_time_ms: i64,
        /// Accepted at.
        pub accept_time_ms: Option<i64>,
        /// Accepted by.
        pub accepted_user_id: String,
        /// Withdrawn at.
        pub delete_time_ms: Option<i64>,
        /// The admin API key that sent it; empty when a user did.
        pub inviter_api_key_id: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `units`.
pub mod unit {
    use sea_orm::entity::prelude::*;

    /// One organizational unit.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "units")]
    pub struct Model {
        /// `unit_…`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The organization.
        pub organization_id: String,
        /// The parent unit, or empty at the top level.
        pub parent_unit_id: String,
        /// The display name.
        pub name: String,
        /// 1 at the top level, at most 5.
        pub depth: i32,
        /// Created at.
        pub create_time_ms: i64,
        /// Last renamed or moved at.
        pub update_time_ms: i64,
        /// Change counter (the etag).
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `unit_workspaces`: which unit each workspace belongs to, from the workspace service's
/// events (ORG-9: a unit with workspaces cannot be deleted).
pub mod unit_workspace {
    use sea_orm::entity::prelude::*;

    /// One workspace that belongs to a unit (archived ones included).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "unit_workspaces")]
    pub struct Model {
        /// The workspace.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// Its organization.
        pub organization_id: String,
        /// Its unit.
        pub unit_id: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `security_policies`: an organization's own security policy (rule ORG-16). Its own
/// values are the `own_*` columns; an organization without a row, or an own value of 0, inherits
/// the field (rule ORG-13): its operator's value, else the system default. `mfa_requirement`,
/// `reauth_max_age_secs` and `sign_in_methods` hold the policy in force when the row was last
/// written, always complete: what the release before ORG-13 reads during a rolling update
/// (expand/contract; a later release may drop them).
pub mod security_policy {
    use sea_orm::entity::prelude::*;

    /// One organization's policy, as last changed by UpdateSecurityPolicy.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "security_policies")]
    pub struct Model {
        /// The organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// `MfaRequirement` as its number.
        pub mfa_requirement: i32,
        /// How old a sign-in may be for sensitive actions, in seconds.
        pub reauth_max_age_secs: i64,
        /// The allowed sign-in methods as the platform's bit set
        /// (`orgplane_platform::policy::SecurityPolicy::methods_bits`).
        pub sign_in_methods: i32,
        /// Change counter (the etag); 0 for the default policy, which has no row.
        pub version: i64,
        /// Last changed at.
        pub update_time_ms: i64,
        /// Invites only for addresses of the organization's VERIFIED domains (rule ORG-6).
        pub restrict_invites_to_verified_domains: bool,
        /// An operator's ENFORCED fields, comma-separated field names (ORG-13).
        pub enforced_fields: String,
        /// The organization's own `MfaRequirement` number; 0 inherits (ORG-13).
        pub own_mfa_requirement: i32,
        /// The organization's own re-authentication age in seconds; 0 inherits (ORG-13).
        pub own_reauth_max_age_secs: i64,
        /// The organization's own sign-in methods bit set; 0 inherits (ORG-13).
        pub own_sign_in_methods: i32,
    }

    impl Model {
        /// The policy as every service enforces it.
        pub fn policy(&self) -> orgplane_platform::policy::SecurityPolicy {
            orgplane_platform::policy::SecurityPolicy::from_parts(
                self.mfa_requirement,
                self.reauth_max_age_secs,
                self.sign_in_methods,
            )
        }
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `idempotency_keys` (AIP-155 `request_id`s of create calls).
pub mod idempotency {
    use sea_orm::entity::prelude::*;

    /// The resource a create call with a given request id produced.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        /// `method|actor|request_id`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// The organization (for purges).
        pub organization_id: String,
        /// The created resource's id.
        pub resource_id: String,
        /// When.
        pub create_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
