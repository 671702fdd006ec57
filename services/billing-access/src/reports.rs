//! Usage and cost reports (rules BILL-3, BILL-4), aggregated in SQL over the per-minute rollups:
//! `GROUP BY (minute_ms / width) * width` is integer arithmetic that SQLite and PostgreSQL
//! evaluate alike, and the rollups' primary key starts with (organization, minute), so a report
//! reads one index range. Pages are runs of consecutive buckets, empty ones included.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use orgplane_platform::convert::{millis_of, timestamp_ms};
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_platform::pagination::{PageTokens, page_size};
use orgplane_proto::billing::v1::{
    BucketWidth, CostBucket, CostDimension, CostRow, GetCostReportRequest, GetCostReportResponse,
    GetUsageReportRequest, GetUsageReportResponse, TokenType, UsageBucket, UsageDimension,
    UsageRow,
};
use rust_decimal::Decimal;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::entity::{usage_rollup, workspace};
use crate::prices::{PriceTable, cost, format_amount};

/// The most grouped rows on one page; a page ends early (at a bucket boundary) beyond it.
pub const MAX_ROWS_PER_PAGE: usize = 10_000;
/// The most values in one filter list.
pub const MAX_FILTER_VALUES: usize = 1000;
/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// The latest accepted report end: 9999-12-31.
const MAX_TIME_MS: i64 = 253_402_214_400_000;

/// The width of `w` in milliseconds (unspecified: one day).
pub fn width_ms(w: BucketWidth) -> i64 {
    match w {
        BucketWidth::OneMinute => 60_000,
        BucketWidth::OneHour => 3_600_000,
        BucketWidth::OneDay | BucketWidth::Unspecified => DAY_MS,
    }
}

/// The bucket-aligned range `[start, end)` of a request.
fn aligned_range(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
    width: i64,
    now: DateTime<Utc>,
) -> ApiResult<(i64, i64)> {
    let start = start.ok_or_else(|| ApiError::invalid_argument("start_time", "required"))?;
    let start = millis_of(start)
        .filter(|ms| (0..MAX_TIME_MS).contains(ms))
        .ok_or_else(|| ApiError::invalid_argument("start_time", "not a time after 1970"))?;
    let end = match end {
        Some(t) => millis_of(t)
            .filter(|ms| (0..=MAX_TIME_MS).contains(ms))
            .ok_or_else(|| ApiError::invalid_argument("end_time", "not a valid time"))?,
        None => now.timestamp_millis(),
    };
    if end <= start {
        return Err(ApiError::invalid_argument(
            "end_time",
            "must be after start_time",
        ));
    }
    let start = start - start.rem_euclid(width);
    let end = match end.rem_euclid(width) {
        0 => end,
        r => end + (width - r),
    };
    Ok((start, end))
}

/// A rollup column a report groups or filters by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    Workspace,
    ApiKey,
    Model,
    User,
}

impl Dim {
    fn column(self) -> usage_rollup::Column {
        match self {
            Dim::Workspace => usage_rollup::Column::WorkspaceId,
            Dim::ApiKey => usage_rollup::Column::ApiKeyId,
            Dim::Model => usage_rollup::Column::Model,
            Dim::User => usage_rollup::Column::UserId,
        }
    }
}

/// One aggregated row: a bucket, the grouped dimensions' values, and sums.
#[derive(Debug, Clone)]
struct Aggregate {
    bucket: i64,
    values: Vec<String>,
    input: i64,
    output: i64,
    count: i64,
}

/// Sums rollups of `org` in `[from, to)` per bucket of `width` and per `dims`, filtered.
#[allow(clippy::too_many_arguments)]
async fn aggregate<C: ConnectionTrait>(
    db: &C,
    org: &str,
    from: i64,
    to: i64,
    width: i64,
    dims: &[Dim],
    filters: &[(Dim, &[String])],
    limit: Option<u64>,
) -> ApiResult<Vec<Aggregate>> {
    let bucket = Expr::cust(format!("(minute_ms / {width}) * {width}"));
    let mut q = Query::select();
    q.expr(bucket.clone());
    for d in dims {
        q.column(d.column());
    }
    q.expr(Expr::cust("CAST(SUM(input_tokens) AS BIGINT)"))
        .expr(Expr::cust("CAST(SUM(output_tokens) AS BIGINT)"))
        .expr(Expr::cust("CAST(SUM(record_count) AS BIGINT)"))
        .from(usage_rollup::Entity)
        .and_where(Expr::col(usage_rollup::Column::OrganizationId).eq(org))
        .and_where(Expr::col(usage_rollup::Column::MinuteMs).gte(from))
        .and_where(Expr::col(usage_rollup::Column::MinuteMs).lt(to));
    for (d, values) in filters {
        if !values.is_empty() {
            q.and_where(Expr::col(d.column()).is_in(values.iter().cloned()));
        }
    }
    let mut group = vec![bucket.clone()];
    group.extend(dims.iter().map(|d| Expr::col(d.column())));
    q.add_group_by(group).order_by_expr(bucket, Order::Asc);
    if let Some(limit) = limit {
        q.limit(limit);
    }
    let rows = db.query_all(&q).await?;
    let n = dims.len();
    rows.into_iter()
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
        .collect::<Result<Vec<_>, DbErr>>()
        .map_err(ApiError::from)
}

/// The rows of the page `[from, from + buckets × width)` (clipped to `end`), cut at a bucket
/// boundary when there are more than [`MAX_ROWS_PER_PAGE`]; returns the rows and where the page
/// really ends.
#[allow(clippy::too_many_arguments)]
async fn page_rows<C: ConnectionTrait>(
    db: &C,
    org: &str,
    from: i64,
    end: i64,
    buckets: u64,
    width: i64,
    dims: &[Dim],
    filters: &[(Dim, &[String])],
) -> ApiResult<(Vec<Aggregate>, i64)> {
    let span = i64::try_from(buckets)
        .ok()
        .and_then(|b| b.checked_mul(width))
        .unwrap_or(i64::MAX);
    let to = Ord::min(from.saturating_add(span), end);
    let mut rows = aggregate(
        db,
        org,
        from,
        to,
        width,
        dims,
        filters,
        Some(MAX_ROWS_PER_PAGE as u64 + 1),
    )
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
    let to = from + width;
    let rows = aggregate(db, org, from, to, width, dims, filters, None).await?;
    Ok((rows, to))
}

fn check_filter<'a>(field: &str, values: &'a [String]) -> ApiResult<&'a [String]> {
    if values.len() > MAX_FILTER_VALUES {
        return Err(ApiError::invalid_argument(
            field,
            format!("at most {MAX_FILTER_VALUES} values"),
        ));
    }
    Ok(values)
}

/// Names and archival of `org`'s workspaces among `ids`.
async fn workspace_labels(
    db: &DatabaseConnection,
    org: &str,
    ids: impl Iterator<Item = String>,
) -> ApiResult<HashMap<String, (String, bool)>> {
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

/// GetUsageReport for an authorized caller.
pub async fn usage_report(
    db: &DatabaseConnection,
    tokens: &PageTokens,
    now: DateTime<Utc>,
    req: &GetUsageReportRequest,
) -> ApiResult<GetUsageReportResponse> {
    let size = page_size(req.page_size)?;
    let width = width_ms(
        BucketWidth::try_from(req.bucket_width)
            .map_err(|_| ApiError::invalid_argument("bucket_width", "unknown bucket width"))?,
    );
    let mut dims = Vec::new();
    for d in &req.group_by {
        let dim = match UsageDimension::try_from(*d) {
            Ok(UsageDimension::Workspace) => Dim::Workspace,
            Ok(UsageDimension::ApiKey) => Dim::ApiKey,
            Ok(UsageDimension::Model) => Dim::Model,
            Ok(UsageDimension::User) => Dim::User,
            _ => {
                return Err(ApiError::invalid_argument(
                    "group_by",
                    "each dimension must be WORKSPACE, API_KEY, MODEL or USER",
                ));
            }
        };
        if dims.contains(&dim) {
            return Err(ApiError::invalid_argument(
                "group_by",
                "a dimension may be named once",
            ));
        }
        dims.push(dim);
    }
    let filters = [
        (
            Dim::Workspace,
            check_filter("workspace_ids", &req.workspace_ids)?,
        ),
        (Dim::ApiKey, check_filter("api_key_ids", &req.api_key_ids)?),
        (Dim::Model, check_filter("models", &req.models)?),
        (Dim::User, check_filter("user_ids", &req.user_ids)?),
    ];
    let (start, end) = aligned_range(req.start_time.as_ref(), req.end_time.as_ref(), width, now)?;
    let scope = format!(
        "GetUsageReport|{}|{}",
        req.organization_id,
        serde_json::json!([
            req.start_time.as_ref().map(|t| (t.seconds, t.nanos)),
            req.end_time.as_ref().map(|t| (t.seconds, t.nanos)),
            width,
            req.group_by,
            req.workspace_ids,
            req.api_key_ids,
            req.models,
            req.user_ids,
        ])
    );
    let (from, end) = match tokens.decode::<(i64, i64)>(&scope, &req.page_token)? {
        Some((next, end)) if next >= start && next < end && (next - start) % width == 0 => {
            (next, end)
        }
        Some(_) => {
            return Err(ApiError::invalid_argument(
                "page_token",
                "not a page token issued for this request",
            ));
        }
        None => (start, end),
    };
    let (rows, to) = page_rows(
        db,
        &req.organization_id,
        from,
        end,
        size,
        width,
        &dims,
        &filters,
    )
    .await?;
    let labels = if dims.contains(&Dim::Workspace) {
        let pos = dims.iter().position(|d| *d == Dim::Workspace).unwrap_or(0);
        workspace_labels(
            db,
            &req.organization_id,
            rows.iter().map(|r| r.values[pos].clone()),
        )
        .await?
    } else {
        HashMap::new()
    };
    let mut by_bucket: BTreeMap<i64, Vec<UsageRow>> = BTreeMap::new();
    for r in rows {
        let mut row = UsageRow {
            input_tokens: r.input,
            output_tokens: r.output,
            record_count: r.count,
            ..Default::default()
        };
        for (d, v) in dims.iter().zip(r.values) {
            match d {
                Dim::Workspace => {
                    if let Some((name, archived)) = labels.get(&v) {
                        row.workspace_name = name.clone();
                        row.workspace_archived = *archived;
                    }
                    row.workspace_id = v;
                }
                Dim::ApiKey => row.api_key_id = v,
                Dim::Model => row.model = v,
                Dim::User => row.user_id = v,
            }
        }
        by_bucket.entry(r.bucket).or_default().push(row);
    }
    let mut buckets = Vec::new();
    let mut t = from;
    while t < to {
        let mut rows = by_bucket.remove(&t).unwrap_or_default();
        rows.sort_by(|a, b| {
            let key = |r: &UsageRow| {
                dims.iter()
                    .map(|d| match d {
                        Dim::Workspace => r.workspace_id.clone(),
                        Dim::ApiKey => r.api_key_id.clone(),
                        Dim::Model => r.model.clone(),
                        Dim::User => r.user_id.clone(),
                    })
                    .collect::<Vec<_>>()
            };
            key(a).cmp(&key(b))
        });
        buckets.push(UsageBucket {
            start_time: Some(timestamp_ms(t)),
            end_time: Some(timestamp_ms(t + width)),
            rows,
        });
        t += width;
    }
    let next_page_token = if to < end {
        tokens.encode(&scope, &(to, end))
    } else {
        String::new()
    };
    Ok(GetUsageReportResponse {
        buckets,
        next_page_token,
    })
}

/// The grouping key of a cost row: workspace (when grouped), model and token type (when grouped
/// by description).
type CostKey = (String, String, i32);

/// GetCostReport for an authorized caller.
pub async fn cost_report(
    db: &DatabaseConnection,
    tokens: &PageTokens,
    prices: &PriceTable,
    now: DateTime<Utc>,
    req: &GetCostReportRequest,
) -> ApiResult<GetCostReportResponse> {
    let size = page_size(req.page_size)?;
    let mut by_workspace = false;
    let mut by_description = false;
    for d in &req.group_by {
        let flag = match CostDimension::try_from(*d) {
            Ok(CostDimension::Workspace) => &mut by_workspace,
            Ok(CostDimension::Description) => &mut by_description,
            _ => {
                return Err(ApiError::invalid_argument(
                    "group_by",
                    "each dimension must be WORKSPACE or DESCRIPTION",
                ));
            }
        };
        if *flag {
            return Err(ApiError::invalid_argument(
                "group_by",
                "a dimension may be named once",
            ));
        }
        *flag = true;
    }
    let workspace_ids = check_filter("workspace_ids", &req.workspace_ids)?;
    let (start, end) = aligned_range(req.start_time.as_ref(), req.end_time.as_ref(), DAY_MS, now)?;
    let scope = format!(
        "GetCostReport|{}|{}",
        req.organization_id,
        serde_json::json!([
            req.start_time.as_ref().map(|t| (t.seconds, t.nanos)),
            req.end_time.as_ref().map(|t| (t.seconds, t.nanos)),
            req.group_by,
            req.workspace_ids,
        ])
    );
    let (from, end) = match tokens.decode::<(i64, i64)>(&scope, &req.page_token)? {
        Some((next, end)) if next >= start && next < end && (next - start) % DAY_MS == 0 => {
            (next, end)
        }
        Some(_) => {
            return Err(ApiError::invalid_argument(
                "page_token",
                "not a page token issued for this request",
            ));
        }
        None => (start, end),
    };
    let dims: Vec<Dim> = if by_workspace {
        vec![Dim::Workspace, Dim::Model]
    } else {
        vec![Dim::Model]
    };
    let filters = [(Dim::Workspace, workspace_ids)];
    let (rows, to) = page_rows(
        db,
        &req.organization_id,
        from,
        end,
        size,
        DAY_MS,
        &dims,
        &filters,
    )
    .await?;
    let labels = if by_workspace {
        workspace_labels(
            db,
            &req.organization_id,
            rows.iter().map(|r| r.values[0].clone()),
        )
        .await?
    } else {
        HashMap::new()
    };
    let overflow = || ApiError::internal("cost overflows the decimal range");
    let mut by_bucket: BTreeMap<i64, BTreeMap<CostKey, (i64, Decimal)>> = BTreeMap::new();
    for r in rows {
        let (ws, model) = if by_workspace {
            (r.values[0].clone(), r.values[1].clone())
        } else {
            (String::new(), r.values[0].clone())
        };
        let price = prices.get(&model).ok_or_else(|| {
            ApiError::failed_precondition(
                "MODEL_PRICE_MISSING",
                &model,
                format!("the price table has no price for model {model:?}"),
            )
        })?;
        let bucket = by_bucket.entry(r.bucket).or_default();
        let lines = [
            (TokenType::Input, r.input, price.input_per_million),
            (TokenType::Output, r.output, price.output_per_million),
        ];
        if by_description {
            for (kind, count, per_million) in lines {
                if count == 0 {
                    continue;
                }
                let amount = cost(count, per_million).ok_or_else(overflow)?;
                let e = bucket
                    .entry((ws.clone(), model.clone(), kind as i32))
                    .or_insert((0, Decimal::ZERO));
                e.0 = e.0.saturating_add(count);
                e.1 = e.1.checked_add(amount).ok_or_else(overflow)?;
            }
        } else {
            let e = bucket
                .entry((ws.clone(), String::new(), 0))
                .or_insert((0, Decimal::ZERO));
            for (_, count, per_million) in lines {
                let amount = cost(count, per_million).ok_or_else(overflow)?;
                e.1 = e.1.checked_add(amount).ok_or_else(overflow)?;
            }
        }
    }
    let mut buckets = Vec::new();
    let mut t = from;
    while t < to {
        let lines = by_bucket.remove(&t).unwrap_or_default();
        let mut total = Decimal::ZERO;
        let mut out = Vec::with_capacity(lines.len());
        for ((ws, model, kind), (count, amount)) in lines {
            total = total.checked_add(amount).ok_or_else(overflow)?;
            let mut row = CostRow {
                amount: format_amount(amount),
                ..Default::default()
            };
            if by_workspace {
                if let Some((name, _)) = labels.get(&ws) {
                    row.workspace_name = name.clone();
                }
                row.workspace_id = ws;
            }
            if by_description {
                let what = if kind == TokenType::Input as i32 {
                    "input tokens"
                } else {
                    "output tokens"
                };
                row.description = format!("{model}, {what}");
                row.model = model;
                row.token_type = kind;
                row.token_count = count;
            }
            out.push(row);
        }
        buckets.push(CostBucket {
            start_time: Some(timestamp_ms(t)),
            end_time: Some(timestamp_ms(t + DAY_MS)),
            rows: out,
            total_amount: format_amount(total),
        });
        t += DAY_MS;
    }
    let next_page_token = if to < end {
        tokens.encode(&scope, &(to, end))
    } else {
        String::new()
    };
    Ok(GetCostReportResponse {
        currency_code: prices.currency_code.clone(),
        buckets,
        next_page_token,
    })
}
