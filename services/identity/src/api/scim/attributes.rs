//! `attributes` and `excludedAttributes` (RFC 7644 §3.9): which attributes of a resource a
//! response carries. Names ignore case and may be URN-qualified or dotted sub-attributes; the
//! schema's `returned` decides what is always there (`id`, `schemas`, `userName`, a Group's
//! `displayName`) and what never is (`password`). The output keeps the document's own spelling
//! of keys; `meta.resourceType` stays even when `meta` is not asked for.

use serde_json::{Map, Value};

use super::ResourceKind;
use super::discovery::definitions::{self, AttributeDef, Returned, SchemaDef};
use super::filter::{AttrPath, parse_attr_path};

/// Where an attribute lives: the resource itself or an extension object.
#[derive(Clone, Copy)]
enum Scope {
    Core,
    Extension(&'static SchemaDef),
}

/// The paths of a comma-separated list; entries that are not attribute paths name nothing.
fn paths(list: Option<&str>) -> Vec<AttrPath> {
    list.map(|l| {
        l.split(',')
            .filter(|s| !s.trim().is_empty())
            .filter_map(|s| parse_attr_path(s, "invalidValue").ok())
            .collect()
    })
    .unwrap_or_default()
}

/// `resource` reduced to the attributes asked for (comma-separated lists, as in the query or a
/// `.search` body), keeping those always returned (`id`, `schemas`, and `userName` /
/// `displayName`). `attributes` wins when both lists are given.
pub fn project(
    resource: Value,
    attributes: Option<&str>,
    excluded: Option<&str>,
    kind: ResourceKind,
) -> Value {
    let requested = paths(attributes);
    let excluded = if requested.is_empty() {
        paths(excluded)
    } else {
        Vec::new()
    };
    let Value::Object(map) = resource else {
        return resource;
    };
    let mut out = Map::new();
    for (key, value) in map {
        let kept = match definitions::extension(kind, &key) {
            Some(ext) => extension(ext, value, &requested, &excluded, kind),
            None => {
                let def = definitions::core_attribute(kind, &key);
                attribute(Scope::Core, &key, def, value, &requested, &excluded, kind)
            }
        };
        if let Some(v) = kept {
            out.insert(key, v);
        }
    }
    Value::Object(out)
}

fn in_scope(path: &AttrPath, scope: Scope, kind: ResourceKind) -> bool {
    match (path.urn.as_deref(), scope) {
        (None, _) => true,
        (Some(urn), Scope::Core) => definitions::is_core(kind, urn),
        (Some(urn), Scope::Extension(ext)) => ext.id.eq_ignore_ascii_case(urn),
    }
}

fn extension(
    ext: &'static SchemaDef,
    value: Value,
    requested: &[AttrPath],
    excluded: &[AttrPath],
    kind: ResourceKind,
) -> Option<Value> {
    let names_whole = |p: &AttrPath| {
        p.is_extension_root()
            && p.urn
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(ext.id))
    };
    let whole_requested = requested.iter().any(names_whole);
    if excluded.iter().any(names_whole) {
        return None;
    }
    let Value::Object(map) = value else {
        return Some(value);
    };
    let mut out = Map::new();
    for (key, v) in map {
        let def = ext.attribute(&key);
        let kept = if whole_requested {
            (def.map(|d| d.returned) != Some(Returned::Never)).then_some(v)
        } else {
            attribute(
                Scope::Extension(ext),
                &key,
                def,
                v,
                requested,
                excluded,
                kind,
            )
        };
        if let Some(v) = kept {
            out.insert(key, v);
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// One attribute, kept whole, reduced to some sub-attributes, or dropped.
fn attribute(
    scope: Scope,
    key: &str,
    def: Option<&'static AttributeDef>,
    value: Value,
    requested: &[AttrPath],
    excluded: &[AttrPath],
    kind: ResourceKind,
) -> Option<Value> {
    let returned = def.map_or(Returned::Default, |d| d.returned);
    match returned {
        Returned::Never => return None,
        Returned::Always => return Some(value),
        Returned::Default | Returned::Request => {}
    }
    let names = |list: &'_ [AttrPath]| -> (bool, Vec<String>) {
        let mut whole = false;
        let mut subs = Vec::new();
        for p in list {
            if !p.is_extension_root()
                && p.attr.eq_ignore_ascii_case(key)
                && in_scope(p, scope, kind)
            {
                match &p.sub {
                    None => whole = true,
                    Some(sub) => subs.push(sub.clone()),
                }
            }
        }
        (whole, subs)
    };
    if !requested.is_empty() {
        let (whole, subs) = names(requested);
        if whole {
            return Some(value);
        }
        if !subs.is_empty() {
            return keep_subs(value, &subs, true);
        }
        if key.eq_ignore_ascii_case("meta") {
            return keep_subs(value, &["resourceType".to_owned()], true);
        }
        return None;
    }
    let (whole, subs) = names(excluded);
    if whole || (returned == Returned::Request) {
        return None;
    }
    if subs.is_empty() {
        Some(value)
    } else {
        keep_subs(value, &subs, false)
    }
}

/// `value` (an object, or a list of objects) with only the sub-attributes `subs` (`keep`) or
/// without them; `None` when nothing is left.
fn keep_subs(value: Value, subs: &[String], keep: bool) -> Option<Value> {
    let reduce = |map: Map<String, Value>| -> Option<Value> {
        let wanted = |k: &str| subs.iter().any(|s| s.eq_ignore_ascii_case(k));
        let out: Map<String, Value> = map.into_iter().filter(|(k, _)| wanted(k) == keep).collect();
        (!out.is_empty()).then_some(Value::Object(out))
    };
    match value {
        Value::Object(map) => reduce(map),
        Value::Array(items) => {
            let out: Vec<Value> = items
                .into_iter()
                .filter_map(|item| match item {
                    Value::Object(map) => reduce(map),
                    // A plain value has no sub-attributes to keep.
                    other => (!keep).then_some(other),
                })
                .collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => (!keep).then_some(other),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
    use super::*;

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "id": "usr_1",
            "externalId": "e1",
            "UserName": "ann@example.com",
            "name": { "givenName": "Ann", "familyName": "Lee" },
            "emails": [{ "value": "ann@example.com", "type": "work" }],
            "password": "never-shown",
            "meta": { "resourceType": "User", "version": "W/\"1\"" },
            ENTERPRISE_USER_SCHEMA: { "department": "Sales", "costCenter": "42" }
        })
    }

    #[test]
    fn id_14_attributes_keep_requested_and_always_returned() {
        let out = project(
            user(),
            Some("name.givenName, EMAILS.value"),
            None,
            ResourceKind::User,
        );
        assert_eq!(
            out,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "id": "usr_1",
                "UserName": "ann@example.com",
                "name": { "givenName": "Ann" },
                "emails": [{ "value": "ann@example.com" }],
                "meta": { "resourceType": "User" }
            })
        );
        let out = project(
            user(),
            Some(
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department,urn:ietf:params:scim:schemas:core:2.0:User:externalId",
            ),
            None,
            ResourceKind::User,
        );
        assert_eq!(
            out[ENTERPRISE_USER_SCHEMA],
            json!({ "department": "Sales" })
        );
        assert_eq!(out["externalId"], json!("e1"));
        assert!(out.get("name").is_none());
        let out = project(
            user(),
            Some(ENTERPRISE_USER_SCHEMA),
            None,
            ResourceKind::User,
        );
        assert_eq!(
            out[ENTERPRISE_USER_SCHEMA],
            json!({ "department": "Sales", "costCenter": "42" })
        );
    }

    #[test]
    fn id_14_attributes_excluded_never_removes_always_returned_and_password_never_shows() {
        let out = project(
            user(),
            None,
            Some("id,userName,schemas,name.familyName,emails,meta"),
            ResourceKind::User,
        );
        assert_eq!(out["id"], json!("usr_1"));
        assert_eq!(out["UserName"], json!("ann@example.com"));
        assert_eq!(out["name"], json!({ "givenName": "Ann" }));
        assert!(out.get("emails").is_none() && out.get("meta").is_none());
        assert!(out.get("password").is_none());
        let out = project(user(), None, None, ResourceKind::User);
        assert!(out.get("password").is_none());
        assert_eq!(out["emails"], user()["emails"]);
        let out = project(
            user(),
            None,
            Some(ENTERPRISE_USER_SCHEMA),
            ResourceKind::User,
        );
        assert!(out.get(ENTERPRISE_USER_SCHEMA).is_none());
        let group = json!({"schemas": [GROUP_SCHEMA], "id": "g", "displayName": "Eng", "members": [{"value": "u"}]});
        let out = project(
            group.clone(),
            None,
            Some("members,displayName"),
            ResourceKind::Group,
        );
        assert_eq!(
            out,
            json!({"schemas": [GROUP_SCHEMA], "id": "g", "displayName": "Eng"})
        );
        let out = project(group, Some("members.value"), None, ResourceKind::Group);
        assert_eq!(out["members"], json!([{"value": "u"}]));
    }
}
