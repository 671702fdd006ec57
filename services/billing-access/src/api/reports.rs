//! GetUsageReport and GetCostReport (rules BILL-3, BILL-4, BILL-6): decoding of ranges, widths,
//! dimensions and filters; encoding of buckets and exact amounts.

use orgplane_platform::Call;
use orgplane_platform::convert::{millis_of, timestamp_ms};
use orgplane_platform::pagination::page_size;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::billing::v1::*;
use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use crate::app::Billing;
use crate::app::reports::{CostQuery, Page, UsageLine, UsageQuery};
use crate::domain::prices::format_amount;
use crate::domain::reports::{
    DAY_MS, Dim, HOUR_MS, MAX_TIME_MS, MINUTE_MS, TokenKind, check_filter,
};
use crate::domain::{Error, Result};

/// The width of `w` in milliseconds (unspecified: one day).
pub fn width_ms(w: BucketWidth) -> i64 {
    match w {
        BucketWidth::OneMinute => MINUTE_MS,
        BucketWidth::OneHour => HOUR_MS,
        BucketWidth::OneDay | BucketWidth::Unspecified => DAY_MS,
    }
}

/// The page of a report request: its range decoded (INVALID_ARGUMENT when missing or out of
/// range), its page size, and the scope its page tokens are bound to.
fn page(
    organization_id: &str,
    start: Option<&Timestamp>,
    end: Option<&Timestamp>,
    buckets: u64,
    page_token: String,
    token_scope: String,
) -> Result<Page> {
    let start = start.ok_or_else(|| Error::invalid("start_time", "required"))?;
    let start_ms = millis_of(start)
        .filter(|ms| (0..MAX_TIME_MS).contains(ms))
        .ok_or_else(|| Error::invalid("start_time", "not a time after 1970"))?;
    let end_ms = match end {
        Some(t) => Some(
            millis_of(t)
                .filter(|ms| (0..=MAX_TIME_MS).contains(ms))
                .ok_or_else(|| Error::invalid("end_time", "not a valid time"))?,
        ),
        None => None,
    };
    Ok(Page {
        organization_id: organization_id.to_owned(),
        start_ms,
        end_ms,
        page_size: buckets,
        page_token,
        token_scope,
    })
}

fn seconds_and_nanos(t: Option<&Timestamp>) -> Option<(i64, i32)> {
    t.map(|t| (t.seconds, t.nanos))
}

/// Binds a page token to the account filter too, when there is one (without one, the scope is
/// the one tokens had before accounts existed, so they stay valid across the upgrade).
fn bind_accounts(bound: &mut serde_json::Value, account_ids: &[String]) {
    if let (false, Some(list)) = (account_ids.is_empty(), bound.as_array_mut()) {
        list.push(serde_json::json!(account_ids));
    }
}

fn decode_usage(req: GetUsageReportRequest) -> Result<UsageQuery> {
    let size = page_size(req.page_size)?;
    let width = width_ms(
        BucketWidth::try_from(req.bucket_width)
            .map_err(|_| Error::invalid("bucket_width", "unknown bucket width"))?,
    );
    let mut dims = Vec::new();
    for d in &req.group_by {
        let dim = match UsageDimension::try_from(*d) {
            Ok(UsageDimension::Workspace) => Dim::Workspace,
            Ok(UsageDimension::ApiKey) => Dim::ApiKey,
            Ok(UsageDimension::Model) => Dim::Model,
            Ok(UsageDimension::User) => Dim::User,
            Ok(UsageDimension::Account) => Dim::Account,
            Ok(UsageDimension::Subaccount) => Dim::Subaccount,
            _ => {
                return Err(Error::invalid(
                    "group_by",
                    "each dimension must be WORKSPACE, API_KEY, MODEL, USER, ACCOUNT or SUBACCOUNT",
                ));
            }
        };
        if dims.contains(&dim) {
            return Err(Error::invalid("group_by", "a dimension may be named once"));
        }
        dims.push(dim);
    }
    let filters = vec![
        (
            Dim::Workspace,
            check_filter("workspace_ids", &req.workspace_ids)?.to_vec(),
        ),
        (
            Dim::ApiKey,
            check_filter("api_key_ids", &req.api_key_ids)?.to_vec(),
        ),
        (Dim::Model, check_filter("models", &req.models)?.to_vec()),
        (Dim::User, check_filter("user_ids", &req.user_ids)?.to_vec()),
    ];
    let account_ids = check_filter("account_ids", &req.account_ids)?.to_vec();
    let mut bound = serde_json::json!([
        seconds_and_nanos(req.start_time.as_ref()),
        seconds_and_nanos(req.end_time.as_ref()),
        width,
        req.group_by,
        req.workspace_ids,
        req.api_key_ids,
        req.models,
        req.user_ids,
    ]);
    bind_accounts(&mut bound, &req.account_ids);
    let scope = format!("GetUsageReport|{}|{}", req.organization_id, bound);
    let page = page(
        &req.organization_id,
        req.start_time.as_ref(),
        req.end_time.as_ref(),
        size,
        req.page_token,
        scope,
    )?;
    Ok(UsageQuery {
        page,
        width,
        dims,
        filters,
        account_ids,
    })
}

fn usage_row(line: UsageLine) -> UsageRow {
    UsageRow {
        workspace_id: line.workspace_id,
        workspace_name: line.workspace_name,
        workspace_archived: line.workspace_archived,
        api_key_id: line.api_key_id,
        model: line.model,
        user_id: line.user_id,
        account_id: line.account_id,
        subaccount_id: line.subaccount_id,
        input_tokens: line.input_tokens,
        output_tokens: line.output_tokens,
        record_count: line.record_count,
    }
}

/// GetUsageReport.
pub async fn usage_report(
    app: &Billing,
    request: Request<GetUsageReportRequest>,
) -> std::result::Result<Response<GetUsageReportResponse>, Status> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    app.admit(&call, &req.organization_id, OrgAction::ManageBilling)
        .await?;
    let report = app.usage_report(decode_usage(req)?).await?;
    let buckets = report
        .buckets
        .into_iter()
        .map(|b| UsageBucket {
            start_time: Some(timestamp_ms(b.start_ms)),
            end_time: Some(timestamp_ms(b.end_ms)),
            rows: b.rows.into_iter().map(usage_row).collect(),
        })
        .collect();
    Ok(Response::new(GetUsageReportResponse {
        buckets,
        next_page_token: report.next_page_token,
    }))
}

fn decode_cost(req: GetCostReportRequest) -> Result<CostQuery> {
    let size = page_size(req.page_size)?;
    let mut by_workspace = false;
    let mut by_description = false;
    let mut by_account = false;
    let mut by_subaccount = false;
    for d in &req.group_by {
        let flag = match CostDimension::try_from(*d) {
            Ok(CostDimension::Workspace) => &mut by_workspace,
            Ok(CostDimension::Description) => &mut by_description,
            Ok(CostDimension::Account) => &mut by_account,
            Ok(CostDimension::Subaccount) => &mut by_subaccount,
            _ => {
                return Err(Error::invalid(
                    "group_by",
                    "each dimension must be WORKSPACE, DESCRIPTION, ACCOUNT or SUBACCOUNT",
                ));
            }
        };
        if *flag {
            return Err(Error::invalid("group_by", "a dimension may be named once"));
        }
        *flag = true;
    }
    let workspace_ids = check_filter("workspace_ids", &req.workspace_ids)?.to_vec();
    let account_ids = check_filter("account_ids", &req.account_ids)?.to_vec();
    let mut bound = serde_json::json!([
        seconds_and_nanos(req.start_time.as_ref()),
        seconds_and_nanos(req.end_time.as_ref()),
        req.group_by,
        req.workspace_ids,
    ]);
    bind_accounts(&mut bound, &req.account_ids);
    let scope = format!("GetCostReport|{}|{}", req.organization_id, bound);
    let page = page(
        &req.organization_id,
        req.start_time.as_ref(),
        req.end_time.as_ref(),
        size,
        req.page_token,
        scope,
    )?;
    Ok(CostQuery {
        page,
        by_workspace,
        by_description,
        by_account,
        by_subaccount,
        workspace_ids,
        account_ids,
    })
}

/// GetCostReport.
pub async fn cost_report(
    app: &Billing,
    request: Request<GetCostReportRequest>,
) -> std::result::Result<Response<GetCostReportResponse>, Status> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    app.admit(&call, &req.organization_id, OrgAction::ManageBilling)
        .await?;
    let report = app.cost_report(decode_cost(req)?).await?;
    let buckets = report
        .buckets
        .into_iter()
        .map(|(b, total)| CostBucket {
            start_time: Some(timestamp_ms(b.start_ms)),
            end_time: Some(timestamp_ms(b.end_ms)),
            rows: b
                .rows
                .into_iter()
                .map(|line| {
                    let mut row = CostRow {
                        amount: format_amount(line.amount),
                        workspace_id: line.workspace_id,
                        workspace_name: line.workspace_name,
                        account_id: line.account_id,
                        subaccount_id: line.subaccount_id,
                        token_count: line.token_count,
                        ..Default::default()
                    };
                    if let Some((model, kind)) = line.description {
                        let (what, token_type) = match kind {
                            TokenKind::Input => ("input tokens", TokenType::Input),
                            TokenKind::Output => ("output tokens", TokenType::Output),
                        };
                        row.description = format!("{model}, {what}");
                        row.model = model;
                        row.token_type = token_type as i32;
                    }
                    row
                })
                .collect(),
            total_amount: format_amount(total),
        })
        .collect();
    Ok(Response::new(GetCostReportResponse {
        currency_code: report.currency_code,
        buckets,
        next_page_token: report.next_page_token,
    }))
}
