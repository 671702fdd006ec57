//! List queries (RFC 7644 §3.4.2 and §3.4.3): the parameters of a GET or the SearchRequest of a
//! `POST /.search`, and the ListResponse made of the resources that match — filtered, sorted,
//! paged and projected here, so that a store may hand over a superset.

use std::cmp::Ordering;

use serde_json::{Value, json};

use super::attributes;
use super::discovery::definitions::AttributeDef;
use super::error::ScimError;
use super::filter::{self, AttrPath, Filter, get_ci, parse_attr_path};
use super::{LIST_RESPONSE_SCHEMA, ResourceKind, SEARCH_REQUEST_SCHEMA};

/// The most resources one list response carries (the ServiceProviderConfig's `maxResults`).
pub const MAX_RESULTS: usize = 200;

/// A list query: from a GET query string or a `POST /.search` body.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// The filter, parsed.
    pub filter: Option<Filter>,
    /// 1-based index of the first result (default 1; values below 1 count as 1).
    pub start_index: usize,
    /// Most results (default and maximum [`MAX_RESULTS`]; negative counts as 0).
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

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            filter: None,
            start_index: 1,
            count: MAX_RESULTS,
            sort_by: None,
            descending: false,
            attributes: None,
            excluded_attributes: None,
        }
    }
}

/// An integer parameter: 400 `invalidValue` when not an integer; out-of-range integers
/// saturate (they are clamped afterwards anyway).
fn integer(name: &str, text: &str) -> Result<i64, ScimError> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Ok(n);
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(if text.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        });
    }
    Err(ScimError::invalid_value(format!(
        "{name} must be an integer, not {text:?}"
    )))
}

fn clamp_start(n: i64) -> usize {
    usize::try_from(n.max(1)).unwrap_or(usize::MAX)
}

fn clamp_count(n: i64) -> usize {
    usize::try_from(n.clamp(0, MAX_RESULTS as i64)).unwrap_or(MAX_RESULTS)
}

impl ListQuery {
    /// From a GET request's query parameters (names compared ignoring case; the last of a
    /// repeated parameter wins).
    pub fn from_query(params: &[(String, String)]) -> Result<Self, ScimError> {
        let mut query = Self::default();
        for (name, value) in params {
            match name.to_ascii_lowercase().as_str() {
                "filter" => query.set_filter(value)?,
                "startindex" => query.start_index = clamp_start(integer("startIndex", value)?),
                "count" => query.count = clamp_count(integer("count", value)?),
                "sortby" => query.set_sort_by(value)?,
                "sortorder" => query.set_sort_order(value)?,
                "attributes" => query.attributes = non_blank(value),
                "excludedattributes" => query.excluded_attributes = non_blank(value),
                _ => {}
            }
        }
        Ok(query)
    }

    /// From a `.search` request body (schema `SearchRequest`): 400 `invalidSyntax` without
    /// that schema, `invalidValue` for a field of the wrong type.
    pub fn from_search(body: &Value) -> Result<Self, ScimError> {
        let has_schema = get_ci(body, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .any(|s| s.eq_ignore_ascii_case(SEARCH_REQUEST_SCHEMA))
            });
        if !has_schema {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must contain {SEARCH_REQUEST_SCHEMA}"
            )));
        }
        let mut query = Self::default();
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match get_ci(body, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::invalid_value(format!("{name} must be a string"))),
            }
        };
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            match get_ci(body, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(n) => Ok(Some(n)),
                    None if n.as_u64().is_some() => Ok(Some(i64::MAX)),
                    None => Err(ScimError::invalid_value(format!(
                        "{name} must be an integer"
                    ))),
                },
                Some(Value::String(s)) => integer(name, s).map(Some),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "{name} must be an integer"
                ))),
            }
        };
        let list = |name: &str| -> Result<Option<String>, ScimError> {
            match get_ci(body, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(non_blank(s)),
                Some(Value::Array(items)) => {
                    let names = items
                        .iter()
                        .map(|i| {
                            i.as_str().map(str::to_owned).ok_or_else(|| {
                                ScimError::invalid_value(format!("{name} must list strings"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(non_blank(&names.join(",")))
                }
                Some(_) => Err(ScimError::invalid_value(format!(
                    "{name} must be a list of attribute names"
                ))),
            }
        };
        if let Some(f) = text("filter")? {
            query.set_filter(&f)?;
        }
        if let Some(n) = number("startIndex")? {
            query.start_index = clamp_start(n);
        }
        if let Some(n) = number("count")? {
            query.count = clamp_count(n);
        }
        if let Some(s) = text("sortBy")? {
            query.set_sort_by(&s)?;
        }
        if let Some(s) = text("sortOrder")? {
            query.set_sort_order(&s)?;
        }
        query.attributes = list("attributes")?;
        query.excluded_attributes = list("excludedAttributes")?;
        Ok(query)
    }

    fn set_filter(&mut self, text: &str) -> Result<(), ScimError> {
        self.filter = if text.trim().is_empty() {
            None
        } else {
            Some(filter::parse(text)?)
        };
        Ok(())
    }

    fn set_sort_by(&mut self, text: &str) -> Result<(), ScimError> {
        self.sort_by = match non_blank(text) {
            None => None,
            Some(s) => {
                parse_attr_path(&s, "invalidValue")?;
                Some(s)
            }
        };
        Ok(())
    }

    fn set_sort_order(&mut self, text: &str) -> Result<(), ScimError> {
        self.descending = match text.trim().to_ascii_lowercase().as_str() {
            "" | "ascending" => false,
            "descending" => true,
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "sortOrder must be ascending or descending, not {text:?}"
                )));
            }
        };
        Ok(())
    }
}

fn non_blank(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// Filters, sorts, pages and projects `resources` (complete SCIM documents) into a ListResponse.
pub fn respond(resources: Vec<Value>, query: &ListQuery, kind: ResourceKind) -> Value {
    let mut matched: Vec<Value> = resources
        .into_iter()
        .filter(|r| query.filter.as_ref().is_none_or(|f| f.matches_as(r, kind)))
        .collect();
    if let Some(path) = query
        .sort_by
        .as_deref()
        .and_then(|s| parse_attr_path(s, "invalidValue").ok())
    {
        sort(&mut matched, &path, query.descending, kind);
    }
    let total = matched.len();
    let start = query.start_index.max(1);
    let page: Vec<Value> = matched
        .into_iter()
        .skip(start - 1)
        .take(query.count)
        .map(|r| {
            attributes::project(
                r,
                query.attributes.as_deref(),
                query.excluded_attributes.as_deref(),
                kind,
            )
        })
        .collect();
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": page.len(),
        "Resources": page,
    })
}

/// The value a resource sorts by (RFC 7644 §3.4.2.3): of a multi-valued attribute, the primary
/// value or else the first; of a complex value, its `value`.
fn sort_key<'a>(
    resource: &'a Value,
    path: &AttrPath,
    kind: ResourceKind,
) -> (Option<&'a Value>, Option<&'static AttributeDef>) {
    let (values, def) = filter::values_at(resource, path, kind, None);
    let chosen = values
        .iter()
        .find(|v| get_ci(v, "primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| values.first())
        .copied();
    let scalar = match chosen {
        Some(v @ Value::Object(_)) => get_ci(v, "value"),
        other => other,
    };
    let def = match def {
        Some(d) if d.is_complex() => d.sub("value"),
        other => other,
    };
    (scalar.filter(|v| filter::non_empty(v)), def)
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Bool(_) => 0,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        _ => 3,
    }
}

fn compare_values(a: &Value, b: &Value, case_exact: bool) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            let instants = (
                chrono::DateTime::parse_from_rfc3339(x),
                chrono::DateTime::parse_from_rfc3339(y),
            );
            if let (Ok(x), Ok(y)) = instants {
                return x.cmp(&y);
            }
            if case_exact {
                x.cmp(y)
            } else {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
        }
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Sorts stably by `path`; resources without a value come last in either order.
fn sort(resources: &mut [Value], path: &AttrPath, descending: bool, kind: ResourceKind) {
    resources.sort_by(|a, b| {
        let (ka, def) = sort_key(a, path, kind);
        let (kb, _) = sort_key(b, path, kind);
        let case_exact = def.is_some_and(|d| d.case_exact);
        match (ka, kb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let ord = compare_values(x, y, case_exact);
                if descending { ord.reverse() } else { ord }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::USER_SCHEMA;
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn users() -> Vec<Value> {
        ["carol", "Alice", "bob", "dave"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut u = json!({
                    "schemas": [USER_SCHEMA],
                    "id": format!("u{i}"),
                    "userName": format!("{n}@example.com"),
                    "active": i != 2,
                });
                if *n != "dave" {
                    u["name"] = json!({ "familyName": n.to_uppercase() });
                }
                u
            })
            .collect()
    }

    fn names(list: &Value) -> Vec<String> {
        list["Resources"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|u| u["userName"].as_str())
                    .map(|s| s.split('@').next().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn id_14_list_query_parameters_are_validated_and_clamped() {
        let q = ListQuery::from_query(&params(&[])).ok();
        assert_eq!(
            q.as_ref().map(|q| (q.start_index, q.count)),
            Some((1, MAX_RESULTS))
        );
        let q = ListQuery::from_query(&params(&[("startIndex", "0"), ("count", "-5")])).ok();
        assert_eq!(q.map(|q| (q.start_index, q.count)), Some((1, 0)));
        let q = ListQuery::from_query(&params(&[
            ("startIndex", "-9"),
            ("count", "100000000000000000000000"),
        ]))
        .ok();
        assert_eq!(q.map(|q| (q.start_index, q.count)), Some((1, MAX_RESULTS)));
        for bad in [
            ("startIndex", "x"),
            ("count", "1.5"),
            ("count", ""),
            ("sortOrder", "up"),
            ("sortBy", "a b"),
        ] {
            let e = ListQuery::from_query(&params(&[bad])).err();
            assert_eq!(
                e.map(|e| e.scim_type),
                Some(Some("invalidValue")),
                "{bad:?}"
            );
        }
        let e = ListQuery::from_query(&params(&[("filter", "userName eq")])).err();
        assert_eq!(e.map(|e| e.scim_type), Some(Some("invalidFilter")));
    }

    #[test]
    fn id_14_list_filter_sort_page_and_project() {
        let q = ListQuery::from_query(&params(&[
            ("filter", "active eq true"),
            ("sortBy", "userName"),
            ("startIndex", "2"),
            ("count", "1"),
            ("attributes", "userName"),
        ]));
        let q = q.unwrap_or_default();
        let list = respond(users(), &q, ResourceKind::User);
        assert_eq!(list["schemas"], json!([LIST_RESPONSE_SCHEMA]));
        assert_eq!(list["totalResults"], json!(3));
        assert_eq!(list["startIndex"], json!(2));
        assert_eq!(list["itemsPerPage"], json!(1));
        assert_eq!(
            names(&list),
            ["carol"],
            "alice, carol, dave: case-insensitive sort"
        );
        assert!(list["Resources"][0].get("active").is_none(), "projected");
        // Descending on a sub-attribute; dave has no name and comes last in either order.
        let q = ListQuery::from_query(&params(&[
            ("sortBy", "name.familyName"),
            ("sortOrder", "descending"),
        ]));
        let list = respond(users(), &q.unwrap_or_default(), ResourceKind::User);
        assert_eq!(names(&list), ["carol", "bob", "Alice", "dave"]);
        let q = ListQuery::from_query(&params(&[("sortBy", "name.familyName")]));
        let list = respond(users(), &q.unwrap_or_default(), ResourceKind::User);
        assert_eq!(names(&list), ["Alice", "bob", "carol", "dave"]);
        // Past the end: no resources, the total still counted.
        let q = ListQuery::from_query(&params(&[("startIndex", "10")]));
        let list = respond(users(), &q.unwrap_or_default(), ResourceKind::User);
        assert_eq!(
            (list["totalResults"].clone(), list["itemsPerPage"].clone()),
            (json!(4), json!(0))
        );
    }

    #[test]
    fn id_14_list_search_request_body() {
        let body = json!({
            "schemas": [SEARCH_REQUEST_SCHEMA],
            "filter": "userName sw \"b\" or userName sw \"d\"",
            "attributes": ["userName", "name.familyName"],
            "sortBy": "userName",
            "sortOrder": "Descending",
            "startIndex": 1,
            "count": 10
        });
        let q = ListQuery::from_search(&body);
        assert!(q.is_ok());
        let list = respond(users(), &q.unwrap_or_default(), ResourceKind::User);
        assert_eq!(names(&list), ["dave", "bob"]);
        let e = ListQuery::from_search(&json!({"filter": "userName pr"})).err();
        assert_eq!(e.map(|e| e.scim_type), Some(Some("invalidSyntax")));
        let e =
            ListQuery::from_search(&json!({"schemas": [SEARCH_REQUEST_SCHEMA], "attributes": [1]}))
                .err();
        assert_eq!(e.map(|e| e.scim_type), Some(Some("invalidValue")));
        let e =
            ListQuery::from_search(&json!({"schemas": [SEARCH_REQUEST_SCHEMA], "count": "many"}))
                .err();
        assert_eq!(e.map(|e| e.scim_type), Some(Some("invalidValue")));
    }
}
