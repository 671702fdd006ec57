//! The `/Users` handlers: SCIM JSON to and from the User use cases of
//! [`crate::app::scim::users`]. PATCH is read, patch ([`super::patch::apply`]), replace at the
//! version read; without `If-Match`, a concurrent write makes it read again.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::error::{ScimError, check_if_match, etag};
use super::list::ListQuery;
use super::router::{ScimRequest, json_body, resource_response, scim_error, scim_json};
use super::{ResourceKind, USER_SCHEMA, attributes, list, patch};
use crate::app::App;
use crate::app::scim::users::{ScimUser, ScimUserInput, UserLookup, VERSION_MISMATCH};

/// How often a PATCH without `If-Match` reads again after a concurrent write.
pub(super) const PATCH_ATTEMPTS: usize = 3;

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
pub(super) fn render(user: &ScimUser, base: &str) -> Value {
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

fn respond_one(r: &ScimRequest, user: &ScimUser, status: StatusCode) -> Response {
    let doc = render(user, &r.base);
    let location =
        (status == StatusCode::CREATED).then(|| format!("{}/Users/{}", r.base, user.row.id));
    let body = attributes::project(
        doc,
        r.param("attributes"),
        r.param("excludedAttributes"),
        ResourceKind::User,
    );
    resource_response(status, &body, &etag(user.row.version), location.as_deref())
}

/// POST /Users.
pub(super) async fn create(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = user_input(json_body(&r.headers, &body)?)?;
    let user = app
        .scim_create_user(&r.principal, input)
        .await
        .map_err(scim_error)?;
    Ok(respond_one(&r, &user, StatusCode::CREATED))
}

/// GET /Users/{id}.
pub(super) async fn get(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let user = app
        .scim_get_user(&r.principal, &id)
        .await
        .map_err(scim_error)?;
    Ok(respond_one(&r, &user, StatusCode::OK))
}

/// Every user of the token's organization, rendered (the root `.search`).
pub(super) async fn all_rendered(app: &App, r: &ScimRequest) -> Result<Vec<Value>, ScimError> {
    Ok(app
        .scim_list_users(&r.principal, UserLookup::All)
        .await
        .map_err(scim_error)?
        .iter()
        .map(|u| render(u, &r.base))
        .collect())
}

async fn respond_list(app: &App, r: &ScimRequest, query: ListQuery) -> Result<Response, ScimError> {
    let lookup = match &query.filter {
        Some(f) => {
            if let Some(v) = f.equality_on("userName") {
                UserLookup::UserName(v.to_owned())
            } else if let Some(v) = f.equality_on("externalId") {
                UserLookup::ExternalId(v.to_owned())
            } else if let Some(v) = f.equality_on("id") {
                UserLookup::Id(v.to_owned())
            } else {
                UserLookup::All
            }
        }
        None => UserLookup::All,
    };
    let resources = app
        .scim_list_users(&r.principal, lookup)
        .await
        .map_err(scim_error)?
        .iter()
        .map(|u| render(u, &r.base))
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &list::respond(resources, &query, ResourceKind::User),
    ))
}

/// GET /Users.
pub(super) async fn list(
    State(app): State<Arc<App>>,
    r: ScimRequest,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_query(&r.params)?;
    respond_list(&app, &r, query).await
}

/// POST /Users/.search.
pub(super) async fn search(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    body: Bytes,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_search(&json_body(&r.headers, &body)?)?;
    respond_list(&app, &r, query).await
}

/// PUT /Users/{id}.
pub(super) async fn replace(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = user_input(json_body(&r.headers, &body)?)?;
    let current = app
        .scim_get_user(&r.principal, &id)
        .await
        .map_err(scim_error)?;
    check_if_match(&r.headers, current.row.version)?;
    let user = app
        .scim_replace_user(&r.principal, &id, input, Some(current.row.version))
        .await
        .map_err(scim_error)?;
    Ok(respond_one(&r, &user, StatusCode::OK))
}

/// PATCH /Users/{id}: 200 with the resource.
pub(super) async fn patch(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let ops = json_body(&r.headers, &body)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = app
            .scim_get_user(&r.principal, &id)
            .await
            .map_err(scim_error)?;
        check_if_match(&r.headers, current.row.version)?;
        let mut doc = render(&current, &r.base);
        patch::apply(&mut doc, &ops, ResourceKind::User)?;
        let input = user_input(doc)?;
        match app
            .scim_replace_user(&r.principal, &id, input, Some(current.row.version))
            .await
        {
            Ok(user) => return Ok(respond_one(&r, &user, StatusCode::OK)),
            Err(e)
                if e.reason() == VERSION_MISMATCH
                    && attempt < PATCH_ATTEMPTS
                    && !r.headers.contains_key(axum::http::header::IF_MATCH) => {}
            Err(e) => return Err(scim_error(e)),
        }
    }
}

/// DELETE /Users/{id}: 204.
pub(super) async fn delete(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    Path(id): Path<String>,
) -> Result<StatusCode, ScimError> {
    let current = app
        .scim_get_user(&r.principal, &id)
        .await
        .map_err(scim_error)?;
    check_if_match(&r.headers, current.row.version)?;
    app.scim_delete_user(&r.principal, &id, Some(current.row.version))
        .await
        .map_err(scim_error)?;
    Ok(StatusCode::NO_CONTENT)
}
