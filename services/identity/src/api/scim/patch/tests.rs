//! Rule ID-14: PATCH in the dialects of Okta, Entra and the RFC.

use serde_json::{Value, json};

use super::super::{
    ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, PATCH_OP_SCHEMA, ResourceKind, USER_SCHEMA,
};
use super::apply;

fn user() -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "id": "usr_1",
        "userName": "ann@example.com",
        "name": { "givenName": "Ann", "familyName": "Lee" },
        "active": true,
        "emails": [{ "value": "ann@example.com", "type": "work", "primary": true }],
        "meta": { "resourceType": "User", "version": "W/\"1\"" }
    })
}

fn group() -> Value {
    json!({
        "schemas": [GROUP_SCHEMA],
        "id": "grp_1",
        "displayName": "Engineering",
        "members": [{ "value": "usr_1", "display": "Ann" }]
    })
}

fn ops(operations: Value) -> Value {
    json!({ "schemas": [PATCH_OP_SCHEMA], "Operations": operations })
}

fn patched(mut doc: Value, operations: Value, kind: ResourceKind) -> Value {
    match apply(&mut doc, &ops(operations), kind) {
        Ok(()) => doc,
        Err(e) => panic!("patch refused: {e:?}"),
    }
}

fn refused(doc: Value, body: Value, kind: ResourceKind) -> &'static str {
    let mut copy = doc.clone();
    match apply(&mut copy, &body, kind) {
        Ok(()) => panic!("patch applied: {copy}"),
        Err(e) => {
            assert_eq!(e.status.as_u16(), 400);
            assert_eq!(
                copy, doc,
                "a refused patch must leave the resource unchanged"
            );
            e.scim_type.unwrap_or("none")
        }
    }
}

#[test]
fn id_14_patch_okta_pathless_replace_of_active() {
    let doc = patched(
        user(),
        json!([{ "op": "replace", "value": { "active": false } }]),
        ResourceKind::User,
    );
    assert_eq!(doc["active"], json!(false));
    // Okta renames a group with its id repeated in the value.
    let doc = patched(
        group(),
        json!([{ "op": "replace", "value": { "id": "grp_1", "displayName": "Eng" } }]),
        ResourceKind::Group,
    );
    assert_eq!(doc["displayName"], json!("Eng"));
    assert_eq!(doc["id"], json!("grp_1"));
}

#[test]
fn id_14_patch_entra_capitalised_ops_filtered_paths_urn_keys_and_string_booleans() {
    let doc = patched(
        user(),
        json!([
            { "op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ann.lee@example.com" },
            { "op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100" },
            { "op": "Replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St" },
            { "op": "Add", "value": {
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager": { "value": "usr_9" },
                "name.givenName": "Anne",
                "displayName": "Anne Lee"
            } },
            { "op": "Replace", "path": "active", "value": "False" }
        ]),
        ResourceKind::User,
    );
    assert_eq!(
        doc["emails"],
        json!([{ "value": "ann.lee@example.com", "type": "work", "primary": true }])
    );
    assert_eq!(
        doc["phoneNumbers"],
        json!([{ "type": "mobile", "value": "+1 555 0100" }])
    );
    assert_eq!(
        doc["addresses"],
        json!([{ "type": "work", "streetAddress": "1 Main St" }])
    );
    assert_eq!(doc[ENTERPRISE_USER_SCHEMA]["department"], json!("Sales"));
    assert_eq!(
        doc[ENTERPRISE_USER_SCHEMA]["manager"]["value"],
        json!("usr_9")
    );
    assert_eq!(
        doc["name"],
        json!({ "givenName": "Anne", "familyName": "Lee" })
    );
    assert_eq!(doc["displayName"], json!("Anne Lee"));
    assert_eq!(doc["active"], json!(false));
    assert!(
        doc["schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(ENTERPRISE_USER_SCHEMA)))
    );
    // Reactivation, again as a string, in a path-less value.
    let doc = patched(
        doc,
        json!([{ "op": "Replace", "value": { "active": "True" } }]),
        ResourceKind::User,
    );
    assert_eq!(doc["active"], json!(true));
    // Removing the extension's last attribute removes the extension and its schema URN.
    let doc = patched(
        doc,
        json!([{ "op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User" }]),
        ResourceKind::User,
    );
    assert!(doc.get(ENTERPRISE_USER_SCHEMA).is_none());
    assert_eq!(doc["schemas"], json!([USER_SCHEMA]));
}

#[test]
fn id_14_patch_group_members_add_and_remove_in_every_form() {
    let doc = patched(
        group(),
        json!([{ "op": "add", "path": "members", "value": [{ "value": "usr_2" }, { "value": "usr_1" }, { "value": "usr_3" }] }]),
        ResourceKind::Group,
    );
    let values: Vec<&str> = doc["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|v| v["value"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        values,
        ["usr_1", "usr_2", "usr_3"],
        "usr_1 is not added twice"
    );
    // Okta / RFC: remove with a filter.
    let doc = patched(
        doc,
        json!([{ "op": "remove", "path": "members[value eq \"usr_2\"]" }]),
        ResourceKind::Group,
    );
    // Entra: remove with path members and the values to remove.
    let doc = patched(
        doc,
        json!([{ "op": "Remove", "path": "members", "value": [{ "value": "usr_1" }] }]),
        ResourceKind::Group,
    );
    assert_eq!(doc["members"], json!([{ "value": "usr_3" }]));
    // Entra adds a single member as an object, not a list.
    let doc = patched(
        doc,
        json!([{ "op": "Add", "path": "members", "value": { "value": "usr_4" } }]),
        ResourceKind::Group,
    );
    assert_eq!(
        doc["members"],
        json!([{ "value": "usr_3" }, { "value": "usr_4" }])
    );
    // Removing every member leaves the attribute unassigned.
    let doc = patched(
        doc,
        json!([{ "op": "remove", "path": "members" }]),
        ResourceKind::Group,
    );
    assert!(doc.get("members").is_none());
    // member values are caseExact ids: a different case is another member.
    let err = refused(
        group(),
        ops(json!([{ "op": "remove", "path": "members[value eq \"USR_1\"]" }])),
        ResourceKind::Group,
    );
    assert_eq!(err, "noTarget");
}

#[test]
fn id_14_patch_multi_valued_add_appends_replace_replaces_and_primary_is_unique() {
    let doc = patched(
        user(),
        json!([{ "op": "add", "path": "emails", "value": [{ "value": "ann@home.org", "type": "home", "primary": true }] }]),
        ResourceKind::User,
    );
    assert_eq!(
        doc["emails"][0]["primary"],
        json!(false),
        "the new primary clears the old one"
    );
    assert_eq!(doc["emails"][1]["primary"], json!(true));
    let doc = patched(
        doc,
        json!([{ "op": "replace", "path": "emails[type eq \"work\"].primary", "value": true }]),
        ResourceKind::User,
    );
    assert_eq!(doc["emails"][0]["primary"], json!(true));
    assert_eq!(doc["emails"][1]["primary"], json!(false));
    let doc = patched(
        doc,
        json!([{ "op": "replace", "path": "emails", "value": [{ "value": "x@example.com" }] }]),
        ResourceKind::User,
    );
    assert_eq!(doc["emails"], json!([{ "value": "x@example.com" }]));
    // Exact duplicates are not added twice.
    let doc = patched(
        doc,
        json!([{ "op": "add", "path": "emails", "value": [{ "value": "x@example.com" }] }]),
        ResourceKind::User,
    );
    assert_eq!(doc["emails"].as_array().map(Vec::len), Some(1));
    // remove with a filter removes the matching values.
    let doc = patched(
        doc,
        json!([{ "op": "remove", "path": "emails[value co \"x@\"]" }]),
        ResourceKind::User,
    );
    assert!(doc.get("emails").is_none());
}

#[test]
fn id_14_patch_complex_and_sub_attributes() {
    let doc = patched(
        user(),
        json!([{ "op": "replace", "path": "name", "value": { "familyName": "Li" } }]),
        ResourceKind::User,
    );
    assert_eq!(
        doc["name"],
        json!({ "givenName": "Ann", "familyName": "Li" }),
        "replace of a complex keeps the other sub-attributes"
    );
    let doc = patched(
        doc,
        json!([{ "op": "remove", "path": "NAME.GIVENNAME" }]),
        ResourceKind::User,
    );
    assert_eq!(doc["name"], json!({ "familyName": "Li" }));
    let doc = patched(
        doc,
        json!([{ "op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "value": "usr_7" }]),
        ResourceKind::User,
    );
    assert_eq!(
        doc[ENTERPRISE_USER_SCHEMA]["manager"],
        json!({ "value": "usr_7" })
    );
    let doc = patched(
        doc,
        json!([{ "op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:title", "value": "CTO" }]),
        ResourceKind::User,
    );
    assert_eq!(doc["title"], json!("CTO"));
    let doc = patched(
        doc,
        json!([{ "op": "replace", "path": "title", "value": null }]),
        ResourceKind::User,
    );
    assert!(doc.get("title").is_none(), "a null value unassigns");
}

#[test]
fn id_14_patch_read_only_required_and_malformed_are_refused() {
    let u = || user();
    let k = ResourceKind::User;
    assert_eq!(
        refused(
            u(),
            ops(json!([{ "op": "replace", "path": "id", "value": "x" }])),
            k
        ),
        "mutability"
    );
    assert_eq!(
        refused(
            u(),
            ops(json!([{ "op": "replace", "path": "meta.version", "value": "x" }])),
            k
        ),
        "mutability"
    );
    assert_eq!(
        refused(
            u(),
            ops(json!([{ "op": "add", "path": "groups", "value": [{ "value": "grp_1" }] }])),
            k
        ),
        "mutability"
    );
    assert_eq!(
        refused(u(), ops(json!([{ "op": "remove", "path": "schemas" }])), k),
        "mutability"
    );
    assert_eq!(
        refused(
            u(),
            ops(json!([{ "op": "replace", "value": { "id": "other" } }])),
            k
        ),
        "mutability"
    );
    assert_eq!(
        refused(u(), ops(json!([{ "op": "remove", "path": "userName" }])), k),
        "invalidValue"
    );
    assert_eq!(
        refused(
            group(),
            ops(json!([{ "op": "remove", "path": "displayName" }])),
            ResourceKind::Group
        ),
        "invalidValue"
    );
    assert_eq!(
        refused(u(), ops(json!([{ "op": "remove" }])), k),
        "noTarget"
    );
    assert_eq!(
        refused(u(), ops(json!([{ "op": "move", "path": "title" }])), k),
        "invalidSyntax"
    );
    assert_eq!(refused(u(), ops(json!([])), k), "invalidSyntax");
    assert_eq!(
        refused(
            u(),
            json!({ "Operations": [{ "op": "remove", "path": "title" }] }),
            k
        ),
        "invalidSyntax"
    );
    assert_eq!(refused(u(), json!([1]), k), "invalidSyntax");
    assert_eq!(
        refused(
            u(),
            ops(json!([{ "op": "replace", "path": "nosuch", "value": 1 }])),
            k
        ),
        "invalidPath"
    );
    assert_eq!(
        refused(
            u(),
            ops(json!([{ "op": "replace", "path": "emails[type eq", "value": 1 }])),
            k
        ),
        "invalidPath"
    );
    assert_eq!(
        refused(
            u(),
            ops(json!([{ "op": "replace", "path": "userName[value pr]", "value": 1 }])),
            k
        ),
        "invalidPath"
    );
    assert_eq!(
        refused(
            u(),
            ops(json!([{ "op": "replace", "path": "active", "value": "maybe" }])),
            k
        ),
        "invalidValue"
    );
    assert_eq!(
        refused(
            u(),
            ops(json!([{ "op": "replace", "path": "emails", "value": [{ "nosuch": 1 }] }])),
            k
        ),
        "invalidValue"
    );
    assert_eq!(
        refused(u(), ops(json!([{ "op": "add", "path": "title" }])), k),
        "invalidValue"
    );
    // The whole message fails when one operation does: the first did not stick.
    assert_eq!(
        refused(
            u(),
            ops(
                json!([{ "op": "replace", "path": "title", "value": "x" }, { "op": "replace", "path": "id", "value": "y" }])
            ),
            k
        ),
        "mutability"
    );
    // The op index is in the detail.
    let mut doc = user();
    let err = apply(
        &mut doc,
        &ops(json!([{ "op": "add", "path": "title", "value": "x" }, { "op": "bad" }])),
        k,
    )
    .err();
    assert!(err.is_some_and(|e| e.detail.starts_with("operation 1:")));
}

#[test]
fn id_14_patch_lower_case_operations_key_and_schema_case() {
    let mut doc = user();
    let body = json!({
        "schemas": ["URN:IETF:PARAMS:SCIM:API:MESSAGES:2.0:PATCHOP"],
        "operations": [{ "op": "REPLACE", "path": "DisplayName", "value": "Ann" }]
    });
    assert!(apply(&mut doc, &body, ResourceKind::User).is_ok());
    assert_eq!(doc["displayName"], json!("Ann"));
}
