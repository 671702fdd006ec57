//! The use cases of billing access as a plain Rust API: `(&self, &Call, Command) -> Result<_,
//! Error>`, free of prost requests and responses. Each owns its transaction.

pub mod access;
pub mod account_billing;
pub mod accounts;
pub mod merge;
pub mod reports;
pub mod usage;

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use orgplane_platform::audit::AuditLogWriter;
use orgplane_platform::events::ConsumerHandle;
use orgplane_platform::replica::RoleReplica;
use orgplane_platform::runtime::Runtime;
use sea_orm::DatabaseConnection;

use crate::domain::Result;
use crate::domain::access::KeyFacts;
use crate::domain::prices::PriceTable;

/// A member's email and display name.
pub type Profile = (String, String);

/// What billing asks the identity service (implemented over gRPC in
/// [`crate::api::clients`]).
pub trait Directory: Send + Sync {
    /// Emails and display names of `user_ids` by user id. Best effort: empty when identity
    /// cannot answer.
    fn profiles<'a>(&'a self, user_ids: &'a [String]) -> BoxFuture<'a, HashMap<String, Profile>>;

    /// The facts of API key `api_key_id`; `None` when identity does not know it.
    fn api_key<'a>(&'a self, api_key_id: &'a str) -> BoxFuture<'a, Result<Option<KeyFacts>>>;
}

/// The service's state, shared by the handlers and the consumers.
pub struct Billing {
    /// The service's database.
    pub db: DatabaseConnection,
    /// Shared start-up dependencies.
    pub runtime: Runtime,
    /// Organization roles, from the organization service's events.
    pub replica: RoleReplica,
    /// The organization consumer's progress (for `min_revision` waits).
    pub org_events: ConsumerHandle,
    /// The workspace consumer's progress.
    pub workspace_events: ConsumerHandle,
    /// The identity consumer's progress (ended sessions, rule ID-4).
    pub identity_events: ConsumerHandle,
    /// The configured prices.
    pub prices: PriceTable,
    /// The audit log.
    pub audit: AuditLogWriter,
    /// Lookups in the identity service.
    pub directory: Arc<dyn Directory>,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing").finish_non_exhaustive()
    }
}
