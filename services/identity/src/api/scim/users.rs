//! The `/Users` handlers: SCIM JSON to and from the User use cases of
//! [`crate::app::scim::users`], as a [`ScimResource`] for the shared handlers of
//! [`super::resource`].

use std::future::Future;

use orgplane_platform::ApiResult;
use serde_json::{Map, Value, json};

use super::error::{ScimError, etag};
use super::resource::{Narrow, ScimResource};
use super::{ResourceKind, USER_SCHEMA};
use crate::app::App;
use crate::app::scim::ScimPrincipal;
use crate::app::scim::users::{ScimUser, ScimUserInput, UserLookup};

/// RFC 3339 of Unix milliseconds.
pub(super) fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A SCIM boolean: JSON `true`/`false`, or the strings `"True"`/`"False"` some clients send.
pub(super) fn boolean(v: &Value, field: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::bad_request(
            "invalidValue",
            format!("{field} must be a boolean"),
        )),
    }
}

/// The value of attribute `name` of a document (names compare ignoring case, RFC 7643 §2.1).
pub(super) fn attr<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn optional_string(doc: &Value, name: &str) -> Result<Option<String>, ScimError> {
    match attr(doc, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::bad_request(
            "invalidValue",
            format!("{name} must be a string"),
        )),
    }
}

/// A User document as the use cases take it.
fn user_input(doc: Value) -> Result<ScimUserInput, ScimError> {
    let user_name = optional_string(&doc, "userName")?
        .ok_or_else(|| ScimError::bad_request("invalidValue", "userName is required"))?;
    let external_id = optional_string(&doc, "externalId")?;
    let active = match attr(&doc, "active") {
        None => true,
        Some(v) => boolean(v, "active")?,
    };
    let given = attr(&doc, "active").is_some();
    let mut resource = doc;
    if let Some(map) = resource.as_object_mut() {
        map.retain(|k, _| {
            !["userName", "externalId", "active"]
                .iter()
                .any(|n| k.eq_ignore_ascii_case(n))
        });
        // Whether the client set `active` is kept, so what it wrote it reads back (an absent
        // `active` means active); the value itself is the row's.
        if given {
            map.insert("active".into(), json!(active));
        }
    }
    Ok(ScimUserInput {
        user_name,
        external_id,
        active,
        resource,
    })
}

/// The full SCIM document of `user`.
fn render(user: &ScimUser, base: &str) -> Value {
    let row = &user.row;
    let mut doc: Map<String, Value> = match serde_json::from_str(&row.resource) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if !doc.get("schemas").is_some_and(Value::is_array) {
        doc.insert("schemas".into(), json!([USER_SCHEMA]));
    }
    let location = format!("{base}/Users/{}", row.id);
    doc.insert("id".into(), json!(row.id));
    if let Some(external) = &row.external_id {
        doc.insert("externalId".into(), json!(external));
    }
    doc.insert("userName".into(), json!(row.user_name));
    if doc.contains_key("active") || !row.active {
        doc.insert("active".into(), json!(row.active));
    }
    let groups: Vec<Value> = user
        .groups
        .iter()
        .map(|g| {
            json!({
                "value": g.id,
                "display": g.display_name,
                "$ref": format!("{base}/Groups/{}", g.id),
                "type": "direct",
            })
        })
        .collect();
    doc.insert("groups".into(), Value::Array(groups));
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": timestamp(row.create_time_ms),
            "lastModified": timestamp(row.update_time_ms),
            "location": location,
            "version": etag(row.version),
        }),
    );
    Value::Object(doc)
}

impl ScimResource for ScimUser {
    type Input = ScimUserInput;
    type Lookup = UserLookup;
    const KIND: ResourceKind = ResourceKind::User;
    const ENDPOINT: &'static str = "Users";
    const NAME_ATTRIBUTE: &'static str = "userName";

    fn id(&self) -> &str {
        &self.row.id
    }
    fn version(&self) -> i64 {
        self.row.version
    }
    fn render(&self, base: &str) -> Value {
        render(self, base)
    }
    fn input(doc: Value) -> Result<ScimUserInput, ScimError> {
        user_input(doc)
    }
    fn lookup(narrow: Narrow<'_>) -> UserLookup {
        match narrow {
            Narrow::All => UserLookup::All,
            Narrow::Name(v) => UserLookup::UserName(v.to_owned()),
            Narrow::ExternalId(v) => UserLookup::ExternalId(v.to_owned()),
            Narrow::Id(v) => UserLookup::Id(v.to_owned()),
        }
    }

    fn create(
        app: &App,
        p: &ScimPrincipal,
        input: ScimUserInput,
    ) -> impl Future<Output = ApiResult<Self>> + Send {
        app.scim_create_user(p, input)
    }
    fn get(app: &App, p: &ScimPrincipal, id: &str) -> impl Future<Output = ApiResult<Self>> + Send {
        app.scim_get_user(p, id)
    }
    fn list(
        app: &App,
        p: &ScimPrincipal,
        lookup: UserLookup,
    ) -> impl Future<Output = ApiResult<Vec<Self>>> + Send {
        app.scim_list_users(p, lookup)
    }
    fn replace(
        app: &App,
        p: &ScimPrincipal,
        id: &str,
        input: ScimUserInput,
        version: i64,
    ) -> impl Future<Output = ApiResult<Self>> + Send {
        app.scim_replace_user(p, id, input, Some(version))
    }
    fn delete(
        app: &App,
        p: &ScimPrincipal,
        id: &str,
        version: i64,
    ) -> impl Future<Output = ApiResult<()>> + Send {
        app.scim_delete_user(p, id, Some(version))
    }
}
