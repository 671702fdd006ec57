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
//!
//! Each per-minute table has an hourly and a daily tier (`<table>_hour`, `<table>_day`, kept by
//! triggers, [`crate::store::tier_migration`]): a report reads the coarsest tier whose width
//! divides its bucket width and both ends of the range it sums ([`Tier::for_range`]), so a daily
//! report over 30 days reads about 30 rows per combination of dimensions however many records
//! there are. The tiers hold the same sums as the minutes they cover, so the answer is the same
//! from any tier; what a report misses during a rolling update is as above.

use std::collections::{BTreeSet, HashMap};

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::domain::Result;
use crate::domain::reports::{DAY_MS, Dim, HOUR_MS, MAX_ROWS_PER_PAGE, MINUTE_MS, page_end};
use crate::store::entity::{usage_account_rollup, workspace};
use crate::store::tier_migration::{MINUTE_TABLES, TIERS};

/// The granularity of the rollup rows a report sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// `usage_rollups` and `usage_account_rollups`.
    Minute,
    /// Their `_hour` tiers.
    Hour,
    /// Their `_day` tiers.
    Day,
}

impl Tier {
    /// The width of one row (milliseconds).
    pub fn width(self) -> i64 {
        match self {
            Tier::Minute => MINUTE_MS,
            Tier::Hour => HOUR_MS,
            Tier::Day => DAY_MS,
        }
    }

    /// The coarsest tier whose rows fall wholly inside buckets of `width` from `from` and
    /// inside `[from, to)`: its width divides the bucket width and both ends.
    pub fn for_range(width: i64, from: i64, to: i64) -> Tier {
        [Tier::Day, Tier::Hour]
            .into_iter()
            .find(|t| {
                let w = t.width();
                width % w == 0 && from.rem_euclid(w) == 0 && to.rem_euclid(w) == 0
            })
            .unwrap_or(Tier::Minute)
    }

    /// The table of this tier (per account or not) and its time column.
    fn source(self, by_account: bool) -> (String, &'static str) {
        let base = if by_account {
            "usage_account_rollups"
        } else {
            "usage_rollups"
        };
        match self {
            Tier::Minute => (base.to_owned(), "minute_ms"),
            Tier::Hour => (format!("{base}_hour"), "start_ms"),
            Tier::Day => (format!("{base}_day"), "start_ms"),
        }
    }
}

/// Removes `organization_id`'s rows from every hourly and daily tier (purge, merge): the
/// triggers keep the tiers on insert and update only.
pub async fn delete_tier_rows<C: ConnectionTrait>(db: &C, organization_id: &str) -> Result<()> {
    for t in &MINUTE_TABLES {
        for (suffix, _) in TIERS {
            let mut delete = Query::delete();
            delete
                .from_table(Alias::new(format!("{}_{suffix}", t.name)))
                .and_where(Expr::col(Alias::new("organization_id")).eq(organization_id));
            db.execute(&delete).await?;
        }
    }
    Ok(())
}

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

    /// Sums the rollups in `[from, to)` per bucket and grouped dimensions, at most `limit` rows,
    /// from `tier` (`None`: [`Tier::for_range`]).
    async fn aggregate<C: ConnectionTrait>(
        &self,
        db: &C,
        from: i64,
        to: i64,
        limit: Option<u64>,
        tier: Option<Tier>,
    ) -> Result<Vec<Aggregate>> {
        use usage_account_rollup::Column as C;
        let width = self.width;
        let tier = tier.unwrap_or_else(|| Tier::for_range(width, from, to));
        let (table, time) = tier.source(self.by_account());
        let bucket = Expr::cust(format!("({time} / {width}) * {width}"));
        let mut q = Query::select();
        q.expr(bucket.clone());
        for d in self.dims {
            q.column(column(*d));
        }
        q.expr(Expr::cust("CAST(SUM(input_tokens) AS BIGINT)"))
            .expr(Expr::cust("CAST(SUM(output_tokens) AS BIGINT)"))
            .expr(Expr::cust("CAST(SUM(record_count) AS BIGINT)"))
            .and_where(Expr::col(C::OrganizationId).eq(self.organization_id))
            .and_where(Expr::col(Alias::new(time)).gte(from))
            .and_where(Expr::col(Alias::new(time)).lt(to))
            .from(Alias::new(table));
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
        self.page_from(db, from, end, buckets, None).await
    }

    /// [`Self::page`] summed from `tier` (`None`: the coarsest that fits, as [`Self::page`]
    /// does); a tier coarser than the buckets or the range sums usage outside them.
    pub async fn page_from<C: ConnectionTrait>(
        &self,
        db: &C,
        from: i64,
        end: i64,
        buckets: u64,
        tier: Option<Tier>,
    ) -> Result<(Vec<Aggregate>, i64)> {
        let to = page_end(from, end, buckets, self.width);
        let mut rows = self
            .aggregate(db, from, to, Some(MAX_ROWS_PER_PAGE as u64 + 1), tier)
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
        let rows = self.aggregate(db, from, to, None, tier).await?;
        Ok((rows, to))
    }
}

/// Names and archival of `org`'s workspaces among `ids`. A report passes one id per row, so
/// each workspace many times (30 rows per workspace in a 30-day report): each is read once.
pub async fn workspace_labels<'a>(
    db: &DatabaseConnection,
    org: &str,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, (String, bool)>> {
    let ids: BTreeSet<&str> = ids.filter(|i| !i.is_empty()).collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        for w in workspace::Entity::find()
            .filter(workspace::Column::OrganizationId.eq(org))
            .filter(workspace::Column::WorkspaceId.is_in(chunk.iter().copied()))
            .all(db)
            .await?
        {
            out.insert(w.workspace_id, (w.name, w.archive_time_ms.is_some()));
        }
    }
    Ok(out)
}
