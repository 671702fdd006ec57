//! PATCH (RFC 7644 §3.5.2) over a resource's JSON, in the dialects real clients send: `op`
//! in any case (`Add`, `replace`), a `path` that is simple, a sub-attribute, URN-qualified or
//! filtered (`emails[type eq "work"].value`), or no path with a `value` object whose keys are
//! attributes, dotted sub-attributes or URN-qualified names (Entra). The operations apply to a
//! copy; the resource changes only when all of them succeed.
//!
//! Choices where clients and the RFC differ, each deliberate:
//! - `replace` (or `add`) with a value filter that matches nothing adds a value built from the
//!   filter's `eq` terms (Entra sends `emails[type eq "work"].value` for a user without a work
//!   email and expects it added; RFC 7644 would answer `noTarget`). `remove` with a filter that
//!   matches nothing is `noTarget`, as the RFC says.
//! - `remove` of an attribute that has no value succeeds (the end state is what was asked);
//!   `remove` with `path: "members"` and a `value` list removes those members (Entra).
//! - Read-only attributes (`id`, `meta`, `schemas`, a User's `groups`): an operation naming them
//!   is 400 `mutability`, except in a path-less `value` that repeats their current value (Okta
//!   sends the group's `id` along with a new `displayName`). Removing a required attribute
//!   (`userName`, a Group's `displayName`) is 400 `invalidValue`.
//! - `active` (and any boolean) given as the string `"True"`/`"false"` becomes a boolean; a
//!   single object for a multi-valued attribute becomes a one-element list; marking a value
//!   `primary` clears `primary` on the others.

mod apply;
#[cfg(test)]
mod tests;

use serde_json::Value;

use super::discovery::definitions::{self, Mutability};
use super::error::ScimError;
use super::filter::{self, PatchPath, get_ci, key_ci};
use super::{PATCH_OP_SCHEMA, ResourceKind};

/// A PATCH operation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Applies a PatchOp request `body` to `resource` in place: 400 with `invalidSyntax`,
/// `invalidPath`, `noTarget`, `invalidValue` or `mutability` when it cannot apply (and then
/// `resource` is unchanged).
pub fn apply(resource: &mut Value, body: &Value, kind: ResourceKind) -> Result<(), ScimError> {
    let operations = operations(body)?;
    let mut work = resource.clone();
    if !work.is_object() {
        return Err(ScimError::internal(
            "the resource to patch is not a JSON object",
        ));
    }
    for (index, operation) in operations.iter().enumerate() {
        apply_operation(&mut work, operation, kind).map_err(|e| ScimError {
            detail: format!("operation {index}: {}", e.detail),
            ..e
        })?;
    }
    apply::tidy_extensions(&mut work, kind);
    check_required(&work, kind)?;
    *resource = work;
    Ok(())
}

/// The `Operations` of a PatchOp message, checked (RFC 7644 §3.5.2).
fn operations(body: &Value) -> Result<&Vec<Value>, ScimError> {
    if !body.is_object() {
        return Err(ScimError::bad_request(
            "invalidSyntax",
            "the PATCH body must be a JSON object",
        ));
    }
    let has_schema = get_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .any(|s| s.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
        });
    if !has_schema {
        return Err(ScimError::bad_request(
            "invalidSyntax",
            format!("schemas must contain {PATCH_OP_SCHEMA}"),
        ));
    }
    match get_ci(body, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => Ok(ops),
        Some(Value::Array(_)) => Err(ScimError::bad_request(
            "invalidSyntax",
            "Operations must not be empty",
        )),
        _ => Err(ScimError::bad_request(
            "invalidSyntax",
            "Operations must be a list of operations",
        )),
    }
}

fn apply_operation(
    work: &mut Value,
    operation: &Value,
    kind: ResourceKind,
) -> Result<(), ScimError> {
    if !operation.is_object() {
        return Err(ScimError::bad_request(
            "invalidSyntax",
            "an operation must be an object",
        ));
    }
    let op = match get_ci(operation, "op").and_then(Value::as_str) {
        Some(op) if op.eq_ignore_ascii_case("add") => Op::Add,
        Some(op) if op.eq_ignore_ascii_case("replace") => Op::Replace,
        Some(op) if op.eq_ignore_ascii_case("remove") => Op::Remove,
        Some(op) => {
            return Err(ScimError::bad_request(
                "invalidSyntax",
                format!("unknown op {op:?}: add, replace or remove"),
            ));
        }
        None => {
            return Err(ScimError::bad_request("invalidSyntax", "op is missing"));
        }
    };
    let value = get_ci(operation, "value");
    let path = match get_ci(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(filter::parse_patch_path(p.trim())?),
        Some(_) => {
            return Err(ScimError::bad_request(
                "invalidPath",
                "path must be a string",
            ));
        }
    };
    if op != Op::Remove && value.is_none() {
        return Err(ScimError::bad_request(
            "invalidValue",
            "add and replace need a value",
        ));
    }
    match path {
        Some(path) => apply::at_path(work, op, &path, value, kind),
        None if op == Op::Remove => Err(ScimError::bad_request("noTarget", "remove needs a path")),
        None => without_path(work, op, value, kind),
    }
}

/// RFC 7644 §3.5.2.1/3 without `path`: each key of `value` is a target.
fn without_path(
    work: &mut Value,
    op: Op,
    value: Option<&Value>,
    kind: ResourceKind,
) -> Result<(), ScimError> {
    let Some(Value::Object(members)) = value else {
        return Err(ScimError::bad_request(
            "invalidValue",
            "without a path, value must be an object of attributes",
        ));
    };
    for (key, v) in members {
        let path = filter::parse_patch_path(key)?;
        if path.filter.is_some() {
            return Err(ScimError::bad_request(
                "invalidPath",
                format!("{key:?}: a value filter cannot be a key of value"),
            ));
        }
        if unchanged_read_only(work, &path, v, kind) {
            continue;
        }
        apply::at_path(work, op, &path, Some(v), kind)?;
    }
    Ok(())
}

/// Whether `path` names a read-only attribute whose current value is `value` (clients repeat
/// `id` or `schemas` in a path-less value; that is not an attempt to change them).
fn unchanged_read_only(work: &Value, path: &PatchPath, value: &Value, kind: ResourceKind) -> bool {
    let read_only = path
        .path
        .leaf_def(kind)
        .is_some_and(|d| d.mutability == Mutability::ReadOnly);
    if !read_only || path.path.urn.is_some() || path.path.sub.is_some() {
        return false;
    }
    let Some(map) = work.as_object() else {
        return false;
    };
    let current = key_ci(map, &path.path.attr).and_then(|k| map.get(&k));
    match (current, value) {
        (Some(Value::Array(a)), Value::Array(b)) => {
            a.len() == b.len() && b.iter().all(|v| a.contains(v))
        }
        (Some(current), value) => current == value,
        (None, _) => false,
    }
}

/// The required attributes after the operations (RFC 7643: `userName`, a Group's
/// `displayName`): 400 `invalidValue` when one was removed.
fn check_required(work: &Value, kind: ResourceKind) -> Result<(), ScimError> {
    for def in definitions::core(kind)
        .attributes
        .iter()
        .filter(|d| d.required)
    {
        let present = get_ci(work, def.name)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty());
        if !present {
            return Err(ScimError::bad_request(
                "invalidValue",
                format!("{} is required and cannot be removed or emptied", def.name),
            ));
        }
    }
    Ok(())
}
