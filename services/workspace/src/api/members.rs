//! Workspace member RPCs and the `WorkspaceMember` message.

use orgplane_platform::Call;
use orgplane_platform::audit::{AuditImage, proto_json};
use orgplane_platform::convert::timestamp_ms;
use orgplane_platform::error::ApiResult;
use orgplane_proto::workspace::v1::*;
use tonic::Request;

use super::WorkspaceApi;
use crate::app::members::{AddMember, ListMembers, MemberView, RemoveMember, UpdateMember};
use crate::app::{Attempt, Scope, resolve_user};

impl AuditImage for MemberView {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&member_proto(self))
    }
}

/// The wire form of a member (also its audit image).
pub fn member_proto(m: &MemberView) -> WorkspaceMember {
    WorkspaceMember {
        workspace_id: m.workspace_id.clone(),
        organization_id: m.organization_id.clone(),
        user_id: m.user_id.clone(),
        role: m.effective.role as i32,
        role_source: m.effective.source as i32,
        org_role: m.org_role as i32,
        assigned_role: m.direct.as_ref().map(|d| d.role).unwrap_or_default(),
        create_time: m.direct.as_ref().map(|d| timestamp_ms(d.create_time_ms)),
        update_time: m.direct.as_ref().map(|d| timestamp_ms(d.update_time_ms)),
        etag: m.etag(),
    }
}

/// The attempt on the direct role of `user_id` (`me` resolved) in `workspace_id`.
fn attempt(call: &Call, workspace_id: &str, user_id: &str, action: &'static str) -> Attempt {
    let user_id = resolve_user(&call.principal, user_id).unwrap_or(user_id);
    Attempt::new(
        Scope::Workspace(workspace_id.to_owned()),
        action,
        "workspace_member",
        &format!("{workspace_id}/{user_id}"),
    )
}

impl WorkspaceApi {
    pub(super) async fn add_member(
        &self,
        request: Request<AddWorkspaceMemberRequest>,
    ) -> ApiResult<AddWorkspaceMemberResponse> {
        let call = self.call(&request).await?;
        let req = request.into_inner();
        let attempt = attempt(
            &call,
            &req.workspace_id,
            &req.user_id,
            "workspace_member.add",
        );
        let cmd = AddMember {
            workspace_id: req.workspace_id,
            user_id: req.user_id,
            role: req.role,
            request_id: req.request_id,
        };
        let result = self.core().add_member(&call, cmd).await;
        let (view, r) = self.core().audited(&call, attempt, result).await?;
        Ok(AddWorkspaceMemberResponse {
            workspace_member: Some(member_proto(&view)),
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        })
    }

    pub(super) async fn get_member(
        &self,
        request: Request<GetWorkspaceMemberRequest>,
    ) -> ApiResult<GetWorkspaceMemberResponse> {
        let call = self.call(&request).await?;
        let req = request.into_inner();
        let view = self
            .core()
            .get_member(&call, &req.workspace_id, &req.user_id)
            .await?;
        Ok(GetWorkspaceMemberResponse {
            workspace_member: Some(member_proto(&view)),
        })
    }

    pub(super) async fn list_members(
        &self,
        request: Request<ListWorkspaceMembersRequest>,
    ) -> ApiResult<ListWorkspaceMembersResponse> {
        let call = self.call(&request).await?;
        let req = request.into_inner();
        let cmd = ListMembers {
            workspace_id: req.workspace_id,
            role: req.role,
            role_source: req.role_source,
            page_size: req.page_size,
            page_token: req.page_token,
        };
        let (views, next_page_token) = self.core().list_members(&call, cmd).await?;
        Ok(ListWorkspaceMembersResponse {
            workspace_members: views.iter().map(member_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn update_member(
        &self,
        request: Request<UpdateWorkspaceMemberRequest>,
    ) -> ApiResult<UpdateWorkspaceMemberResponse> {
        let call = self.call(&request).await?;
        let req = request.into_inner();
        let m = req.workspace_member.unwrap_or_default();
        let attempt = attempt(
            &call,
            &m.workspace_id,
            &m.user_id,
            "workspace_member.update",
        );
        let cmd = UpdateMember {
            workspace_id: m.workspace_id,
            user_id: m.user_id,
            paths: req.update_mask.map(|m| m.paths).unwrap_or_default(),
            role: m.role,
            etag: req.etag,
        };
        let result = self.core().update_member(&call, cmd).await;
        let (view, r) = self.core().audited(&call, attempt, result).await?;
        Ok(UpdateWorkspaceMemberResponse {
            workspace_member: Some(member_proto(&view)),
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        })
    }

    pub(super) async fn remove_member(
        &self,
        request: Request<RemoveWorkspaceMemberRequest>,
    ) -> ApiResult<RemoveWorkspaceMemberResponse> {
        let call = self.call(&request).await?;
        let req = request.into_inner();
        let attempt = attempt(
            &call,
            &req.workspace_id,
            &req.user_id,
            "workspace_member.remove",
        );
        let cmd = RemoveMember {
            workspace_id: req.workspace_id,
            user_id: req.user_id,
        };
        let result = self.core().remove_member(&call, cmd).await;
        let r = self.core().audited(&call, attempt, result).await?;
        Ok(RemoveWorkspaceMemberResponse {
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        })
    }
}
