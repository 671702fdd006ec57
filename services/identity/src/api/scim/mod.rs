//! The SCIM 2.0 adapter (RFC 7643/7644, rule ID-14): identity providers provision an
//! organization's users and groups over HTTP/JSON with a bearer token. Like the gRPC handlers,
//! nothing here decides a rule: [`router`] authenticates the token and routes, the resource
//! handlers ([`resource`], over [`users`] and [`groups`]) translate SCIM JSON to and from the use cases of
//! [`crate::app::scim`]. The protocol mechanics are pure and separately tested: [`filter`] (the
//! filter language, parsed by hand with depth and length limits), [`patch`] (PATCH operations in
//! the dialects real clients send), [`attributes`] (`attributes` / `excludedAttributes`),
//! [`list`] (query, sort, pagination and the ListResponse), [`discovery`]
//! (ServiceProviderConfig, Schemas, ResourceTypes) and [`error`] (SCIM error bodies, ETags).

pub mod attributes;
pub mod discovery;
pub mod error;
pub mod filter;
mod groups;
pub mod list;
pub mod patch;
mod resource;
mod router;
mod users;

pub use router::router;

/// The media type of every SCIM body (RFC 7644 §3.1).
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";

/// The schema URN of a User resource.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The schema URN of the enterprise User extension.
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The schema URN of a Group resource.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The schema URN of a list response.
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The schema URN of a PATCH request.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The schema URN of a `.search` request.
pub const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// The schema URN of an error body.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Which resource a document is: the rules of attributes (names, multi-valued, case) differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// `/Users`.
    User,
    /// `/Groups`.
    Group,
}
