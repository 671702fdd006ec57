//! Attribute paths (RFC 7644 §3.10): `userName`, `name.givenName`, URN-qualified
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`, and the PATCH
//! form `emails[type eq "work"].value`; how a path finds its schema definition; and the
//! case-insensitive member lookups every SCIM module uses (RFC 7643 §2.1).

use serde_json::{Map, Value};

use super::super::discovery::definitions::{self, AttributeDef, SchemaDef};
use super::super::error::ScimError;
use super::super::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, ResourceKind, USER_SCHEMA};
use super::Expr;
use super::lexer::{Tok, tokenize};
use super::parser;

/// The schema URNs paths may be qualified with, spelled as we answer them.
const KNOWN_URNS: [&str; 3] = [USER_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA];

/// An attribute path: an optional schema URN, an attribute, an optional sub-attribute. An empty
/// `attr` with a `urn` names a whole extension object (only in PATCH paths and `attributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN the path is qualified with.
    pub urn: Option<String>,
    /// The attribute name, as written.
    pub attr: String,
    /// The sub-attribute name, as written.
    pub sub: Option<String>,
}

/// Where a path points in a resource of some kind.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    /// The extension whose object holds the attribute; `None` for the resource itself.
    pub extension: Option<&'static SchemaDef>,
    /// The attribute's definition, when the schema defines it.
    pub def: Option<&'static AttributeDef>,
}

impl AttrPath {
    /// Whether the path names a whole extension object.
    pub fn is_extension_root(&self) -> bool {
        self.attr.is_empty()
    }

    /// Where the path points in a `kind` resource; `None` when qualified with a URN the kind
    /// does not have. An unqualified name the core schema lacks is looked up in the extensions.
    pub fn resolve(&self, kind: ResourceKind) -> Option<Resolved> {
        match self.urn.as_deref() {
            Some(urn) if definitions::is_core(kind, urn) => Some(Resolved {
                extension: None,
                def: definitions::core_attribute(kind, &self.attr),
            }),
            Some(urn) => definitions::extension(kind, urn).map(|ext| Resolved {
                extension: Some(ext),
                def: ext.attribute(&self.attr),
            }),
            None => {
                if let Some(def) = definitions::core_attribute(kind, &self.attr) {
                    return Some(Resolved {
                        extension: None,
                        def: Some(def),
                    });
                }
                let found = definitions::extensions(kind)
                    .iter()
                    .find_map(|ext| ext.attribute(&self.attr).map(|def| (ext, def)));
                Some(match found {
                    Some((ext, def)) => Resolved {
                        extension: Some(ext),
                        def: Some(def),
                    },
                    None => Resolved {
                        extension: None,
                        def: None,
                    },
                })
            }
        }
    }

    /// The definition of the attribute the path ends at (the sub-attribute when there is one).
    pub fn leaf_def(&self, kind: ResourceKind) -> Option<&'static AttributeDef> {
        let def = self.resolve(kind)?.def?;
        match &self.sub {
            Some(sub) => def.sub(sub),
            None => Some(def),
        }
    }

    /// Splits one path word. `at` is its byte offset, for errors of `scim_type`.
    pub(super) fn from_word(
        word: &str,
        at: usize,
        scim_type: &'static str,
    ) -> Result<Self, ScimError> {
        let bad = |what: &str| {
            ScimError::bad_request(
                scim_type,
                format!("at byte {at}: {what} in attribute path {word:?}"),
            )
        };
        let lower = word.to_ascii_lowercase();
        let (urn, rest) = if lower.starts_with("urn:") {
            let known = KNOWN_URNS.iter().find_map(|urn| {
                let u = urn.to_ascii_lowercase();
                if lower == u {
                    Some((*urn, ""))
                } else if lower.starts_with(&u) && lower.as_bytes().get(u.len()) == Some(&b':') {
                    Some((*urn, &word[u.len() + 1..]))
                } else {
                    None
                }
            });
            match known {
                Some((urn, "")) => {
                    return Ok(Self {
                        urn: Some(urn.to_owned()),
                        attr: String::new(),
                        sub: None,
                    });
                }
                Some((urn, rest)) => (Some(urn.to_owned()), rest),
                None => match word.rfind(':') {
                    Some(p) if p + 1 < word.len() => (Some(word[..p].to_owned()), &word[p + 1..]),
                    _ => return Err(bad("no attribute after the schema URN")),
                },
            }
        } else {
            (None, word)
        };
        let mut parts = rest.split('.');
        let attr = parts.next().unwrap_or_default();
        let sub = parts.next();
        if parts.next().is_some() {
            return Err(bad("more than one sub-attribute"));
        }
        if !valid_name(attr) {
            return Err(bad("an invalid attribute name"));
        }
        if let Some(sub) = sub
            && !valid_name(sub)
        {
            return Err(bad("an invalid sub-attribute name"));
        }
        Ok(Self {
            urn,
            attr: attr.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }
}

/// RFC 7643 §2.1 `ATTRNAME = ALPHA *(nameChar)`, plus `$ref`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A PATCH target (RFC 7644 §3.5.2 `PATH = attrPath / valuePath [subAttr]`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute, with the sub-attribute (after `]` when there is a filter).
    pub path: AttrPath,
    /// The value filter selecting values of a multi-valued attribute.
    pub filter: Option<Expr>,
}

/// Parses a PATCH `path`; 400 `invalidPath` when malformed.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, ScimError> {
    const KIND: &str = "invalidPath";
    if input.len() > super::MAX_FILTER_BYTES {
        return Err(ScimError::bad_request(
            KIND,
            format!("the path is longer than {} bytes", super::MAX_FILTER_BYTES),
        ));
    }
    let tokens = tokenize(input, KIND)?;
    let Some((first, rest)) = tokens.split_first() else {
        return Err(ScimError::bad_request(KIND, "the path is empty"));
    };
    let Tok::Word(word) = &first.tok else {
        return Err(ScimError::bad_request(
            KIND,
            format!("at byte {}: expected an attribute name", first.at),
        ));
    };
    let mut path = AttrPath::from_word(word, first.at, KIND)?;
    if rest.is_empty() {
        return Ok(PatchPath { path, filter: None });
    }
    if rest[0].tok != Tok::LBracket || path.sub.is_some() || path.is_extension_root() {
        return Err(ScimError::bad_request(
            KIND,
            format!(
                "at byte {}: unexpected text after the attribute",
                rest[0].at
            ),
        ));
    }
    let close = rest
        .iter()
        .rposition(|t| t.tok == Tok::RBracket)
        .ok_or_else(|| ScimError::bad_request(KIND, "the value filter has no closing ']'"))?;
    let filter = parser::parse_tokens(&rest[1..close], input, KIND, true)?;
    match &rest[close + 1..] {
        [] => {}
        [dot, name] if dot.tok == Tok::Dot => {
            let Tok::Word(sub) = &name.tok else {
                return Err(ScimError::bad_request(
                    KIND,
                    format!("at byte {}: expected a sub-attribute name", name.at),
                ));
            };
            if !valid_name(sub) {
                return Err(ScimError::bad_request(
                    KIND,
                    format!("at byte {}: invalid sub-attribute name {sub:?}", name.at),
                ));
            }
            path.sub = Some(sub.clone());
        }
        [other, ..] => {
            return Err(ScimError::bad_request(
                KIND,
                format!(
                    "at byte {}: unexpected text after the value filter",
                    other.at
                ),
            ));
        }
    }
    Ok(PatchPath {
        path,
        filter: Some(filter),
    })
}

/// Parses one entry of an `attributes`, `excludedAttributes` or `sortBy` parameter (no value
/// filter); `scim_type` is the error kind.
pub fn parse_attr_path(input: &str, scim_type: &'static str) -> Result<AttrPath, ScimError> {
    let trimmed = input.trim();
    let tokens = tokenize(trimmed, scim_type)?;
    match tokens.as_slice() {
        [token] => match &token.tok {
            Tok::Word(word) => AttrPath::from_word(word, 0, scim_type),
            _ => Err(ScimError::bad_request(
                scim_type,
                format!("{trimmed:?} is not an attribute path"),
            )),
        },
        _ => Err(ScimError::bad_request(
            scim_type,
            format!("{trimmed:?} is not an attribute path"),
        )),
    }
}

/// The member of `object` named `name`, ignoring case (RFC 7643 §2.1).
pub fn get_ci<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    let map = object.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The key of `map` spelled like `name` ignoring case, as the map spells it.
pub fn key_ci(map: &Map<String, Value>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_owned());
    }
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}
