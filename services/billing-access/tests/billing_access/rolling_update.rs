//! A rolling update (ARCHITECTURE.md, "Schema changes"): after this release's migrations ran,
//! replicas of the previous release still upsert their per-minute rollups into `usage_rollups`
//! on its six-column key. That statement keeps working (the per-account sums live in a table of
//! their own, BILL-6), and the usage it adds is counted in the reports that read `usage_rollups`
//! (every one not grouped or filtered by account) and missing from the account ones.

use orgplane_billing_access::domain::reports::Dim;
use orgplane_billing_access::migration::Migrator;
use orgplane_billing_access::store::rollups::Rollups;
use orgplane_platform::testkit::TestDb;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbErr, Statement};
use sea_orm_migration::MigratorTrait;

/// The rollup upsert of the previous release (`store/usage.rs` before BILL-6), as sea-query
/// renders it for both databases, into `table`.
fn previous_release_upsert(table: &str, input: i64) -> String {
    format!(
        r#"INSERT INTO "{table}" ("organization_id", "minute_ms", "workspace_id", "api_key_id", "model", "user_id", "input_tokens", "output_tokens", "record_count") VALUES ('org_r', 120000, 'ws', 'key', 'm', 'u', {input}, 1, 1) ON CONFLICT ("organization_id", "minute_ms", "workspace_id", "api_key_id", "model", "user_id") DO UPDATE SET "input_tokens" = usage_rollups.input_tokens + excluded.input_tokens, "output_tokens" = usage_rollups.output_tokens + excluded.output_tokens, "record_count" = usage_rollups.record_count + excluded.record_count"#
    )
}

async fn run(conn: &DatabaseConnection, sql: String) -> Result<u64, DbErr> {
    let statement = Statement::from_string(conn.get_database_backend(), sql);
    Ok(conn.execute_raw(statement).await?.rows_affected())
}

/// The input tokens of `org_r`'s report over the first hour, ungrouped or by account.
async fn input_total(conn: &DatabaseConnection, dims: &[Dim]) -> i64 {
    let rollups = Rollups {
        organization_id: "org_r",
        width: 3_600_000,
        dims,
        filters: &[],
        accounts: &[],
    };
    let (rows, _) = rollups.page(conn, 0, 3_600_000, 1).await.unwrap();
    rows.iter().map(|r| r.input).sum()
}

async fn previous_release_upsert_still_works(db: TestDb) {
    let conn = Database::connect(db.url.as_str()).await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    // Inserted, then added to on conflict.
    run(&conn, previous_release_upsert("usage_rollups", 10))
        .await
        .unwrap();
    run(&conn, previous_release_upsert("usage_rollups", 5))
        .await
        .unwrap();
    let sums = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT input_tokens, record_count FROM usage_rollups WHERE organization_id = 'org_r'",
        ))
        .await
        .unwrap();
    assert_eq!(sums.len(), 1);
    assert_eq!(sums[0].try_get_by_index::<i64>(0).unwrap(), 15);
    assert_eq!(sums[0].try_get_by_index::<i64>(1).unwrap(), 2);
    // Counted in the ungrouped report; missing from the one by account (it names none).
    assert_eq!(input_total(&conn, &[]).await, 15);
    assert_eq!(input_total(&conn, &[Dim::Model]).await, 15);
    assert_eq!(input_total(&conn, &[Dim::Account]).await, 0);

    // The control: against the table keyed also by account, the same statement fails (no
    // unique index matches its conflict target), as it did against the rebuilt `usage_rollups`.
    let wide = previous_release_upsert("usage_account_rollups", 10)
        .replace("usage_rollups.", "usage_account_rollups.");
    let err = run(&conn, wide).await.unwrap_err();
    assert!(
        err.to_string().contains("ON CONFLICT"),
        "fails on its conflict target: {err}"
    );
}

#[tokio::test]
async fn bill_6_the_previous_release_rollup_upsert_still_works_after_the_migration() {
    previous_release_upsert_still_works(TestDb::sqlite()).await;
}

#[tokio::test]
async fn bill_6_the_previous_release_rollup_upsert_still_works_after_the_migration_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    previous_release_upsert_still_works(db).await;
}
