//! PLACEHOLDER signatures (replaced in this change): list queries and the ListResponse.

use serde_json::Value;

use super::ResourceKind;
use super::error::ScimError;
use super::filter::Filter;

/// A list query: from a GET query string or a `POST /.search` body.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// The filter, parsed.
    pub filter: Option<Filter>,
    /// 1-based index of the first result (default 1; values below 1 count as 1).
    pub start_index: usize,
    /// Most results (default and maximum 200 with the ServiceProviderConfig's `maxResults`).
    pub count: usize,
    /// An attribute path to sort by.
    pub sort_by: Option<String>,
    /// `descending` when true.
    pub descending: bool,
    /// `attributes`, comma-separated.
    pub attributes: Option<String>,
    /// `excludedAttributes`, comma-separated.
    pub excluded_attributes: Option<String>,
}

impl ListQuery {
    /// From a GET request's query parameters (names compared as RFC 7644 spells them).
    pub fn from_query(_params: &[(String, String)]) -> Result<Self, ScimError> {
        Ok(Self::default())
    }

    /// From a `.search` request body (schema `SearchRequest`).
    pub fn from_search(_body: &Value) -> Result<Self, ScimError> {
        Ok(Self::default())
    }
}

/// Filters, sorts, pages and projects `resources` (complete SCIM documents) into a ListResponse.
pub fn respond(resources: Vec<Value>, _query: &ListQuery, _kind: ResourceKind) -> Value {
    Value::Array(resources)
}
