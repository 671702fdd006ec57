//! ListAuditEvents (ORG-10): the app decides who may read; the platform lists.

use orgplane_platform::error::ApiResult;
use orgplane_proto::workspace::v1::*;
use tonic::Request;

use super::WorkspaceApi;

impl WorkspaceApi {
    pub(super) async fn audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> ApiResult<ListAuditEventsResponse> {
        let call = self.call(&request).await?;
        let req = request.into_inner();
        let core = self.core();
        core.may_read_audit_log(&call, &req.organization_id)?;
        let (audit_events, next_page_token) = core
            .audit
            .list(
                &core.db,
                &core.runtime.page_tokens,
                &req.organization_id,
                &req.filter.unwrap_or_default(),
                req.page_size,
                &req.page_token,
            )
            .await?;
        Ok(ListAuditEventsResponse {
            audit_events,
            next_page_token,
        })
    }
}
