//! The bench-only bulk seeding of usage (issue 23): `n` real usage records of one organization,
//! spread evenly over the 30 days before the run, generated set-wise by SQL on the billing
//! database (`WITH RECURSIVE` on SQLite, `generate_series` on PostgreSQL) in transactions of
//! 1M records, then their per-minute rollups summed from those rows (`INSERT … SELECT … GROUP
//! BY`, added on conflict), which the service's triggers carry into the hourly and daily tiers
//! exactly as for ingested usage. On PostgreSQL, where those triggers are row-level plpgsql
//! (about 20M calls for 10M records: most of a seed that took over ten minutes), the seed's
//! transactions run with `session_replication_role = replica`, which fires no trigger, and add
//! the chunk's records to the tiers themselves, one set-wise upsert per tier table. Nothing here
//! goes through RecordUsage: ingestion is measured separately, over gRPC.
//!
//! Record `i` (idempotency key `seed-<i, 9 digits>`): usage time `start + i × span / n` (time
//! order, so both indexes of `usage_records` are appended to), workspace, model and tokens from
//! a multiplicative hash of `i`; no API key, user or account. [`check_sample`] then asserts that
//! the daily tiers of one day equal the sums of that day's records.

use anyhow::{Context as _, anyhow};
use orgplane_billing_access::store::tier_migration::{MINUTE_TABLES, MinuteTable, TIERS};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// Records per transaction.
const CHUNK: u64 = 1_000_000;

/// What to seed: `n` records of `org` over `[start_ms, start_ms + span_ms)`.
pub struct Seed<'a> {
    /// The organization.
    pub org: &'a str,
    /// The workspaces the records are spread over.
    pub workspaces: &'a [String],
    /// The models.
    pub models: &'a [&'a str],
    /// How many records.
    pub n: u64,
    /// The first usage time.
    pub start_ms: i64,
    /// The time they are spread over.
    pub span_ms: i64,
    /// The record time of every row.
    pub now_ms: i64,
}

/// `CASE <expr> WHEN 0 THEN 'v0' … END` over `values` (ids of the seed, no quotes in them).
fn pick(expr: &str, values: &[impl AsRef<str>]) -> String {
    let mut out = format!("CASE ({expr}) % {}", values.len());
    for (k, v) in values.iter().enumerate() {
        out.push_str(&format!(" WHEN {k} THEN '{}'", v.as_ref()));
    }
    out.push_str(" END");
    out
}

impl Seed<'_> {
    /// The INSERT of records `[from, to)`.
    fn records(&self, backend: DbBackend, from: u64, to: u64) -> String {
        let Seed {
            org,
            n,
            start_ms,
            span_ms,
            now_ms,
            ..
        } = self;
        let (source, key) = match backend {
            DbBackend::Postgres => (
                format!(
                    "generate_series({from}::bigint, {}::bigint) AS s(i)",
                    to - 1
                ),
                "'seed-' || lpad(i::text, 9, '0')".to_owned(),
            ),
            _ => (
                format!(
                    "(WITH RECURSIVE r(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM r \
                     WHERE i < {}) SELECT i FROM r) AS s",
                    to - 1
                ),
                "printf('seed-%09d', i)".to_owned(),
            ),
        };
        let h = "((i * 2654435761) % 4294967296)";
        format!(
            "INSERT INTO usage_records (organization_id, idempotency_key, workspace_id, \
             api_key_id, user_id, model, input_tokens, output_tokens, usage_time_ms, \
             record_time_ms, account_id, subaccount_id) \
             SELECT '{org}', {key}, {ws}, '', '', {model}, 1 + {h} % 4000, \
             1 + ({h} >> 12) % 1000, {start_ms} + (i * {span_ms}) / {n}, {now_ms}, '', '' \
             FROM {source}",
            ws = pick(&format!("{h} >> 8"), self.workspaces),
            model = pick(&format!("{h} >> 20"), self.models),
        )
    }

    /// The upsert of the per-minute rollups of the seeded records with usage time in
    /// `[from_ms, to_ms)` into `table` (with the empty account and subaccount when `accounts`).
    fn rollups(&self, table: &str, accounts: bool, from_ms: i64, to_ms: i64) -> String {
        let org = self.org;
        let dims = "workspace_id, api_key_id, model, user_id";
        let (cols, extra) = if accounts {
            (format!("{dims}, account_id, subaccount_id"), ", '', ''")
        } else {
            (dims.to_owned(), "")
        };
        format!(
            "INSERT INTO {table} (organization_id, minute_ms, {cols}, input_tokens, \
             output_tokens, record_count) \
             SELECT organization_id, usage_time_ms - usage_time_ms % 60000, {dims}{extra}, \
             SUM(input_tokens), SUM(output_tokens), COUNT(*) FROM usage_records \
             WHERE organization_id = '{org}' AND usage_time_ms >= {from_ms} \
             AND usage_time_ms < {to_ms} AND idempotency_key LIKE 'seed-%' \
             GROUP BY organization_id, usage_time_ms - usage_time_ms % 60000, {dims} \
             ON CONFLICT (organization_id, minute_ms, {cols}) DO UPDATE SET \
             input_tokens = {table}.input_tokens + excluded.input_tokens, \
             output_tokens = {table}.output_tokens + excluded.output_tokens, \
             record_count = {table}.record_count + excluded.record_count"
        )
    }

    /// The upsert adding records `[from, to)` to the `(suffix, width)` tier of `table` (its
    /// triggers' work, set-wise).
    fn tier(
        &self,
        table: &MinuteTable,
        (suffix, width): (&str, i64),
        from: u64,
        to: u64,
    ) -> String {
        let org = self.org;
        let dims = table.dims.join(", ");
        let name = format!("{}_{suffix}", table.name);
        format!(
            "INSERT INTO {name} (organization_id, start_ms, {dims}, input_tokens, \
             output_tokens, record_count) \
             SELECT organization_id, usage_time_ms - usage_time_ms % {width}, {dims}, \
             SUM(input_tokens), SUM(output_tokens), COUNT(*) FROM usage_records \
             WHERE organization_id = '{org}' AND idempotency_key >= 'seed-{from:09}' \
             AND idempotency_key < 'seed-{to:09}' \
             GROUP BY organization_id, usage_time_ms - usage_time_ms % {width}, {dims} \
             ON CONFLICT (organization_id, start_ms, {dims}) DO UPDATE SET \
             input_tokens = {name}.input_tokens + excluded.input_tokens, \
             output_tokens = {name}.output_tokens + excluded.output_tokens, \
             record_count = {name}.record_count + excluded.record_count"
        )
    }

    /// The usage time of record `i`.
    fn time_of(&self, i: u64) -> i64 {
        self.start_ms + (i as i64 * self.span_ms) / self.n as i64
    }

    /// Seeds the records and their rollups in transactions of [`CHUNK`] records (taken
    /// through the service's write gate); `progress` hears how many are done.
    pub async fn run(&self, db: &DatabaseConnection, progress: impl Fn(u64)) -> anyhow::Result<()> {
        let backend = db.get_database_backend();
        let mut from = 0;
        while from < self.n {
            let to = (from + CHUNK).min(self.n);
            // The records whose minute starts in this chunk: a minute split between two chunks
            // is summed by the chunk its first millisecond's records are in.
            let (t0, t1) = (self.time_of(from), self.time_of(to));
            let (m0, m1) = (t0 - t0 % 60_000, t1 - t1 % 60_000);
            let last = to == self.n;
            let txn = orgplane_platform::db::begin_write(db).await?;
            let postgres = backend == DbBackend::Postgres;
            if postgres {
                txn.execute_unprepared("SET LOCAL session_replication_role = replica")
                    .await
                    .context("turning the tier triggers off for the seed (needs a superuser)")?;
            }
            txn.execute_unprepared(&self.records(backend, from, to))
                .await
                .context("seeding usage records")?;
            let end = if last { i64::MAX } else { m1 };
            for (table, accounts) in [("usage_rollups", false), ("usage_account_rollups", true)] {
                txn.execute_unprepared(&self.rollups(table, accounts, m0, end))
                    .await
                    .with_context(|| format!("seeding {table}"))?;
            }
            if postgres {
                for table in &MINUTE_TABLES {
                    for tier in TIERS {
                        txn.execute_unprepared(&self.tier(table, tier, from, to))
                            .await
                            .with_context(|| {
                                format!("seeding the {} tier of {}", tier.0, table.name)
                            })?;
                    }
                }
            }
            txn.commit().await?;
            from = to;
            progress(from);
        }
        Ok(())
    }
}

/// Asserts that the daily tiers of `org` for the day starting at `day_ms` (both tables) equal
/// the sums of that day's records, and returns that day's record count.
pub async fn check_sample(db: &DatabaseConnection, org: &str, day_ms: i64) -> anyhow::Result<i64> {
    let end = day_ms + 86_400_000;
    let sums = |sql: String| async move {
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await?
            .ok_or_else(|| anyhow!("no row"))?;
        Ok::<_, anyhow::Error>((
            row.try_get_by_index::<Option<i64>>(0)?.unwrap_or(0),
            row.try_get_by_index::<Option<i64>>(1)?.unwrap_or(0),
            row.try_get_by_index::<Option<i64>>(2)?.unwrap_or(0),
        ))
    };
    let records = sums(format!(
        "SELECT CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), \
         CAST(COUNT(*) AS BIGINT) FROM usage_records WHERE organization_id = '{org}' \
         AND usage_time_ms >= {day_ms} AND usage_time_ms < {end}"
    ))
    .await?;
    for table in ["usage_rollups_day", "usage_account_rollups_day"] {
        let tier = sums(format!(
            "SELECT CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), \
             CAST(SUM(record_count) AS BIGINT) FROM {table} WHERE organization_id = '{org}' \
             AND start_ms = {day_ms}"
        ))
        .await?;
        if tier != records {
            return Err(anyhow!(
                "{table} of day {day_ms} sums {tier:?}, its records {records:?}"
            ));
        }
    }
    Ok(records.2)
}
