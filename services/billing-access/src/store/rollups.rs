//! Report queries over the per-minute rollups, aggregated in SQL: grouping by
//! `(minute_ms / width) * width` is integer arithmetic that SQLite and PostgreSQL evaluate alike,
//! and the rollups' primary key starts with (organization, minute), so a report reads one index range.

use std::collections::HashMap;

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::domain::Result;
use crate::domain::reports::{Dim, MAX_ROWS_PER_PAGE, page_end};
use crate::store::entity::{usage_rollup, workspace};

fn column(d: Dim) -> usage_rollup::Column {
    match d {
        Dim::Workspace => usage_rollup::Column::WorkspaceId,
        Dim::ApiKey => usage_rollup::Column::ApiKeyId,
        Dim::Model => usage_rollup::Column::Model,
        Dim::User => usage_rollup::Column::UserId,
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
/// filtered by `filters` (an empty list filters nothing).
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
}

impl Rollups<'_> {
    /// Sums the rollups in `[from, to)` per bucket and grouped dimensions, at most `limit` rows.
    async fn aggregate<C: ConnectionTrait>(
        &self,
        db: &C,
        from: i64,
        to: i64,
        limit: Option<u64>,
    ) -> Result<Vec<Aggregate>> {
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
            .from(usage_rollup::Entity)
            .and_where(Expr::col(usage_rollup::Column::OrganizationId).eq(self.organization_id))
            .and_where(Expr::col(usage_rollup::Column::MinuteMs).gte(from))
            .and_where(Expr::col(usage_rollup::Column::MinuteMs).lt(to));
        for (d, values) in self.filters {
            if !values.is_empty() {
                q.and_where(Expr::col(column(*d)).is_in(values.iter().cloned()));
            }
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
