//! Usage ingestion (rule BILL-3): each record of a batch is judged on its own; accepted records
//! are inserted with `ON CONFLICT DO NOTHING` on the (organization, idempotency key) primary key,
//! so a repeated key is counted once even across concurrent calls, and their tokens are added to
//! the per-minute rollups that reports read, in the same transaction. A record naming an account
//! (rule BILL-6) is billed to it, or to its parent for a subaccount; both are stored on the
//! record and in the rollups.

use std::collections::{BTreeMap, HashMap, HashSet};

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use sea_orm::DatabaseTransaction;

use crate::app::Billing;
use crate::domain::usage::{
    AccountFacts, BilledAccount, MAX_BATCH, NewUsage, RecordOutcome, Refusal, bill_to, check_record,
};
use crate::domain::{Error, Result};
use crate::store::usage::{Candidate, add_to_rollups, insert_records, missing_accounts};
use crate::store::{accounts, merge, workspaces};

/// How often a batch whose transaction lost a race (a deadlock PostgreSQL broke) is run again
/// before the caller gets ABORTED `CONCURRENT_RETRY`.
const LOST_RACE_RETRIES: u32 = 5;

/// How one attempt at writing a batch ended.
enum Attempt {
    /// Committed: the keys inserted.
    Done(HashSet<(String, String)>),
    /// Rolled back: some records were already stored, and the insert did not name which.
    Repeats,
    /// Rolled back: these organizations' accounts were purged meanwhile.
    Lost(HashSet<String>),
}

impl Billing {
    /// Ingests `records` (see the module docs) and returns one outcome per record, in order.
    pub async fn record_usage(
        &self,
        call: &Call,
        records: &[NewUsage],
    ) -> Result<Vec<RecordOutcome>> {
        if records.is_empty() || records.len() > MAX_BATCH {
            return Err(Error::invalid(
                "records",
                format!("send 1 to {MAX_BATCH} records"),
            ));
        }
        let now_ms = self.runtime.clock.now().timestamp_millis();
        let mut refused: HashMap<usize, Refusal> = HashMap::new();
        let mut candidates: Vec<Candidate<'_>> = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match check_record(record, now_ms, |m| self.prices.get(m).is_some()) {
                Ok(usage_time_ms) => candidates.push(Candidate {
                    index,
                    record,
                    usage_time_ms,
                    billed: BilledAccount::default(),
                }),
                Err(why) => {
                    refused.insert(index, why);
                }
            }
        }
        let candidates = self.known_organizations(candidates, &mut refused).await?;
        let candidates = self.known_accounts(candidates, &mut refused).await?;
        let (mut candidates, in_batch_duplicates) =
            self.known_workspaces(candidates, &mut refused).await?;
        // A consistent insertion order keeps concurrent batches from deadlocking on PostgreSQL.
        candidates.sort_by(|a, b| {
            (&a.record.organization_id, &a.record.idempotency_key)
                .cmp(&(&b.record.organization_id, &b.record.idempotency_key))
        });

        let mut races = 0;
        // Whether the insert names the records it wrote: only once a first attempt found some
        // already stored (see `insert_records`).
        let mut returning = false;
        let inserted = loop {
            let attempt = async {
                let txn = orgplane_platform::db::begin_write(&self.db).await?;
                let Some(inserted) = insert_records(&txn, &candidates, now_ms, returning).await?
                else {
                    txn.rollback().await?;
                    return Ok(Attempt::Repeats);
                };
                // Re-check the accounts under lock: an organization purged meanwhile loses its
                // usage.
                let lost = missing_accounts(&txn, &inserted).await?;
                if !lost.is_empty() {
                    txn.rollback().await?;
                    return Ok(Attempt::Lost(lost));
                }
                self.audit_batch(&txn, call, &candidates, &inserted).await?;
                // Last before the commit: concurrent batches wait on each other's rollup rows
                // from here to the commit.
                add_to_rollups(&txn, &candidates, &inserted).await?;
                txn.commit().await?;
                Ok::<_, Error>(Attempt::Done(inserted))
            }
            .await;
            match attempt {
                Ok(Attempt::Done(inserted)) => break inserted,
                Ok(Attempt::Repeats) => returning = true,
                Ok(Attempt::Lost(lost)) => candidates.retain(|c| {
                    let org = &c.record.organization_id;
                    if lost.contains(org) {
                        refused.insert(
                            c.index,
                            Refusal::OrganizationNotFound {
                                id: org.clone(),
                                retryable: false,
                            },
                        );
                        false
                    } else {
                        true
                    }
                }),
                // Concurrent batches upsert shared rollup and tier rows, and the tier triggers
                // touch them in an order no sort of the batch fixes: PostgreSQL breaks the
                // deadlocks that follow by rolling one transaction back, which is then run again
                // (its records were not kept; the idempotency keys make a repeat harmless).
                Err(e) if e.is_lost_race() && races < LOST_RACE_RETRIES => {
                    races += 1;
                    // A random pause, so that the two do not meet again at once.
                    let pause = 1 + uuid::Uuid::new_v4().as_u128() % (10 * u128::from(races));
                    tokio::time::sleep(std::time::Duration::from_millis(pause as u64)).await;
                }
                Err(e) => return Err(e),
            }
        };

        Ok(records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if let Some(why) = refused.remove(&i) {
                    return RecordOutcome::Refused(why);
                }
                let key = (r.organization_id.clone(), r.idempotency_key.clone());
                if !in_batch_duplicates.contains(&i) && inserted.contains(&key) {
                    RecordOutcome::Accepted
                } else {
                    RecordOutcome::Duplicate
                }
            })
            .collect())
    }

    /// Keeps the candidates of ACTIVE organizations known to the replica; purged ones and
    /// candidates of a merge (rule ORG-15) are refused for good, as not found.
    async fn known_organizations<'a>(
        &self,
        candidates: Vec<Candidate<'a>>,
        refused: &mut HashMap<usize, Refusal>,
    ) -> Result<Vec<Candidate<'a>>> {
        let orgs: HashSet<&str> = candidates
            .iter()
            .map(|c| c.record.organization_id.as_str())
            .collect();
        let purged_orgs = workspaces::purged_among(&self.db, Some(orgs.iter().copied())).await?;
        let merged_orgs = merge::merged_among(&self.db, orgs.into_iter()).await?;
        let mut still = Vec::with_capacity(candidates.len());
        for c in candidates {
            let org_id = &c.record.organization_id;
            if merged_orgs.contains(org_id) {
                refused.insert(
                    c.index,
                    Refusal::OrganizationNotFound {
                        id: org_id.clone(),
                        retryable: false,
                    },
                );
                continue;
            }
            match self.replica.with_organization(org_id, |o| o.is_active()) {
                Some(true) => still.push(c),
                Some(false) => {
                    refused.insert(c.index, Refusal::OrganizationDeleted(org_id.clone()));
                }
                None => {
                    refused.insert(
                        c.index,
                        Refusal::OrganizationNotFound {
                            id: org_id.clone(),
                            retryable: !purged_orgs.contains(org_id),
                        },
                    );
                }
            }
        }
        Ok(still)
    }

    /// Sets where each candidate is billed (rule BILL-6); refuses those naming an account not
    /// known here, of another organization, or closed before the usage.
    async fn known_accounts<'a>(
        &self,
        candidates: Vec<Candidate<'a>>,
        refused: &mut HashMap<usize, Refusal>,
    ) -> Result<Vec<Candidate<'a>>> {
        let ids: HashSet<&str> = candidates
            .iter()
            .map(|c| c.record.account_id.as_str())
            .filter(|a| !a.is_empty())
            .collect();
        if ids.is_empty() {
            return Ok(candidates);
        }
        let known = accounts::known(&self.db, &ids).await?;
        let mut still = Vec::with_capacity(candidates.len());
        for mut c in candidates {
            let facts = known.get(&c.record.account_id).map(|a| AccountFacts {
                organization_id: &a.organization_id,
                parent_account_id: &a.parent_account_id,
                close_time_ms: a.close_time_ms,
            });
            match bill_to(c.record, c.usage_time_ms, facts) {
                Ok(billed) => {
                    c.billed = billed;
                    still.push(c);
                }
                Err(why) => {
                    refused.insert(c.index, why);
                }
            }
        }
        Ok(still)
    }

    /// Refuses the candidates whose workspace (when known here) belongs to another organization
    /// or was archived before the usage; sets aside repeats of a key within the batch.
    async fn known_workspaces<'a>(
        &self,
        candidates: Vec<Candidate<'a>>,
        refused: &mut HashMap<usize, Refusal>,
    ) -> Result<(Vec<Candidate<'a>>, HashSet<usize>)> {
        let ids: HashSet<&str> = candidates
            .iter()
            .map(|c| c.record.workspace_id.as_str())
            .filter(|w| !w.is_empty())
            .collect();
        let known = workspaces::known(&self.db, &ids).await?;
        let mut still = Vec::with_capacity(candidates.len());
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        let mut in_batch_duplicates: HashSet<usize> = HashSet::new();
        for c in candidates {
            let r = c.record;
            if let Some(w) = known.get(&r.workspace_id) {
                if w.organization_id != r.organization_id {
                    refused.insert(
                        c.index,
                        Refusal::WorkspaceNotFound {
                            workspace: r.workspace_id.clone(),
                            organization: r.organization_id.clone(),
                        },
                    );
                    continue;
                }
                if w.archive_time_ms.is_some_and(|a| c.usage_time_ms >= a) {
                    refused.insert(c.index, Refusal::WorkspaceArchived(r.workspace_id.clone()));
                    continue;
                }
            }
            if !seen.insert((&r.organization_id, &r.idempotency_key)) {
                in_batch_duplicates.insert(c.index);
                continue;
            }
            still.push(c);
        }
        Ok((still, in_batch_duplicates))
    }

    /// One audit record per organization and batch (not per usage record): how many were
    /// accepted, with how many tokens.
    async fn audit_batch(
        &self,
        txn: &DatabaseTransaction,
        call: &Call,
        candidates: &[Candidate<'_>],
        inserted: &HashSet<(String, String)>,
    ) -> Result<()> {
        let mut per_org: BTreeMap<&str, (u64, i64, i64)> = BTreeMap::new();
        for c in candidates {
            if inserted.contains(&c.key()) {
                let e = per_org.entry(&c.record.organization_id).or_default();
                e.0 += 1;
                e.1 = e.1.saturating_add(c.record.input_tokens);
                e.2 = e.2.saturating_add(c.record.output_tokens);
            }
        }
        for (org, (count, input, output)) in per_org {
            self.audit
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
}
