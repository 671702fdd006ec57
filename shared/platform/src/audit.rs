//! The audit log (rule ORG-10): every service appends an audit record for every mutation **in
//! the mutation's transaction**, and OWNER/ADMIN list them with filters and pagination. The table
//! is append-only; nothing in Orgplane updates or deletes a record except an organization purge.
//! A refused mutation is recorded on its own, after its transaction rolled back, through
//! [`AuditLogWriter::outcome`], which every service's gRPC layer applies to its mutations.

use chrono::{DateTime, Utc};
use orgplane_proto::audit::v1::{ActorKind, AuditEvent, AuditEventFilter, Outcome};
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QueryOrder, QuerySelect};
use sea_orm_migration::prelude as mig;

use crate::auth::Principal;
use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::pagination::{PageTokens, page_size};

/// Rows of `audit_log`.
pub mod row {
    use sea_orm::entity::prelude::*;

    /// One audit record.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        /// `audit_<uuidv7>`: sorts by time.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The organization the record belongs to; empty for account-level actions.
        pub organization_id: String,
        /// The service that wrote it.
        pub service: String,
        /// `ActorKind` as its number.
        pub actor_kind: i32,
        /// The actor's id.
        pub actor_id: String,
        /// `<resource_type>.<verb>`.
        pub action: String,
        /// The resource's type.
        pub resource_type: String,
        /// The resource's id.
        pub resource_id: String,
        /// When (Unix milliseconds).
        pub create_time_ms: i64,
        /// The request id.
        pub request_id: String,
        /// The trace id.
        pub trace_id: String,
        /// `Outcome` as its number.
        pub outcome: i32,
        /// The gRPC code name of a failure.
        pub status_code: String,
        /// The ErrorInfo reason of a failure.
        pub error_reason: String,
        /// The resource before, as JSON.
        pub before_json: Option<String>,
        /// The resource after, as JSON.
        pub after_json: Option<String>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The migration creating `audit_log`; every service includes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateAuditLog;

impl mig::MigrationName for CreateAuditLog {
    fn name(&self) -> &str {
        "m20261123_000003_create_audit_log"
    }
}

#[derive(mig::DeriveIden)]
enum AuditLog {
    Table,
    Id,
    OrganizationId,
    Service,
    ActorKind,
    ActorId,
    Action,
    ResourceType,
    ResourceId,
    CreateTimeMs,
    RequestId,
    TraceId,
    Outcome,
    StatusCode,
    ErrorReason,
    BeforeJson,
    AfterJson,
}

#[mig::async_trait::async_trait]
impl mig::MigrationTrait for CreateAuditLog {
    async fn up(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        use mig::{ColumnDef, Index, Table};
        let s = |c: AuditLog| ColumnDef::new(c).string().not_null().to_owned();
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AuditLog::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(s(AuditLog::OrganizationId))
                    .col(s(AuditLog::Service))
                    .col(ColumnDef::new(AuditLog::ActorKind).integer().not_null())
                    .col(s(AuditLog::ActorId))
                    .col(s(AuditLog::Action))
                    .col(s(AuditLog::ResourceType))
                    .col(s(AuditLog::ResourceId))
                    .col(
                        ColumnDef::new(AuditLog::CreateTimeMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(s(AuditLog::RequestId))
                    .col(s(AuditLog::TraceId))
                    .col(ColumnDef::new(AuditLog::Outcome).integer().not_null())
                    .col(s(AuditLog::StatusCode))
                    .col(s(AuditLog::ErrorReason))
                    .col(ColumnDef::new(AuditLog::BeforeJson).text().null())
                    .col(ColumnDef::new(AuditLog::AfterJson).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_log_org_id")
                    .table(AuditLog::Table)
                    .col(AuditLog::OrganizationId)
                    .col(AuditLog::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &mig::SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(mig::Table::drop().table(AuditLog::Table).to_owned())
            .await
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
        }
    }

    /// Adds the before/after images.
    pub fn with_change(
        mut self,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Self {
        self.before = before;
        self.after = after;
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
    use tonic::Code;
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

    /// Appends a success record inside `txn` (the mutation's transaction).
    pub async fn record<C: ConnectionTrait>(
        &self,
        txn: &C,
        principal: &Principal,
        ctx: &RequestContext,
        entry: Entry,
    ) -> ApiResult<()> {
        self.insert(txn, principal, ctx, entry, None, Utc::now())
            .await
    }

    /// Appends a record of a refused or failed mutation (outside its rolled-back transaction).
    pub async fn record_failure<C: ConnectionTrait>(
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
    pub async fn outcome<T, C, F, Fut>(
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
        let (_, actor_id) = principal.actor();
        let kind = match principal {
            Principal::Anonymous if actor_id.is_empty() => ActorKind::System,
            p => actor_kind(p),
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
                    .map(|e| crate::metrics::code_name(e.code() as i32).to_owned())
                    .unwrap_or_default(),
            ),
            error_reason: sea_orm::Set(error.map(|e| e.reason().to_owned()).unwrap_or_default()),
            before_json: sea_orm::Set(json(entry.before)),
            after_json: sea_orm::Set(json(entry.after)),
        }
        .insert(db)
        .await?;
        Ok(())
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

fn to_proto(r: row::Model) -> AuditEvent {
    let structured = |s: Option<String>| {
        s.and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| match json_to_prost(v) {
                prost_types::value::Kind::StructValue(s) => Some(s),
                _ => None,
            })
    };
    AuditEvent {
        id: r.id,
        organization_id: r.organization_id,
        service: r.service,
        actor_kind: r.actor_kind,
        actor_id: r.actor_id,
        action: r.action,
        resource_type: r.resource_type,
        resource_id: r.resource_id,
        create_time: Some(prost_types::Timestamp {
            seconds: r.create_time_ms.div_euclid(1000),
            nanos: (r.create_time_ms.rem_euclid(1000) * 1_000_000) as i32,
        }),
        request_id: r.request_id,
        trace_id: r.trace_id,
        outcome: r.outcome,
        status_code: r.status_code,
        error_reason: r.error_reason,
        before: structured(r.before_json),
        after: structured(r.after_json),
    }
}

/// Converts JSON into a `google.protobuf.Value` kind.
pub fn json_to_prost(v: serde_json::Value) -> prost_types::value::Kind {
    use prost_types::value::Kind;
    match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a
                .into_iter()
                .map(|v| prost_types::Value {
                    kind: Some(json_to_prost(v)),
                })
                .collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        prost_types::Value {
                            kind: Some(json_to_prost(v)),
                        },
                    )
                })
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm_migration::{MigrationTrait, MigratorTrait};

    struct M;
    impl MigratorTrait for M {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(CreateAuditLog)]
        }
    }

    #[tokio::test]
    async fn org_10_outcome_records_refusals_only_and_returns_the_error_unchanged() {
        let db = crate::testkit::TestDb::sqlite();
        let conn = db.open::<M>().await;
        let log = AuditLogWriter::new("organization");
        let user = Principal::User(crate::auth::UserPrincipal {
            user_id: "user_dev".into(),
            session_id: "s".into(),
            auth_time: 0,
            token_id: "t".into(),
        });
        let ctx = RequestContext {
            request_id: "req-refused".into(),
        };
        let target = |resource_id: &str| {
            let e = Entry::new("org_a", "member.update_role", "member", resource_id)
                .with_change(None, Some(serde_json::json!({"role": "ADMIN"})));
            async move { Some(e) }
        };
        let denied = ApiError::permission_denied("INSUFFICIENT_ROLE", "admins only");
        let out: ApiResult<()> = log
            .outcome(&conn, &user, &ctx, Err(denied), || target("user_dev"))
            .await;
        let err = out.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(err.reason(), "INSUFFICIENT_ROLE");
        // Not recorded: success, INVALID_ARGUMENT, UNAVAILABLE, an anonymous caller, an unknown
        // organization.
        let ok: ApiResult<i32> = log.outcome(&conn, &user, &ctx, Ok(7), || target("x")).await;
        assert_eq!(ok.unwrap(), 7);
        for error in [
            ApiError::invalid_argument("role", "required"),
            ApiError::unavailable("DATABASE_UNAVAILABLE", "retry"),
        ] {
            let _ = log
                .outcome::<(), _, _, _>(&conn, &user, &ctx, Err(error), || target("x"))
                .await;
        }
        let _ = log
            .outcome::<(), _, _, _>(
                &conn,
                &Principal::Anonymous,
                &ctx,
                Err(ApiError::permission_denied("R", "m")),
                || target("x"),
            )
            .await;
        let _ = log
            .outcome::<(), _, _, _>(
                &conn,
                &user,
                &ctx,
                Err(ApiError::not_found("member", "x")),
                || async { None },
            )
            .await;
        // NOT_FOUND (an outsider's answer) is not recorded, even when the organization exists.
        let _ = log
            .outcome::<(), _, _, _>(
                &conn,
                &user,
                &ctx,
                Err(ApiError::not_found("member", "x")),
                || target("x"),
            )
            .await;
        // A resource id that is not an id is blanked.
        let _ = log
            .outcome::<(), _, _, _>(
                &conn,
                &user,
                &ctx,
                Err(ApiError::aborted("ETAG_MISMATCH", "stale")),
                || target(&"\u{1b}[31m".repeat(100)),
            )
            .await;
        let tokens = PageTokens::new(b"k");
        let failures = AuditEventFilter {
            outcome: Outcome::Failure as i32,
            ..Default::default()
        };
        let (records, _) = log
            .list(&conn, &tokens, "org_a", &failures, 10, "")
            .await
            .unwrap();
        assert_eq!(records.len(), 2, "{records:?}");
        let denied = &records[1];
        assert_eq!(denied.status_code, "PERMISSION_DENIED");
        assert_eq!(denied.error_reason, "INSUFFICIENT_ROLE");
        assert_eq!(denied.actor_id, "user_dev");
        assert_eq!(denied.request_id, "req-refused");
        assert_eq!(denied.resource_id, "user_dev");
        assert!(denied.before.is_none() && denied.after.is_none());
        assert_eq!(records[0].status_code, "ABORTED");
        assert_eq!(records[0].resource_id, "");
        let (all, _) = log
            .list(
                &conn,
                &tokens,
                "org_a",
                &AuditEventFilter::default(),
                10,
                "",
            )
            .await
            .unwrap();
        assert_eq!(all.len(), 2, "nothing else was written");
        // A log that cannot be written does not change the answer.
        let empty = crate::testkit::TestDb::sqlite();
        struct NoTables;
        impl MigratorTrait for NoTables {
            fn migrations() -> Vec<Box<dyn MigrationTrait>> {
                Vec::new()
            }
        }
        let broken = empty.open::<NoTables>().await;
        let out: ApiResult<()> = log
            .outcome(
                &broken,
                &user,
                &ctx,
                Err(ApiError::aborted("ETAG_MISMATCH", "stale")),
                || target("user_dev"),
            )
            .await;
        assert_eq!(out.unwrap_err().reason(), "ETAG_MISMATCH");
    }

    #[tokio::test]
    async fn records_are_listed_newest_first_with_filters_and_pages() {
        let db = crate::testkit::TestDb::sqlite();
        let conn = db.open::<M>().await;
        let log = AuditLogWriter::new("organization");
        let user = Principal::User(crate::auth::UserPrincipal {
            user_id: "user_1".into(),
            session_id: "s".into(),
            auth_time: 0,
            token_id: "t".into(),
        });
        let ctx = RequestContext {
            request_id: "req-1".into(),
        };
        for i in 0..5 {
            log.record(
                &conn,
                &user,
                &ctx,
                Entry::new(
                    "org_a",
                    "member.update_role",
                    "member",
                    &format!("user_{i}"),
                )
                .with_change(
                    None,
                    Some(serde_json::json!({"role": "ADMIN", "note": "<b>"})),
                ),
            )
            .await
            .unwrap();
        }
        log.record(
            &conn,
            &user,
            &ctx,
            Entry::new("org_b", "organization.update", "organization", "org_b"),
        )
        .await
        .unwrap();
        let tokens = PageTokens::new(b"k");
        let filter = AuditEventFilter::default();
        let (page1, next) = log
            .list(&conn, &tokens, "org_a", &filter, 3, "")
            .await
            .unwrap();
        assert_eq!(page1.len(), 3);
        assert_eq!(page1[0].resource_id, "user_4", "newest first");
        let (page2, next2) = log
            .list(&conn, &tokens, "org_a", &filter, 3, &next)
            .await
            .unwrap();
        assert_eq!(page2.len(), 2);
        assert!(next2.is_empty());
        assert!(page2.iter().all(|e| e.organization_id == "org_a"));
        assert_eq!(page1[0].actor_kind, ActorKind::User as i32);
        assert_eq!(page1[0].request_id, "req-1");
        let after = page1[0].after.as_ref().unwrap();
        assert!(after.fields.contains_key("role"));
        // A page token is bound to its organization and filter.
        assert!(
            log.list(&conn, &tokens, "org_b", &filter, 3, &next)
                .await
                .is_err()
        );
        let only_b = AuditEventFilter {
            action: "organization.update".into(),
            ..Default::default()
        };
        let (none, _) = log
            .list(&conn, &tokens, "org_a", &only_b, 10, "")
            .await
            .unwrap();
        assert!(none.is_empty());
    }
}
