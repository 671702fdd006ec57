//! One operation at one path: finding the target (the resource or an extension object, the
//! attribute, the sub-attribute, the values a filter selects), coercing the value to the
//! attribute's definition, and the add / replace / remove semantics of RFC 7644 §3.5.2.

use serde_json::{Map, Value};

use super::super::ResourceKind;
use super::super::discovery::definitions::{AttrType, AttributeDef, Mutability, SchemaDef};
use super::super::error::ScimError;
use super::super::filter::{self, CompareOp, Expr, Literal, PatchPath, get_ci, key_ci};
use super::Op;

fn invalid_path(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request("invalidPath", detail)
}

fn invalid_value(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request("invalidValue", detail)
}

/// Applies `op` with `value` at `target`.
pub(super) fn at_path(
    work: &mut Value,
    op: Op,
    target: &PatchPath,
    value: Option<&Value>,
    kind: ResourceKind,
) -> Result<(), ScimError> {
    let path = &target.path;
    let resolved = path.resolve(kind).ok_or_else(|| {
        invalid_path(format!(
            "{} is not a schema of this resource",
            path.urn.as_deref().unwrap_or_default()
        ))
    })?;
    if path.is_extension_root() {
        let ext = resolved
            .extension
            .ok_or_else(|| invalid_path("the core schema URN names no attribute"))?;
        return extension_root(work, op, ext, value, kind);
    }
    let def = resolved.def.ok_or_else(|| {
        invalid_path(format!(
            "{:?} is not an attribute of this resource",
            path.attr
        ))
    })?;
    let sub_def = match &path.sub {
        None => None,
        Some(sub) if def.is_complex() => Some(def.sub(sub).ok_or_else(|| {
            invalid_path(format!("{:?} is not a sub-attribute of {}", sub, def.name))
        })?),
        Some(_) => return Err(invalid_path(format!("{} has no sub-attributes", def.name))),
    };
    let read_only = |d: &AttributeDef| d.mutability == Mutability::ReadOnly;
    if read_only(def) || sub_def.is_some_and(read_only) {
        return Err(ScimError::bad_request(
            "mutability",
            format!("{} is read-only", def.name),
        ));
    }
    let value = match value {
        Some(v) => Some(match sub_def {
            Some(sub) => coerce(v, sub)?,
            None => coerce_attribute(v, def)?,
        }),
        None => None,
    };
    // A null value of add or replace unassigns (RFC 7643 §2.5).
    let (op, value) = match (op, value) {
        (Op::Add | Op::Replace, Some(Value::Null)) => (Op::Remove, None),
        other => other,
    };
    let Some(container) = container(work, resolved.extension, op != Op::Remove) else {
        return Ok(());
    };
    let key = key_ci(container, def.name).unwrap_or_else(|| def.name.to_owned());
    let before = primaries(container.get(&key));
    match (&target.filter, sub_def) {
        (Some(filter), _) => filtered(container, &key, def, filter, sub_def, op, value, kind)?,
        (None, Some(sub)) => sub_attribute(container, &key, def, sub, op, value),
        (None, None) => whole(container, &key, def, op, value),
    }
    if container.get(&key).is_some_and(is_unassigned) {
        container.remove(&key);
    }
    fix_primary(container.get_mut(&key), &before);
    Ok(())
}

/// The object holding the attribute: the resource, or an extension's object (created when
/// `create`; `None` when absent and not created).
fn container<'a>(
    work: &'a mut Value,
    extension: Option<&'static SchemaDef>,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let root = work.as_object_mut()?;
    let Some(ext) = extension else {
        return Some(root);
    };
    let key = match key_ci(root, ext.id) {
        Some(key) => key,
        None if create => ext.id.to_owned(),
        None => return None,
    };
    let slot = root.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// `path` is an extension URN alone: the operation applies to each attribute of `value`, or
/// removes the whole extension.
fn extension_root(
    work: &mut Value,
    op: Op,
    ext: &'static SchemaDef,
    value: Option<&Value>,
    kind: ResourceKind,
) -> Result<(), ScimError> {
    if op == Op::Remove {
        if let Some(root) = work.as_object_mut()
            && let Some(key) = key_ci(root, ext.id)
        {
            root.remove(&key);
        }
        return Ok(());
    }
    let Some(Value::Object(members)) = value else {
        return Err(invalid_value(format!(
            "the value of {} must be an object",
            ext.id
        )));
    };
    // Replacing the extension replaces all of it: attributes the value leaves out go.
    if op == Op::Replace
        && let Some(root) = work.as_object_mut()
        && let Some(key) = key_ci(root, ext.id)
    {
        root.remove(&key);
    }
    // Clients that serialize the extension as a model repeat its `schemas` inside it; the
    // resource's own `schemas` follows the extension's values instead.
    for (name, v) in members
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("schemas"))
    {
        let mut inner = filter::parse_patch_path(name)?;
        if inner.path.urn.is_some() || inner.filter.is_some() {
            return Err(invalid_path(format!(
                "{name:?} inside {} must be a plain attribute",
                ext.id
            )));
        }
        inner.path.urn = Some(ext.id.to_owned());
        at_path(work, op, &inner, Some(v), kind)?;
    }
    Ok(())
}

/// `value` for the whole attribute `def`: a list for a multi-valued one (a single value is
/// wrapped), each element coerced.
fn coerce_attribute(value: &Value, def: &AttributeDef) -> Result<Value, ScimError> {
    if !def.multi_valued || value.is_null() {
        return coerce(value, def);
    }
    let items = match value {
        Value::Array(items) => items.iter().map(|v| coerce(v, def)).collect(),
        single => vec![coerce(single, def)],
    };
    items
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// One value of `def` in the type its schema says: booleans given as strings become booleans
/// (Entra sends `"False"`), numbers given for strings become strings, complex values have
/// their sub-attributes coerced and unknown ones refused.
fn coerce(value: &Value, def: &AttributeDef) -> Result<Value, ScimError> {
    let wrong = || {
        invalid_value(format!(
            "{} must be of type {}, not {value}",
            def.name,
            def.ty.name()
        ))
    };
    Ok(match (def.ty, value) {
        (_, Value::Null) => Value::Null,
        (AttrType::Boolean, Value::Bool(_)) => value.clone(),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Value::Bool(true)
        }
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Value::Bool(false)
        }
        (AttrType::String, Value::Number(n)) => Value::String(n.to_string()),
        (AttrType::String | AttrType::Reference(_) | AttrType::Binary, Value::String(_)) => {
            value.clone()
        }
        (AttrType::DateTime, Value::String(s)) => {
            chrono::DateTime::parse_from_rfc3339(s).map_err(|_| wrong())?;
            value.clone()
        }
        (AttrType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => value.clone(),
        (AttrType::Decimal, Value::Number(_)) => value.clone(),
        (AttrType::Complex, Value::Object(members)) => {
            let mut out = Map::new();
            for (name, v) in members {
                let sub = def.sub(name).ok_or_else(|| {
                    invalid_value(format!("{name:?} is not a sub-attribute of {}", def.name))
                })?;
                let v = coerce(v, sub)?;
                if !v.is_null() {
                    out.insert(name.clone(), v);
                }
            }
            Value::Object(out)
        }
        _ => return Err(wrong()),
    })
}

/// No filter, no sub-attribute: the attribute as a whole.
fn whole(
    map: &mut Map<String, Value>,
    key: &str,
    def: &AttributeDef,
    op: Op,
    value: Option<Value>,
) {
    match (op, value) {
        (Op::Remove, Some(Value::Array(gone))) if def.multi_valued => {
            // Entra: `remove` with `path: "members"` and the members to remove as the value.
            if let Some(Value::Array(items)) = map.get_mut(key) {
                items.retain(|item| !gone.iter().any(|g| same_value(item, g, def)));
            }
        }
        (Op::Remove, _) | (_, None) => {
            map.remove(key);
        }
        (Op::Add, Some(Value::Array(new))) if def.multi_valued => {
            let slot = map
                .entry(key.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            if let Value::Array(items) = slot {
                for value in new {
                    let duplicate = items.iter().any(|item| {
                        item == &value || (def.name == "members" && same_value(item, &value, def))
                    });
                    if !duplicate {
                        items.push(value);
                    }
                }
            }
        }
        (_, Some(Value::Object(new))) if def.is_complex() && !def.multi_valued => {
            // RFC 7644 §3.5.2.1/3: a complex attribute's given sub-attributes are set, the
            // others kept.
            let slot = map
                .entry(key.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(existing) = slot {
                for (name, v) in new {
                    let k = key_ci(existing, &name).unwrap_or(name);
                    existing.insert(k, v);
                }
            }
        }
        (_, Some(value)) => {
            map.insert(key.to_owned(), value);
        }
    }
}

/// No filter, a sub-attribute: `name.givenName`, or `emails.type` on every value.
fn sub_attribute(
    map: &mut Map<String, Value>,
    key: &str,
    def: &AttributeDef,
    sub: &AttributeDef,
    op: Op,
    value: Option<Value>,
) {
    let set = |object: &mut Map<String, Value>, value: &Option<Value>| {
        let k = key_ci(object, sub.name).unwrap_or_else(|| sub.name.to_owned());
        match value {
            Some(v) if op != Op::Remove => {
                object.insert(k, v.clone());
            }
            _ => {
                object.remove(&k);
            }
        }
    };
    let creating = op != Op::Remove && value.is_some();
    match map.get_mut(key) {
        Some(Value::Array(items)) if def.multi_valued && !items.is_empty() => {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                set(item, &value);
            }
        }
        Some(Value::Object(object)) if !def.multi_valued => set(object, &value),
        _ if creating => {
            let mut object = Map::new();
            set(&mut object, &value);
            let fresh = Value::Object(object);
            map.insert(
                key.to_owned(),
                if def.multi_valued {
                    Value::Array(vec![fresh])
                } else {
                    fresh
                },
            );
        }
        _ => {}
    }
}

/// A value filter: `emails[type eq "work"]`, `emails[type eq "work"].value`,
/// `members[value eq "…"]`.
#[allow(clippy::too_many_arguments)]
fn filtered(
    map: &mut Map<String, Value>,
    key: &str,
    def: &'static AttributeDef,
    filter: &Expr,
    sub: Option<&AttributeDef>,
    op: Op,
    value: Option<Value>,
    kind: ResourceKind,
) -> Result<(), ScimError> {
    if !def.multi_valued || !def.is_complex() {
        return Err(invalid_path(format!(
            "{} is not a multi-valued complex attribute: it has no values to filter",
            def.name
        )));
    }
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(vec![slot.take()]);
    }
    let Value::Array(items) = slot else {
        return Ok(());
    };
    let selected: Vec<usize> = (0..items.len())
        .filter(|&i| filter::value_matches(filter, &items[i], kind, def))
        .collect();
    if op == Op::Remove {
        if selected.is_empty() {
            return Err(ScimError::bad_request(
                "noTarget",
                format!("no value of {} matches the filter", def.name),
            ));
        }
        match sub {
            Some(sub) => {
                for &i in &selected {
                    if let Some(object) = items[i].as_object_mut()
                        && let Some(k) = key_ci(object, sub.name)
                    {
                        object.remove(&k);
                    }
                }
            }
            None => {
                let mut index = 0;
                items.retain(|_| {
                    let keep = !selected.contains(&index);
                    index += 1;
                    keep
                });
            }
        }
        return Ok(());
    }
    let Some(value) = value else {
        return Ok(());
    };
    let value = match (sub, value) {
        (Some(sub), v) => {
            let mut object = Map::new();
            object.insert(sub.name.to_owned(), v);
            object
        }
        (None, Value::Object(object)) => object,
        (None, Value::Array(mut one)) if one.len() == 1 => match one.pop() {
            Some(Value::Object(object)) => object,
            _ => {
                return Err(invalid_value(format!(
                    "the value for {} must be an object",
                    def.name
                )));
            }
        },
        (None, _) => {
            return Err(invalid_value(format!(
                "the value for {} must be an object",
                def.name
            )));
        }
    };
    if selected.is_empty() {
        // Entra: a filtered replace or add with no match adds the value the filter describes.
        let mut fresh = Map::new();
        if !equalities(filter, def, &mut fresh) {
            return Err(ScimError::bad_request(
                "noTarget",
                format!(
                    "no value of {} matches the filter, and the filter does not describe one to add",
                    def.name
                ),
            ));
        }
        fresh.extend(value);
        items.push(Value::Object(fresh));
        return Ok(());
    }
    for &i in &selected {
        if op == Op::Replace && sub.is_none() {
            items[i] = Value::Object(value.clone());
        } else if let Some(object) = items[i].as_object_mut() {
            for (name, v) in &value {
                let k = key_ci(object, name).unwrap_or_else(|| name.clone());
                object.insert(k, v.clone());
            }
        }
    }
    Ok(())
}

/// Collects the `sub eq literal` terms of a conjunction into `out`; false when the filter is
/// anything else.
fn equalities(filter: &Expr, def: &AttributeDef, out: &mut Map<String, Value>) -> bool {
    match filter {
        Expr::And(a, b) => equalities(a, def, out) && equalities(b, def, out),
        Expr::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.sub.is_none() && path.urn.is_none() => {
            let Some(sub) = def.sub(&path.attr) else {
                return false;
            };
            let v = match value {
                Literal::Str(s) => Value::String(s.clone()),
                Literal::Bool(b) => Value::Bool(*b),
                Literal::Number(n) => {
                    serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
                }
                Literal::Null => return false,
            };
            out.insert(sub.name.to_owned(), v);
            true
        }
        _ => false,
    }
}

/// Whether two values of `def` are the same value: by their `value` sub-attribute when both
/// have one (caseExact as the schema says), else equal as JSON.
fn same_value(a: &Value, b: &Value, def: &AttributeDef) -> bool {
    match (get_ci(a, "value"), get_ci(b, "value")) {
        (Some(Value::String(x)), Some(Value::String(y))) => {
            let exact = def.sub("value").is_some_and(|d| d.case_exact);
            if exact {
                x == y
            } else {
                x.eq_ignore_ascii_case(y)
            }
        }
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn is_unassigned(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

fn is_primary(value: &Value) -> bool {
    get_ci(value, "primary").and_then(Value::as_bool) == Some(true)
}

/// The values marked primary before an operation.
fn primaries(values: Option<&Value>) -> Vec<Value> {
    match values {
        Some(Value::Array(items)) => items.iter().filter(|v| is_primary(v)).cloned().collect(),
        _ => Vec::new(),
    }
}

/// RFC 7643 §2.4: at most one value is primary. The one the operation marked wins (the last
/// when several); when it marked none, the first.
fn fix_primary(values: Option<&mut Value>, before: &[Value]) {
    let Some(Value::Array(items)) = values else {
        return;
    };
    let marked: Vec<usize> = (0..items.len())
        .filter(|&i| is_primary(&items[i]))
        .collect();
    if marked.len() < 2 {
        return;
    }
    let keep = marked
        .iter()
        .rev()
        .find(|&&i| !before.contains(&items[i]))
        .or_else(|| marked.first())
        .copied();
    for i in marked {
        if Some(i) != keep
            && let Some(object) = items[i].as_object_mut()
            && let Some(k) = key_ci(object, "primary")
        {
            object.insert(k, Value::Bool(false));
        }
    }
}

/// After the operations: an extension object left empty is removed with its URN from
/// `schemas`; one that has values is named in `schemas`.
pub(super) fn tidy_extensions(work: &mut Value, kind: ResourceKind) {
    let Some(root) = work.as_object_mut() else {
        return;
    };
    for ext in super::super::discovery::definitions::extensions(kind) {
        let present = match key_ci(root, ext.id) {
            Some(key) if root.get(&key).is_some_and(is_unassigned) => {
                root.remove(&key);
                false
            }
            Some(_) => true,
            None => false,
        };
        let schemas_key = key_ci(root, "schemas").unwrap_or_else(|| "schemas".to_owned());
        let schemas = root
            .entry(schemas_key)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = schemas {
            let listed = list
                .iter()
                .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext.id)));
            if present && !listed {
                list.push(Value::String(ext.id.to_owned()));
            } else if !present && listed {
                list.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext.id)));
            }
        }
    }
}
