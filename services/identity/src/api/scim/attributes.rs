//! PLACEHOLDER signatures (replaced in this change): `attributes` and `excludedAttributes`.

use serde_json::Value;

use super::ResourceKind;

/// `resource` reduced to the attributes asked for (comma-separated lists, as in the query or a
/// `.search` body), keeping those always returned (`id`, `schemas`, and `userName` /
/// `displayName`).
pub fn project(
    resource: Value,
    _attributes: Option<&str>,
    _excluded: Option<&str>,
    _kind: ResourceKind,
) -> Value {
    resource
}
