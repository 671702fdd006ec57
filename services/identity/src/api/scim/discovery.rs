//! PLACEHOLDER signatures (replaced in this change): the discovery documents (RFC 7644 §4).

use serde_json::Value;

/// `/ServiceProviderConfig`; `base` is the SCIM base URL (`…/scim/v2`) for `meta.location`.
pub fn service_provider_config(_base: &str) -> Value {
    Value::Null
}

/// `/Schemas` as a ListResponse.
pub fn schemas(_base: &str) -> Value {
    Value::Null
}

/// `/Schemas/{id}`, when known.
pub fn schema(_base: &str, _id: &str) -> Option<Value> {
    None
}

/// `/ResourceTypes` as a ListResponse.
pub fn resource_types(_base: &str) -> Value {
    Value::Null
}

/// `/ResourceTypes/{name}` (`User`, `Group`), when known.
pub fn resource_type(_base: &str, _name: &str) -> Option<Value> {
    None
}
