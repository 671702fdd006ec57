//! `orgctl audit …`: the audit records of the four services, merged into one timeline.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use orgplane_proto::audit::v1::{AuditEvent, AuditEventFilter};
use serde_json::Value;

use crate::app::{App, paginate, parse_time, timestamp, to_timestamp};
use crate::cli::{AuditCommand, AuditFilterArgs, AuditService, PageArgs};
use crate::conn::Api;
use crate::errors::Failure;
use crate::output::{self, Table, proto_json};

/// How far before the newest record seen `audit tail` looks again: records committed slightly
/// out of time order are not missed (they are de-duplicated by id).
const TAIL_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

const HEADERS: [&str; 6] = ["TIME", "SERVICE", "ACTOR", "ACTION", "RESOURCE", "OUTCOME"];

/// Runs `orgctl audit …`.
pub async fn run(app: &mut App, command: AuditCommand) -> Result<(), Failure> {
    match command {
        AuditCommand::List {
            filter,
            until,
            page,
        } => list(app, filter, until, page).await,
        AuditCommand::Tail {
            filter,
            lines,
            interval,
            max_records,
        } => {
            if !(interval.is_finite() && interval >= 0.1) {
                return Err(Failure::usage("--interval must be at least 0.1 seconds"));
            }
            tail(
                app,
                filter,
                lines,
                Duration::from_secs_f64(interval),
                max_records,
            )
            .await
        }
    }
}

fn services(which: AuditService) -> Vec<AuditService> {
    match which {
        AuditService::All => vec![
            AuditService::Identity,
            AuditService::Organization,
            AuditService::Workspace,
            AuditService::Billing,
        ],
        one => vec![one],
    }
}

fn filter_of(args: &AuditFilterArgs, until: Option<&str>) -> Result<AuditEventFilter, Failure> {
    Ok(AuditEventFilter {
        actor_kind: args.actor_kind.map(|k| k.number()).unwrap_or_default(),
        actor_id: args.actor.clone().unwrap_or_default(),
        action: args.action.clone().unwrap_or_default(),
        resource_type: args.resource_type.clone().unwrap_or_default(),
        resource_id: args.resource.clone().unwrap_or_default(),
        outcome: args.outcome.map(|o| o.number()).unwrap_or_default(),
        start_time: args
            .since
            .as_deref()
            .map(parse_time)
            .transpose()?
            .map(to_timestamp),
        end_time: until.map(parse_time).transpose()?.map(to_timestamp),
        request_id: args.request_id.clone().unwrap_or_default(),
    })
}

/// One page of one service's audit log.
async fn fetch(
    api: &Api,
    service: AuditService,
    organization_id: String,
    filter: AuditEventFilter,
    page_size: i32,
    page_token: String,
) -> Result<(Vec<AuditEvent>, String), tonic::Status> {
    use orgplane_proto::{billing, identity, organization, workspace};
    let filter = Some(filter);
    Ok(match service {
        AuditService::Identity => {
            let r = api
                .identity()
                .list_audit_events(api.request(identity::v1::ListAuditEventsRequest {
                    organization_id,
                    page_size,
                    page_token,
                    filter,
                }))
                .await?
                .into_inner();
            (r.audit_events, r.next_page_token)
        }
        AuditService::Organization | AuditService::All => {
            let r = api
                .organization()
                .list_audit_events(api.request(organization::v1::ListAuditEventsRequest {
                    organization_id,
                    page_size,
                    page_token,
                    filter,
                }))
                .await?
                .into_inner();
            (r.audit_events, r.next_page_token)
        }
        AuditService::Workspace => {
            let r = api
                .workspace()
                .list_audit_events(api.request(workspace::v1::ListAuditEventsRequest {
                    organization_id,
                    page_size,
                    page_token,
                    filter,
                }))
                .await?
                .into_inner();
            (r.audit_events, r.next_page_token)
        }
        AuditService::Billing => {
            let r = api
                .billing()
                .list_audit_events(api.request(billing::v1::ListAuditEventsRequest {
                    organization_id,
                    page_size,
                    page_token,
                    filter,
                }))
                .await?
                .into_inner();
            (r.audit_events, r.next_page_token)
        }
    })
}

fn time_of(e: &AuditEvent) -> DateTime<Utc> {
    timestamp(e.create_time.as_ref())
}

/// Newest first, ties by id.
fn sort_newest_first(events: &mut [AuditEvent]) {
    events.sort_by(|a, b| time_of(b).cmp(&time_of(a)).then_with(|| b.id.cmp(&a.id)));
}

fn row(e: &Value) -> Vec<String> {
    let s = |key: &str, strip: &str| output::cell(e.get(key), strip);
    let actor = match (s("actorKind", "ACTOR_KIND_"), s("actorId", "")) {
        (kind, id) if id.is_empty() => kind.to_lowercase(),
        (kind, id) => format!("{}:{id}", kind.to_lowercase()),
    };
    let resource = match (s("resourceType", ""), s("resourceId", "")) {
        (t, id) if id.is_empty() => t,
        (t, id) => format!("{t}/{id}"),
    };
    vec![
        s("createTime", ""),
        s("service", ""),
        actor,
        s("action", ""),
        resource,
        s("outcome", "OUTCOME_").to_lowercase(),
    ]
}

async fn list(
    app: &mut App,
    args: AuditFilterArgs,
    until: Option<String>,
    page: PageArgs,
) -> Result<(), Failure> {
    let organization_id = app.org(&args.org)?;
    let filter = filter_of(&args, until.as_deref())?;
    let which = services(args.service);
    if which.len() > 1 && page.page_token.is_some() {
        return Err(Failure::usage(
            "a page token belongs to one service's log: pass --service with --page-token",
        ));
    }
    let api = app.api().await?;
    let mut events = Vec::new();
    let mut more = Vec::new();
    for service in which.iter().copied() {
        let (items, next) = paginate(&page, |page_token, page_size| {
            fetch(
                &api,
                service,
                organization_id.clone(),
                filter.clone(),
                page_size,
                page_token,
            )
        })
        .await?;
        events.extend(items);
        if !next.is_empty() {
            more.push(next);
        }
    }
    sort_newest_first(&mut events);
    if which.len() > 1 && !page.all {
        // Each log gave its newest page; the newest of them all are the merged page.
        let size = page.page_size.filter(|s| *s > 0).unwrap_or(20);
        events.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    }
    let values: Vec<Value> = events.iter().map(proto_json).collect();
    match app.format {
        output::Format::Json => output::print_json(&Value::Array(values)),
        output::Format::Table => {
            let mut table = Table::new(HEADERS);
            table.rows = values.iter().map(row).collect();
            out!("{}", table.render());
        }
    }
    match (which.len(), more.first()) {
        (1, Some(next)) => crate::app::note_next_page(next),
        (_, Some(_)) => {
            eprintln!("(more: pass --all, or --service with --page-size and --page-token)")
        }
        _ => {}
    }
    Ok(())
}

fn print_streamed(format: output::Format, event: &AuditEvent) {
    let value = proto_json(event);
    match format {
        output::Format::Json => outln!("{value}"),
        output::Format::Table => outln!("{}", row(&value).join("  ")),
    }
}

/// Every record of `which` at or after `from` (all pages).
async fn fetch_from(
    api: &Api,
    which: &[AuditService],
    organization_id: &str,
    base: &AuditEventFilter,
    from: DateTime<Utc>,
) -> Result<Vec<AuditEvent>, Failure> {
    let mut filter = base.clone();
    filter.start_time = Some(to_timestamp(from));
    let mut all = Vec::new();
    for service in which.iter().copied() {
        let mut token = String::new();
        loop {
            let (items, next) = fetch(
                api,
                service,
                organization_id.to_owned(),
                filter.clone(),
                1000,
                token,
            )
            .await?;
            all.extend(items);
            if next.is_empty() {
                break;
            }
            token = next;
        }
    }
    Ok(all)
}

async fn tail(
    app: &mut App,
    args: AuditFilterArgs,
    lines: usize,
    interval: Duration,
    max_records: Option<usize>,
) -> Result<(), Failure> {
    let organization_id = app.org(&args.org)?;
    let base = filter_of(&args, None)?;
    let which = services(args.service);
    let limit = max_records.unwrap_or(usize::MAX);
    let mut printed = 0usize;
    // Ids already printed, with their times (forgotten once older than the overlap).
    let mut seen: HashMap<String, DateTime<Utc>> = HashMap::new();
    let since = base.start_time.as_ref().map(|t| timestamp(Some(t)));
    // Follow from now: what is already there is the backlog.
    let mut cursor = Utc::now();
    let window = |cursor: DateTime<Utc>| {
        let from = cursor - TAIL_OVERLAP;
        since.map_or(from, |s| s.max(from))
    };
    if app.format == output::Format::Table {
        outln!("{}", HEADERS.join("  "));
    }
    let api = app.api().await?;

    // Records of the overlap window before now are not new: only the backlog below prints
    // (some of) them.
    for e in fetch_from(&api, &which, &organization_id, &base, window(cursor)).await? {
        seen.insert(e.id.clone(), time_of(&e));
    }

    // The newest `lines` records first, oldest of them first.
    if lines > 0 {
        let mut first = Vec::new();
        let size = i32::try_from(lines.min(1000)).unwrap_or(1000);
        for service in which.iter().copied() {
            let (items, _) = fetch(
                &api,
                service,
                organization_id.clone(),
                base.clone(),
                size,
                String::new(),
            )
            .await?;
            first.extend(items);
        }
        sort_newest_first(&mut first);
        first.truncate(lines);
        for event in first.iter().rev() {
            if printed >= limit {
                return Ok(());
            }
            print_streamed(app.format, event);
            printed += 1;
            cursor = cursor.max(time_of(event));
            seen.insert(event.id.clone(), time_of(event));
        }
    }

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while printed < limit {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
        // A fresh connection each round: a session's access token is refreshed as it expires.
        let api = app.api().await?;
        let mut new: Vec<AuditEvent> =
            fetch_from(&api, &which, &organization_id, &base, window(cursor))
                .await?
                .into_iter()
                .filter(|e| !seen.contains_key(&e.id))
                .collect();
        sort_newest_first(&mut new);
        for event in new.iter().rev() {
            if printed >= limit {
                break;
            }
            print_streamed(app.format, event);
            printed += 1;
            cursor = cursor.max(time_of(event));
            seen.insert(event.id.clone(), time_of(event));
        }
        let horizon = cursor - TAIL_OVERLAP - TAIL_OVERLAP;
        seen.retain(|_, t| *t >= horizon);
    }
    Ok(())
}
