//! The audit log (rule ORG-10): every service appends an audit record for every mutation **in
//! the mutation's transaction**, and OWNER/ADMIN list them with filters and pagination. The table
//! is append-only; nothing in Orgplane updates or deletes a record except an organization purge.
//! A refused mutation is recorded on its own, after its transaction rolled back, through
//! [`AuditLogWriter::audited`], which every service applies to its mutations.
//!
//! Before/after images are the resource's proto message in canonical proto3 JSON ([`json`]), so
//! the four services' logs read as one timeline in one format.

mod json;
mod store;
#[cfg(test)]
mod tests;

pub use json::{json_to_prost, proto_json};
pub use store::{AddAuditActorOrganization, CreateAuditLog, row};

use chrono::{DateTime, Utc};
use orgplane_proto::audit::v1::{ActorKind, AuditEvent, AuditEventFilter, Outcome};
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QueryOrder, QuerySelect, QueryTrait};

use self::json::to_proto;

use crate::auth::Principal;
use crate::call::Call;
use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::pagination::{PageTokens, page_size};

/// A value the audit log records as a before/after image. Every proto message is one (encoded
/// by [`proto_json`]); a service's API adapter implements it for its stored resources by
/// converting them to their proto message, so that use cases pass their rows without knowing
/// the proto conversion.
pub trait AuditImage {
    /// The image: canonical proto3 JSON of the resource's message.
    fn audit_image(&self) -> serde_json::Value;
}

impl<M: prost::Message + prost::Name> AuditImage for M {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(self)
    }
}

/// What happened, to be recorded.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// The organization; empty for account-level actions.
    pub organization_id: String,
    /// `<resource_type>.<verb>`, e.g. `member.update_role`.
    pub action: String,
    /// The resource's type, e.g. `member`.
    pub resource_type: String,
    /// The resource's id.
    pub resource_id: String,
    /// The resource before the change (never with secrets in it).
    pub before: Option<serde_json::Value>,
    /// The resource after the change (never with secrets in it).
    pub after: Option<serde_json::Value>,
    /// Set when the acting user acted as the OWNER or an ADMIN of this operator organization in
    /// one of its children (rule ORG-13): the record's actor kind is then `OPERATOR`.
    pub operator_organization_id: Option<String>,
}

impl Entry {
    /// An entry for `action` on `resource_type` `resource_id` in `organization_id`.
    pub fn new(
        organization_id: &str,
        action: &str,
        resource_type: &str,
        resource_id: &str,
    ) -> Self {
        Self {
            organization_id: organization_id.to_owned(),
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.to_owned(),
            before: None,
            after: None,
            operator_organization_id: None,
        }
    }

    /// Marks the entry as an act of a user of operator `operator_organization_id` in one of its
    /// children (rule ORG-13); `None` leaves it an ordinary act.
    pub fn as_operator(mut self, operator_organization_id: Option<&str>) -> Self {
        self.operator_organization_id = operator_organization_id.map(str::to_owned);
        self
    }

    /// Adds the before/after images of the resource ([`AuditImage`]: its proto message as
    /// canonical proto3 JSON, the same shape clients read from the API).
    pub fn change<I: AuditImage + ?Sized>(mut self, before: Option<&I>, after: Option<&I>) -> Self {
        self.before = before.map(AuditImage::audit_image);
        self.after = after.map(AuditImage::audit_image);
        self
    }

    /// Adds a summary of a change that has no resource message of its own (a batch, a purge):
    /// `details` uses lowerCamelCase keys, as the proto JSON of resources does.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.after = Some(details);
        self
    }
}

/// Whether a refused mutation is written to the audit log (rule ORG-10). Recorded: an
/// authenticated caller's mutation refused by a rule or by the data — PERMISSION_DENIED,
/// ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED, RESOURCE_EXHAUSTED. Not recorded: anonymous
/// callers (refused before any handler), INVALID_ARGUMENT (a malformed request is refused before
/// its target or the caller's standing is known), NOT_FOUND (what outsiders get for another
/// tenant's resources: writing it would let anyone add rows to any organization's log, and the
/// extra write would make "exists but not yours" slower than "does not exist", a hint the API
/// must not give), and UNAVAILABLE, INTERNAL or any other failure of the system rather than a
/// decision about the request.
pub fn audits_failure(principal: &Principal, error: &ApiError) -> bool {
    use crate::error::Code;
    !matches!(principal, Principal::Anonymous)
        && matches!(
            error.code(),
            Code::PermissionDenied
                | Code::AlreadyExists
                | Code::FailedPrecondition
                | Code::Aborted
                | Code::ResourceExhausted
        )
}

/// `id` if it looks like an Orgplane id (at most 128 ASCII letters, digits and `_-./:`), else
/// empty: a failure record keeps ids from the request, never arbitrary text a caller sent.
fn id_or_blank(id: &str) -> String {
    let sane = id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:".contains(&b));
    if sane { id.to_owned() } else { String::new() }
}

/// What a mutation RPC aims at, named from its request before the call, so that its refusal is
/// recorded under the action a success would have (rule ORG-10). `S` says where the service
/// finds the organization (named by the request, or through a resource the request names).
#[derive(Debug, Clone)]
pub struct Attempt<S> {
    /// Where the organization is found.
    pub scope: S,
    /// `<resource_type>.<verb>`.
    pub action: &'static str,
    /// The resource's type.
    pub resource_type: &'static str,
    /// The resource's id as the request names it (empty for a creation).
    pub resource_id: String,
}

impl<S> Attempt<S> {
    /// `action` on `resource_type` `resource_id`, in the organization `scope` leads to.
    pub fn new(
        scope: S,
        action: &'static str,
        resource_type: &'static str,
        resource_id: &str,
    ) -> Self {
        Self {
            scope,
            action,
            resource_type,
            resource_id: resource_id.to_owned(),
        }
    }

    /// The entry of this attempt in `organization_id`.
    pub fn entry(&self, organization_id: &str) -> Entry {
        Entry::new(
            organization_id,
            self.action,
            self.resource_type,
            &self.resource_id,
        )
    }
}

/// The audit log of one service.
#[derive(Debug, Clone)]
pub struct AuditLogWriter {
    service: &'static str,
}

fn actor_kind(principal: &Principal) -> ActorKind {
    match principal {
        Principal::Anonymous => ActorKind::Unspecified,
        Principal::User(_) => ActorKind::User,
        Principal::ApiKey(_) => ActorKind::ApiKey,
        Principal::Service(_) => ActorKind::Service,
    }
}

impl AuditLogWriter {
    /// The log of `service`.
    pub fn new(service: &'static str) -> Self {
        Self { service }
    }

    /// Appends a record of a refused or failed mutation (outside its rolled-back transaction).
    pub(crate) async fn record_failure<C: ConnectionTrait>(
        &self,
        db: &C,
        principal: &Principal,
        ctx: &RequestContext,
        entry: Entry,
        error: &ApiError,
    ) -> ApiResult<()> {
        self.insert(db, principal, ctx, entry, Some(error), Utc::now())
            .await
    }

    /// Passes a mutation's `result` through unchanged; when it is a refusal that
    /// [`audits_failure`] selects, first appends a failure record of the entry that `target`
    /// resolves (ids only: before/after are dropped, and ids that do not look like ids are
    /// blanked). `target` runs only on such an error and answers `None` when the organization is
    /// unknown here (nothing is written then). Writing the record never changes the answer: a
    /// write that fails is logged.
    pub(crate) async fn outcome<T, C, F, Fut>(
        &self,
        db: &C,
        principal: &Principal,
        ctx: &RequestContext,
        result: ApiResult<T>,
        target: F,
    ) -> ApiResult<T>
    where
        C: ConnectionTrait,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<Entry>>,
    {
        let Err(error) = &result else { return result };
        if !audits_failure(principal, error) {
            return result;
        }
        let Some(entry) = target().await else {
            return result;
        };
        if entry.organization_id.is_empty() {
            return result;
        }
        let entry = Entry {
            organization_id: id_or_blank(&entry.organization_id),
            action: entry.action,
            resource_type: entry.resource_type,
            resource_id: id_or_blank(&entry.resource_id),
            before: None,
            after: None,
            operator_organization_id: entry.operator_organization_id,
        };
        if let Err(e) = self
            .record_failure(db, principal, ctx, entry.clone(), error)
            .await
        {
            tracing::warn!(
                error = %e,
                action = %entry.action,
                organization_id = %entry.organization_id,
                "could not write the audit record of a refused mutation"
            );
        }
        result
    }

    /// Appends the success record of `call`'s mutation inside `unit`, written with the unit's
    /// events when it commits, in the same round trip (see [`crate::events::WriteUnit`]). Prefer
    /// it to [`Self::write`] in a write unit.
    pub fn write_in(&self, unit: &mut crate::events::WriteUnit, call: &Call, entry: Entry) {
        let row = self.row(&call.principal, &call.context(), entry, None, Utc::now());
        let backend = unit.get_database_backend();
        unit.defer(row::Entity::insert(row).build(backend));
    }

    /// Appends the success record of `call`'s mutation inside `txn` (its transaction).
    pub async fn write<C: ConnectionTrait>(
        &self,
        txn: &C,
        call: &Call,
        entry: Entry,
    ) -> ApiResult<()> {
        self.insert(
            txn,
            &call.principal,
            &call.context(),
            entry,
            None,
            Utc::now(),
        )
        .await
    }

    /// Passes `call`'s mutation `result` through unchanged; when it is a refusal that
    /// [`audits_failure`] selects, first appends a failure record of the entry `target`
    /// resolves (ids only; `None`: the organization is unknown here, nothing is written). The one
    /// path by which every service records a refused mutation (ORG-10); a failed write is
    /// logged, never changes the answer.
    pub async fn audited<T, C, F, Fut>(
        &self,
        db: &C,
        call: &Call,
        result: ApiResult<T>,
        target: F,
    ) -> ApiResult<T>
    where
        C: ConnectionTrait,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<Entry>>,
    {
        let Err(error) = &result else { return result };
        if !audits_failure(&call.principal, error) {
            return result;
        }
        self.outcome(db, &call.principal, &call.context(), result, target)
            .await
    }

    /// Appends a record of something the system did by itself (purge, expiry).
    pub async fn record_system<C: ConnectionTrait>(&self, txn: &C, entry: Entry) -> ApiResult<()> {
        let ctx = RequestContext {
            request_id: crate::context::new_request_id(),
        };
        self.insert(txn, &Principal::Anonymous, &ctx, entry, None, Utc::now())
            .await
    }

    async fn insert<C: ConnectionTrait>(
        &self,
        db: &C,
        principal: &Principal,
        ctx: &RequestContext,
        entry: Entry,
        error: Option<&ApiError>,
        now: DateTime<Utc>,
    ) -> ApiResult<()> {
        self.row(principal, ctx, entry, error, now)
            .insert(db)
            .await?;
        Ok(())
    }

    /// The row of a record.
    fn row(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
        entry: Entry,
        error: Option<&ApiError>,
        now: DateTime<Utc>,
    ) -> row::ActiveModel {
        let (_, actor_id) = principal.actor();
        let kind = match (principal, &entry.operator_organization_id) {
            (Principal::Anonymous, _) if actor_id.is_empty() => ActorKind::System,
            (Principal::User(_), Some(_)) => ActorKind::Operator,
            (p, _) => actor_kind(p),
        };
        let actor_organization_id = match kind {
            ActorKind::Operator => entry.operator_organization_id.clone().unwrap_or_default(),
            _ => String::new(),
        };
        let json = |v: Option<serde_json::Value>| v.map(|v| v.to_string());
        row::ActiveModel {
            id: sea_orm::Set(format!("audit_{}", uuid::Uuid::now_v7().simple())),
            organization_id: sea_orm::Set(entry.organization_id),
            service: sea_orm::Set(self.service.to_owned()),
            actor_kind: sea_orm::Set(kind as i32),
            actor_id: sea_orm::Set(actor_id),
            action: sea_orm::Set(entry.action),
            resource_type: sea_orm::Set(entry.resource_type),
            resource_id: sea_orm::Set(entry.resource_id),
            create_time_ms: sea_orm::Set(now.timestamp_millis()),
            request_id: sea_orm::Set(ctx.request_id.clone()),
            trace_id: sea_orm::Set(crate::telemetry::current_trace_id()),
            outcome: sea_orm::Set(if error.is_some() {
                Outcome::Failure
            } else {
                Outcome::Success
            } as i32),
            status_code: sea_orm::Set(
                error
                    .map(|e| crate::metrics::code_name(e.code().number()).to_owned())
                    .unwrap_or_default(),
            ),
            error_reason: sea_orm::Set(error.map(|e| e.reason().to_owned()).unwrap_or_default()),
            before_json: sea_orm::Set(json(entry.before)),
            after_json: sea_orm::Set(json(entry.after)),
            actor_organization_id: sea_orm::Set(actor_organization_id),
        }
    }

    /// A page of `organization_id`'s records, newest first, matching `filter`.
    pub async fn list<C: ConnectionTrait>(
        &self,
        db: &C,
        tokens: &PageTokens,
        organization_id: &str,
        filter: &AuditEventFilter,
        requested_page_size: i32,
        page_token: &str,
    ) -> ApiResult<(Vec<AuditEvent>, String)> {
        let size = page_size(requested_page_size)?;
        let scope = format!(
            "audit|{}|{organization_id}|{}",
            self.service,
            serde_json::json!([
                filter.actor_kind,
                filter.actor_id,
                filter.action,
                filter.resource_type,
                filter.resource_id,
                filter.outcome,
                filter.start_time.as_ref().map(|t| (t.seconds, t.nanos)),
                filter.end_time.as_ref().map(|t| (t.seconds, t.nanos)),
                filter.request_id,
            ])
        );
        let after: Option<String> = tokens.decode(&scope, page_token)?;
        let mut query = row::Entity::find().filter(row::Column::OrganizationId.eq(organization_id));
        if filter.actor_kind != 0 {
            query = query.filter(row::Column::ActorKind.eq(filter.actor_kind));
        }
        for (value, column) in [
            (&filter.actor_id, row::Column::ActorId),
            (&filter.action, row::Column::Action),
            (&filter.resource_type, row::Column::ResourceType),
            (&filter.resource_id, row::Column::ResourceId),
            (&filter.request_id, row::Column::RequestId),
        ] {
            if !value.is_empty() {
                query = query.filter(column.eq(value.as_str()));
            }
        }
        if filter.outcome != 0 {
            query = query.filter(row::Column::Outcome.eq(filter.outcome));
        }
        if let Some(t) = &filter.start_time {
            query = query.filter(
                row::Column::CreateTimeMs.gte(t.seconds * 1000 + i64::from(t.nanos) / 1_000_000),
            );
        }
        if let Some(t) = &filter.end_time {
            query = query.filter(
                row::Column::CreateTimeMs.lt(t.seconds * 1000 + i64::from(t.nanos) / 1_000_000),
            );
        }
        if let Some(after) = after {
            query = query.filter(row::Column::Id.lt(after));
        }
        let rows = query
            .order_by_desc(row::Column::Id)
            .limit(size + 1)
            .all(db)
            .await?;
        let (rows, next) = tokens.page(&scope, rows, size, |r| r.id.clone());
        Ok((rows.into_iter().map(to_proto).collect(), next))
    }
}
