//! RecordUsage (rule BILL-3): a service's batch, whose per-record refusals are in its response.

use orgplane_platform::Call;
use orgplane_platform::auth::Capability;
use orgplane_platform::convert::millis_of;
use orgplane_proto::billing::v1::*;
use tonic::{Request, Response, Status};

use crate::app::Billing;
use crate::domain::usage::{NewUsage, RecordOutcome, UsageTime};

fn decode(r: UsageRecord) -> NewUsage {
    let usage_time = match r.usage_time.as_ref() {
        None => UsageTime::Missing,
        Some(t) => millis_of(t).map_or(UsageTime::Invalid, UsageTime::At),
    };
    NewUsage {
        organization_id: r.organization_id,
        workspace_id: r.workspace_id,
        api_key_id: r.api_key_id,
        user_id: r.user_id,
        model: r.model,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        usage_time,
        idempotency_key: r.idempotency_key,
        account_id: r.account_id,
    }
}

fn encode(idempotency_key: String, outcome: RecordOutcome) -> UsageRecordResult {
    match outcome {
        RecordOutcome::Accepted => UsageRecordResult {
            idempotency_key,
            status: UsageRecordStatus::Accepted as i32,
            ..Default::default()
        },
        RecordOutcome::Duplicate => UsageRecordResult {
            idempotency_key,
            status: UsageRecordStatus::Duplicate as i32,
            ..Default::default()
        },
        RecordOutcome::Refused(why) => UsageRecordResult {
            idempotency_key,
            status: UsageRecordStatus::Refused as i32,
            reason: why.reason().as_str_name().to_owned(),
            message: why.to_string(),
            retryable: why.retryable(),
        },
    }
}

/// RecordUsage, for service accounts with `record-usage`.
pub async fn record_usage(
    app: &Billing,
    request: Request<RecordUsageRequest>,
) -> Result<Response<RecordUsageResponse>, Status> {
    let call = Call::of(&request)?;
    call.principal.require_capability(Capability::RecordUsage)?;
    // A producer that just created an organization may ask for it to be known here first.
    call.wait_for(&app.org_events, 0).await?;
    let records: Vec<NewUsage> = request
        .into_inner()
        .records
        .into_iter()
        .map(decode)
        .collect();
    let outcomes = app.record_usage(&call, &records).await?;
    let results = records
        .into_iter()
        .zip(outcomes)
        .map(|(r, outcome)| encode(r.idempotency_key, outcome))
        .collect();
    Ok(Response::new(RecordUsageResponse { results }))
}
