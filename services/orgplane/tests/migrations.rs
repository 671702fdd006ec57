//! Migrations are expand/contract (ARCHITECTURE.md, "Schema changes"): during a rolling update
//! release N-1 and release N share one database, so a migration of release N may add tables and
//! columns but must not take away or change what N-1 reads and writes. For every service's
//! migrator (the platform migrations it includes are among its steps) the migrations are applied
//! one at a time to a fresh database (SQLite, and PostgreSQL — where replicas of two releases
//! really share one — when `ORGPLANE_TEST_POSTGRES_URL` is set) and the schema is compared after
//! each step: a table
//! or column that disappears (dropped or renamed), a column whose type changes, a nullable column
//! that becomes NOT NULL, and a NOT NULL column without a default added to an existing table (the
//! previous release's INSERTs would fail) are findings, unless the step is listed in
//! [`CONTRACT_STEPS`].

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use orgplane_platform::testkit::TestDb;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use sea_orm_migration::prelude::*;
use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// Contract steps: migrations allowed to remove or change the tables and columns they name, each
/// with the earlier release that added the replacement (and stopped reading what it removes). A
/// contract step ships at least one release after that expand step, so no running version still
/// needs what it removes.
///
/// The two listed steps predate this check and add the replacement (`version`) in the same step:
/// only SQLite drops `etag`; PostgreSQL, where replicas share a database during a rolling update,
/// keeps it (default ''). A SQLite database is used by one process, never by two releases at once.
const CONTRACT_STEPS: &[ContractStep] = &[
    ContractStep {
        migration: "m20261203_000001_workspace_row_versions",
        removes: &["workspace_members.etag", "workspaces.etag"],
        replacement_added_in: "none (same step; SQLite only, see above)",
    },
    ContractStep {
        migration: "m20261203_000001_version_billing_accounts",
        removes: &["billing_accounts.etag"],
        replacement_added_in: "none (same step; SQLite only, see above)",
    },
];

/// One allowed contract migration.
struct ContractStep {
    /// The migration's name (`mYYYYMMDD_NNNNNN_…`).
    migration: &'static str,
    /// What it may remove or change: `table` or `table.column`.
    removes: &'static [&'static str],
    /// The earlier release (and its expand migration) that added the replacement.
    replacement_added_in: &'static str,
}

/// A change the previous release cannot live with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    /// The table or column concerned: `table` or `table.column`.
    subject: String,
    /// What happened to it.
    message: String,
}

/// One column as the database reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    kind: String,
    not_null: bool,
    default: Option<String>,
}

/// Table → column → definition.
type Schema = BTreeMap<String, BTreeMap<String, Column>>;

async fn schema(db: &DatabaseConnection) -> Schema {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text, \
             CASE WHEN c.is_nullable = 'NO' THEN 1::bigint ELSE 0::bigint END, \
             c.column_default::text \
             FROM information_schema.columns c JOIN information_schema.tables t \
             ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
             AND c.table_name <> 'seaql_migrations'"
        }
        _ => {
            "SELECT m.name, p.name, p.type, p.\"notnull\", p.dflt_value \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> 'seaql_migrations'"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap();
    let mut out = Schema::new();
    for r in rows {
        let table: String = r.try_get_by_index(0).unwrap();
        let column: String = r.try_get_by_index(1).unwrap();
        let kind: String = r.try_get_by_index(2).unwrap();
        let not_null: i64 = r.try_get_by_index(3).unwrap();
        let default: Option<String> = r.try_get_by_index(4).unwrap();
        out.entry(table).or_default().insert(
            column,
            Column {
                kind: kind.to_ascii_uppercase(),
                not_null: not_null != 0,
                default,
            },
        );
    }
    out
}

/// What `after` takes away from, or demands beyond, `before` that the previous release cannot
/// live with.
fn breaking_changes(before: &Schema, after: &Schema) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut note = |subject: String, message: String| found.push(Finding { subject, message });
    for (table, columns) in before {
        let Some(now) = after.get(table) else {
            note(table.clone(), format!("drops (or renames) table {table}"));
            continue;
        };
        for (name, old) in columns {
            let subject = format!("{table}.{name}");
            match now.get(name) {
                None => note(
                    subject.clone(),
                    format!("drops (or renames) column {subject}"),
                ),
                Some(new) if new.kind != old.kind => note(
                    subject.clone(),
                    format!(
                        "changes the type of {subject} from {} to {}",
                        old.kind, new.kind
                    ),
                ),
                Some(new) if new.not_null && !old.not_null => {
                    note(subject.clone(), format!("makes {subject} NOT NULL"))
                }
                Some(_) => {}
            }
        }
        for (name, new) in now {
            if !columns.contains_key(name) && new.not_null && new.default.is_none() {
                note(
                    format!("{table}.{name}"),
                    format!(
                        "adds {table}.{name} NOT NULL without a default (the previous \
                         release's INSERTs would fail)"
                    ),
                );
            }
        }
    }
    found
}

/// Applies `M`'s migrations one at a time to a fresh SQLite database and returns the findings
/// that `allowed` does not list, as "`migration`: finding", with the number of steps.
async fn check<M: MigratorTrait>(allowed: &[ContractStep]) -> (usize, Vec<String>) {
    check_on::<M>(&TestDb::sqlite(), allowed).await
}

/// [`check`] on the fresh database `fresh`.
async fn check_on<M: MigratorTrait>(
    fresh: &TestDb,
    allowed: &[ContractStep],
) -> (usize, Vec<String>) {
    let db = Database::connect(fresh.url.as_str()).await.unwrap();
    let names: Vec<String> = M::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let mut before = schema(&db).await;
    let mut findings = Vec::new();
    for name in &names {
        M::up(&db, Some(1)).await.unwrap();
        let after = schema(&db).await;
        for f in breaking_changes(&before, &after) {
            let listed = allowed
                .iter()
                .any(|c| c.migration == name && c.removes.contains(&f.subject.as_str()));
            if !listed {
                findings.push(format!("{name}: {}", f.message));
            }
        }
        before = after;
    }
    assert!(
        M::get_pending_migrations(&db).await.unwrap().is_empty(),
        "every migration was applied one at a time"
    );
    let _ = db.close().await;
    (names.len(), findings)
}

fn assert_expand_only(service: &str, (steps, findings): (usize, Vec<String>)) {
    assert!(steps > 0, "{service}: no migrations");
    assert!(
        findings.is_empty(),
        "{service}: migrations that break the previous release during a rolling update (make \
         them expand steps, or list a contract step in CONTRACT_STEPS with the release that \
         added its replacement):\n{}",
        findings.join("\n")
    );
}

#[tokio::test]
async fn migrations_of_every_service_are_expand_only() {
    for c in CONTRACT_STEPS {
        assert!(
            !c.replacement_added_in.is_empty(),
            "{}: name the release that added the replacement",
            c.migration
        );
    }
    assert_expand_only(
        "identity",
        check::<orgplane_identity::migration::Migrator>(CONTRACT_STEPS).await,
    );
    assert_expand_only(
        "organization",
        check::<orgplane_organization::migration::Migrator>(CONTRACT_STEPS).await,
    );
    assert_expand_only(
        "workspace",
        check::<orgplane_workspace::migration::Migrator>(CONTRACT_STEPS).await,
    );
    assert_expand_only(
        "billing-access",
        check::<orgplane_billing_access::migration::Migrator>(CONTRACT_STEPS).await,
    );
}

/// The same on PostgreSQL, with no contract step allowed: the two listed steps drop `etag` on
/// SQLite only.
#[tokio::test]
async fn migrations_of_every_service_are_expand_only_postgres() {
    macro_rules! on_postgres {
        ($service:literal, $migrator:ty) => {{
            let Some(fresh) = TestDb::postgres().await else {
                eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
                return;
            };
            assert_expand_only($service, check_on::<$migrator>(&fresh, &[]).await);
        }};
    }
    on_postgres!("identity", orgplane_identity::migration::Migrator);
    on_postgres!("organization", orgplane_organization::migration::Migrator);
    on_postgres!("workspace", orgplane_workspace::migration::Migrator);
    on_postgres!(
        "billing-access",
        orgplane_billing_access::migration::Migrator
    );
}

/// The control on PostgreSQL: the one-step rename is caught there too.
#[tokio::test]
async fn migrations_control_a_rename_is_caught_postgres() {
    let Some(fresh) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    let (_, findings) = check_on::<WithRename>(&fresh, &[]).await;
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert!(findings[0].contains("drops (or renames) column organizations.name"));
    assert!(findings[1].contains("adds organizations.display_name NOT NULL without a default"));
}

// Control arm: synthetic migrations appended to the organization's migrator, each a change the
// previous release cannot live with.

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Name,
    DisplayName,
}

/// Renames `organizations.name` (what a one-step "rename" looks like).
struct RenameOrganizationName;

impl MigrationName for RenameOrganizationName {
    fn name(&self) -> &str {
        "m29990101_000001_rename_organization_name"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for RenameOrganizationName {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Organizations::Table)
                .rename_column(Organizations::Name, Organizations::DisplayName)
                .to_owned(),
        )
        .await
    }
}

/// Creates a small table the next synthetic step rebuilds.
struct CreateWidgets;

impl MigrationName for CreateWidgets {
    fn name(&self) -> &str {
        "m29990101_000002_create_widgets"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateWidgets {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("CREATE TABLE widgets (id TEXT PRIMARY KEY NOT NULL)")
            .await?;
        Ok(())
    }
}

/// Adds a required column without a default, by the table rebuild SQLite needs for it.
struct AddRequiredRegion;

impl MigrationName for AddRequiredRegion {
    fn name(&self) -> &str {
        "m29990101_000003_add_required_region"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddRequiredRegion {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for sql in [
            "CREATE TABLE widgets_new (id TEXT PRIMARY KEY NOT NULL, region TEXT NOT NULL)",
            "INSERT INTO widgets_new SELECT id, 'eu' FROM widgets",
            "DROP TABLE widgets",
            "ALTER TABLE widgets_new RENAME TO widgets",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

struct WithRename;

impl MigratorTrait for WithRename {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = orgplane_organization::migration::Migrator::migrations();
        all.push(Box::new(RenameOrganizationName));
        all
    }
}

struct WithRequiredColumn;

impl MigratorTrait for WithRequiredColumn {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = orgplane_organization::migration::Migrator::migrations();
        all.push(Box::new(CreateWidgets));
        all.push(Box::new(AddRequiredRegion));
        all
    }
}

#[tokio::test]
async fn migrations_control_a_rename_or_a_required_column_is_caught_unless_listed_as_contract() {
    let (_, findings) = check::<WithRename>(&[]).await;
    assert_eq!(
        findings,
        vec![
            "m29990101_000001_rename_organization_name: drops (or renames) column \
             organizations.name"
                .to_owned(),
            "m29990101_000001_rename_organization_name: adds organizations.display_name NOT \
             NULL without a default (the previous release's INSERTs would fail)"
                .to_owned(),
        ]
    );
    let (_, findings) = check::<WithRequiredColumn>(&[]).await;
    assert_eq!(
        findings,
        vec![
            "m29990101_000003_add_required_region: adds widgets.region NOT NULL without a \
             default (the previous release's INSERTs would fail)"
                .to_owned()
        ]
    );
    // Listed as a contract step (its replacement shipped a release earlier), it passes.
    let listed = [ContractStep {
        migration: "m29990101_000001_rename_organization_name",
        removes: &["organizations.name", "organizations.display_name"],
        replacement_added_in: "0.1.0 (m29981231_000001_add_display_name)",
    }];
    let (_, findings) = check::<WithRename>(&listed).await;
    assert!(findings.is_empty(), "{findings:?}");
    // A listed step removes only what it names.
    let narrow = [ContractStep {
        migration: "m29990101_000001_rename_organization_name",
        removes: &["organizations.display_name"],
        replacement_added_in: "0.1.0",
    }];
    let (_, findings) = check::<WithRename>(&narrow).await;
    assert_eq!(findings.len(), 1, "{findings:?}");
}
