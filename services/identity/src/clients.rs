//! Identity's outbound calls to the workspace service (rule ID-7: a workspace API key needs a
//! live workspace its creator may develop in). Every call carries this service's token, the
//! caller's request id and trace, and a 5 s deadline. Nothing else in identity builds a tonic
//! request; this file is meant to move under `shared/platform/src/clients/`.

use std::sync::Arc;
use std::time::Duration;

use orgplane_platform::auth::ServiceTokenSource;
use orgplane_platform::{ApiResult, Call};
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;
use orgplane_proto::workspace::v1::{
    CheckAccessRequest, GetWorkspaceRequest, Permission, WorkspaceState, check_access_request,
};
use tonic::transport::Channel;

use crate::domain::Error;

/// How long identity waits for the workspace service (CreateApiKey waits on it).
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

/// The workspace service, as identity calls it.
#[derive(Clone)]
pub struct WorkspaceClient {
    channel: Channel,
    service_tokens: Arc<dyn ServiceTokenSource>,
}

impl std::fmt::Debug for WorkspaceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceClient").finish_non_exhaustive()
    }
}

impl WorkspaceClient {
    /// Calls over `channel` with tokens from `service_tokens`.
    pub fn new(channel: Channel, service_tokens: Arc<dyn ServiceTokenSource>) -> Self {
        Self {
            channel,
            service_tokens,
        }
    }

    /// `message` for the workspace service on behalf of `call`.
    async fn request<T>(&self, message: T, call: &Call) -> ApiResult<tonic::Request<T>> {
        let token = self.service_tokens.token().await?;
        let mut request =
            orgplane_platform::auth::outgoing(message, Some(&token), Some(&call.context()));
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
                return Err(Error::WorkspaceServiceUnavailable.into());
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
                Error::WorkspaceServiceUnavailable
            })?;
        Ok(answer.into_inner().allowed)
    }
}
