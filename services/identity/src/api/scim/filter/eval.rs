//! Evaluation of a filter on a SCIM JSON document: names ignore case, strings compare ignoring
//! case unless the schema says `caseExact`, a multi-valued attribute matches when any value
//! does, `pr` means present and non-empty, dates compare as instants.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use super::super::ResourceKind;
use super::super::discovery::definitions::AttributeDef;
use super::path::{AttrPath, get_ci};
use super::{CompareOp, Expr, Literal};

/// Whether `root` matches `expr`. `parent` is the multi-valued attribute whose value `root` is,
/// inside a value filter (its sub-attributes are then the names).
pub(super) fn eval(
    expr: &Expr,
    root: &Value,
    kind: ResourceKind,
    parent: Option<&'static AttributeDef>,
) -> bool {
    match expr {
        Expr::And(a, b) => eval(a, root, kind, parent) && eval(b, root, kind, parent),
        Expr::Or(a, b) => eval(a, root, kind, parent) || eval(b, root, kind, parent),
        Expr::Not(inner) => !eval(inner, root, kind, parent),
        Expr::Present(path) => {
            let (values, _) = values_at(root, path, kind, parent);
            values.into_iter().any(non_empty)
        }
        Expr::Compare { path, op, value } => {
            let (values, def) = values_at(root, path, kind, parent);
            let case_exact = def.is_some_and(|d| d.case_exact);
            let comparable = values.into_iter().map(scalar);
            match (op, value) {
                (CompareOp::Eq, Literal::Null) => !comparable.flatten().any(non_empty),
                (CompareOp::Ne, Literal::Null) => comparable.flatten().any(non_empty),
                (CompareOp::Ne, lit) => !comparable
                    .flatten()
                    .any(|v| compare(v, CompareOp::Eq, lit, case_exact)),
                (op, lit) => comparable
                    .flatten()
                    .any(|v| compare(v, *op, lit, case_exact)),
            }
        }
        Expr::ValuePath { path, filter } => {
            let (values, def) = values_at(root, path, kind, parent);
            values
                .into_iter()
                .any(|v| v.is_object() && eval(filter, v, kind, def))
        }
    }
}

/// The values `path` reaches in `root` (arrays flattened), and the definition of what they are.
pub(crate) fn values_at<'a>(
    root: &'a Value,
    path: &AttrPath,
    kind: ResourceKind,
    parent: Option<&'static AttributeDef>,
) -> (Vec<&'a Value>, Option<&'static AttributeDef>) {
    let (base, def) = match parent {
        Some(parent) => (Some(root), parent.sub(&path.attr)),
        None => match path.resolve(kind) {
            None => return (Vec::new(), None),
            Some(resolved) => {
                let base = match resolved.extension {
                    Some(ext) => get_ci(root, ext.id),
                    None => Some(root),
                };
                (base, resolved.def)
            }
        },
    };
    let mut values = Vec::new();
    if let Some(value) = base.and_then(|b| get_ci(b, &path.attr)) {
        flatten_into(value, &mut values);
    }
    let Some(sub) = &path.sub else {
        return (values, def);
    };
    let mut subs = Vec::new();
    for value in values {
        if let Some(v) = get_ci(value, sub) {
            flatten_into(v, &mut subs);
        }
    }
    (subs, def.and_then(|d| d.sub(sub)))
}

fn flatten_into<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => out.extend(items.iter()),
        other => out.push(other),
    }
}

/// A complex value compares by its `value` sub-attribute (`emails co "@example.com"`).
fn scalar(value: &Value) -> Option<&Value> {
    match value {
        Value::Object(_) => get_ci(value, "value"),
        other => Some(other),
    }
}

/// RFC 7644 `pr`: a value that is not null, not empty, not an empty list or object.
pub(crate) fn non_empty(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(non_empty),
        Value::Object(map) => !map.is_empty(),
        _ => true,
    }
}

fn fold(s: &str, case_exact: bool) -> String {
    if case_exact {
        s.to_owned()
    } else {
        s.to_lowercase()
    }
}

fn instant(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

fn ordered(ord: Option<Ordering>, op: CompareOp) -> bool {
    match (ord, op) {
        (Some(o), CompareOp::Gt) => o == Ordering::Greater,
        (Some(o), CompareOp::Ge) => o != Ordering::Less,
        (Some(o), CompareOp::Lt) => o == Ordering::Less,
        (Some(o), CompareOp::Le) => o != Ordering::Greater,
        _ => false,
    }
}

fn compare(value: &Value, op: CompareOp, lit: &Literal, case_exact: bool) -> bool {
    match (value, lit) {
        (Value::String(s), Literal::Str(l)) => {
            if op.is_ordering() {
                if let (Some(a), Some(b)) = (instant(s), instant(l)) {
                    return ordered(Some(a.cmp(&b)), op);
                }
            } else if op == CompareOp::Eq
                && let (Some(a), Some(b)) = (instant(s), instant(l))
            {
                return a == b;
            }
            let (a, b) = (fold(s, case_exact), fold(l, case_exact));
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                _ => ordered(Some(a.cmp(&b)), op),
            }
        }
        (Value::Number(n), Literal::Number(l)) => {
            let Some(n) = n.as_f64() else { return false };
            match op {
                CompareOp::Eq => n == *l,
                CompareOp::Ne => n != *l,
                _ => ordered(n.partial_cmp(l), op),
            }
        }
        (Value::Bool(b), Literal::Bool(l)) => match op {
            CompareOp::Eq => b == l,
            CompareOp::Ne => b != l,
            _ => false,
        },
        _ => false,
    }
}
