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
        /// The address as given, local part in NFC, domain in IDNA ASCII lower case (rule ID-15).
        pub email: String,
        /// The canonical key (ID-15: ASCII letters of the local part lower-cased): what
        /// uniqueness and sign-in compare.
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
        /// RFC 8176 methods proven in this session, space-separated (`pwd otp mfa`).
        pub amr: String,
        /// Risk signals seen at its last sign-in or step-up, space-separated (rule ID-12).
        pub risk: String,
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

/// Rows of `mfa_factors`: second factors (rule ID-10).
pub mod mfa_factor {
    use sea_orm::entity::prelude::*;

    /// A second factor, PENDING until confirmed.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mfa_factors")]
    pub struct Model {
        /// The factor's id (`mfa_…`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The user.
        pub user_id: String,
        /// `totp` or `passkey`.
        pub kind: String,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// The user's label.
        pub display_name: String,
        /// `MfaFactorState` as its number (PENDING 1, ACTIVE 2).
        pub state: i32,
        /// A TOTP secret, sealed with identity's sealing key.
        pub secret_sealed: Option<String>,
        /// A passkey (registration ceremony state while PENDING, the credential once ACTIVE),
        /// sealed.
        pub passkey_sealed: Option<String>,
        /// A passkey's credential id (base64url), unique.
        pub credential_id: Option<String>,
        /// When a PENDING factor expires (Unix milliseconds).
        pub expire_time_ms: Option<i64>,
        /// When it was last used (Unix milliseconds).
        pub last_used_time_ms: Option<i64>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `mfa_recovery_codes`: single-use recovery codes, hashed (rule ID-10).
pub mod recovery_code {
    use sea_orm::entity::prelude::*;

    /// A recovery code.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mfa_recovery_codes")]
    pub struct Model {
        /// The user.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// SHA-256 (hex) of the normalized code.
        #[sea_orm(primary_key, auto_increment = false)]
        pub code_hash: String,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// When it was used up.
        pub used_time_ms: Option<i64>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `mfa_challenges`: second-factor steps in progress (rule ID-11).
pub mod mfa_challenge {
    use sea_orm::entity::prelude::*;

    /// A challenge from Login (no session yet) or Reauthenticate (the session it renews).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mfa_challenges")]
    pub struct Model {
        /// SHA-256 (hex) of the challenge id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_hash: String,
        /// The user.
        pub user_id: String,
        /// The session a step-up renews; `None` for a sign-in.
        pub session_id: Option<String>,
        /// Risk signals of the sign-in that opened it, space-separated.
        pub risk: String,
        /// Passkey authentication ceremony state, sealed.
        pub passkey_state_sealed: Option<String>,
        /// Wrong proofs so far.
        pub failures: i32,
        /// Unix milliseconds.
        pub create_time_ms: i64,
        /// Unix milliseconds.
        pub expire_time_ms: i64,
        /// When it was completed (or ended by too many failures).
        pub used_time_ms: Option<i64>,
        /// The first factor of the sign-in it completes (`amr`, space-separated); empty for a
        /// password (rule ID-13 adds SSO).
        pub sign_in_amr: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `totp_steps`: the last TOTP time step each user used, so a code is accepted at most
/// once per step even across restarts and replicas (rule ID-10).
pub mod totp_step {
    use sea_orm::entity::prelude::*;

    /// A user's last used step.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "totp_steps")]
    pub struct Model {
        /// The user.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// Unix time / 30 of the last accepted code.
        pub last_step: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `sign_in_addresses`: where each account signed in from (rule ID-12's new-address
/// signal).
pub mod sign_in_address {
    use sea_orm::entity::prelude::*;

    /// An address an account signed in from.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sign_in_addresses")]
    pub struct Model {
        /// The user.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// The peer address (as the throttles key it).
        #[sea_orm(primary_key, auto_increment = false)]
        pub address: String,
        /// Unix milliseconds.
        pub last_seen_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `sign_in_failures`: failed proofs per account (rule ID-12's recent-failures signal).
pub mod sign_in_failure {
    use sea_orm::entity::prelude::*;

    /// One failed password or second-factor proof.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sign_in_failures")]
    pub struct Model {
        /// A random id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The user.
        pub user_id: String,
        /// Unix milliseconds.
        pub time_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows of `sign_in_budgets`: failed sign-ins per peer address or account in a fixed window,
/// shared by every replica (rule ID-3, `crate::throttle::sign_in`).
pub mod sign_in_budget {
    use sea_orm::entity::prelude::*;

    /// One budget's current window.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sign_in_budgets")]
    pub struct Model {
        /// `peer <address>`, `account <account>` or `account <account> from <address>`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// Failures in the window.
        pub failures: i32,
        /// When the window opened (its first failure), Unix milliseconds.
        pub window_start_ms: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use super::scim::{
    scim_group, scim_group_member, scim_provisioning, scim_settings, scim_token, scim_user,
};
pub use super::sso::{federated_identity, sso_attempt, sso_connection, sso_connection_domain};
