//! Stored email keys in the canonical form of rule ID-15. Members' emails and pending invites'
//! keys were stored lower-cased (`str::to_lowercase`); they are now compared as
//! `orgplane_platform::email::canonical_email` keys (local part in NFC with ASCII letters
//! lower-cased, domain in IDNA ASCII). For ASCII addresses (all addresses the service accepted
//! so far had ASCII domains) the two agree; this migration rewrites the rows where they do not
//! (a local part not in NFC). It only updates values in place, so the previous release keeps
//! working on the same database. A non-ASCII capital the old form lower-cased cannot be
//! restored; members' rows are refreshed from identity by the next `UserEmailVerified` or
//! re-sync, and such an old pending invite can be sent again.

use orgplane_platform::email::canonical_email;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_migration::prelude::*;
use sea_orm_migration::{MigrationTrait, SchemaManager};

/// Rewrites `members.email` and `invites.pending_key` into canonical keys (rule ID-15).
#[derive(Debug, Clone, Copy, Default)]
pub struct CanonicalEmailKeys;

impl MigrationName for CanonicalEmailKeys {
    fn name(&self) -> &str {
        "m20261215_000003_canonical_email_keys"
    }
}

/// The key of a stored value, when it differs from it.
fn rekeyed(stored: &str) -> Option<String> {
    canonical_email("email", stored)
        .ok()
        .map(|e| e.key)
        .filter(|k| k != stored)
}

#[async_trait::async_trait]
impl MigrationTrait for CanonicalEmailKeys {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let backend = db.get_database_backend();
        // `{0}` may appear twice: PostgreSQL numbers parameters, SQLite binds `?1`, `?2` too.
        let placeholders = |n: usize| match backend {
            DbBackend::Postgres => (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>(),
            _ => (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>(),
        };
        for (select, update) in [
            (
                "SELECT DISTINCT email FROM members",
                "UPDATE members SET email = {0} WHERE email = {1}",
            ),
            (
                "SELECT DISTINCT pending_key FROM invites WHERE pending_key IS NOT NULL",
                // Never two pending invites of one organization with one key (the second stays).
                "UPDATE invites SET pending_key = {0} WHERE pending_key = {1} AND NOT EXISTS \
                 (SELECT 1 FROM invites AS other WHERE other.organization_id = \
                 invites.organization_id AND other.pending_key = {0})",
            ),
        ] {
            let rows = db
                .query_all_raw(Statement::from_string(backend, select))
                .await?;
            for row in rows {
                let stored: String = row.try_get_by_index(0)?;
                let Some(key) = rekeyed(&stored) else {
                    continue;
                };
                let p = placeholders(2);
                let sql = update.replace("{0}", &p[0]).replace("{1}", &p[1]);
                db.execute_raw(Statement::from_sql_and_values(
                    backend,
                    sql,
                    [key.into(), stored.into()],
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        // Canonical keys are valid lower-cased keys of the previous release too.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_15_only_non_canonical_keys_are_rewritten() {
        assert_eq!(rekeyed("ada@example.com"), None);
        assert_eq!(rekeyed("not an address"), None);
        // "é" decomposed (e + U+0301) becomes the composed character.
        assert_eq!(
            rekeyed("re\u{301}mi@example.com").as_deref(),
            Some("r\u{e9}mi@example.com")
        );
    }
}
