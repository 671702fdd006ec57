//! The calls services make to the workspace service: the full workspace listing a consumer of
//! its stream re-syncs from after a compaction (list-then-watch), and the lookups of one
//! workspace and one access ([`WorkspaceClient`]). Every call carries the caller's service
//! token, request id and trace, and a deadline.

use std::sync::Arc;
use std::time::Duration;

use super::ServiceChannel;
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;
use orgplane_proto::workspace::v1::{
    CheckAccessRequest, GetWorkspaceRequest, ListWorkspacesRequest, Permission, Workspace,
    WorkspaceState, check_access_request,
};

use crate::call::Call;
use crate::clients::{ServiceTokenSource, outgoing};
use crate::error::Reason;
use crate::error::{ApiError, ApiResult};
use crate::events::handlers::{SnapshotPage, read_snapshot};

/// How long one snapshot page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every workspace of every organization, archived ones included, with the workspace revision
/// the listing is consistent at (read before its rows), page by page with this service's token.
/// UNAVAILABLE `SNAPSHOT_UNAVAILABLE` when a page fails.
pub async fn all_workspaces(
    channel: &ServiceChannel,
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
                token.as_deref(),
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

/// How long a caller waits for the workspace service on a lookup.
const WORKSPACE_DEADLINE: Duration = Duration::from_secs(5);

/// What the workspace service says about a workspace id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceLookup {
    /// The workspace exists.
    Found {
        /// Its organization.
        organization_id: String,
        /// Whether it is archived.
        archived: bool,
    },
    /// No such workspace (or not visible to identity).
    NotFound,
    /// The id is malformed; the workspace service's explanation.
    Malformed(String),
}

/// Lookups in the workspace service on behalf of a call (identity checks a workspace API
/// key's workspace with them, rule ID-7).
#[derive(Clone)]
pub struct WorkspaceClient {
    channel: ServiceChannel,
    service_tokens: Arc<dyn ServiceTokenSource>,
}

impl std::fmt::Debug for WorkspaceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceClient").finish_non_exhaustive()
    }
}

impl WorkspaceClient {
    /// Calls over `channel` with tokens from `service_tokens`.
    pub fn new(
        channel: impl Into<ServiceChannel>,
        service_tokens: Arc<dyn ServiceTokenSource>,
    ) -> Self {
        let channel: ServiceChannel = channel.into();
        Self {
            channel,
            service_tokens,
        }
    }

    /// `message` for the workspace service on behalf of `call`.
    async fn request<T>(&self, message: T, call: &Call) -> ApiResult<tonic::Request<T>> {
        let token = self.service_tokens.token().await?;
        let mut request = outgoing(message, token.as_deref(), Some(&call.context()));
        request.set_timeout(WORKSPACE_DEADLINE);
        Ok(request)
    }

    /// GetWorkspace: UNAVAILABLE `WORKSPACE_SERVICE_UNAVAILABLE` when there is no answer, never
    /// a silent pass.
    pub async fn workspace(&self, call: &Call, workspace_id: &str) -> ApiResult<WorkspaceLookup> {
        let request = self
            .request(
                GetWorkspaceRequest {
                    workspace_id: workspace_id.to_owned(),
                },
                call,
            )
            .await?;
        let answer = WorkspaceServiceClient::new(self.channel.clone())
            .get_workspace(request)
            .await;
        Ok(match answer {
            Ok(response) => match response.into_inner().workspace {
                Some(w) => WorkspaceLookup::Found {
                    organization_id: w.organization_id,
                    archived: w.state == WorkspaceState::Archived as i32,
                },
                None => WorkspaceLookup::NotFound,
            },
            Err(s) if s.code() == tonic::Code::NotFound => WorkspaceLookup::NotFound,
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                WorkspaceLookup::Malformed(s.message().to_owned())
            }
            Err(s) => {
                tracing::warn!(workspace_id, detail = s.message(), "GetWorkspace failed");
                return Err(workspace_unavailable());
            }
        })
    }

    /// CheckAccess: whether `user_id` may develop in `workspace_id` of `organization_id`.
    pub async fn may_develop(
        &self,
        call: &Call,
        organization_id: &str,
        workspace_id: &str,
        user_id: &str,
    ) -> ApiResult<bool> {
        let request = self
            .request(
                CheckAccessRequest {
                    organization_id: organization_id.to_owned(),
                    workspace_id: workspace_id.to_owned(),
                    subject: Some(check_access_request::Subject::UserId(user_id.to_owned())),
                    permission: Permission::Develop as i32,
                    ..Default::default()
                },
                call,
            )
            .await?;
        let answer = WorkspaceServiceClient::new(self.channel.clone())
            .check_access(request)
            .await
            .map_err(|s| {
                tracing::warn!(workspace_id, detail = s.message(), "CheckAccess failed");
                workspace_unavailable()
            })?;
        Ok(answer.into_inner().allowed)
    }
}

/// UNAVAILABLE `WORKSPACE_SERVICE_UNAVAILABLE`: no answer from the workspace service, never a
/// silent pass.
fn workspace_unavailable() -> ApiError {
    ApiError::unavailable(
        Reason::WorkspaceServiceUnavailable,
        "cannot check the workspace now; retry",
    )
}
