//! PLACEHOLDER signatures (replaced in this change): PATCH (RFC 7644 §3.5.2) over a resource's JSON.

use serde_json::Value;

use super::ResourceKind;
use super::error::ScimError;

/// Applies a PatchOp request `body` to `resource` in place: 400 with `invalidSyntax`,
/// `invalidPath`, `noTarget`, `invalidValue` or `mutability` when it cannot apply.
pub fn apply(_resource: &mut Value, _body: &Value, _kind: ResourceKind) -> Result<(), ScimError> {
    Err(ScimError::bad_request(
        "invalidSyntax",
        "PATCH is being built",
    ))
}
