//! The workspace service's tables, as sea-orm entities.

/// Rows of `workspaces`.
pub mod workspace {
    use sea_orm::entity::prelude::*;

    /// A workspace (the Default Workspace has no row).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workspaces")]
    pub struct Model {
        /// `wrkspc_<uuidv7>`: sorts by creation time.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The organization it belongs to.
        pub organization_id: String,
        /// The display name.
        pub name: String,
        /// The name folded to lower case, unique among the org's ACTIVE workspaces.
        pub name_key: String,
        /// The organizational unit; empty for none.
        pub unit_id: String,
        /// `WorkspaceState` as its number.
        pub state: i32,
        /// Creation time (Unix milliseconds).
        pub create_time_ms: i64,
        /// Last change (Unix milliseconds).
        pub update_time_ms: i64,
        /// Archive time (Unix milliseconds), when archived.
        pub archive_time_ms: Option<i64>,
        /// The row version: 1 at creation, +1 with every change (its etag is `v<version>`).
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `workspace_members`: roles assigned by hand. They are kept whatever the member's org
/// role does, so that a demoted org ADMIN or BILLING member falls back to exactly these (WS-8).
pub mod member {
    use sea_orm::entity::prelude::*;

    /// A direct workspace role.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workspace_members")]
    pub struct Model {
        /// The workspace.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// The user.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// The workspace's organization.
        pub organization_id: String,
        /// `WorkspaceRole` as its number (never BILLING).
        pub role: i32,
        /// When it was assigned (Unix milliseconds).
        pub create_time_ms: i64,
        /// When it last changed (Unix milliseconds).
        pub update_time_ms: i64,
        /// The row version: 1 at creation, +1 with every change (its etag is `v<version>`).
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `workspace_org_counters`: ACTIVE workspaces per organization, for the quota (WS-1).
pub mod counter {
    use sea_orm::entity::prelude::*;

    /// One organization's count.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workspace_org_counters")]
    pub struct Model {
        /// The organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// Its ACTIVE workspaces.
        pub active_count: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `workspace_requests`: `request_id` idempotency (AIP-155).
pub mod request {
    use sea_orm::entity::prelude::*;

    /// The outcome of a create call, by its idempotency key.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workspace_requests")]
    pub struct Model {
        /// `<method>|<organization>|<actor>|<request_id>`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_key: String,
        /// The organization (removed with it on purge).
        pub organization_id: String,
        /// What the first call created (`wrkspc_…` or `wrkspc_…/user_…`).
        pub resource_id: String,
        /// The revision the first call returned.
        pub revision: i64,
        /// When (Unix milliseconds).
        pub create_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `replica_api_keys`: API keys learnt from the identity service's events, so that
/// CheckAccess answers for an API key without calling identity.
pub mod api_key {
    use sea_orm::entity::prelude::*;

    /// One API key (never its secret).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "replica_api_keys")]
    pub struct Model {
        /// `key_…`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub api_key_id: String,
        /// Its organization.
        pub organization_id: String,
        /// Its workspace; empty for admin keys and the Default Workspace.
        pub workspace_id: String,
        /// True for an admin key.
        pub admin: bool,
        /// True while accepted.
        pub active: bool,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The one row of `workspace_state_version`: bumped by every transaction that changes
/// workspaces or memberships, so that replicas notice each other's writes.
pub mod version {
    use sea_orm::entity::prelude::*;

    /// The counter.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workspace_state_version")]
    pub struct Model {
        /// Always 1.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        /// The version.
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
