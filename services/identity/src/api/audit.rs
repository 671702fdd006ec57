//! ListAuditEvents (rule ORG-10): identity's part of an organization's audit log.

use orgplane_platform::ApiError;
use orgplane_proto::identity::v1::*;
use tonic::{Request, Response};

use super::{IdentityApi, R};

pub(super) async fn list_audit_events(
    api: &IdentityApi,
    req: Request<ListAuditEventsRequest>,
) -> R<ListAuditEventsResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let filter = r.filter.unwrap_or_default();
    if r.organization_id.is_empty() {
        return Err(ApiError::invalid_argument("organization_id", "required").into());
    }
    if let (Some(s), Some(e)) = (&filter.start_time, &filter.end_time)
        && (e.seconds, e.nanos) <= (s.seconds, s.nanos)
    {
        return Err(ApiError::invalid_argument(
            "filter.end_time",
            "must be after filter.start_time",
        )
        .into());
    }
    api.app.authorize_audit_read(&call, &r.organization_id)?;
    let (audit_events, next_page_token) = api
        .app
        .audit()
        .list(
            api.app.db(),
            api.app.page_tokens(),
            &r.organization_id,
            &filter,
            r.page_size,
            &r.page_token,
        )
        .await?;
    Ok(Response::new(ListAuditEventsResponse {
        audit_events,
        next_page_token,
    }))
}
