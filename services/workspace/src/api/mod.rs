//! The gRPC adapter: each handler builds the [`Call`] first (UNAUTHENTICATED before anything
//! else), decodes the request into a command, calls the use case in [`crate::app`] and encodes
//! its outcome. Every RPC honours the `x-min-organization-revision` header through
//! [`Call::wait_for`]; every mutation passes its result through [`Core::audited`], so that a
//! refusal is audited as OUTCOME_FAILURE (ORG-10). Split by resource: [`workspaces`],
//! [`members`], [`access`] (CheckAccess) and [`audit`]; [`identity`] is the one call this
//! service makes (the API-key snapshot of a re-sync).

pub mod access;
pub mod audit;
pub mod identity;
pub mod members;
pub mod workspaces;

use orgplane_platform::Call;
use orgplane_platform::auth::Principal;
use orgplane_platform::error::ApiResult;
use orgplane_proto::workspace::v1::workspace_service_server::WorkspaceService;
use orgplane_proto::workspace::v1::*;
use tonic::{Request, Response, Status};

use crate::app::{Core, SharedCore};

/// The gRPC handlers.
#[derive(Debug, Clone)]
pub struct WorkspaceApi {
    core: SharedCore,
}

impl WorkspaceApi {
    /// Handlers over `core`.
    pub fn new(core: SharedCore) -> Self {
        Self { core }
    }

    fn core(&self) -> &Core {
        &self.core
    }

    /// The call of `request`, authenticated, with the revision header honoured.
    async fn call<T>(&self, request: &Request<T>) -> ApiResult<Call> {
        let call = authenticated(request)?;
        call.wait_for(&self.core.org_events, 0).await?;
        Ok(call)
    }
}

/// The call of `request`: UNAUTHENTICATED first (even before a malformed revision header).
fn authenticated<T>(request: &Request<T>) -> ApiResult<Call> {
    match Call::of(request) {
        Ok(call) => {
            call.principal.require_authenticated()?;
            Ok(call)
        }
        Err(e) => {
            Principal::shared(request).require_authenticated()?;
            Err(e)
        }
    }
}

#[tonic::async_trait]
impl WorkspaceService for WorkspaceApi {
    async fn create_workspace(
        &self,
        request: Request<CreateWorkspaceRequest>,
    ) -> Result<Response<CreateWorkspaceResponse>, Status> {
        Ok(Response::new(self.create(request).await?))
    }

    async fn get_workspace(
        &self,
        request: Request<GetWorkspaceRequest>,
    ) -> Result<Response<GetWorkspaceResponse>, Status> {
        Ok(Response::new(self.get(request).await?))
    }

    async fn list_workspaces(
        &self,
        request: Request<ListWorkspacesRequest>,
    ) -> Result<Response<ListWorkspacesResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn update_workspace(
        &self,
        request: Request<UpdateWorkspaceRequest>,
    ) -> Result<Response<UpdateWorkspaceResponse>, Status> {
        Ok(Response::new(self.update(request).await?))
    }

    async fn archive_workspace(
        &self,
        request: Request<ArchiveWorkspaceRequest>,
    ) -> Result<Response<ArchiveWorkspaceResponse>, Status> {
        Ok(Response::new(self.archive(request).await?))
    }

    async fn add_workspace_member(
        &self,
        request: Request<AddWorkspaceMemberRequest>,
    ) -> Result<Response<AddWorkspaceMemberResponse>, Status> {
        Ok(Response::new(self.add_member(request).await?))
    }

    async fn get_workspace_member(
        &self,
        request: Request<GetWorkspaceMemberRequest>,
    ) -> Result<Response<GetWorkspaceMemberResponse>, Status> {
        Ok(Response::new(self.get_member(request).await?))
    }

    async fn list_workspace_members(
        &self,
        request: Request<ListWorkspaceMembersRequest>,
    ) -> Result<Response<ListWorkspaceMembersResponse>, Status> {
        Ok(Response::new(self.list_members(request).await?))
    }

    async fn update_workspace_member(
        &self,
        request: Request<UpdateWorkspaceMemberRequest>,
    ) -> Result<Response<UpdateWorkspaceMemberResponse>, Status> {
        Ok(Response::new(self.update_member(request).await?))
    }

    async fn remove_workspace_member(
        &self,
        request: Request<RemoveWorkspaceMemberRequest>,
    ) -> Result<Response<RemoveWorkspaceMemberResponse>, Status> {
        Ok(Response::new(self.remove_member(request).await?))
    }

    async fn check_access(
        &self,
        request: Request<CheckAccessRequest>,
    ) -> Result<Response<CheckAccessResponse>, Status> {
        Ok(Response::new(self.check(request).await?))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        Ok(Response::new(self.audit_events(request).await?))
    }
}
