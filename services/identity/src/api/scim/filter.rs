//! The SCIM filter language (RFC 7644 §3.4.2.2), parsed by hand: a lexer ([`lexer`]), a
//! recursive-descent parser with length, depth and term limits ([`parser`]) and an evaluator on
//! SCIM JSON documents ([`eval`]) that takes case-exactness and multi-valuedness from the schema
//! definitions in [`super::discovery`]. Attribute paths ([`AttrPath`], [`PatchPath`]) are parsed
//! here too, for PATCH, `attributes` and `sortBy`.

mod eval;
mod lexer;
mod parser;
mod path;
#[cfg(test)]
mod tests;

use serde_json::Value;

use super::discovery::definitions::AttributeDef;
use super::error::ScimError;
use super::{GROUP_SCHEMA, ResourceKind, USER_SCHEMA};

pub(crate) use eval::{non_empty, values_at};
pub use path::{AttrPath, PatchPath, Resolved, get_ci, key_ci, parse_attr_path, parse_patch_path};

/// The longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// The deepest nesting accepted (parentheses, `not`, value filters).
pub const MAX_FILTER_DEPTH: usize = 32;
/// The most attribute expressions (comparisons and `pr`) in one filter.
pub const MAX_FILTER_TERMS: usize = 256;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Contains.
    Co,
    /// Starts with.
    Sw,
    /// Ends with.
    Ew,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

impl CompareOp {
    /// Whether it orders values (refused on booleans and complex attributes).
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }
}

/// A literal a comparison compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A string.
    Str(String),
    /// A number.
    Number(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// The inner expression does not hold.
    Not(Box<Expr>),
    /// `path op value`.
    Compare {
        /// The attribute.
        path: AttrPath,
        /// The operator.
        op: CompareOp,
        /// The value.
        value: Literal,
    },
    /// `path pr`.
    Present(AttrPath),
    /// `path[filter]`: some value of the multi-valued attribute matches `filter`, whose paths
    /// name its sub-attributes.
    ValuePath {
        /// The multi-valued attribute.
        path: AttrPath,
        /// The filter on each of its values.
        filter: Box<Expr>,
    },
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

/// Parses `input`; 400 `invalidFilter` when malformed, too long or too deep.
pub fn parse(input: &str) -> Result<Filter, ScimError> {
    parser::parse_filter(input).map(|expr| Filter { expr })
}

impl Filter {
    /// Whether `resource` (a SCIM JSON document) matches; its kind is read from its `schemas`
    /// (a Group when they name the Group schema, else a User).
    pub fn matches(&self, resource: &Value) -> bool {
        self.matches_as(resource, kind_of(resource))
    }

    /// Whether `resource`, a document of `kind`, matches.
    pub fn matches_as(&self, resource: &Value, kind: ResourceKind) -> bool {
        eval::eval(&self.expr, resource, kind, None)
    }

    /// The expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// When the whole filter is `<attribute> eq "<value>"` for `attribute` (compared ignoring
    /// case, e.g. `userName`, `externalId`, `displayName`, `id`), the value: a store can look it
    /// up directly instead of scanning.
    pub fn equality_on(&self, attribute: &str) -> Option<&str> {
        match &self.expr {
            Expr::Compare {
                path,
                op: CompareOp::Eq,
                value: Literal::Str(value),
            } if path.sub.is_none()
                && path.attr.eq_ignore_ascii_case(attribute)
                && path.urn.as_deref().is_none_or(|urn| {
                    urn.eq_ignore_ascii_case(USER_SCHEMA) || urn.eq_ignore_ascii_case(GROUP_SCHEMA)
                }) =>
            {
                Some(value)
            }
            _ => None,
        }
    }
}

/// The kind of a SCIM document, from its `schemas`.
fn kind_of(resource: &Value) -> ResourceKind {
    let is_group = resource
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|schemas| {
            schemas
                .iter()
                .filter_map(Value::as_str)
                .any(|s| s.eq_ignore_ascii_case(GROUP_SCHEMA))
        });
    if is_group {
        ResourceKind::Group
    } else {
        ResourceKind::User
    }
}

/// Whether `value`, one value of the multi-valued attribute `def`, matches the value filter
/// `expr` (whose paths are `def`'s sub-attributes): how PATCH selects `emails[type eq "work"]`.
pub fn value_matches(
    expr: &Expr,
    value: &Value,
    kind: ResourceKind,
    def: &'static AttributeDef,
) -> bool {
    value.is_object() && eval::eval(expr, value, kind, Some(def))
}
