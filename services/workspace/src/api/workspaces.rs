//! Workspace RPCs and the `Workspace` message.

use orgplane_platform::audit::{AuditImage, proto_json};
use orgplane_platform::convert::{etag, timestamp_ms};
use orgplane_platform::error::ApiResult;
use orgplane_proto::workspace::v1::*;
use tonic::Request;

use super::WorkspaceApi;
use crate::app::workspaces::{ArchiveWorkspace, CreateWorkspace, ListWorkspaces, UpdateWorkspace};
use crate::app::{Attempt, Scope};
use crate::store::entity::workspace as row;

impl AuditImage for row::Model {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&workspace_proto(self))
    }
}

/// The wire form of a workspace row (also its audit image).
pub fn workspace_proto(w: &row::Model) -> Workspace {
    Workspace {
        id: w.id.clone(),
        organization_id: w.organization_id.clone(),
        name: w.name.clone(),
        unit_id: w.unit_id.clone(),
        state: w.state,
        create_time: Some(timestamp_ms(w.create_time_ms)),
        update_time: Some(timestamp_ms(w.update_time_ms)),
        archive_time: w.archive_time_ms.map(timestamp_ms),
        etag: etag(w.version),
    }
}

/// The attempt on workspace `workspace_id`.
fn attempt(workspace_id: &str, action: &'static str) -> Attempt {
    Attempt::new(
        Scope::Workspace(workspace_id.to_owned()),
        action,
        "workspace",
        workspace_id,
    )
}

impl WorkspaceApi {
    pub(super) async fn create(
        &self,
        request: Request<CreateWorkspaceRequest>,
    ) -> ApiResult<CreateWorkspaceResponse> {
        let call = self.call(&request).await?;
        let req = request.into_inner();
        let w = req.workspace.unwrap_or_default();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "workspace.create",
            "workspace",
            "",
        );
        let cmd = CreateWorkspace {
            organization_id: req.organization_id,
            name: w.name,
            unit_id: w.unit_id,
            request_id: req.request_id,
        };
        let result = self.core().create_workspace(&call, cmd).await;
        let (row, r) = self.core().audited(&call, attempt, result).await?;
        Ok(CreateWorkspaceResponse {
            workspace: Some(workspace_proto(&row)),
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        })
    }

    pub(super) async fn get(
        &self,
        request: Request<GetWorkspaceRequest>,
    ) -> ApiResult<GetWorkspaceResponse> {
        let call = self.call(&request).await?;
        let req = request.into_inner();
        let row = self.core().get_workspace(&call, &req.workspace_id).await?;
        Ok(GetWorkspaceResponse {
            workspace: Some(workspace_proto(&row)),
        })
    }

    pub(super) async fn list(
        &self,
        request: Request<ListWorkspacesRequest>,
    ) -> ApiResult<ListWorkspacesResponse> {
        let call = self.call(&request).await?;
        let req = request.into_inner();
        let cmd = ListWorkspaces {
            organization_id: req.organization_id,
            include_archived: req.include_archived,
            unit_id: req.unit_id,
            page_size: req.page_size,
            page_token: req.page_token,
        };
        let page = self.core().list_workspaces(&call, cmd).await?;
        Ok(ListWorkspacesResponse {
            workspaces: page.workspaces.iter().map(workspace_proto).collect(),
            next_page_token: page.next_page_token,
            revision: page.revision,
        })
    }

    pub(super) async fn update(
        &self,
        request: Request<UpdateWorkspaceRequest>,
    ) -> ApiResult<UpdateWorkspaceResponse> {
        let call = self.call(&request).await?;
        let req = request.into_inner();
        let w = req.workspace.unwrap_or_default();
        let attempt = attempt(&w.id, "workspace.update");
        let cmd = UpdateWorkspace {
            workspace_id: w.id,
            paths: req.update_mask.map(|m| m.paths).unwrap_or_default(),
            name: w.name,
            unit_id: w.unit_id,
            etag: req.etag,
        };
        let result = self.core().update_workspace(&call, cmd).await;
        let (row, r) = self.core().audited(&call, attempt, result).await?;
        Ok(UpdateWorkspaceResponse {
            workspace: Some(workspace_proto(&row)),
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        })
    }

    pub(super) async fn archive(
        &self,
        request: Request<ArchiveWorkspaceRequest>,
    ) -> ApiResult<ArchiveWorkspaceResponse> {
        let call = self.call(&request).await?;
        let req = request.into_inner();
        let attempt = attempt(&req.workspace_id, "workspace.archive");
        let cmd = ArchiveWorkspace {
            workspace_id: req.workspace_id,
            etag: req.etag,
        };
        let result = self.core().archive_workspace(&call, cmd).await;
        let (row, r) = self.core().audited(&call, attempt, result).await?;
        Ok(ArchiveWorkspaceResponse {
            workspace: Some(workspace_proto(&row)),
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        })
    }
}
