//! Usage and cost reports (rules BILL-3, BILL-4, BILL-6): a page of consecutive buckets (empty
//! ones included) summed in SQL over the per-minute rollups ([`crate::store::rollups`]),
//! labelled with workspace names and, for costs, priced with exact decimals. Both group and
//! filter by account: the billed account (a subaccount's usage rolls up to its parent) and the
//! subaccount named. A report grouped or filtered by account reads `usage_account_rollups`, any
//! other `usage_rollups` ([`crate::store::rollups::Rollups::by_account`]): usage that replicas of
//! the previous release ingest during a rolling update is in the latter only, so it is counted in
//! every report but the account-grouped and account-filtered ones, from which it is missing.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;

use crate::app::Billing;
use crate::domain::prices::cost;
use crate::domain::reports::{DAY_MS, Dim, TokenKind, aligned_range, page_start};
use crate::domain::{Error, Result};
use crate::store::rollups::{Rollups, workspace_labels};

/// Which page of a report, over which range.
#[derive(Debug, Clone)]
pub struct Page {
    /// The organization.
    pub organization_id: String,
    /// The range's start (Unix milliseconds).
    pub start_ms: i64,
    /// The range's end (Unix milliseconds); now when not given.
    pub end_ms: Option<i64>,
    /// Buckets per page (validated).
    pub page_size: u64,
    /// The previous page's token, or empty.
    pub page_token: String,
    /// What the page token is bound to: the request's parameters.
    pub token_scope: String,
}

/// GetUsageReport, decoded.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    /// Which page.
    pub page: Page,
    /// The bucket width (milliseconds).
    pub width: i64,
    /// The grouped dimensions, in order (each at most once).
    pub dims: Vec<Dim>,
    /// Filters per dimension (validated lengths; empty: no filter).
    pub filters: Vec<(Dim, Vec<String>)>,
    /// Only these accounts, with their subaccounts (empty: all).
    pub account_ids: Vec<String>,
}

/// GetCostReport, decoded.
#[derive(Debug, Clone)]
pub struct CostQuery {
    /// Which page (buckets of one day).
    pub page: Page,
    /// Rows per workspace.
    pub by_workspace: bool,
    /// Rows per model and token type.
    pub by_description: bool,
    /// Rows per billed account.
    pub by_account: bool,
    /// Rows per subaccount.
    pub by_subaccount: bool,
    /// Only these workspaces (empty: all).
    pub workspace_ids: Vec<String>,
    /// Only these accounts, with their subaccounts (empty: all).
    pub account_ids: Vec<String>,
}

/// One bucket of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket<R> {
    /// Its start (Unix milliseconds).
    pub start_ms: i64,
    /// Its end (Unix milliseconds).
    pub end_ms: i64,
    /// Its rows.
    pub rows: Vec<R>,
}

/// A page of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report<R> {
    /// The buckets, in time order.
    pub buckets: Vec<Bucket<R>>,
    /// The next page's token, or empty.
    pub next_page_token: String,
}

/// One row of a usage report: the grouped dimensions' values (empty when not grouped) and sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageLine {
    /// The workspace.
    pub workspace_id: String,
    /// Its name, when known here.
    pub workspace_name: String,
    /// Whether it is archived.
    pub workspace_archived: bool,
    /// The API key.
    pub api_key_id: String,
    /// The model.
    pub model: String,
    /// The user.
    pub user_id: String,
    /// The billed account.
    pub account_id: String,
    /// The subaccount.
    pub subaccount_id: String,
    /// Summed input tokens.
    pub input_tokens: i64,
    /// Summed output tokens.
    pub output_tokens: i64,
    /// Records summed.
    pub record_count: i64,
}

/// One row of a cost report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostLine {
    /// The workspace (when grouped by workspace).
    pub workspace_id: String,
    /// Its name, when known here.
    pub workspace_name: String,
    /// The billed account (when grouped by account).
    pub account_id: String,
    /// The subaccount (when grouped by subaccount).
    pub subaccount_id: String,
    /// The model and token type (when grouped by description).
    pub description: Option<(String, TokenKind)>,
    /// Tokens of that type (when grouped by description).
    pub token_count: i64,
    /// The exact amount.
    pub amount: Decimal,
}

/// A page of a cost report: buckets with their rows and totals.
#[derive(Debug, Clone, PartialEq)]
pub struct CostReport {
    /// The currency of every amount.
    pub currency_code: String,
    /// The buckets and their totals.
    pub buckets: Vec<(Bucket<CostLine>, Decimal)>,
    /// The next page's token, or empty.
    pub next_page_token: String,
}

/// The grouping key of a cost row: the values of the grouped dimensions (workspace, account,
/// subaccount, in that order, when grouped), model and token type (when grouped by description).
type CostKey = (Vec<String>, String, Option<TokenKind>);

impl Billing {
    /// The `[from, end)` of a page and its aligned range.
    fn page_range(&self, page: &Page, width: i64) -> Result<(i64, i64)> {
        let end = page
            .end_ms
            .unwrap_or_else(|| self.runtime.clock.now().timestamp_millis());
        let (start, end) = aligned_range(page.start_ms, end, width)?;
        let cursor = self
            .runtime
            .page_tokens
            .decode::<(i64, i64)>(&page.token_scope, &page.page_token)?;
        page_start(cursor, start, end, width)
    }

    fn next_token(&self, page: &Page, to: i64, end: i64) -> String {
        if to < end {
            self.runtime
                .page_tokens
                .encode(&page.token_scope, &(to, end))
        } else {
            String::new()
        }
    }

    /// GetUsageReport for an authorized caller.
    pub async fn usage_report(&self, query: UsageQuery) -> Result<Report<UsageLine>> {
        let UsageQuery {
            page,
            width,
            dims,
            filters,
            account_ids,
        } = query;
        let (from, end) = self.page_range(&page, width)?;
        let filters: Vec<(Dim, &[String])> =
            filters.iter().map(|(d, v)| (*d, v.as_slice())).collect();
        let rollups = Rollups {
            organization_id: &page.organization_id,
            width,
            dims: &dims,
            filters: &filters,
            accounts: &account_ids,
        };
        let (rows, to) = rollups.page(&self.db, from, end, page.page_size).await?;
        let labels = match dims.iter().position(|d| *d == Dim::Workspace) {
            Some(pos) => {
                workspace_labels(
                    &self.db,
                    &page.organization_id,
                    rows.iter().map(|r| r.values[pos].as_str()),
                )
                .await?
            }
            None => HashMap::new(),
        };
        let mut by_bucket: BTreeMap<i64, Vec<(Vec<String>, UsageLine)>> = BTreeMap::new();
        for r in rows {
            let mut line = UsageLine {
                input_tokens: r.input,
                output_tokens: r.output,
                record_count: r.count,
                ..Default::default()
            };
            let sort_key = r.values.clone();
            for (d, v) in dims.iter().zip(r.values) {
                match d {
                    Dim::Workspace => {
                        if let Some((name, archived)) = labels.get(&v) {
                            line.workspace_name = name.clone();
                            line.workspace_archived = *archived;
                        }
                        line.workspace_id = v;
                    }
                    Dim::ApiKey => line.api_key_id = v,
                    Dim::Model => line.model = v,
                    Dim::User => line.user_id = v,
                    Dim::Account => line.account_id = v,
                    Dim::Subaccount => line.subaccount_id = v,
                }
            }
            by_bucket
                .entry(r.bucket)
                .or_default()
                .push((sort_key, line));
        }
        let mut buckets = Vec::new();
        let mut t = from;
        while t < to {
            let mut rows = by_bucket.remove(&t).unwrap_or_default();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            buckets.push(Bucket {
                start_ms: t,
                end_ms: t + width,
                rows: rows.into_iter().map(|(_, line)| line).collect(),
            });
            t += width;
        }
        Ok(Report {
            buckets,
            next_page_token: self.next_token(&page, to, end),
        })
    }

    /// GetCostReport for an authorized caller: daily buckets priced from the price table.
    pub async fn cost_report(&self, query: CostQuery) -> Result<CostReport> {
        let CostQuery {
            page,
            by_workspace,
            by_description,
            by_account,
            by_subaccount,
            workspace_ids,
            account_ids,
        } = query;
        let (from, end) = self.page_range(&page, DAY_MS)?;
        // The grouped dimensions, then the model (always: prices are per model).
        let grouped: Vec<Dim> = [
            (by_workspace, Dim::Workspace),
            (by_account, Dim::Account),
            (by_subaccount, Dim::Subaccount),
        ]
        .into_iter()
        .filter_map(|(on, d)| on.then_some(d))
        .collect();
        let mut dims = grouped.clone();
        dims.push(Dim::Model);
        let filters = [(Dim::Workspace, workspace_ids.as_slice())];
        let rollups = Rollups {
            organization_id: &page.organization_id,
            width: DAY_MS,
            dims: &dims,
            filters: &filters,
            accounts: &account_ids,
        };
        let (rows, to) = rollups.page(&self.db, from, end, page.page_size).await?;
        let labels = if by_workspace {
            workspace_labels(
                &self.db,
                &page.organization_id,
                rows.iter().map(|r| r.values[0].as_str()),
            )
            .await?
        } else {
            HashMap::new()
        };
        let mut by_bucket: BTreeMap<i64, BTreeMap<CostKey, (i64, Decimal)>> = BTreeMap::new();
        for mut r in rows {
            let model = r.values.pop().unwrap_or_default();
            let group = r.values;
            let price = self
                .prices
                .get(&model)
                .ok_or_else(|| Error::ModelPriceMissing(model.clone()))?;
            let bucket = by_bucket.entry(r.bucket).or_default();
            let lines = [
                (TokenKind::Input, r.input, price.input_per_million),
                (TokenKind::Output, r.output, price.output_per_million),
            ];
            if by_description {
                for (kind, count, per_million) in lines {
                    if count == 0 {
                        continue;
                    }
                    let amount = cost(count, per_million).ok_or(Error::CostOverflow)?;
                    let e = bucket
                        .entry((group.clone(), model.clone(), Some(kind)))
                        .or_insert((0, Decimal::ZERO));
                    e.0 = e.0.saturating_add(count);
                    e.1 = e.1.checked_add(amount).ok_or(Error::CostOverflow)?;
                }
            } else {
                let e = bucket
                    .entry((group, String::new(), None))
                    .or_insert((0, Decimal::ZERO));
                for (_, count, per_million) in lines {
                    let amount = cost(count, per_million).ok_or(Error::CostOverflow)?;
                    e.1 = e.1.checked_add(amount).ok_or(Error::CostOverflow)?;
                }
            }
        }
        let mut buckets = Vec::new();
        let mut t = from;
        while t < to {
            let lines = by_bucket.remove(&t).unwrap_or_default();
            let mut total = Decimal::ZERO;
            let mut rows = Vec::with_capacity(lines.len());
            for ((group, model, kind), (count, amount)) in lines {
                total = total.checked_add(amount).ok_or(Error::CostOverflow)?;
                let mut line = CostLine {
                    workspace_id: String::new(),
                    workspace_name: String::new(),
                    account_id: String::new(),
                    subaccount_id: String::new(),
                    description: kind.map(|k| (model, k)),
                    token_count: if by_description { count } else { 0 },
                    amount,
                };
                for (d, v) in grouped.iter().zip(group) {
                    match d {
                        Dim::Workspace => {
                            line.workspace_name = labels
                                .get(&v)
                                .map(|(name, _)| name.clone())
                                .unwrap_or_default();
                            line.workspace_id = v;
                        }
                        Dim::Account => line.account_id = v,
                        Dim::Subaccount => line.subaccount_id = v,
                        Dim::ApiKey | Dim::Model | Dim::User => {}
                    }
                }
                rows.push(line);
            }
            let bucket = Bucket {
                start_ms: t,
                end_ms: t + DAY_MS,
                rows,
            };
            buckets.push((bucket, total));
            t += DAY_MS;
        }
        Ok(CostReport {
            currency_code: self.prices.currency_code.clone(),
            buckets,
            next_page_token: self.next_token(&page, to, end),
        })
    }
}
