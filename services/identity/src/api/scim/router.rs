//! The SCIM routes under `/scim/v2` and what every handler shares: bearer-token
//! authentication (`Authorization: Bearer opscim_…`, scheme case-insensitive; a missing,
//! unknown or DISABLED token is 401 with `WWW-Authenticate: Bearer` and a SCIM error body, on
//! every path, the discovery documents included: they need no resource access, but nothing is
//! served to a caller without a valid token), JSON bodies (`application/scim+json` or
//! `application/json`; malformed is 400 `invalidSyntax`), `application/scim+json` answers,
//! 404/405/501 as SCIM bodies, and `meta.location` URLs built from the request's `Host` (with
//! `http`; `X-Forwarded-*` is not trusted here, since anyone can send it).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use orgplane_platform::ApiError;
use orgplane_platform::error::Code;
use serde_json::Value;

use super::error::ScimError;
use super::list::ListQuery;
use super::{ResourceKind, SCIM_MEDIA_TYPE, discovery, resource};
use crate::app::App;
use crate::app::scim::groups::ScimGroup;
use crate::app::scim::users::{ScimUser, VERSION_MISMATCH};
use crate::app::scim::{ScimPrincipal, tokens};

/// The path the routes are served under.
pub const BASE_PATH: &str = "/scim/v2";

/// The SCIM routes under `/scim/v2`, over `app`.
pub fn router(app: Arc<App>) -> axum::Router {
    let api = Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(resource_type));
    let api = resource::routes::<ScimUser>(api);
    let api = resource::routes::<ScimGroup>(api);
    let api = api
        .route("/.search", post(search_all))
        .route("/Bulk", any(bulk))
        .fallback(unknown_path)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .with_state(app);
    Router::new().nest(BASE_PATH, api)
}

/// A SCIM answer: `body` as `application/scim+json` with `status`.
pub(super) fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_MEDIA_TYPE),
        )],
        body.to_string(),
    )
        .into_response()
}

/// A single resource's answer: with its `ETag` (and `Location` when created).
pub(super) fn resource_response(
    status: StatusCode,
    body: &Value,
    etag: &str,
    location: Option<&str>,
) -> Response {
    let mut response = scim_json(status, body);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        headers.insert(header::LOCATION, v);
    }
    response
}

/// The SCIM answer of a use case's refusal.
pub(super) fn scim_error(e: ApiError) -> ScimError {
    let detail = e.message().to_owned();
    match e.error_reason() {
        VERSION_MISMATCH => ScimError::precondition_failed(detail),
        _ => ScimError::from(e),
    }
}

/// What every resource handler needs of its request: the token's principal, the base URL of
/// locations, the headers (`If-Match`) and the query parameters.
pub(super) struct ScimRequest {
    /// The organization the token provisions.
    pub principal: ScimPrincipal,
    /// `http://<host>/scim/v2`.
    pub base: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The query parameters, in order.
    pub params: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for ScimRequest {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ScimError> {
        let principal = parts
            .extensions
            .get::<ScimPrincipal>()
            .cloned()
            .ok_or_else(unauthorized_error)?;
        let params = parts
            .uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            principal,
            base: base_url(&parts.headers),
            headers: parts.headers.clone(),
            params,
        })
    }
}

impl ScimRequest {
    /// The query parameter `name` (compared ignoring case).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `http://<Host>/scim/v2`, or `http://localhost/scim/v2` when `Host` is missing or not a
/// plain host name and port.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    format!("http://{host}{BASE_PATH}")
}

/// A request body as JSON: `application/scim+json` or `application/json` (or no type at all);
/// 400 `invalidSyntax` when it is not a JSON object.
pub(super) fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ScimError> {
    if let Some(kind) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let essence = kind.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case(SCIM_MEDIA_TYPE)
            && !essence.eq_ignore_ascii_case("application/json")
        {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("send {SCIM_MEDIA_TYPE} or application/json"),
            ));
        }
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ScimError::bad_request("invalidSyntax", format!("malformed JSON: {e}")))?;
    if !value.is_object() {
        return Err(ScimError::bad_request(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    }
    Ok(value)
}

fn unauthorized_error() -> ScimError {
    ScimError::unauthorized("send a valid SCIM token: Authorization: Bearer opscim_…")
}

fn unauthorized() -> Response {
    let mut response = unauthorized_error().into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"scim\""),
    );
    response
}

/// The secret of an `Authorization: Bearer …` header (scheme compared ignoring case).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, secret) = value.split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

async fn authenticate(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let Some(secret) = bearer(request.headers()) else {
        return unauthorized();
    };
    match tokens::authenticate(&app, secret).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) if e.code() == Code::Unauthenticated => unauthorized(),
        Err(e) => scim_error(e).into_response(),
    }
}

async fn service_provider_config(r: ScimRequest) -> Response {
    scim_json(StatusCode::OK, &discovery::service_provider_config(&r.base))
}

async fn schemas(r: ScimRequest) -> Response {
    scim_json(StatusCode::OK, &discovery::schemas(&r.base))
}

async fn schema(r: ScimRequest, Path(id): Path<String>) -> Response {
    match discovery::schema(&r.base, &id) {
        Some(s) => scim_json(StatusCode::OK, &s),
        None => ScimError::not_found(format!("no schema {id}")).into_response(),
    }
}

async fn resource_types(r: ScimRequest) -> Response {
    scim_json(StatusCode::OK, &discovery::resource_types(&r.base))
}

async fn resource_type(r: ScimRequest, Path(name): Path<String>) -> Response {
    match discovery::resource_type(&r.base, &name) {
        Some(s) => scim_json(StatusCode::OK, &s),
        None => ScimError::not_found(format!("no resource type {name}")).into_response(),
    }
}

/// `POST /.search`: Users and Groups together, each projected by its own rules.
async fn search_all(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    body: Bytes,
) -> Result<Response, ScimError> {
    let body = json_body(&r.headers, &body)?;
    let mut query = ListQuery::from_search(&body)?;
    let filter = query.filter.take();
    let mut resources = resource::searched::<ScimUser>(&app, &r, filter.as_ref(), &query).await?;
    resources.extend(resource::searched::<ScimGroup>(&app, &r, filter.as_ref(), &query).await?);
    query.attributes = None;
    query.excluded_attributes = None;
    Ok(scim_json(
        StatusCode::OK,
        &super::list::respond(resources, &query, ResourceKind::User),
    ))
}

async fn bulk() -> ScimError {
    ScimError::not_implemented("Bulk is not supported (see /ServiceProviderConfig)")
}

async fn unknown_path() -> ScimError {
    ScimError::not_found("no such SCIM endpoint")
}

async fn method_not_allowed() -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this method is not allowed on this endpoint",
    )
}
