//! The billing-access tables as sea-orm entities.

/// Rows of `billing_accounts`: one per organization (rule BILL-2).
pub mod account {
    use sea_orm::entity::prelude::*;

    /// An organization's billing account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "billing_accounts")]
    pub struct Model {
        /// The organization's id; also the account's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// `BillingPlan` as its number.
        pub plan: i32,
        /// Where invoices go.
        pub billing_email: String,
        /// Paid seats.
        pub seats: i32,
        /// Creation time (Unix milliseconds).
        pub create_time_ms: i64,
        /// Last change (Unix milliseconds).
        pub update_time_ms: i64,
        /// The row version: 1 at creation, +1 with every update; the etag is `v<version>`.
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `usage_records`: every accepted usage record, unique per organization and
/// idempotency key (rule BILL-3).
pub mod usage_record {
    use sea_orm::entity::prelude::*;

    /// One accepted usage record.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_records")]
    pub struct Model {
        /// The organization billed.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// The reporting service's key; unique per organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub idempotency_key: String,
        /// The workspace; empty for the Default Workspace.
        pub workspace_id: String,
        /// The API key; empty when none.
        pub api_key_id: String,
        /// The user; empty when unknown.
        pub user_id: String,
        /// The model.
        pub model: String,
        /// Input tokens.
        pub input_tokens: i64,
        /// Output tokens.
        pub output_tokens: i64,
        /// When the usage happened (Unix milliseconds).
        pub usage_time_ms: i64,
        /// When it was recorded here (Unix milliseconds).
        pub record_time_ms: i64,
        /// The billed account (rule BILL-6): the account the record named, or the parent of the
        /// subaccount it named; empty when it named none.
        pub account_id: String,
        /// The subaccount the record named; empty when it named a top-level account or none.
        /// The account named is this, or else `account_id`.
        pub subaccount_id: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `usage_rollups`: accepted usage summed per organization, UTC minute and every
/// dimension, written in the ingesting transaction; reports aggregate these.
pub mod usage_rollup {
    use sea_orm::entity::prelude::*;

    /// Usage of one minute and one combination of dimensions.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_rollups")]
    pub struct Model {
        /// The organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// The minute's start (Unix milliseconds).
        #[sea_orm(primary_key, auto_increment = false)]
        pub minute_ms: i64,
        /// The workspace.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// The API key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub api_key_id: String,
        /// The model.
        #[sea_orm(primary_key, auto_increment = false)]
        pub model: String,
        /// The user.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// Summed input tokens.
        pub input_tokens: i64,
        /// Summed output tokens.
        pub output_tokens: i64,
        /// Records summed.
        pub record_count: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `usage_account_rollups` (rule BILL-6): the same sums as [`usage_rollup`], keyed also by
/// the billed account and subaccount, written in the same ingesting transaction. Reports grouped
/// or filtered by account read these; every other report reads [`usage_rollup`], whose key the
/// previous release still upserts on during a rolling update (usage it ingests then is in
/// `usage_rollups` only).
pub mod usage_account_rollup {
    use sea_orm::entity::prelude::*;

    /// Usage of one minute, one combination of dimensions and one billed account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_account_rollups")]
    pub struct Model {
        /// The organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// The minute's start (Unix milliseconds).
        #[sea_orm(primary_key, auto_increment = false)]
        pub minute_ms: i64,
        /// The workspace.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// The API key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub api_key_id: String,
        /// The model.
        #[sea_orm(primary_key, auto_increment = false)]
        pub model: String,
        /// The user.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// The billed account (rule BILL-6); empty for usage naming none.
        #[sea_orm(primary_key, auto_increment = false)]
        pub account_id: String,
        /// The subaccount named; empty for usage naming a top-level account or none.
        #[sea_orm(primary_key, auto_increment = false)]
        pub subaccount_id: String,
        /// Summed input tokens.
        pub input_tokens: i64,
        /// Summed output tokens.
        pub output_tokens: i64,
        /// Records summed.
        pub record_count: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `billing_workspaces`: workspace names and archival, learned from the workspace
/// service's events.
pub mod workspace {
    use sea_orm::entity::prelude::*;

    /// A workspace as known here.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "billing_workspaces")]
    pub struct Model {
        /// The workspace's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// Its organization.
        pub organization_id: String,
        /// Its name.
        pub name: String,
        /// When it was archived (Unix milliseconds); `None` while active.
        pub archive_time_ms: Option<i64>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `billing_purged_organizations`: the ids of purged organizations, so that late
/// workspace events and usage for them are refused instead of resurrecting data (rule BILL-5).
pub mod purged {
    use sea_orm::entity::prelude::*;

    /// A purged organization.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "billing_purged_organizations")]
    pub struct Model {
        /// The organization's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// When its data was removed (Unix milliseconds).
        pub purge_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `billing_managed_accounts`: the organization service's accounts as this service learnt
/// them from `AccountChanged` events (rule BILL-6), subaccounts included.
pub mod managed_account {
    use sea_orm::entity::prelude::*;

    /// An account as its home organization sees it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "billing_managed_accounts")]
    pub struct Model {
        /// The account's id (`acct_…`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub account_id: String,
        /// Its home organization now (it changes when the account moves).
        pub organization_id: String,
        /// The parent account of a subaccount; empty for a top-level account.
        pub parent_account_id: String,
        /// `AccountState` as its number.
        pub state: i32,
        /// The owning user.
        pub owner_user_id: String,
        /// The display name.
        pub display_name: String,
        /// When it was closed (Unix milliseconds); `None` while open.
        pub close_time_ms: Option<i64>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `billing_account_settings`: the billing account of each managed top-level account
/// (rule BILL-6). Keyed by the account alone, so that the account's move (or a merge) changes
/// only its row in [`managed_account`].
pub mod account_billing {
    use sea_orm::entity::prelude::*;

    /// A managed account's billing account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "billing_account_settings")]
    pub struct Model {
        /// The account's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub account_id: String,
        /// `BillingPlan` as its number.
        pub plan: i32,
        /// Where invoices go.
        pub billing_email: String,
        /// Paid seats.
        pub seats: i32,
        /// Creation time (Unix milliseconds).
        pub create_time_ms: i64,
        /// Last change (Unix milliseconds).
        pub update_time_ms: i64,
        /// The row version: 1 at creation, +1 with every update; the etag is `v<version>`.
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `billing_merged_organizations`: organizations merged into another (rule ORG-15), so
/// that their billing answers NOT_FOUND, late usage for them is refused and late workspace events
/// naming them land in the organization that absorbed them.
pub mod merged {
    use sea_orm::entity::prelude::*;

    /// A merged (candidate) organization.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "billing_merged_organizations")]
    pub struct Model {
        /// The candidate's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        /// The prime that absorbed it.
        pub prime_organization_id: String,
        /// When its billing data was re-attributed here (Unix milliseconds).
        pub merge_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
