//! SCIM provisioning (rule ID-14), the use cases behind the HTTP adapter in
//! [`crate::api::scim`] and the token and settings RPCs: [`tokens`] (bearer tokens: create,
//! list, update, authenticate), [`settings`] (how groups become organization roles),
//! [`users`] and [`groups`] (the resources; `accounts`: which account a `userName` names), and [`provisioning`] (the membership changes each
//! write owes the organization service, delivered exactly once per `request_id`).

mod accounts;
mod common;
pub mod groups;
pub mod provisioning;
mod roles;
pub mod settings;
pub mod tokens;
pub mod users;

/// Who a SCIM request acts for: the organization of its bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimPrincipal {
    /// The organization the token provisions.
    pub organization_id: String,
    /// The token (`scimt_…`), the actor of the audit records.
    pub token_id: String,
    /// Whether `userName` may be outside the organization's VERIFIED domains.
    pub allow_unverified_user_names: bool,
}
