//! Usage rows: accepted records (unique per organization and idempotency key) and the per-minute
//! rollups that reports read, both written in the ingesting transaction.

use std::collections::{BTreeMap, HashSet};

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QuerySelect};

use orgplane_platform::error::ApiError;

use crate::domain::Result;
use crate::domain::usage::{NewUsage, minute_of};
use crate::store::entity::{account, usage_record, usage_rollup};

const INSERT_CHUNK: usize = 200;

/// A record that passed every check but the database's.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its position in the batch.
    pub index: usize,
    /// The record.
    pub record: &'a NewUsage,
    /// Its usage time (Unix milliseconds).
    pub usage_time_ms: i64,
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

type RollupKey = (String, i64, String, String, String, String);

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

/// Adds the inserted candidates' tokens to the per-minute rollups.
pub async fn add_to_rollups(
    txn: &DatabaseTransaction,
    candidates: &[Candidate<'_>],
    inserted: &HashSet<(String, String)>,
) -> Result<()> {
    use usage_rollup::Column as C;
    let mut sums: BTreeMap<RollupKey, (i64, i64, i64)> = BTreeMap::new();
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
        );
        let e = sums.entry(key).or_insert((0, 0, 0));
        e.0 = e.0.saturating_add(r.input_tokens);
        e.1 = e.1.saturating_add(r.output_tokens);
        e.2 += 1;
    }
    let rows: Vec<_> = sums.into_iter().collect();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert.into_table(usage_rollup::Entity).columns([
            C::OrganizationId,
            C::MinuteMs,
            C::WorkspaceId,
            C::ApiKeyId,
            C::Model,
            C::UserId,
            C::InputTokens,
            C::OutputTokens,
            C::RecordCount,
        ]);
        for ((org, minute, ws, key, model, user), (input, output, count)) in chunk {
            insert
                .values([
                    org.clone().into(),
                    (*minute).into(),
                    ws.clone().into(),
                    key.clone().into(),
                    model.clone().into(),
                    user.clone().into(),
                    (*input).into(),
                    (*output).into(),
                    (*count).into(),
                ])
                .map_err(ApiError::internal)?;
        }
        insert.on_conflict(
            OnConflict::columns([
                C::OrganizationId,
                C::MinuteMs,
                C::WorkspaceId,
                C::ApiKeyId,
                C::Model,
                C::UserId,
            ])
            .value(
                C::InputTokens,
                Expr::cust("usage_rollups.input_tokens + excluded.input_tokens"),
            )
            .value(
                C::OutputTokens,
                Expr::cust("usage_rollups.output_tokens + excluded.output_tokens"),
            )
            .value(
                C::RecordCount,
                Expr::cust("usage_rollups.record_count + excluded.record_count"),
            )
            .to_owned(),
        );
        txn.execute(&insert).await?;
    }
    Ok(())
}
