//! Hourly and daily rollup tiers (rules BILL-3, BILL-4): a 30-day report over 10M records spread
//! over 30 days reads almost one per-minute rollup row per record; the same report over the
//! daily tier reads one row per day and combination of dimensions.
//!
//! Four new tables hold the sums of the two per-minute tables per UTC hour and per UTC day:
//! `usage_rollups_hour` and `usage_rollups_day` (the key of `usage_rollups`, its minute replaced
//! by the bucket's start `start_ms`), `usage_account_rollups_hour` and `usage_account_rollups_day`
//! (the key of `usage_account_rollups`). They are kept by triggers on the per-minute tables
//! (`AFTER INSERT OR UPDATE`, adding the row's new sums minus its old ones), not by the ingesting
//! code: every writer of the per-minute tables, the previous release's replicas during a rolling
//! update included, keeps the tiers exact in its own transaction, so a report reads the same
//! sums from any tier. Deletions (purge, merge) remove the tier rows themselves: the previous
//! release's purge or merge during a rolling update leaves the purged or merged-away
//! organization's tier rows behind, which no report reads (such an organization is not found).
//!
//! On SQLite the tier tables are `WITHOUT ROWID` (their key is their only index, so a trigger's
//! upsert touches one B-tree). Expand only: new tables and triggers; the per-minute tables and every statement the previous
//! release runs on them are unchanged. The triggers are created before the tiers are filled from
//! the per-minute tables, in the same transaction: on PostgreSQL `CREATE TRIGGER` locks out
//! writers of the table until the commit, so no usage committed meanwhile is missed or counted
//! twice; SQLite has one writer at a time.

use orgplane_platform::schema::{big, text};
use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

use crate::domain::reports::{DAY_MS, HOUR_MS};

/// The hourly and daily rollup tiers and the triggers that keep them.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddRollupTiers;

impl MigrationName for AddRollupTiers {
    fn name(&self) -> &str {
        "m20261220_000001_rollup_tiers"
    }
}

/// A per-minute table, the dimension columns of its key after the organization and minute.
pub struct MinuteTable {
    /// Its name.
    pub name: &'static str,
    /// Its dimension columns.
    pub dims: &'static [&'static str],
}

/// The two per-minute tables, each with tiers of its own.
pub const MINUTE_TABLES: [MinuteTable; 2] = [
    MinuteTable {
        name: "usage_rollups",
        dims: &["workspace_id", "api_key_id", "model", "user_id"],
    },
    MinuteTable {
        name: "usage_account_rollups",
        dims: &[
            "workspace_id",
            "api_key_id",
            "model",
            "user_id",
            "account_id",
            "subaccount_id",
        ],
    },
];

/// The tiers above the minute: table suffix and width (milliseconds).
pub const TIERS: [(&str, i64); 2] = [("hour", HOUR_MS), ("day", DAY_MS)];

const SUMS: [&str; 3] = ["input_tokens", "output_tokens", "record_count"];

fn tier_table(t: &MinuteTable, (suffix, _): (&str, i64)) -> TableCreateStatement {
    let mut create = Table::create();
    create
        .table(Alias::new(format!("{}_{suffix}", t.name)))
        .if_not_exists()
        .col(text(Alias::new("organization_id")))
        .col(big(Alias::new("start_ms")));
    for d in t.dims {
        create.col(text(Alias::new(*d)));
    }
    for s in SUMS {
        create.col(big(Alias::new(s)));
    }
    let mut pk = Index::create();
    pk.col(Alias::new("organization_id"))
        .col(Alias::new("start_ms"));
    for d in t.dims {
        pk.col(Alias::new(*d));
    }
    create.primary_key(&mut pk).to_owned()
}

/// The upsert adding a per-minute row's change (`NEW` minus `OLD`, or `NEW` alone on insert) to
/// its tier row, as a trigger body runs it on both databases.
fn tier_upsert(t: &MinuteTable, (suffix, width): (&str, i64), update: bool) -> String {
    let table = format!("{}_{suffix}", t.name);
    let key: Vec<&str> = ["organization_id", "start_ms"]
        .into_iter()
        .chain(t.dims.iter().copied())
        .collect();
    let mut values = vec![
        "NEW.organization_id".to_owned(),
        format!("NEW.minute_ms - NEW.minute_ms % {width}"),
    ];
    values.extend(t.dims.iter().map(|d| format!("NEW.{d}")));
    values.extend(SUMS.iter().map(|s| {
        if update {
            format!("NEW.{s} - OLD.{s}")
        } else {
            format!("NEW.{s}")
        }
    }));
    let set: Vec<String> = SUMS
        .iter()
        .map(|s| format!("{s} = {table}.{s} + excluded.{s}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}, {}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {};",
        key.join(", "),
        SUMS.join(", "),
        values.join(", "),
        key.join(", "),
        set.join(", ")
    )
}

/// The statements creating the triggers of `t` on `backend`.
fn triggers(t: &MinuteTable, backend: DbBackend) -> Vec<String> {
    let body = |update| {
        TIERS
            .iter()
            .map(|tier| tier_upsert(t, *tier, update))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let name = t.name;
    match backend {
        DbBackend::Postgres => vec![
            format!(
                "CREATE OR REPLACE FUNCTION {name}_tiers() RETURNS trigger LANGUAGE plpgsql AS $$\n\
                 BEGIN\n\
                 IF TG_OP = 'UPDATE' THEN\n{}\nELSE\n{}\nEND IF;\n\
                 RETURN NULL;\n\
                 END\n$$",
                body(true),
                body(false)
            ),
            format!(
                "CREATE TRIGGER {name}_tiers AFTER INSERT OR UPDATE ON {name} \
                 FOR EACH ROW EXECUTE FUNCTION {name}_tiers()"
            ),
        ],
        _ => vec![
            format!(
                "CREATE TRIGGER IF NOT EXISTS {name}_tiers_insert AFTER INSERT ON {name} \
                 BEGIN\n{}\nEND",
                body(false)
            ),
            format!(
                "CREATE TRIGGER IF NOT EXISTS {name}_tiers_update AFTER UPDATE ON {name} \
                 BEGIN\n{}\nEND",
                body(true)
            ),
        ],
    }
}

/// Fills the tier of `t` from its per-minute rows.
fn backfill(t: &MinuteTable, (suffix, width): (&str, i64)) -> String {
    let dims = t.dims.join(", ");
    let sums = SUMS.join(", ");
    let summed: Vec<String> = SUMS.iter().map(|s| format!("SUM({s})")).collect();
    format!(
        "INSERT INTO {name}_{suffix} (organization_id, start_ms, {dims}, {sums}) \
         SELECT organization_id, minute_ms - minute_ms % {width}, {dims}, {} \
         FROM {name} GROUP BY organization_id, minute_ms - minute_ms % {width}, {dims}",
        summed.join(", "),
        name = t.name,
    )
}

#[async_trait::async_trait]
impl MigrationTrait for AddRollupTiers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = db.get_database_backend();
        for t in &MINUTE_TABLES {
            for tier in TIERS {
                let create = tier_table(t, tier);
                match backend {
                    // Without a rowid, an upsert touches one B-tree (the key), not two.
                    DbBackend::Sqlite => {
                        let sql = create.to_string(SqliteQueryBuilder);
                        db.execute_unprepared(&format!("{sql} WITHOUT ROWID"))
                            .await?;
                    }
                    _ => manager.create_table(create).await?,
                }
            }
            for sql in triggers(t, backend) {
                db.execute_unprepared(&sql).await?;
            }
            for tier in TIERS {
                db.execute_unprepared(&backfill(t, tier)).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for t in &MINUTE_TABLES {
            let name = t.name;
            let drops = match db.get_database_backend() {
                DbBackend::Postgres => vec![
                    format!("DROP TRIGGER IF EXISTS {name}_tiers ON {name}"),
                    format!("DROP FUNCTION IF EXISTS {name}_tiers()"),
                ],
                _ => vec![
                    format!("DROP TRIGGER IF EXISTS {name}_tiers_insert"),
                    format!("DROP TRIGGER IF EXISTS {name}_tiers_update"),
                ],
            };
            for sql in drops {
                db.execute_unprepared(&sql).await?;
            }
            for (suffix, _) in TIERS {
                manager
                    .drop_table(
                        Table::drop()
                            .table(Alias::new(format!("{name}_{suffix}")))
                            .if_exists()
                            .to_owned(),
                    )
                    .await?;
            }
        }
        Ok(())
    }
}
