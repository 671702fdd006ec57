//! The calls services make to the workspace service: the full workspace listing a consumer of
//! its stream re-syncs from after a compaction (list-then-watch).

use std::sync::Arc;
use std::time::Duration;

use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;
use orgplane_proto::workspace::v1::{ListWorkspacesRequest, Workspace};
use tonic::transport::Channel;

use crate::clients::{ServiceTokenSource, outgoing};
use crate::error::ApiResult;
use crate::events::handlers::{SnapshotPage, read_snapshot};

/// How long one snapshot page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every workspace of every organization, archived ones included, with the workspace revision
/// the listing is consistent at (read before its rows), page by page with this service's token.
/// UNAVAILABLE `SNAPSHOT_UNAVAILABLE` when a page fails.
pub async fn all_workspaces(
    channel: &Channel,
    tokens: &Arc<dyn ServiceTokenSource>,
) -> ApiResult<(i64, Vec<Workspace>)> {
    let client =
        WorkspaceServiceClient::new(channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
    read_snapshot(tokens.as_ref(), "ListWorkspaces", |page_token, token| {
        let mut client = client.clone();
        async move {
            let mut request = outgoing(
                ListWorkspacesRequest {
                    organization_id: "-".into(),
                    page_size: 1000,
                    page_token,
                    include_archived: true,
                    unit_id: String::new(),
                },
                Some(&token),
                None,
            );
            request.set_timeout(PAGE_TIMEOUT);
            let page = client.list_workspaces(request).await?.into_inner();
            Ok(SnapshotPage {
                items: page.workspaces,
                revision: page.revision,
                next_page_token: page.next_page_token,
            })
        }
    })
    .await
}
