//! Usage ingestion (rule BILL-3): each record of a batch is judged on its own; accepted records
//! are inserted with `ON CONFLICT DO NOTHING` on the (organization, idempotency key) primary key,
//! so a repeated key is counted once even across concurrent calls, and their tokens are added to
//! the per-minute rollups that reports read, in the same transaction.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::convert::millis_of;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_proto::billing::v1::{UsageRecord, UsageRecordResult, UsageRecordStatus};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QuerySelect};

use crate::Core;
use crate::entity::{account, purged, usage_record, usage_rollup, workspace};

/// The most records in one RecordUsage call.
pub const MAX_BATCH: usize = 1000;
/// How far in the future a usage time may be (clock skew between services).
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// The earliest accepted usage time: 2000-01-01T00:00:00Z.
pub const MIN_USAGE_TIME_MS: i64 = 946_684_800_000;
/// One minute in milliseconds: the rollup granularity.
pub const MINUTE_MS: i64 = 60_000;

const INSERT_CHUNK: usize = 200;

struct Refusal {
    reason: &'static str,
    message: String,
    retryable: bool,
}

fn refuse(reason: &'static str, message: impl Into<String>, retryable: bool) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
        retryable,
    }
}

fn valid_key(key: &str) -> bool {
    (1..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_id(id: &str) -> bool {
    id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn check_static(core: &Core, r: &UsageRecord, now_ms: i64) -> Result<i64, Refusal> {
    for (field, value) in [
        ("organization_id", &r.organization_id),
        ("model", &r.model),
        ("idempotency_key", &r.idempotency_key),
    ] {
        if value.is_empty() {
            return Err(refuse(
                "MISSING_FIELD",
                format!("{field} is required"),
                false,
            ));
        }
    }
    if !valid_key(&r.idempotency_key) {
        return Err(refuse(
            "INVALID_FIELD",
            "idempotency_key must be 1-128 printable ASCII characters",
            false,
        ));
    }
    for (field, value) in [
        ("organization_id", &r.organization_id),
        ("workspace_id", &r.workspace_id),
        ("api_key_id", &r.api_key_id),
        ("user_id", &r.user_id),
        ("model", &r.model),
    ] {
        if !valid_id(value) {
            return Err(refuse(
                "INVALID_FIELD",
                format!("{field} must be at most 128 printable ASCII characters"),
                false,
            ));
        }
    }
    if r.input_tokens < 0 || r.output_tokens < 0 {
        return Err(refuse(
            "INVALID_FIELD",
            "input_tokens and output_tokens must not be negative",
            false,
        ));
    }
    let Some(t) = r.usage_time.as_ref() else {
        return Err(refuse("MISSING_FIELD", "usage_time is required", false));
    };
    let Some(ms) = millis_of(t) else {
        return Err(refuse(
            "INVALID_FIELD",
            "usage_time is not a valid time",
            false,
        ));
    };
    if !(MIN_USAGE_TIME_MS..=now_ms.saturating_add(MAX_CLOCK_SKEW_MS)).contains(&ms) {
        return Err(refuse(
            "USAGE_TIME_OUT_OF_RANGE",
            "usage_time must be after 2000-01-01 and not in the future",
            false,
        ));
    }
    if core.prices.get(&r.model).is_none() {
        return Err(refuse(
            "UNKNOWN_MODEL",
            format!("model {:?} is not in the price table", r.model),
            true,
        ));
    }
    Ok(ms)
}

/// A record that passed every check but the database's.
struct Candidate {
    index: usize,
    usage_time_ms: i64,
}

type RollupKey = (String, i64, String, String, String, String);

/// Ingests `records` (see the module docs) and returns one result per record, in order.
pub async fn record_usage(
    core: &Core,
    call: &Call,
    records: &[UsageRecord],
) -> ApiResult<Vec<UsageRecordResult>> {
    if records.is_empty() || records.len() > MAX_BATCH {
        return Err(ApiError::invalid_argument(
            "records",
            format!("send 1 to {MAX_BATCH} records"),
        ));
    }
    let now: DateTime<Utc> = core.runtime.clock.now();
    let now_ms = now.timestamp_millis();
    let mut refused: HashMap<usize, Refusal> = HashMap::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    for (index, r) in records.iter().enumerate() {
        match check_static(core, r, now_ms) {
            Ok(usage_time_ms) => candidates.push(Candidate {
                index,
                usage_time_ms,
            }),
            Err(why) => {
                refused.insert(index, why);
            }
        }
    }

    // Organizations, from the replica in memory; purged ones are final.
    let orgs: HashSet<&str> = candidates
        .iter()
        .map(|c| records[c.index].organization_id.as_str())
        .collect();
    let purged_orgs: HashSet<String> = purged::Entity::find()
        .select_only()
        .column(purged::Column::OrganizationId)
        .filter(purged::Column::OrganizationId.is_in(orgs.iter().copied()))
        .into_tuple()
        .all(&core.db)
        .await?
        .into_iter()
        .collect();
    let mut still = Vec::with_capacity(candidates.len());
    for c in candidates {
        let org_id = &records[c.index].organization_id;
        match core.replica.organization(org_id) {
            Some(o) if o.is_active() => still.push(c),
            Some(_) => {
                refused.insert(
                    c.index,
                    refuse(
                        "ORGANIZATION_DELETED",
                        format!("organization {org_id:?} is deleted"),
                        true,
                    ),
                );
            }
            None => {
                let gone = purged_orgs.contains(org_id);
                refused.insert(
                    c.index,
                    refuse(
                        "ORGANIZATION_NOT_FOUND",
                        format!("organization {org_id:?} is not known"),
                        !gone,
                    ),
                );
            }
        }
    }
    let candidates = still;

    // Workspaces known here: of another organization → refused; archived before → refused.
    let ws_ids: HashSet<&str> = candidates
        .iter()
        .map(|c| records[c.index].workspace_id.as_str())
        .filter(|w| !w.is_empty())
        .collect();
    let known: HashMap<String, workspace::Model> = if ws_ids.is_empty() {
        HashMap::new()
    } else {
        workspace::Entity::find()
            .filter(workspace::Column::WorkspaceId.is_in(ws_ids.iter().copied()))
            .all(&core.db)
            .await?
            .into_iter()
            .map(|w| (w.workspace_id.clone(), w))
            .collect()
    };
    let mut still = Vec::with_capacity(candidates.len());
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut in_batch_duplicates: HashSet<usize> = HashSet::new();
    for c in candidates {
        let r = &records[c.index];
        if let Some(w) = known.get(&r.workspace_id) {
            if w.organization_id != r.organization_id {
                refused.insert(
                    c.index,
                    refuse(
                        "WORKSPACE_NOT_FOUND",
                        format!(
                            "workspace {:?} does not belong to organization {:?}",
                            r.workspace_id, r.organization_id
                        ),
                        false,
                    ),
                );
                continue;
            }
            if w.archive_time_ms.is_some_and(|a| c.usage_time_ms >= a) {
                refused.insert(
                    c.index,
                    refuse(
                        "WORKSPACE_ARCHIVED",
                        format!(
                            "workspace {:?} was archived before usage_time",
                            r.workspace_id
                        ),
                        false,
                    ),
                );
                continue;
            }
        }
        if !seen.insert((&r.organization_id, &r.idempotency_key)) {
            in_batch_duplicates.insert(c.index);
            continue;
        }
        still.push(c);
    }
    let mut candidates = still;
    // A consistent insertion order keeps concurrent batches from deadlocking on PostgreSQL.
    candidates.sort_by(|a, b| {
        let (ra, rb) = (&records[a.index], &records[b.index]);
        (&ra.organization_id, &ra.idempotency_key).cmp(&(&rb.organization_id, &rb.idempotency_key))
    });

    let inserted = loop {
        let txn = orgplane_platform::db::begin_write(&core.db).await?;
        let inserted = insert_records(&txn, records, &candidates, now_ms).await?;
        // Re-check the accounts under lock: an organization purged meanwhile loses its usage.
        let lost = missing_accounts(&txn, &inserted).await?;
        if !lost.is_empty() {
            txn.rollback().await?;
            candidates.retain(|c| {
                let org = &records[c.index].organization_id;
                if lost.contains(org) {
                    refused.insert(
                        c.index,
                        refuse(
                            "ORGANIZATION_NOT_FOUND",
                            format!("organization {org:?} is not known"),
                            false,
                        ),
                    );
                    false
                } else {
                    true
                }
            });
            continue;
        }
        add_to_rollups(&txn, records, &candidates, &inserted).await?;
        audit_batch(core, &txn, call, records, &candidates, &inserted).await?;
        txn.commit().await?;
        break inserted;
    };

    Ok(records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let key = r.idempotency_key.clone();
            if let Some(why) = refused.remove(&i) {
                return UsageRecordResult {
                    idempotency_key: key,
                    status: UsageRecordStatus::Refused as i32,
                    reason: why.reason.to_owned(),
                    message: why.message,
                    retryable: why.retryable,
                };
            }
            let accepted = !in_batch_duplicates.contains(&i)
                && inserted.contains(&(r.organization_id.clone(), key.clone()));
            UsageRecordResult {
                idempotency_key: key,
                status: if accepted {
                    UsageRecordStatus::Accepted
                } else {
                    UsageRecordStatus::Duplicate
                } as i32,
                ..Default::default()
            }
        })
        .collect())
}

async fn insert_records(
    txn: &DatabaseTransaction,
    records: &[UsageRecord],
    candidates: &[Candidate],
    now_ms: i64,
) -> ApiResult<HashSet<(String, String)>> {
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
            let r = &records[c.index];
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

async fn missing_accounts(
    txn: &DatabaseTransaction,
    inserted: &HashSet<(String, String)>,
) -> ApiResult<HashSet<String>> {
    let orgs: HashSet<&str> = inserted.iter().map(|(o, _)| o.as_str()).collect();
    if orgs.is_empty() {
        return Ok(HashSet::new());
    }
    let mut query = account::Entity::find()
        .select_only()
        .column(account::Column::OrganizationId)
        .filter(account::Column::OrganizationId.is_in(orgs.iter().copied()));
    if txn.get_database_backend() == DbBackend::Postgres {
        // A concurrent purge deletes the account first and so waits for this transaction.
        query = query.lock_shared();
    }
    let present: HashSet<String> = query.into_tuple().all(txn).await?.into_iter().collect();
    Ok(orgs
        .into_iter()
        .filter(|o| !present.contains(*o))
        .map(str::to_owned)
        .collect())
}

async fn add_to_rollups(
    txn: &DatabaseTransaction,
    records: &[UsageRecord],
    candidates: &[Candidate],
    inserted: &HashSet<(String, String)>,
) -> ApiResult<()> {
    use usage_rollup::Column as C;
    let mut sums: BTreeMap<RollupKey, (i64, i64, i64)> = BTreeMap::new();
    for c in candidates {
        let r = &records[c.index];
        if !inserted.contains(&(r.organization_id.clone(), r.idempotency_key.clone())) {
            continue;
        }
        let minute = c.usage_time_ms - c.usage_time_ms.rem_euclid(MINUTE_MS);
        let key = (
            r.organization_id.clone(),
            minute,
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

/// One audit record per organization and batch (not per usage record): how many were accepted.
async fn audit_batch(
    core: &Core,
    txn: &DatabaseTransaction,
    call: &Call,
    records: &[UsageRecord],
    candidates: &[Candidate],
    inserted: &HashSet<(String, String)>,
) -> ApiResult<()> {
    let mut per_org: BTreeMap<&str, (u64, i64, i64)> = BTreeMap::new();
    for c in candidates {
        let r = &records[c.index];
        if inserted.contains(&(r.organization_id.clone(), r.idempotency_key.clone())) {
            let e = per_org.entry(&r.organization_id).or_default();
            e.0 += 1;
            e.1 = e.1.saturating_add(r.input_tokens);
            e.2 = e.2.saturating_add(r.output_tokens);
        }
    }
    for (org, (count, input, output)) in per_org {
        core.audit
            .write(
                txn,
                call,
                Entry::new(org, "usage.record", "usage_batch", &call.request_id).with_details(
                    serde_json::json!({
                        "acceptedRecords": count,
                        "inputTokens": input,
                        "outputTokens": output,
                    }),
                ),
            )
            .await?;
    }
    Ok(())
}
