//! PLACEHOLDER signatures (replaced in this change): the SCIM filter language (RFC 7644 §3.4.2.2).

use serde_json::Value;

use super::error::ScimError;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter;

/// Parses `input`; 400 `invalidFilter` when malformed, too long or too deep.
pub fn parse(_input: &str) -> Result<Filter, ScimError> {
    Err(ScimError::bad_request(
        "invalidFilter",
        "filters are being built",
    ))
}

impl Filter {
    /// Whether `resource` (a SCIM JSON document) matches.
    pub fn matches(&self, _resource: &Value) -> bool {
        false
    }

    /// When the whole filter is `<attribute> eq "<value>"` for `attribute` (compared ignoring
    /// case, e.g. `userName`, `externalId`, `displayName`, `id`), the value: a store can look it
    /// up directly instead of scanning.
    pub fn equality_on(&self, _attribute: &str) -> Option<&str> {
        None
    }
}
