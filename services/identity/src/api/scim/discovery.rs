//! The discovery documents (RFC 7644 §4): `/ServiceProviderConfig`, `/Schemas` and
//! `/ResourceTypes`, rendered from the attribute [`definitions`] the rest of the adapter follows.

pub mod definitions;

use serde_json::{Value, json};

use self::definitions::{AttrType, AttributeDef, Mutability, Returned, SchemaDef};
use super::list::MAX_RESULTS;
use super::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, LIST_RESPONSE_SCHEMA, USER_SCHEMA};

/// The schema URN of the ServiceProviderConfig resource.
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// The schema URN of a ResourceType resource.
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// The schema URN of a Schema resource.
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// `/ServiceProviderConfig`; `base` is the SCIM base URL (`…/scim/v2`) for `meta.location`.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": MAX_RESULTS },
        "changePassword": { "supported": false },
        "sort": { "supported": true },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with an organization's SCIM token (opscim_…) sent as \
                            'Authorization: Bearer <token>'; tokens are created with \
                            CreateScimToken by an owner or admin of the organization.",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig")
        }
    })
}

fn list_response(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": resources.len(),
        "itemsPerPage": resources.len(),
        "startIndex": 1,
        "Resources": resources
    })
}

fn attribute_json(def: &AttributeDef) -> Value {
    let mut out = json!({
        "name": def.name,
        "type": def.ty.name(),
        "multiValued": def.multi_valued,
        "description": def.description,
        "required": def.required,
        "caseExact": def.case_exact,
        "mutability": match def.mutability {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        },
        "returned": match def.returned {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        },
        "uniqueness": if def.unique_server { "server" } else { "none" },
    });
    if let Value::Object(map) = &mut out {
        if !def.canonical_values.is_empty() {
            map.insert("canonicalValues".into(), json!(def.canonical_values));
        }
        if let AttrType::Reference(types) = def.ty {
            map.insert("referenceTypes".into(), json!(types));
        }
        if def.is_complex() {
            let subs: Vec<Value> = def.sub_attributes.iter().map(attribute_json).collect();
            map.insert("subAttributes".into(), Value::Array(subs));
        }
    }
    out
}

fn schema_json(base: &str, schema: &SchemaDef) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": schema.attributes.iter().map(attribute_json).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{}", schema.id)
        }
    })
}

/// `/Schemas` as a ListResponse.
pub fn schemas(base: &str) -> Value {
    list_response(
        definitions::ALL
            .iter()
            .map(|s| schema_json(base, s))
            .collect(),
    )
}

/// `/Schemas/{id}`, when known.
pub fn schema(base: &str, id: &str) -> Option<Value> {
    definitions::ALL
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(id))
        .map(|s| schema_json(base, s))
}

fn resource_type_json(base: &str, name: &str) -> Option<Value> {
    let (endpoint, description, schema, extensions) = match name {
        "User" => (
            "/Users",
            "A person provisioned into the organization",
            USER_SCHEMA,
            vec![json!({ "schema": ENTERPRISE_USER_SCHEMA, "required": false })],
        ),
        "Group" => (
            "/Groups",
            "A group of the organization's users, mapped to organization roles",
            GROUP_SCHEMA,
            Vec::new(),
        ),
        _ => return None,
    };
    Some(json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": name,
        "name": name,
        "endpoint": endpoint,
        "description": description,
        "schema": schema,
        "schemaExtensions": extensions,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base}/ResourceTypes/{name}")
        }
    }))
}

/// `/ResourceTypes` as a ListResponse.
pub fn resource_types(base: &str) -> Value {
    list_response(
        ["User", "Group"]
            .iter()
            .filter_map(|name| resource_type_json(base, name))
            .collect(),
    )
}

/// `/ResourceTypes/{name}` (`User`, `Group`), when known.
pub fn resource_type(base: &str, name: &str) -> Option<Value> {
    ["User", "Group"]
        .into_iter()
        .find(|n| n.eq_ignore_ascii_case(name))
        .and_then(|n| resource_type_json(base, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://id.example/scim/v2";

    fn check_attribute(a: &Value) {
        for key in [
            "name",
            "type",
            "multiValued",
            "description",
            "required",
            "caseExact",
            "mutability",
            "returned",
            "uniqueness",
        ] {
            assert!(a.get(key).is_some(), "{key} missing in {a}");
        }
        if a["type"] == "complex" {
            let subs = a["subAttributes"].as_array();
            assert!(subs.is_some_and(|s| !s.is_empty()), "{a}");
            subs.into_iter().flatten().for_each(check_attribute);
        }
    }

    #[test]
    fn id_14_discovery_service_provider_config() {
        let c = service_provider_config(BASE);
        assert_eq!(c["patch"]["supported"], json!(true));
        assert_eq!(
            c["bulk"],
            json!({"supported": false, "maxOperations": 0, "maxPayloadSize": 0})
        );
        assert_eq!(c["filter"]["maxResults"], json!(200));
        assert_eq!(c["etag"]["supported"], json!(true));
        assert_eq!(
            c["authenticationSchemes"][0]["type"],
            json!("oauthbearertoken")
        );
        assert_eq!(
            c["meta"]["location"],
            json!(format!("{BASE}/ServiceProviderConfig"))
        );
    }

    #[test]
    fn id_14_discovery_schemas_are_complete_rfc7643_definitions() {
        let list = schemas(BASE);
        assert_eq!(list["totalResults"], json!(3));
        let resources = list["Resources"].as_array().cloned().unwrap_or_default();
        for s in &resources {
            assert_eq!(s["schemas"], json!([SCHEMA_SCHEMA]));
            s["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .for_each(check_attribute);
            assert_eq!(
                schema(BASE, s["id"].as_str().unwrap_or_default()).as_ref(),
                Some(s)
            );
        }
        let user = schema(BASE, USER_SCHEMA).unwrap_or_default();
        let attr = |name: &str| {
            user["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == name).cloned())
                .unwrap_or_default()
        };
        assert_eq!(attr("userName")["uniqueness"], json!("server"));
        assert_eq!(attr("userName")["required"], json!(true));
        assert_eq!(attr("password")["returned"], json!("never"));
        assert_eq!(attr("groups")["mutability"], json!("readOnly"));
        assert!(schema(BASE, "urn:nope").is_none());
        let group = schema(BASE, GROUP_SCHEMA).unwrap_or_default();
        assert_eq!(
            group["attributes"][1]["subAttributes"][0]["name"],
            json!("value")
        );
    }

    #[test]
    fn id_14_discovery_resource_types() {
        let list = resource_types(BASE);
        assert_eq!(list["totalResults"], json!(2));
        let user = resource_type(BASE, "User").unwrap_or_default();
        assert_eq!(user["endpoint"], json!("/Users"));
        assert_eq!(
            user["schemaExtensions"][0]["schema"],
            json!(ENTERPRISE_USER_SCHEMA)
        );
        assert_eq!(
            resource_type(BASE, "group").map(|g| g["schema"].clone()),
            Some(json!(GROUP_SCHEMA))
        );
        assert!(resource_type(BASE, "Device").is_none());
    }
}
