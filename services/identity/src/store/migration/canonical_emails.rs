//! Account keys in the canonical form of rule ID-15.

use orgplane_platform::email::canonical_email;
use sea_orm::{ConnectionTrait, FromQueryResult, Statement};
use sea_orm_migration::prelude::*;

/// Recomputes `users.email_key` (and the stored address's domain) in the one canonical form of
/// rule ID-15: the domain in IDNA ASCII, the local part in NFC with only ASCII letters
/// lower-cased. Earlier releases lower-cased the whole address with Unicode rules and kept a
/// non-ASCII domain as typed, so only accounts with non-ASCII addresses change. An address the
/// new rules refuse (it holds a character that folds to ASCII), or whose new key another account
/// already has, keeps its old key: that account still signs in as before, and the refusal only
/// applies to new addresses. Rows only change values, so the previous release can share the
/// database during a rolling update.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalEmailKeys;

impl MigrationName for CanonicalEmailKeys {
    fn name(&self) -> &str {
        "m20261204_000001_canonical_email_keys"
    }
}

#[derive(Debug, FromQueryResult)]
struct Row {
    id: String,
    email: String,
    email_key: String,
}

#[async_trait::async_trait]
impl MigrationTrait for CanonicalEmailKeys {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        let rows = Row::find_by_statement(Statement::from_string(
            backend,
            "SELECT id, email, email_key FROM users",
        ))
        .all(db)
        .await?;
        let taken: std::collections::HashSet<String> =
            rows.iter().map(|r| r.email_key.clone()).collect();
        for row in rows.iter().filter(|r| !r.email.is_ascii()) {
            let Ok(canonical) = canonical_email("email", &row.email) else {
                continue;
            };
            if canonical.key == row.email_key || taken.contains(&canonical.key) {
                continue;
            }
            let (sql, values) = match backend {
                sea_orm::DatabaseBackend::Postgres => (
                    "UPDATE users SET email = $1, email_key = $2 WHERE id = $3",
                    vec![
                        canonical.address.into(),
                        canonical.key.into(),
                        row.id.clone().into(),
                    ],
                ),
                _ => (
                    "UPDATE users SET email = ?, email_key = ? WHERE id = ?",
                    vec![
                        canonical.address.into(),
                        canonical.key.into(),
                        row.id.clone().into(),
                    ],
                ),
            };
            db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
        Ok(())
    }
}
