//! The schema's upgrades keep existing data: billing accounts created with a random etag get
//! row version 1 (etag `v1`) when the version migration runs; usage recorded before accounts
//! existed stays, under no account (BILL-6). The previous release's rollup upsert keeps working
//! after the upgrade: see `rolling_update.rs`.

use orgplane_billing_access::api::accounts::to_proto;
use orgplane_billing_access::migration::Migrator;
use orgplane_billing_access::store::entity::account;
use orgplane_platform::testkit::TestDb;
use sea_orm::{ConnectionTrait, Database, EntityTrait, Statement};
use sea_orm_migration::MigratorTrait;

async fn existing_accounts_start_at_version_1(db: TestDb) {
    let conn = Database::connect(db.url.as_str()).await.unwrap();
    // Every migration before the row-version one (later ones may follow it).
    let before_version = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261203_000001_version_billing_accounts")
        .unwrap();
    let before_version = u32::try_from(before_version).unwrap();
    Migrator::up(&conn, Some(before_version)).await.unwrap();
    conn.execute_raw(Statement::from_string(
        conn.get_database_backend(),
        "INSERT INTO billing_accounts \
         (organization_id, plan, billing_email, seats, create_time_ms, update_time_ms, etag) \
         VALUES ('org_old', 2, 'billing@old.example', 5, 1000, 2000, 'c0ffee')",
    ))
    .await
    .unwrap();
    Migrator::up(&conn, None).await.unwrap();
    let old = account::Entity::find_by_id("org_old".to_owned())
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.version, 1);
    assert_eq!((old.plan, old.seats), (2, 5));
    assert_eq!(old.billing_email, "billing@old.example");
    assert_eq!(to_proto(&old).etag, "v1");
    // On PostgreSQL the migration only expands: the previous release, sharing the database
    // during a rolling update, still reads and writes its etag column.
    let postgres = conn.get_database_backend() == sea_orm::DbBackend::Postgres;
    if postgres {
        conn.execute_raw(Statement::from_string(
            conn.get_database_backend(),
            "INSERT INTO billing_accounts \
         (organization_id, plan, billing_email, seats, create_time_ms, update_time_ms, etag) \
         VALUES ('org_n_minus_1', 1, '', 1, 3000, 3000, 'beef')",
        ))
        .await
        .unwrap();
        let etags = conn
            .query_all_raw(Statement::from_string(
                conn.get_database_backend(),
                "SELECT etag FROM billing_accounts ORDER BY organization_id",
            ))
            .await
            .unwrap();
        assert_eq!(etags.len(), 2);
    }
    // The migration can be rolled back.
    Migrator::down(&conn, Some(1)).await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
}

#[tokio::test]
async fn bill_2_existing_accounts_start_at_version_1() {
    existing_accounts_start_at_version_1(TestDb::sqlite()).await;
}

#[tokio::test]
async fn bill_2_existing_accounts_start_at_version_1_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    existing_accounts_start_at_version_1(db).await;
}

/// BILL-6: the per-account rollups start with the earlier usage, under no account; the narrow
/// rollups are left as they were (the previous release still writes them), and the migration
/// rolls back to them.
async fn existing_usage_is_kept_under_no_account(db: TestDb) {
    let conn = Database::connect(db.url.as_str()).await.unwrap();
    let backend = conn.get_database_backend();
    let exec = |sql: &'static str| {
        let conn = conn.clone();
        async move {
            conn.execute_raw(Statement::from_string(backend, sql))
                .await
                .unwrap();
        }
    };
    let read = |sql: &'static str| {
        let conn = conn.clone();
        async move {
            let rows = conn
                .query_all_raw(Statement::from_string(backend, sql))
                .await
                .unwrap();
            rows.iter()
                .map(|r| {
                    (0..r.column_names().len())
                        .map(|i| match r.try_get_by_index::<String>(i) {
                            Ok(s) => s,
                            Err(_) => r.try_get_by_index::<i64>(i).unwrap().to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
        }
    };
    let before = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261215_000001_billing_per_account")
        .unwrap();
    Migrator::up(&conn, Some(u32::try_from(before).unwrap()))
        .await
        .unwrap();
    exec(
        "INSERT INTO usage_records (organization_id, idempotency_key, workspace_id, api_key_id, \
         user_id, model, input_tokens, output_tokens, usage_time_ms, record_time_ms) \
         VALUES ('org_old', 'k1', '', '', '', 'm', 5, 6, 60000, 60000)",
    )
    .await;
    exec(
        "INSERT INTO usage_rollups (organization_id, minute_ms, workspace_id, api_key_id, model, \
         user_id, input_tokens, output_tokens, record_count) \
         VALUES ('org_old', 60000, '', '', 'm', '', 5, 6, 1)",
    )
    .await;
    let narrow = "SELECT organization_id, minute_ms, model, input_tokens, output_tokens, \
                  record_count FROM usage_rollups";
    let wide = "SELECT account_id, subaccount_id, input_tokens, output_tokens, record_count \
                FROM usage_account_rollups";
    Migrator::up(&conn, None).await.unwrap();
    assert_eq!(read(narrow).await, ["org_old 60000 m 5 6 1"]);
    assert_eq!(read(wide).await, ["  5 6 1"]);
    assert_eq!(
        read("SELECT account_id, subaccount_id FROM usage_records").await,
        [" "]
    );
    // An account's usage in the same minute, as this release writes it: into both tables.
    exec(
        "INSERT INTO usage_account_rollups (organization_id, minute_ms, workspace_id, api_key_id, \
         model, user_id, account_id, subaccount_id, input_tokens, output_tokens, record_count) \
         VALUES ('org_old', 60000, '', '', 'm', '', 'acct_1', '', 10, 20, 2)",
    )
    .await;
    exec(
        "UPDATE usage_rollups SET input_tokens = 15, output_tokens = 26, record_count = 3 \
         WHERE organization_id = 'org_old'",
    )
    .await;
    // Down through the per-account migration (and the ones after it): the narrow sums stay.
    let after = u32::try_from(Migrator::migrations().len() - before).unwrap();
    Migrator::down(&conn, Some(after)).await.unwrap();
    assert_eq!(read(narrow).await, ["org_old 60000 m 15 26 3"]);
    Migrator::up(&conn, None).await.unwrap();
    assert_eq!(read(wide).await, ["  15 26 3"]);
}

#[tokio::test]
async fn bill_6_existing_usage_is_kept_under_no_account() {
    existing_usage_is_kept_under_no_account(TestDb::sqlite()).await;
}

#[tokio::test]
async fn bill_6_existing_usage_is_kept_under_no_account_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    existing_usage_is_kept_under_no_account(db).await;
}
