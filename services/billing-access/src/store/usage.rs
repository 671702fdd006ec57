//! Usage rows: accepted records (unique per organization and idempotency key) and the per-minute
//! rollups that reports read (`usage_rollups`, and `usage_account_rollups` split by billed
//! account), all written in the ingesting transaction.

use std::collections::{BTreeMap, HashSet};

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Alias, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QuerySelect};

use orgplane_platform::error::ApiError;

use crate::domain::Result;
use crate::domain::usage::{BilledAccount, NewUsage, minute_of};
use crate::store::entity::{account, usage_record};

const INSERT_CHUNK: usize = 200;

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

type RollupKey = (String, i64, String, String, String, String, BilledAccount);

/// Inserts `candidates` with `ON CONFLICT DO NOTHING` and returns the keys really inserted.
pub async fn insert_records(
    txn: &DatabaseTransaction,
    candidates: &[Candidate<'_>],
    now_ms: i64,
) -> Result<HashSet<(String, String)>> {
    use usage_record::Column as C;
    let mut inserted = HashSet::new();
    for chunk in candidates.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert.into_table(usage_record::Entity).columns([
            C::OrganizationId,
            C::IdempotencyKey,
            C::WorkspaceId,
            C::ApiKeyId,
            C::UserId,
            C::Model,
            C::InputTokens,
            C::OutputTokens,
            C::UsageTimeMs,
            C::RecordTimeMs,
            C::AccountId,
            C::SubaccountId,
        ]);
        for c in chunk {
            let r = c.record;
            insert
                .values([
                    r.organization_id.clone().into(),
                    r.idempotency_key.clone().into(),
                    r.workspace_id.clone().into(),
                    r.api_key_id.clone().into(),
                    r.user_id.clone().into(),
                    r.model.clone().into(),
                    r.input_tokens.into(),
                    r.output_tokens.into(),
                    c.usage_time_ms.into(),
                    now_ms.into(),
                    c.billed.account_id.clone().into(),
                    c.billed.subaccount_id.clone().into(),
                ])
                .map_err(ApiError::internal)?;
        }
        insert
            .on_conflict(
                OnConflict::columns([C::OrganizationId, C::IdempotencyKey])
                    .do_nothing()
                    .to_owned(),
            )
            .returning(Query::returning().columns([C::OrganizationId, C::IdempotencyKey]));
        for row in txn.query_all(&insert).await? {
            let org: String = row.try_get_by_index(0)?;
            let key: String = row.try_get_by_index(1)?;
            inserted.insert((org, key));
        }
    }
    Ok(inserted)
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
    let mut wide: BTreeMap<RollupKey, Sums> = BTreeMap::new();
    for c in candidates {
        if !inserted.contains(&c.key()) {
            continue;
        }
        let r = c.record;
        let key = (
            r.organization_id.clone(),
            minute_of(c.usage_time_ms),
            r.workspace_id.clone(),
            r.api_key_id.clone(),
            r.model.clone(),
            r.user_id.clone(),
            c.billed.clone(),
        );
        add(
            wide.entry(key).or_default(),
            (r.input_tokens, r.output_tokens, 1),
        );
    }
    let mut narrow: BTreeMap<NarrowKey, Sums> = BTreeMap::new();
    for ((org, minute, ws, key, model, user, _), sums) in &wide {
        let key = (
            org.clone(),
            *minute,
            ws.clone(),
            key.clone(),
            model.clone(),
            user.clone(),
        );
        add(narrow.entry(key).or_default(), *sums);
    }
    let narrow: Vec<(Vec<Value>, Sums)> = narrow
        .into_iter()
        .map(|((org, minute, ws, key, model, user), sums)| {
            let key = vec![
                org.into(),
                minute.into(),
                ws.into(),
                key.into(),
                model.into(),
                user.into(),
            ];
            (key, sums)
        })
        .collect();
    upsert(txn, "usage_rollups", &NARROW_KEY, narrow).await?;
    let wide: Vec<(Vec<Value>, Sums)> = wide
        .into_iter()
        .map(|((org, minute, ws, key, model, user, billed), sums)| {
            let key = vec![
                org.into(),
                minute.into(),
                ws.into(),
                key.into(),
                model.into(),
                user.into(),
                billed.account_id.into(),
                billed.subaccount_id.into(),
            ];
            (key, sums)
        })
        .collect();
    upsert(txn, "usage_account_rollups", &WIDE_KEY, wide).await
}

/// Input tokens, output tokens, records.
type Sums = (i64, i64, i64);

type NarrowKey = (String, i64, String, String, String, String);

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

/// Adds `rows` (key values in the order of `key`, then sums) into `table`'s rows with the same
/// key, inserting the rows it has not.
async fn upsert(
    txn: &DatabaseTransaction,
    table: &str,
    key: &[&str],
    rows: Vec<(Vec<Value>, Sums)>,
) -> Result<()> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new(table))
            .columns(key.iter().chain(&SUM_COLUMNS).map(|c| Alias::new(*c)));
        for (values, (input, output, count)) in chunk {
            let mut row: Vec<Expr> = values.iter().cloned().map(Into::into).collect();
            row.extend([(*input).into(), (*output).into(), (*count).into()]);
            insert.values(row).map_err(ApiError::internal)?;
        }
        let mut conflict = OnConflict::columns(key.iter().map(|c| Alias::new(*c)));
        for name in SUM_COLUMNS {
            conflict.value(
                Alias::new(name),
                Expr::cust(format!("{table}.{name} + excluded.{name}")),
            );
        }
        insert.on_conflict(conflict);
        txn.execute(&insert).await?;
    }
    Ok(())
}
