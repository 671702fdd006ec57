//! The identity database's rows (sea-orm entities). Secrets never appear here in plaintext:
//! passwords are argon2id hashes, tokens and API-key secrets SHA-256 digests, and signing keys
//! are sealed with the configured encryption key.

/// Rows of `users`.
pub mod user {
    use sea_orm::entity::prelude::*;

    /// A user account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        /// `user_…`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The normalized address as given (domain lower-cased).
        pub email: String,
        /// The address lower-cased: what uniqueness and sign-in compare.
        pub email_key: String,
        /// Whether the address was verified.
        pub email_verified: bool,
        /// The name shown to others.
        pub display_name: String,
        /// `AccountType` as its number.
        pub account_type: i32,
        /// The argon2id PHC string; empty when the password was reset by an admin.
        pub password_hash: String,
        /// Incremented on every change (the etag).
        pub version: i64,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// Unix milliseconds.
        pub update_time_ms: i64,
        /// The SignUp `request_id`, for idempotent retries.
        pub signup_request_id: Option<String>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `sessions`.
pub mod session {
    use sea_orm::entity::prelude::*;

    /// A signed-in session.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        /// `sess_…`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The user.
        pub user_id: String,
        /// When the user last proved their password (Unix seconds).
        pub auth_time: i64,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// When the session ends at the latest (Unix milliseconds).
        pub expire_time_ms: i64,
        /// When it was ended (logout, reset, reuse detection).
        pub revoked_time_ms: Option<i64>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `refresh_tokens`.
pub mod refresh_token {
    use sea_orm::entity::prelude::*;

    /// A refresh token, by the SHA-256 of its value.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        /// Hex SHA-256 of the token.
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        /// Its session.
        pub session_id: String,
        /// The session's user.
        pub user_id: String,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// Unix milliseconds.
        pub expire_time_ms: i64,
        /// True once exchanged: presenting it again revokes the session.
        pub rotated: bool,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `mail_tokens`: email verification and password reset links.
pub mod mail_token {
    use sea_orm::entity::prelude::*;

    /// A single-use token sent by mail, by the SHA-256 of its value.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mail_tokens")]
    pub struct Model {
        /// Hex SHA-256 of the token.
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        /// The user.
        pub user_id: String,
        /// `verify` or `reset`.
        pub purpose: String,
        /// The address it was sent to.
        pub email: String,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// Unix milliseconds.
        pub expire_time_ms: i64,
        /// True once used or superseded.
        pub used: bool,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `signing_keys`.
pub mod signing_key {
    use sea_orm::entity::prelude::*;

    /// An Ed25519 token-signing key, its seed sealed with the encryption key.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "signing_keys")]
    pub struct Model {
        /// The key id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub kid: String,
        /// nonce ‖ ChaCha20-Poly1305(seed), with the kid as associated data.
        pub sealed_seed: Vec<u8>,
        /// The public key, base64url (JWK `x`).
        pub public_x: String,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// When it stopped signing; `None` for the current key.
        pub retire_time_ms: Option<i64>,
        /// When the last token it signed has expired: then it leaves the JWKS.
        pub expire_time_ms: Option<i64>,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SigningKey")
                .field("kid", &self.kid)
                .finish_non_exhaustive()
        }
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `api_keys`.
pub mod api_key {
    use sea_orm::entity::prelude::*;

    /// An organization's API key.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        /// `key_…`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The owning organization.
        pub organization_id: String,
        /// The workspace; empty for admin keys and the Default Workspace.
        pub workspace_id: String,
        /// `ApiKeyKind` as its number.
        pub kind: i32,
        /// A name for people.
        pub name: String,
        /// `ApiKeyStatus` as its number.
        pub status: i32,
        /// Hex SHA-256 of the full secret.
        pub secret_hash: String,
        /// Prefix and last four characters.
        pub hint: String,
        /// Who created it.
        pub creator_user_id: String,
        /// The CreateApiKey `request_id`.
        pub request_id: Option<String>,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// Unix milliseconds.
        pub update_time_ms: i64,
        /// Unix milliseconds, coarse.
        pub last_used_time_ms: Option<i64>,
        /// Incremented on every change (the etag).
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `mfa_factors` (enrollment arrives with rule ID-10; resets work already).
pub mod mfa_factor {
    use sea_orm::entity::prelude::*;

    /// An enrolled second factor.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mfa_factors")]
    pub struct Model {
        /// The factor's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The user.
        pub user_id: String,
        /// e.g. `totp`.
        pub kind: String,
        /// Unix milliseconds.
        pub create_time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
