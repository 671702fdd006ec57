//! The handlers every SCIM resource endpoint shares (`/Users`, `/Groups`): create, get, list,
//! `.search`, replace, patch and delete, written once over [`ScimResource`]. A resource type
//! supplies its use-case calls, its rendering and its input parsing; the HTTP shape (ETags and
//! `If-Match`, `Location`, attribute projection, PATCH as read-patch-replace) lives here.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing;
use orgplane_platform::ApiResult;
use serde_json::Value;

use super::error::{ScimError, check_if_match, etag};
use super::filter::Filter;
use super::list::ListQuery;
use super::router::{ScimRequest, json_body, resource_response, scim_error, scim_json};
use super::{ResourceKind, attributes, list, patch};
use crate::app::App;
use crate::app::scim::ScimPrincipal;
use crate::app::scim::users::VERSION_MISMATCH;

/// The routes of `R` (`/{resources}`, `/{resources}/.search`, `/{resources}/{id}`), added to
/// `router`.
pub(super) fn routes<R: ScimResource>(router: Router<Arc<App>>) -> Router<Arc<App>> {
    let at = format!("/{}", R::ENDPOINT);
    router
        .route(&at, routing::get(list::<R>).post(create::<R>))
        .route(&format!("{at}/.search"), routing::post(search::<R>))
        .route(
            &format!("{at}/{{id}}"),
            routing::get(get::<R>)
                .put(replace::<R>)
                .patch(patch::<R>)
                .delete(delete::<R>),
        )
}

/// How often a PATCH without `If-Match` reads again after a concurrent write.
const PATCH_ATTEMPTS: usize = 3;

/// How a list filter narrows a resource list in the store: an equality on one of the indexed
/// attributes, or nothing (every resource, filtered afterwards).
pub(super) enum Narrow<'a> {
    /// No indexed equality.
    All,
    /// An equality on the resource's name (`userName`, `displayName`).
    Name(&'a str),
    /// `externalId eq …`.
    ExternalId(&'a str),
    /// `id eq …`.
    Id(&'a str),
}

/// One SCIM resource type, as the shared handlers see it.
pub(super) trait ScimResource: Sized + Send + Sync + 'static {
    /// What the create and replace use cases take.
    type Input: Send;
    /// How the list use case is narrowed.
    type Lookup: Send;
    /// Which resource this is (for attribute rules).
    const KIND: ResourceKind;
    /// The endpoint under the base URL: `Users`, `Groups`.
    const ENDPOINT: &'static str;
    /// The attribute a [`Narrow::Name`] equality is on.
    const NAME_ATTRIBUTE: &'static str;

    /// The resource's id.
    fn id(&self) -> &str;
    /// The resource's version (its ETag).
    fn version(&self) -> i64;
    /// The full SCIM document, with URLs under `base`.
    fn render(&self, base: &str) -> Value;
    /// A SCIM document as the use cases take it.
    fn input(doc: Value) -> Result<Self::Input, ScimError>;
    /// The store lookup for `narrow`.
    fn lookup(narrow: Narrow<'_>) -> Self::Lookup;

    /// The create use case.
    fn create(
        app: &App,
        p: &ScimPrincipal,
        input: Self::Input,
    ) -> impl Future<Output = ApiResult<Self>> + Send;
    /// The get use case.
    fn get(app: &App, p: &ScimPrincipal, id: &str) -> impl Future<Output = ApiResult<Self>> + Send;
    /// The list use case.
    fn list(
        app: &App,
        p: &ScimPrincipal,
        lookup: Self::Lookup,
    ) -> impl Future<Output = ApiResult<Vec<Self>>> + Send;
    /// The replace use case, at `version`.
    fn replace(
        app: &App,
        p: &ScimPrincipal,
        id: &str,
        input: Self::Input,
        version: i64,
    ) -> impl Future<Output = ApiResult<Self>> + Send;
    /// The delete use case, at `version`.
    fn delete(
        app: &App,
        p: &ScimPrincipal,
        id: &str,
        version: i64,
    ) -> impl Future<Output = ApiResult<()>> + Send;
}

fn respond_one<R: ScimResource>(r: &ScimRequest, resource: &R, status: StatusCode) -> Response {
    let location = (status == StatusCode::CREATED)
        .then(|| format!("{}/{}/{}", r.base, R::ENDPOINT, resource.id()));
    let body = attributes::project(
        resource.render(&r.base),
        r.param("attributes"),
        r.param("excludedAttributes"),
        R::KIND,
    );
    resource_response(
        status,
        &body,
        &etag(resource.version()),
        location.as_deref(),
    )
}

/// The current resource `id`, when the request's `If-Match` (if any) names its version.
async fn current<R: ScimResource>(app: &App, r: &ScimRequest, id: &str) -> Result<R, ScimError> {
    let current = R::get(app, &r.principal, id).await.map_err(scim_error)?;
    check_if_match(&r.headers, current.version())?;
    Ok(current)
}

/// POST /{resources}.
pub(super) async fn create<R: ScimResource>(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = R::input(json_body(&r.headers, &body)?)?;
    let created = R::create(&app, &r.principal, input)
        .await
        .map_err(scim_error)?;
    Ok(respond_one(&r, &created, StatusCode::CREATED))
}

/// GET /{resources}/{id}.
pub(super) async fn get<R: ScimResource>(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let found = R::get(&app, &r.principal, &id).await.map_err(scim_error)?;
    Ok(respond_one(&r, &found, StatusCode::OK))
}

/// Every resource of the token's organization, rendered.
async fn rendered<R: ScimResource>(
    app: &App,
    r: &ScimRequest,
    lookup: R::Lookup,
) -> Result<Vec<Value>, ScimError> {
    Ok(R::list(app, &r.principal, lookup)
        .await
        .map_err(scim_error)?
        .iter()
        .map(|x| x.render(&r.base))
        .collect())
}

/// Every resource of the token's organization that `filter` matches, projected as `query`
/// asks (the root `.search`).
pub(super) async fn searched<R: ScimResource>(
    app: &App,
    r: &ScimRequest,
    filter: Option<&Filter>,
    query: &ListQuery,
) -> Result<Vec<Value>, ScimError> {
    Ok(rendered::<R>(app, r, R::lookup(Narrow::All))
        .await?
        .into_iter()
        .filter(|v| filter.is_none_or(|f| f.matches(v)))
        .map(|v| {
            attributes::project(
                v,
                query.attributes.as_deref(),
                query.excluded_attributes.as_deref(),
                R::KIND,
            )
        })
        .collect())
}

async fn respond_list<R: ScimResource>(
    app: &App,
    r: &ScimRequest,
    query: ListQuery,
) -> Result<Response, ScimError> {
    let narrow = match &query.filter {
        Some(f) => {
            if let Some(v) = f.equality_on(R::NAME_ATTRIBUTE) {
                Narrow::Name(v)
            } else if let Some(v) = f.equality_on("externalId") {
                Narrow::ExternalId(v)
            } else if let Some(v) = f.equality_on("id") {
                Narrow::Id(v)
            } else {
                Narrow::All
            }
        }
        None => Narrow::All,
    };
    let resources = rendered::<R>(app, r, R::lookup(narrow)).await?;
    Ok(scim_json(
        StatusCode::OK,
        &list::respond(resources, &query, R::KIND),
    ))
}

/// GET /{resources}.
pub(super) async fn list<R: ScimResource>(
    State(app): State<Arc<App>>,
    r: ScimRequest,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_query(&r.params)?;
    respond_list::<R>(&app, &r, query).await
}

/// POST /{resources}/.search.
pub(super) async fn search<R: ScimResource>(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    body: Bytes,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_search(&json_body(&r.headers, &body)?)?;
    respond_list::<R>(&app, &r, query).await
}

/// PUT /{resources}/{id}.
pub(super) async fn replace<R: ScimResource>(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = R::input(json_body(&r.headers, &body)?)?;
    let current = current::<R>(&app, &r, &id).await?;
    let replaced = R::replace(&app, &r.principal, &id, input, current.version())
        .await
        .map_err(scim_error)?;
    Ok(respond_one(&r, &replaced, StatusCode::OK))
}

/// PATCH /{resources}/{id}: 200 with the resource. Read, patch ([`patch::apply`]), replace at
/// the version read; without `If-Match`, a concurrent write makes it read again.
pub(super) async fn patch<R: ScimResource>(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let ops = json_body(&r.headers, &body)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = current::<R>(&app, &r, &id).await?;
        let mut doc = current.render(&r.base);
        patch::apply(&mut doc, &ops, R::KIND)?;
        let input = R::input(doc)?;
        match R::replace(&app, &r.principal, &id, input, current.version()).await {
            Ok(patched) => return Ok(respond_one(&r, &patched, StatusCode::OK)),
            Err(e)
                if e.error_reason() == VERSION_MISMATCH
                    && attempt < PATCH_ATTEMPTS
                    && !r.headers.contains_key(axum::http::header::IF_MATCH) => {}
            Err(e) => return Err(scim_error(e)),
        }
    }
}

/// DELETE /{resources}/{id}: 204.
pub(super) async fn delete<R: ScimResource>(
    State(app): State<Arc<App>>,
    r: ScimRequest,
    Path(id): Path<String>,
) -> Result<StatusCode, ScimError> {
    let current = current::<R>(&app, &r, &id).await?;
    R::delete(&app, &r.principal, &id, current.version())
        .await
        .map_err(scim_error)?;
    Ok(StatusCode::NO_CONTENT)
}
