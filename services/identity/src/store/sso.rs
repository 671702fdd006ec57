//! The SSO rows (rule ID-13), re-exported by [`super::entity`]. The client secret is sealed;
//! `state`, `nonce` and the browser binding of an attempt are SHA-256 digests; its PKCE verifier
//! is sealed.

/// Rows of `sso_connections`.
pub mod sso_connection {
    use sea_orm::entity::prelude::*;

    /// An organization's connection to an OpenID provider.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sso_connections")]
    pub struct Model {
        /// `ssoc_…`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The organization.
        pub organization_id: String,
        /// A name for people.
        pub display_name: String,
        /// The provider's issuer URL.
        pub issuer: String,
        /// This client's id at the provider.
        pub client_id: String,
        /// The client secret, sealed (associated data: the connection id); `None` when unset.
        pub client_secret_sealed: Option<String>,
        /// Scopes, space-separated.
        pub scopes: String,
        /// Accepted ID-token algorithms, space-separated.
        pub algorithms: String,
        /// Redirect URIs, space-separated.
        pub redirect_uris: String,
        /// Password sign-in refused for its domains.
        pub enforced: bool,
        /// Just-in-time provisioning.
        pub jit_provisioning: bool,
        /// `OrgRole` of provisioned members, as its number.
        pub default_role: i32,
        /// The provider's second factor counts.
        pub trust_idp_mfa: bool,
        /// Usable for sign-in.
        pub enabled: bool,
        /// Who created it.
        pub creator_user_id: String,
        /// The CreateSsoConnection `request_id`, for idempotent retries.
        pub request_id: Option<String>,
        /// Incremented on every change (the etag).
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

/// Rows of `sso_connection_domains`: the domains a connection serves.
pub mod sso_connection_domain {
    use sea_orm::entity::prelude::*;

    /// One domain of one connection.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sso_connection_domains")]
    pub struct Model {
        /// The connection.
        #[sea_orm(primary_key, auto_increment = false)]
        pub connection_id: String,
        /// The domain, IDNA ASCII lower case.
        #[sea_orm(primary_key, auto_increment = false)]
        pub domain_name: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `sso_attempts`: SSO sign-ins in flight (10 minutes, single-use).
pub mod sso_attempt {
    use sea_orm::entity::prelude::*;

    /// One StartSsoLogin.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sso_attempts")]
    pub struct Model {
        /// SHA-256 (hex) of `state`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub state_hash: String,
        /// The connection.
        pub connection_id: String,
        /// SHA-256 (hex) of the `nonce`.
        pub nonce_hash: String,
        /// SHA-256 (hex) of the browser binding.
        pub binding_hash: String,
        /// The PKCE verifier, sealed (associated data: the state hash).
        pub verifier_sealed: String,
        /// The redirect URI the code was issued for.
        pub redirect_uri: String,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// Unix milliseconds.
        pub expire_time_ms: i64,
        /// When CompleteSsoLogin consumed it.
        pub used_time_ms: Option<i64>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `federated_identities`: a provider's subject linked to an account.
pub mod federated_identity {
    use sea_orm::entity::prelude::*;

    /// (connection, `sub`) → user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "federated_identities")]
    pub struct Model {
        /// The connection.
        #[sea_orm(primary_key, auto_increment = false)]
        pub connection_id: String,
        /// The provider's `sub`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject: String,
        /// The account.
        pub user_id: String,
        /// The address the provider asserted at linking (canonical).
        pub email: String,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// Unix milliseconds.
        pub last_sign_in_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
