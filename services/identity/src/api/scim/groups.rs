//! The `/Groups` handlers: SCIM JSON to and from the Group use cases of
//! [`crate::app::scim::groups`], as a [`ScimResource`] for the shared handlers of
//! [`super::resource`] (PATCH, members add/remove included, is read, patch, replace).

use std::future::Future;

use orgplane_platform::ApiResult;
use serde_json::{Value, json};

use super::error::{ScimError, etag};
use super::resource::{Narrow, ScimResource};
use super::users::{attr, timestamp};
use super::{GROUP_SCHEMA, ResourceKind};
use crate::app::App;
use crate::app::scim::ScimPrincipal;
use crate::app::scim::groups::{GroupLookup, ScimGroup, ScimGroupInput};

/// A Group document as the use cases take it.
fn group_input(doc: &Value) -> Result<ScimGroupInput, ScimError> {
    let display_name = match attr(doc, "displayName") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(ScimError::bad_request(
                "invalidValue",
                "displayName is required (a string)",
            ));
        }
    };
    let external_id = match attr(doc, "externalId") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ScimError::bad_request(
                "invalidValue",
                "externalId must be a string",
            ));
        }
    };
    let members = match attr(doc, "members") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| match attr(m, "value") {
                Some(Value::String(id)) => Ok(id.clone()),
                _ => Err(ScimError::bad_request(
                    "invalidValue",
                    "each member needs a value (a User id)",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ScimError::bad_request(
                "invalidValue",
                "members must be an array",
            ));
        }
    };
    Ok(ScimGroupInput {
        display_name,
        external_id,
        members,
    })
}

/// The full SCIM document of `group`.
fn render(group: &ScimGroup, base: &str) -> Value {
    let row = &group.row;
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|m| {
            // No `display`: clients compare the members they wrote with what they read back,
            // and RFC 7643 §8.7.1's Group schema has none for members.
            json!({
                "value": m.id,
                "$ref": format!("{base}/Users/{}", m.id),
                "type": "User",
            })
        })
        .collect();
    let mut doc = json!({
        "schemas": [GROUP_SCHEMA],
        "id": row.id,
        "displayName": row.display_name,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": timestamp(row.create_time_ms),
            "lastModified": timestamp(row.update_time_ms),
            "location": format!("{base}/Groups/{}", row.id),
            "version": etag(row.version),
        },
    });
    if let (Some(external), Some(map)) = (&row.external_id, doc.as_object_mut()) {
        map.insert("externalId".into(), json!(external));
    }
    doc
}

impl ScimResource for ScimGroup {
    type Input = ScimGroupInput;
    type Lookup = GroupLookup;
    const KIND: ResourceKind = ResourceKind::Group;
    const ENDPOINT: &'static str = "Groups";
    const NAME_ATTRIBUTE: &'static str = "displayName";

    fn id(&self) -> &str {
        &self.row.id
    }
    fn version(&self) -> i64 {
        self.row.version
    }
    fn render(&self, base: &str) -> Value {
        render(self, base)
    }
    fn input(doc: Value) -> Result<ScimGroupInput, ScimError> {
        group_input(&doc)
    }
    fn lookup(narrow: Narrow<'_>) -> GroupLookup {
        match narrow {
            Narrow::All => GroupLookup::All,
            Narrow::Name(v) => GroupLookup::DisplayName(v.to_owned()),
            Narrow::ExternalId(v) => GroupLookup::ExternalId(v.to_owned()),
            Narrow::Id(v) => GroupLookup::Id(v.to_owned()),
        }
    }

    fn create(
        app: &App,
        p: &ScimPrincipal,
        input: ScimGroupInput,
    ) -> impl Future<Output = ApiResult<Self>> + Send {
        app.scim_create_group(p, input)
    }
    fn get(app: &App, p: &ScimPrincipal, id: &str) -> impl Future<Output = ApiResult<Self>> + Send {
        app.scim_get_group(p, id)
    }
    fn list(
        app: &App,
        p: &ScimPrincipal,
        lookup: GroupLookup,
    ) -> impl Future<Output = ApiResult<Vec<Self>>> + Send {
        app.scim_list_groups(p, lookup)
    }
    fn replace(
        app: &App,
        p: &ScimPrincipal,
        id: &str,
        input: ScimGroupInput,
        version: i64,
    ) -> impl Future<Output = ApiResult<Self>> + Send {
        app.scim_replace_group(p, id, input, Some(version))
    }
    fn delete(
        app: &App,
        p: &ScimPrincipal,
        id: &str,
        version: i64,
    ) -> impl Future<Output = ApiResult<()>> + Send {
        app.scim_delete_group(p, id, Some(version))
    }
}
