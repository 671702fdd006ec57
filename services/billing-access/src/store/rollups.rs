//! Report queries over the per-minute rollups (rules BILL-3, BILL-4, BILL-6), aggregated in SQL: grouping by
//! `(minute_ms / width) * width` is integer arithmetic that SQLite and PostgreSQL evaluate alike,
//! and the rollups' primary key starts with (organization, minute), so a report reads one index range.
//!
//! Two tables hold the same sums: `usage_rollups`, keyed by organization, minute and the usage
//! dimensions, and `usage_account_rollups`, keyed also by billed account and subaccount. A report
//! grouped by account or subaccount, or filtered by account, reads the latter; every other report
//! reads the former. In the steady state both give the same totals. During a rolling update the
//! previous release's replicas write to `usage_rollups` only: the usage they ingest then is
//! counted in every report except the account-grouped and account-filtered ones, from which it is
//! missing (it names no account; it stays missing after the update).

use std::collections::HashMap;

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::domain::Result;
use crate::domain::reports::{Dim, MAX_ROWS_PER_PAGE, page_end};
use crate::store::entity::{usage_account_rollup, usage_rollup, workspace};

/// The column of `d` (unqualified: both rollup tables name their columns alike; only
/// `usage_account_rollups` has those of the account dimensions).
fn column(d: Dim) -> usage_account_rollup::Column {
    use usage_account_rollup::Column as C;
    match d {
        Dim::Workspace => C::WorkspaceId,
        Dim::ApiKey => C::ApiKeyId,
        Dim::Model => C::Model,
        Dim::User => C::UserId,
        Dim::Account => C::AccountId,
        Dim::Subaccount => C::SubaccountId,
    }
}

/// One aggregated row: a bucket, the grouped dimensions' values, and sums.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// The bucket's start (Unix milliseconds).
    pub bucket: i64,
    /// The values of the grouped dimensions, in their order.
    pub values: Vec<String>,
    /// Summed input tokens.
    pub input: i64,
    /// Summed output tokens.
    pub output: i64,
    /// Records summed.
    pub count: i64,
}

/// What a report sums: one organization's rollups in buckets of `width`, grouped by `dims` and
/// filtered by `filters` and `accounts` (an empty list filters nothing).
#[derive(Debug, Clone, Copy)]
pub struct Rollups<'a> {
    /// The organization.
    pub organization_id: &'a str,
    /// The bucket width (milliseconds).
    pub width: i64,
    /// The grouped dimensions, in order.
    pub dims: &'a [Dim],
    /// Filters per dimension.
    pub filters: &'a [(Dim, &'a [String])],
    /// Only usage billed to these accounts or naming these subaccounts (rule BILL-6): a parent
    /// selects its subaccounts' usage too; `""` selects usage naming no account.
    pub accounts: &'a [String],
}

impl Rollups<'_> {
    /// Whether the report needs the billed account: grouped by account or subaccount, or
    /// filtered by account. Only then does it read `usage_account_rollups`.
    pub fn by_account(&self) -> bool {
        !self.accounts.is_empty()
            || self
                .dims
                .iter()
                .chain(
                    self.filters
                        .iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(d, _)| d),
                )
                .any(|d| matches!(d, Dim::Account | Dim::Subaccount))
    }

    /// Sums the rollups in `[from, to)` per bucket and grouped dimensions, at most `limit` rows.
    async fn aggregate<C: ConnectionTrait>(
        &self,
        db: &C,
        from: i64,
        to: i64,
        limit: Option<u64>,
    ) -> Result<Vec<Aggregate>> {
        use usage_account_rollup::Column as C;
        let width = self.width;
        let bucket = Expr::cust(format!("(minute_ms / {width}) * {width}"));
        let mut q = Query::select();
        q.expr(bucket.clone());
        for d in self.dims {
            q.column(column(*d));
        }
        q.expr(Expr::cust("CAST(SUM(input_tokens) AS BIGINT)"))
            .expr(Expr::cust("CAST(SUM(output_tokens) AS BIGINT)"))
            .expr(Expr::cust("CAST(SUM(record_count) AS BIGINT)"))
            .and_where(Expr::col(C::OrganizationId).eq(self.organization_id))
            .and_where(Expr::col(C::MinuteMs).gte(from))
            .and_where(Expr::col(C::MinuteMs).lt(to));
        if self.by_account() {
            q.from(usage_account_rollup::Entity);
        } else {
            q.from(usage_rollup::Entity);
        }
        for (d, values) in self.filters {
            if !values.is_empty() {
                q.and_where(Expr::col(column(*d)).is_in(values.iter().cloned()));
            }
        }
        if !self.accounts.is_empty() {
            let billed = Expr::col(C::AccountId).is_in(self.accounts.iter().cloned());
            // The empty subaccount is every record that named no subaccount: not a filter value.
            let subaccounts: Vec<String> = self
                .accounts
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect();
            q.and_where(if subaccounts.is_empty() {
                billed
            } else {
                billed.or(Expr::col(C::SubaccountId).is_in(subaccounts))
            });
        }
        let mut group = vec![bucket.clone()];
        group.extend(self.dims.iter().map(|d| Expr::col(column(*d))));
        q.add_group_by(group).order_by_expr(bucket, Order::Asc);
        if let Some(limit) = limit {
            q.limit(limit);
        }
        let rows = db.query_all(&q).await?;
        let n = self.dims.len();
        let aggregates = rows
            .into_iter()
            .map(|row| {
                let mut values = Vec::with_capacity(n);
                for i in 0..n {
                    values.push(row.try_get_by_index::<String>(1 + i)?);
                }
                Ok(Aggregate {
                    bucket: row.try_get_by_index(0)?,
                    values,
                    input: row.try_get_by_index(1 + n)?,
                    output: row.try_get_by_index(2 + n)?,
                    count: row.try_get_by_index(3 + n)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, DbErr>>()?;
        Ok(aggregates)
    }

    /// The rows of the page `[from, from + buckets × width)` (clipped to `end`), cut at a bucket
    /// boundary when there are more than [`MAX_ROWS_PER_PAGE`]; returns the rows and where the
    /// page really ends.
    pub async fn page<C: ConnectionTrait>(
        &self,
        db: &C,
        from: i64,
        end: i64,
        buckets: u64,
    ) -> Result<(Vec<Aggregate>, i64)> {
        let to = page_end(from, end, buckets, self.width);
        let mut rows = self
            .aggregate(db, from, to, Some(MAX_ROWS_PER_PAGE as u64 + 1))
            .await?;
        if rows.len() <= MAX_ROWS_PER_PAGE {
            return Ok((rows, to));
        }
        let cut = rows[MAX_ROWS_PER_PAGE].bucket;
        if cut > from {
            rows.retain(|r| r.bucket < cut);
            return Ok((rows, cut));
        }
        // One bucket alone has more rows than the cap: it makes the page by itself.
        let to = from + self.width;
        let rows = self.aggregate(db, from, to, None).await?;
        Ok((rows, to))
    }
}

/// Names and archival of `org`'s workspaces among `ids`.
pub async fn workspace_labels(
    db: &DatabaseConnection,
    org: &str,
    ids: impl Iterator<Item = String>,
) -> Result<HashMap<String, (String, bool)>> {
    let ids: Vec<String> = ids.filter(|i| !i.is_empty()).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        for w in workspace::Entity::find()
            .filter(workspace::Column::OrganizationId.eq(org))
            .filter(workspace::Column::WorkspaceId.is_in(chunk.iter().cloned()))
            .all(db)
            .await?
        {
            out.insert(w.workspace_id, (w.name, w.archive_time_ms.is_some()));
        }
    }
    Ok(out)
}
