//! Tests of the audit log writer and reader.

use super::*;
use crate::call::Call;
use crate::error::Reason;
use sea_orm_migration::{MigrationTrait, MigratorTrait};

struct M;
impl MigratorTrait for M {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateAuditLog),
            Box::new(AddAuditActorOrganization),
        ]
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
        sign_in: Default::default(),
    });
    let ctx = RequestContext {
        request_id: "req-refused".into(),
    };
    let target = |resource_id: &str| {
        let e = Entry::new("org_a", "member.update_role", "member", resource_id)
            .with_details(serde_json::json!({"role": "ADMIN"}));
        async move { Some(e) }
    };
    let denied = ApiError::permission_denied(Reason::InsufficientRole, "admins only");
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
        ApiError::unavailable(Reason::DatabaseUnavailable, "retry"),
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
            Err(ApiError::permission_denied(Reason::InsufficientRole, "m")),
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
            Err(ApiError::aborted(Reason::EtagMismatch, "stale")),
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
            Err(ApiError::aborted(Reason::EtagMismatch, "stale")),
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
        sign_in: Default::default(),
    });
    let ctx = RequestContext {
        request_id: "req-1".into(),
    };
    let call = Call {
        request_id: ctx.request_id.clone(),
        ..Call::from_principal(user.clone())
    };
    for i in 0..5 {
        log.write(
            &conn,
            &call,
            Entry::new(
                "org_a",
                "member.update_role",
                "member",
                &format!("user_{i}"),
            )
            .with_details(serde_json::json!({"role": "ADMIN", "note": "<b>"})),
        )
        .await
        .unwrap();
    }
    log.write(
        &conn,
        &call,
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

#[test]
fn org_10_images_are_canonical_proto3_json_with_enum_names_and_camel_case() {
    use orgplane_proto::organization::v1::{Member, OrgRole};
    let member = Member {
        organization_id: "org_a".into(),
        user_id: "user_b".into(),
        role: OrgRole::Billing as i32,
        create_time: Some(crate::convert::timestamp_ms(1_733_000_000_000)),
        ..Default::default()
    };
    let entry =
        Entry::new("org_a", "member.update_role", "member", "user_b").change(None, Some(&member));
    let after = entry.after.unwrap();
    assert_eq!(after["role"], "ORG_ROLE_BILLING");
    assert_eq!(after["organizationId"], "org_a");
    assert_eq!(after["createTime"], "2024-11-30T20:53:20Z");
    assert!(after.get("organization_id").is_none());
    assert!(entry.before.is_none());
}
