//! The SCIM rows (rule ID-14), re-exported by [`super::entity`]. Token secrets are stored as
//! SHA-256 digests only; a user's SCIM attributes are kept as the JSON the client sent (less
//! `id`, `meta`, `groups` and `password`), so what a client writes it reads back.

/// Rows of `scim_tokens`.
pub mod scim_token {
    use sea_orm::entity::prelude::*;

    /// A bearer token of one organization's SCIM client.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scim_tokens")]
    pub struct Model {
        /// `scimt_…`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The organization it provisions.
        pub organization_id: String,
        /// A name for people.
        pub display_name: String,
        /// SHA-256 (hex) of the secret.
        pub token_hash: String,
        /// `opscim_…x7Qa`.
        pub partial_hint: String,
        /// `ScimTokenState` as its number.
        pub state: i32,
        /// `userName` need not be of a VERIFIED domain (conformance testers).
        pub allow_unverified: bool,
        /// Who created it.
        pub creator_user_id: String,
        /// The CreateScimToken `request_id`, for idempotent retries.
        pub request_id: Option<String>,
        /// Incremented on every change (the etag).
        pub version: i64,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// Unix milliseconds.
        pub update_time_ms: i64,
        /// Unix milliseconds, about a minute accurate.
        pub last_used_ms: Option<i64>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `scim_settings`: one per organization that changed the defaults.
pub mod scim_settings {
    use sea_orm::entity::prelude::*;

    /// How an organization's SCIM groups become roles.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scim_settings")]
    pub struct Model {
        /// The organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// `OrgRole` of members in no mapped group, as its number.
        pub default_role: i32,
        /// The mappings, in order: JSON `[{"group": "…", "role": 2}, …]`.
        pub mappings: String,
        /// Incremented on every change (the etag).
        pub version: i64,
        /// Unix milliseconds.
        pub update_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `scim_users`: a SCIM User resource, one per (organization, account).
pub mod scim_user {
    use sea_orm::entity::prelude::*;

    /// One provisioned user of one organization.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scim_users")]
    pub struct Model {
        /// `scimu_…`: the SCIM `id`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The organization.
        pub organization_id: String,
        /// The account (`user_…`).
        pub user_id: String,
        /// `userName` as the client sent it.
        pub user_name: String,
        /// `userName` in the canonical email form (rule ID-15): unique per organization.
        pub user_name_key: String,
        /// The client's own id for the user.
        pub external_id: Option<String>,
        /// SCIM `active`: false means the membership is ended and the sessions revoked.
        pub active: bool,
        /// The other SCIM attributes, as JSON.
        pub resource: String,
        /// The `OrgRole` last owed to the organization (0 while inactive), as its number.
        pub applied_role: i32,
        /// Incremented on every change (the ETag `W/"<version>"`).
        pub version: i64,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// Unix milliseconds.
        pub update_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `scim_groups`.
pub mod scim_group {
    use sea_orm::entity::prelude::*;

    /// A SCIM Group resource of one organization.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scim_groups")]
    pub struct Model {
        /// `scimg_…`: the SCIM `id`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The organization.
        pub organization_id: String,
        /// `displayName` as sent.
        pub display_name: String,
        /// `displayName` lower-cased: unique per organization, and what mappings match.
        pub display_name_key: String,
        /// The client's own id for the group.
        pub external_id: Option<String>,
        /// Incremented on every change, members included (the ETag).
        pub version: i64,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// Unix milliseconds.
        pub update_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `scim_group_members`.
pub mod scim_group_member {
    use sea_orm::entity::prelude::*;

    /// One user in one group.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scim_group_members")]
    pub struct Model {
        /// The group (`scimg_…`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_id: String,
        /// The SCIM user (`scimu_…`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub scim_user_id: String,
        /// The organization of both.
        pub organization_id: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `scim_provisioning`: membership changes owed to the organization service.
pub mod scim_provisioning {
    use sea_orm::entity::prelude::*;

    /// One ProvisionMember or DeprovisionMember call, delivered exactly once per `request_id`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scim_provisioning")]
    pub struct Model {
        /// The call's `request_id` (`scim:<scim user id>:<version>`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        /// The organization.
        pub organization_id: String,
        /// The account.
        pub user_id: String,
        /// `provision` (with `role`, setting it) or `deprovision`.
        pub action: String,
        /// `OrgRole` as its number (0 for `deprovision`).
        pub role: i32,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// Delivery attempts so far.
        pub attempts: i32,
        /// Unix milliseconds: not retried before.
        pub next_attempt_ms: i64,
        /// When the organization service answered; `None` while owed.
        pub done_time_ms: Option<i64>,
        /// The last failure, for operators.
        pub last_error: Option<String>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
