//! `orgctl billing …`: the billing account and the usage and cost reports.

use chrono::Utc;
use orgplane_proto::billing::v1 as pb;

use crate::app::{App, note_next_page, paginate, parse_time, to_timestamp};
use crate::cli::{BillingCommand, PageArgs, RangeArgs};
use crate::errors::Failure;
use crate::output::{self, Table, proto_json};

fn range(args: &RangeArgs) -> Result<(prost_types::Timestamp, prost_types::Timestamp), Failure> {
    let end = match &args.end {
        Some(t) => parse_time(t)?,
        None => Utc::now(),
    };
    let start = match &args.start {
        Some(t) => parse_time(t)?,
        None => end - chrono::TimeDelta::days(30),
    };
    if end <= start {
        return Err(Failure::usage("--end must be after --start"));
    }
    Ok((to_timestamp(start), to_timestamp(end)))
}

fn day(t: Option<&prost_types::Timestamp>) -> String {
    crate::app::timestamp(t)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// A report is one range: every page of it unless a page was asked for.
fn whole_report(page: PageArgs) -> PageArgs {
    PageArgs {
        all: page.all || (page.page_token.is_none() && page.page_size.is_none()),
        ..page
    }
}

/// Runs `orgctl billing …`.
pub async fn run(app: &mut App, command: BillingCommand) -> Result<(), Failure> {
    let api = app.api().await?;
    let client = api.billing();
    match command {
        BillingCommand::Account { org } => {
            let organization_id = app.org(&org)?;
            let answer = client
                .clone()
                .get_billing_account(api.request(pb::GetBillingAccountRequest { organization_id }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "billingAccount");
        }
        BillingCommand::Usage {
            org,
            range: r,
            bucket,
            group_by,
            workspaces,
            models,
            accounts,
            page,
        } => {
            let organization_id = app.org(&org)?;
            let (start, end) = range(&r)?;
            let page = whole_report(page);
            let (buckets, next) = paginate(&page, |page_token, page_size| {
                let mut client = client.clone();
                let request = api.request(pb::GetUsageReportRequest {
                    organization_id: organization_id.clone(),
                    page_size,
                    page_token,
                    start_time: Some(start),
                    end_time: Some(end),
                    bucket_width: bucket.number(),
                    group_by: group_by.iter().map(|g| g.number()).collect(),
                    workspace_ids: workspaces.clone(),
                    api_key_ids: Vec::new(),
                    models: models.clone(),
                    user_ids: Vec::new(),
                    account_ids: accounts.clone(),
                });
                async move {
                    let r = client.get_usage_report(request).await?.into_inner();
                    Ok((r.buckets, r.next_page_token))
                }
            })
            .await?;
            match app.format {
                output::Format::Json => {
                    output::print_json(&proto_json(&pb::GetUsageReportResponse {
                        buckets,
                        next_page_token: next.clone(),
                    }))
                }
                output::Format::Table => {
                    let mut table = Table::new([
                        "START",
                        "WORKSPACE",
                        "ACCOUNT",
                        "API KEY",
                        "MODEL",
                        "USER",
                        "INPUT",
                        "OUTPUT",
                        "RECORDS",
                    ]);
                    for b in &buckets {
                        for row in &b.rows {
                            let workspace = if row.workspace_name.is_empty() {
                                row.workspace_id.clone()
                            } else {
                                format!("{} ({})", row.workspace_name, row.workspace_id)
                            };
                            table.rows.push(vec![
                                day(b.start_time.as_ref()),
                                workspace,
                                account(&row.account_id, &row.subaccount_id),
                                row.api_key_id.clone(),
                                row.model.clone(),
                                row.user_id.clone(),
                                row.input_tokens.to_string(),
                                row.output_tokens.to_string(),
                                row.record_count.to_string(),
                            ]);
                        }
                    }
                    out!("{}", table.render());
                    if table.rows.is_empty() {
                        eprintln!("(no usage in the range)");
                    }
                }
            }
            note_next_page(&next);
        }
        BillingCommand::Cost {
            org,
            range: r,
            group_by,
            workspaces,
            accounts,
            page,
        } => {
            let organization_id = app.org(&org)?;
            let (start, end) = range(&r)?;
            let page = whole_report(page);
            let mut currency = String::new();
            let (buckets, next) = paginate(&page, |page_token, page_size| {
                let mut client = client.clone();
                let request = api.request(pb::GetCostReportRequest {
                    organization_id: organization_id.clone(),
                    page_size,
                    page_token,
                    start_time: Some(start),
                    end_time: Some(end),
                    group_by: group_by.iter().map(|g| g.number()).collect(),
                    workspace_ids: workspaces.clone(),
                    account_ids: accounts.clone(),
                });
                async move {
                    let r = client.get_cost_report(request).await?.into_inner();
                    Ok((vec![(r.currency_code, r.buckets)], r.next_page_token))
                }
            })
            .await?;
            let mut all = Vec::new();
            for (code, b) in buckets {
                if !code.is_empty() {
                    currency = code;
                }
                all.extend(b);
            }
            match app.format {
                output::Format::Json => {
                    output::print_json(&proto_json(&pb::GetCostReportResponse {
                        currency_code: currency,
                        buckets: all,
                        next_page_token: next.clone(),
                    }))
                }
                output::Format::Table => {
                    let mut table = Table::new([
                        "DAY",
                        "WORKSPACE",
                        "ACCOUNT",
                        "DESCRIPTION",
                        "MODEL",
                        "TOKENS",
                        "AMOUNT",
                    ]);
                    for b in &all {
                        for row in &b.rows {
                            let workspace = if row.workspace_name.is_empty() {
                                row.workspace_id.clone()
                            } else {
                                format!("{} ({})", row.workspace_name, row.workspace_id)
                            };
                            table.rows.push(vec![
                                day(b.start_time.as_ref()),
                                workspace,
                                account(&row.account_id, &row.subaccount_id),
                                row.description.clone(),
                                row.model.clone(),
                                row.token_count.to_string(),
                                format!("{} {currency}", row.amount),
                            ]);
                        }
                        if !b.rows.is_empty() {
                            table.rows.push(vec![
                                day(b.start_time.as_ref()),
                                "total".into(),
                                String::new(),
                                String::new(),
                                String::new(),
                                String::new(),
                                format!("{} {currency}", b.total_amount),
                            ]);
                        }
                    }
                    out!("{}", table.render());
                    if table.rows.is_empty() {
                        eprintln!("(no cost in the range)");
                    }
                }
            }
            note_next_page(&next);
        }
    }
    Ok(())
}

/// A report row's account cell: the billed account, and the subaccount the usage named when
/// that is another one.
fn account(account_id: &str, subaccount_id: &str) -> String {
    if subaccount_id.is_empty() || subaccount_id == account_id {
        account_id.to_owned()
    } else {
        format!("{account_id}/{subaccount_id}")
    }
}
