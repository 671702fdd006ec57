//! The client of the workspace service's `ListWorkspaces`, for the re-sync of the unit
//! placements after a compaction of the workspace stream (rule ORG-9).

use std::time::Duration;

use orgplane_platform::ApiResult;
use orgplane_platform::runtime::Runtime;
use orgplane_proto::workspace::v1::ListWorkspacesRequest;
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;

use crate::domain::Error;

/// A workspace placed in a unit: `(workspace id, organization id, unit id)`.
pub type Placement = (String, String, String);

/// Every workspace (archived ones too: they still hold their unit) that belongs to a unit, with
/// the revision of the listing (read by the workspace service before its rows), page by page
/// with this service's token.
pub async fn list_placements(runtime: &Runtime) -> ApiResult<(i64, Vec<Placement>)> {
    let mut client = WorkspaceServiceClient::new(runtime.endpoints.workspace.clone())
        .max_decoding_message_size(64 * 1024 * 1024);
    let mut revision = None;
    let mut placed = Vec::new();
    let mut page_token = String::new();
    loop {
        let token = runtime.service_tokens.token().await?;
        let mut request = orgplane_platform::auth::outgoing(
            ListWorkspacesRequest {
                organization_id: "-".into(),
                page_size: 1000,
                page_token: page_token.clone(),
                include_archived: true,
                unit_id: String::new(),
            },
            Some(&token),
            None,
        );
        request.set_timeout(Duration::from_secs(30));
        let page = client
            .list_workspaces(request)
            .await
            .map_err(|s| Error::SnapshotUnavailable {
                what: format!("ListWorkspaces failed: {}", s.message()),
            })?
            .into_inner();
        revision.get_or_insert(page.revision);
        placed.extend(
            page.workspaces
                .into_iter()
                .filter(|w| !w.unit_id.is_empty())
                .map(|w| (w.id, w.organization_id, w.unit_id)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok((revision.unwrap_or(0), placed))
}
