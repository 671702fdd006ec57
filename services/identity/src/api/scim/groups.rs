//! The `/Groups` handlers: SCIM JSON to and from the Group use cases of
//! [`crate::app::scim::groups`]. PATCH (members add/remove included) is read, patch, replace at
//! the version read.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::error::{ScimError, check_if_match, etag};
use super::list::ListQuery;
use super::router::{ScimRequest, json_body, resource_response, scim_error, scim_json};
use super::users::{PATCH_ATTEMPTS, attr, timestamp};
use super::{GROUP_SCHEMA, ResourceKind, attributes, list, patch};
use crate::app::App;
use crate::app::scim::groups::{GroupLookup, ScimGroup, ScimGroupInput};
use crate::app::scim::users::VERSION_MISMATCH;

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

fn respond_one(r: &ScimRequest, group: &ScimGroup, status: StatusCode) -> Response {
    let location =
        (status == StatusCode::CREATED).then(|| format!("{}/Groups/{}", r.base, group.row.id));
    let body = attributes::project(
        render(group, &r.base),
        r.param("attributes"),
        r.param("excludedAttributes"),
        ResourceKind::Group,
    );
    resource_response(status, &body, &etag(group.row.version), location.as_deref())
}

/// POST /Groups.
pub(super) async fn create(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = group_input(&json_body(&r.headers, &body)?)?;
    let group = app
        .scim_create_group(&r.principal, input)
        .await
        .map_err(scim_error)?;
    Ok(respond_one(&r, &group, StatusCode::CREATED))
}

/// GET /Groups/{id}.
pub(super) async fn get(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let group = app
        .scim_get_group(&r.principal, &id)
        .await
        .map_err(scim_error)?;
    Ok(respond_one(&r, &group, StatusCode::OK))
}

/// Every group of the token's organization, rendered (the root `.search`).
pub(super) async fn all_rendered(app: &App, r: &ScimRequest) -> Result<Vec<Value>, ScimError> {
    Ok(app
        .scim_list_groups(&r.principal, GroupLookup::All)
        .await
        .map_err(scim_error)?
        .iter()
        .map(|g| render(g, &r.base))
        .collect())
}

async fn respond_list(app: &App, r: &ScimRequest, query: ListQuery) -> Result<Response, ScimError> {
    let lookup = match &query.filter {
        Some(f) => {
            if let Some(v) = f.equality_on("displayName") {
                GroupLookup::DisplayName(v.to_owned())
            } else if let Some(v) = f.equality_on("externalId") {
                GroupLookup::ExternalId(v.to_owned())
            } else if let Some(v) = f.equality_on("id") {
                GroupLookup::Id(v.to_owned())
            } else {
                GroupLookup::All
            }
        }
        None => GroupLookup::All,
    };
    let resources = app
        .scim_list_groups(&r.principal, lookup)
        .await
        .map_err(scim_error)?
        .iter()
        .map(|g| render(g, &r.base))
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &list::respond(resources, &query, ResourceKind::Group),
    ))
}

/// GET /Groups.
pub(super) async fn list(
    State(app): State<Arc<App>>,
    r: ScimRequest,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_query(&r.params)?;
    respond_list(&app, &r, query).await
}

/// POST /Groups/.search.
pub(super) async fn search(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    body: Bytes,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_search(&json_body(&r.headers, &body)?)?;
    respond_list(&app, &r, query).await
}

/// PUT /Groups/{id}.
pub(super) async fn replace(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = group_input(&json_body(&r.headers, &body)?)?;
    let current = app
        .scim_get_group(&r.principal, &id)
        .await
        .map_err(scim_error)?;
    check_if_match(&r.headers, current.row.version)?;
    let group = app
        .scim_replace_group(&r.principal, &id, input, Some(current.row.version))
        .await
        .map_err(scim_error)?;
    Ok(respond_one(&r, &group, StatusCode::OK))
}

/// PATCH /Groups/{id}: 200 with the resource.
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
            .scim_get_group(&r.principal, &id)
            .await
            .map_err(scim_error)?;
        check_if_match(&r.headers, current.row.version)?;
        let mut doc = render(&current, &r.base);
        patch::apply(&mut doc, &ops, ResourceKind::Group)?;
        let input = group_input(&doc)?;
        match app
            .scim_replace_group(&r.principal, &id, input, Some(current.row.version))
            .await
        {
            Ok(group) => return Ok(respond_one(&r, &group, StatusCode::OK)),
            Err(e)
                if e.reason() == VERSION_MISMATCH
                    && attempt < PATCH_ATTEMPTS
                    && !r.headers.contains_key(axum::http::header::IF_MATCH) => {}
            Err(e) => return Err(scim_error(e)),
        }
    }
}

/// DELETE /Groups/{id}: 204.
pub(super) async fn delete(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    Path(id): Path<String>,
) -> Result<StatusCode, ScimError> {
    let current = app
        .scim_get_group(&r.principal, &id)
        .await
        .map_err(scim_error)?;
    check_if_match(&r.headers, current.row.version)?;
    app.scim_delete_group(&r.principal, &id, Some(current.row.version))
        .await
        .map_err(scim_error)?;
    Ok(StatusCode::NO_CONTENT)
}
