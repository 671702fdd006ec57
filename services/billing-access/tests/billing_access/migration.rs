//! The schema's upgrades keep existing data: billing accounts created with a random etag get
//! row version 1 (etag `v1`) when the version migration runs.

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
