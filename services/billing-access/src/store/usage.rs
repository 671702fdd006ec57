//! Usage rows: accepted records (unique per organization and idempotency key) and the per-minute
//! rollups that reports read (`usage_rollups`, and `usage_account_rollups` split by billed
//! account), all written in the ingesting transaction.

use std::collections::{BTreeMap, HashSet};

use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QuerySelect, Statement};

use orgplane_platform::error::ApiError;

use crate::domain::Result;
use crate::domain::usage::{BilledAccount, NewUsage, minute_of};
use crate::store::entity::account;

/// A record that passed every check but the database's.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Its position in the batch.
    pub index: usize,
    /// The record.
    pub record: &'a NewUsage,
    /// Its usage time (Unix milliseconds).
    pub usage_time_ms: i64,
    /// Where it is billed (rule BILL-6), once its account was checked.
    pub billed: BilledAccount,
}

impl Candidate<'_> {
    /// The (organization, idempotency key) the record is unique by.
    pub fn key(&self) -> (String, String) {
        (
            self.record.organization_id.clone(),
            self.record.idempotency_key.clone(),
        )
    }
}

/// Inserts `candidates` with `ON CONFLICT DO NOTHING` and returns the keys really inserted.
///
/// Without `returning`, the statement only counts its rows, which spares the database sending a
/// row back for every record (a quarter of the statement's time at 1,000 records): when every
/// candidate was inserted those are the keys, and when some were not (a key already stored) the
/// answer is `None` and the caller rolls the transaction back and runs it again with
/// `returning`, which names them.
pub async fn insert_records(
    txn: &DatabaseTransaction,
    candidates: &[Candidate<'_>],
    now_ms: i64,
    returning: bool,
) -> Result<Option<HashSet<(String, String)>>> {
    if candidates.is_empty() {
        return Ok(Some(HashSet::new()));
    }
    let rows: Vec<_> = candidates
        .iter()
        .map(|c| {
            let r = c.record;
            (
                &r.organization_id,
                &r.idempotency_key,
                &r.workspace_id,
                &r.api_key_id,
                &r.user_id,
                &r.model,
                r.input_tokens,
                r.output_tokens,
                c.usage_time_ms,
                now_ms,
                &c.billed.account_id,
                &c.billed.subaccount_id,
            )
        })
        .collect();
    let backend = txn.get_database_backend();
    let mut sql = format!(
        "{} ON CONFLICT (organization_id, idempotency_key) DO NOTHING",
        json_insert(backend, "usage_records", &RECORD_COLUMNS)
    );
    let json = serde_json::to_string(&rows).map_err(ApiError::internal)?;
    if !returning {
        let written = txn
            .execute_raw(Statement::from_sql_and_values(backend, sql, [json.into()]))
            .await?
            .rows_affected();
        return Ok((written == candidates.len() as u64)
            .then(|| candidates.iter().map(Candidate::key).collect()));
    }
    sql.push_str(" RETURNING organization_id, idempotency_key");
    let mut inserted = HashSet::new();
    for row in txn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, [json.into()]))
        .await?
    {
        let org: String = row.try_get_by_index(0)?;
        let key: String = row.try_get_by_index(1)?;
        inserted.insert((org, key));
    }
    Ok(Some(inserted))
}

/// The columns of a usage record row, in the order of its JSON array; `true`: an integer.
const RECORD_COLUMNS: [(&str, bool); 12] = [
    ("organization_id", false),
    ("idempotency_key", false),
    ("workspace_id", false),
    ("api_key_id", false),
    ("user_id", false),
    ("model", false),
    ("input_tokens", true),
    ("output_tokens", true),
    ("usage_time_ms", true),
    ("record_time_ms", true),
    ("account_id", false),
    ("subaccount_id", false),
];

/// The `INSERT INTO table (columns) SELECT …` of rows passed as one JSON parameter, an array of
/// arrays holding `columns` in order (`true`: an integer): one statement text however many
/// rows, prepared once and bound once, the rows unpacked by the database (`jsonb_each` on
/// SQLite, `json_array_elements` on PostgreSQL) in array order, the lock order of the write.
/// SQLite's `jsonb_each` hands each row to `->>` as parsed JSONB; `json_each` printed it back
/// to text, which each of the row's columns parsed again (a sixth of the writer's time at 1,000
/// records per batch).
fn json_insert(backend: DbBackend, table: &str, columns: &[(&str, bool)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let values: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, integer))| {
            if *integer {
                format!("CAST(r.value ->> {i} AS BIGINT)")
            } else {
                format!("r.value ->> {i}")
            }
        })
        .collect();
    let source = match backend {
        DbBackend::Postgres => "json_array_elements($1::json) AS r(value)",
        _ => "jsonb_each(?) AS r",
    };
    // `WHERE true` tells SQLite's parser that a following ON CONFLICT is the upsert's.
    format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {source} WHERE true",
        names.join(", "),
        values.join(", ")
    )
}

/// The organizations among `inserted` whose account is gone (purged meanwhile). On PostgreSQL
/// the accounts are read FOR SHARE: a concurrent purge deletes the account first and so waits
/// for this transaction.
pub async fn missing_accounts(
    txn: &DatabaseTransaction,
    inserted: &HashSet<(String, String)>,
) -> Result<HashSet<String>> {
    let orgs: HashSet<&str> = inserted.iter().map(|(o, _)| o.as_str()).collect();
    if orgs.is_empty() {
        return Ok(HashSet::new());
    }
    let mut query = account::Entity::find()
        .select_only()
        .column(account::Column::OrganizationId)
        .filter(account::Column::OrganizationId.is_in(orgs.iter().copied()));
    if txn.get_database_backend() == DbBackend::Postgres {
        query = query.lock_shared();
    }
    let present: HashSet<String> = query.into_tuple().all(txn).await?.into_iter().collect();
    Ok(orgs
        .into_iter()
        .filter(|o| !present.contains(*o))
        .map(str::to_owned)
        .collect())
}

/// Adds the inserted candidates' tokens to the per-minute rollups, in both tables: the sums per
/// organization, minute and dimensions to `usage_rollups` (the statement the previous release
/// runs, on the same key), and the same sums split by billed account and subaccount to
/// `usage_account_rollups` (rule BILL-6).
pub async fn add_to_rollups(
    txn: &DatabaseTransaction,
    candidates: &[Candidate<'_>],
    inserted: &HashSet<(String, String)>,
) -> Result<()> {
    let mut wide: BTreeMap<WideKey<'_>, Sums> = BTreeMap::new();
    for c in candidates {
        if !inserted.contains(&c.key()) {
            continue;
        }
        let r = c.record;
        let key = (
            r.organization_id.as_str(),
            minute_of(c.usage_time_ms),
            r.workspace_id.as_str(),
            r.api_key_id.as_str(),
            r.model.as_str(),
            r.user_id.as_str(),
            c.billed.account_id.as_str(),
            c.billed.subaccount_id.as_str(),
        );
        add(
            wide.entry(key).or_default(),
            (r.input_tokens, r.output_tokens, 1),
        );
    }
    let mut narrow: BTreeMap<NarrowKey<'_>, Sums> = BTreeMap::new();
    for ((org, minute, ws, key, model, user, _, _), sums) in &wide {
        add(
            narrow
                .entry((org, *minute, ws, key, model, user))
                .or_default(),
            *sums,
        );
    }
    let narrow: Vec<_> = narrow
        .into_iter()
        .map(|((org, minute, ws, key, model, user), (i, o, n))| {
            (org, minute, ws, key, model, user, i, o, n)
        })
        .collect();
    upsert(txn, "usage_rollups", &NARROW_KEY, &narrow).await?;
    let wide: Vec<_> = wide
        .into_iter()
        .map(
            |((org, minute, ws, key, model, user, account, sub), (i, o, n))| {
                (org, minute, ws, key, model, user, account, sub, i, o, n)
            },
        )
        .collect();
    upsert(txn, "usage_account_rollups", &WIDE_KEY, &wide).await
}

/// The key of a `usage_account_rollups` row: organization, minute, workspace, API key, model,
/// user, billed account, subaccount.
type WideKey<'a> = (
    &'a str,
    i64,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
);

/// The key of a `usage_rollups` row.
type NarrowKey<'a> = (&'a str, i64, &'a str, &'a str, &'a str, &'a str);

/// Input tokens, output tokens, records.
type Sums = (i64, i64, i64);

/// The key of `usage_rollups`, the conflict target of its upsert (the previous release's too).
pub(crate) const NARROW_KEY: [&str; 6] = [
    "organization_id",
    "minute_ms",
    "workspace_id",
    "api_key_id",
    "model",
    "user_id",
];

/// The key of `usage_account_rollups`.
pub(crate) const WIDE_KEY: [&str; 8] = [
    "organization_id",
    "minute_ms",
    "workspace_id",
    "api_key_id",
    "model",
    "user_id",
    "account_id",
    "subaccount_id",
];

const SUM_COLUMNS: [&str; 3] = ["input_tokens", "output_tokens", "record_count"];

fn add(into: &mut Sums, (input, output, count): Sums) {
    into.0 = into.0.saturating_add(input);
    into.1 = into.1.saturating_add(output);
    into.2 += count;
}

/// Adds `rows` (the values of `key`'s columns, then the three sums) into `table`'s rows with the
/// same key, inserting the rows it has not; one statement ([`json_insert`]). The minute is the
/// only integer of a rollup key.
async fn upsert<R: serde::Serialize>(
    txn: &DatabaseTransaction,
    table: &str,
    key: &[&str],
    rows: &[R],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let backend = txn.get_database_backend();
    let columns: Vec<(&str, bool)> = key
        .iter()
        .map(|c| (*c, *c == "minute_ms"))
        .chain(SUM_COLUMNS.iter().map(|c| (*c, true)))
        .collect();
    let set: Vec<String> = SUM_COLUMNS
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect();
    let sql = format!(
        "{} ON CONFLICT ({}) DO UPDATE SET {}",
        json_insert(backend, table, &columns),
        key.join(", "),
        set.join(", ")
    );
    let json = serde_json::to_string(rows).map_err(ApiError::internal)?;
    txn.execute_raw(Statement::from_sql_and_values(backend, sql, [json.into()]))
        .await?;
    Ok(())
}
