//! The gRPC handlers: decode, call the core, encode. Every RPC honours the
//! `x-min-organization-revision` header (wait until the org replica applied it). Every mutation
//! passes its result through [`Core::audited`], so that a refusal is audited as OUTCOME_FAILURE
//! (ORG-10).

use std::time::{Duration, Instant};

use orgplane_platform::auth::Principal;
use orgplane_platform::context::RequestContext;
use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_proto::workspace::v1::workspace_service_server::WorkspaceService;
use orgplane_proto::workspace::v1::*;
use tonic::{Request, Response, Status};

use crate::access::Subject;
use crate::entity::workspace as ws_row;
use crate::service::{Attempt, Core, MemberView, Scope, SharedCore};

/// The metadata header naming an organization revision to wait for.
pub const MIN_ORG_REVISION_HEADER: &str = "x-min-organization-revision";

/// How long a call without a deadline may wait for a revision.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

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
}

fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn workspace_proto(w: ws_row::Model) -> Workspace {
    Workspace {
        id: w.id,
        organization_id: w.organization_id,
        name: w.name,
        unit_id: w.unit_id,
        state: w.state,
        create_time: Some(ts(w.create_time_ms)),
        update_time: Some(ts(w.update_time_ms)),
        archive_time: w.archive_time_ms.map(ts),
        etag: w.etag,
    }
}

fn member_proto(m: MemberView) -> WorkspaceMember {
    let etag = m.etag();
    WorkspaceMember {
        workspace_id: m.workspace_id,
        organization_id: m.organization_id,
        user_id: m.user_id,
        role: m.effective.role as i32,
        role_source: m.effective.source as i32,
        org_role: m.org_role as i32,
        assigned_role: m.direct.as_ref().map(|d| d.role).unwrap_or_default(),
        create_time: m.direct.as_ref().map(|d| ts(d.create_time_ms)),
        update_time: m.direct.as_ref().map(|d| ts(d.update_time_ms)),
        etag,
    }
}

/// When a wait must give up: a little before the call's `grpc-timeout` (so that the caller
/// receives UNAVAILABLE rather than its own deadline error), or after [`DEFAULT_WAIT`].
fn deadline<T>(request: &Request<T>) -> Instant {
    let timeout = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|t| t.saturating_sub((t / 10).min(Duration::from_millis(100))))
        .unwrap_or(DEFAULT_WAIT);
    Instant::now() + timeout
}

fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The attempt on the direct role of `user_id` (`me` resolved) in `workspace_id`.
fn member_attempt(
    p: &Principal,
    workspace_id: &str,
    user_id: &str,
    action: &'static str,
) -> Attempt {
    let user_id = Core::resolve_user(p, user_id).unwrap_or(user_id);
    Attempt::new(
        Scope::Workspace(workspace_id.to_owned()),
        action,
        "workspace_member",
        &format!("{workspace_id}/{user_id}"),
    )
}

/// The attempt on workspace `workspace_id`.
fn workspace_attempt(workspace_id: &str, action: &'static str) -> Attempt {
    Attempt::new(
        Scope::Workspace(workspace_id.to_owned()),
        action,
        "workspace",
        workspace_id,
    )
}

fn min_org_header<T>(request: &Request<T>) -> ApiResult<i64> {
    match request.metadata().get(MIN_ORG_REVISION_HEADER) {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                ApiError::invalid_argument(
                    MIN_ORG_REVISION_HEADER,
                    "must be a non-negative revision number",
                )
            }),
    }
}

impl WorkspaceApi {
    /// Authenticates (UNAUTHENTICATED before anything else) and honours the revision header.
    async fn prepare<T>(&self, request: &Request<T>) -> ApiResult<(Principal, RequestContext)> {
        let principal = Principal::of(request);
        principal.require_authenticated()?;
        let min = min_org_header(request)?;
        if min > 0 {
            self.core.wait_for(min, 0, deadline(request)).await?;
        }
        Ok((principal, RequestContext::of(request)))
    }
}

#[tonic::async_trait]
impl WorkspaceService for WorkspaceApi {
    async fn create_workspace(
        &self,
        request: Request<CreateWorkspaceRequest>,
    ) -> Result<Response<CreateWorkspaceResponse>, Status> {
        let (principal, ctx) = self.prepare(&request).await?;
        let req = request.into_inner();
        let w = req.workspace.unwrap_or_default();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "workspace.create",
            "workspace",
            "",
        );
        let result = self
            .core
            .create_workspace(
                &principal,
                &ctx,
                &req.organization_id,
                &w.name,
                &w.unit_id,
                &req.request_id,
            )
            .await;
        let (row, r) = self.core.audited(&principal, &ctx, attempt, result).await?;
        Ok(Response::new(CreateWorkspaceResponse {
            workspace: Some(workspace_proto(row)),
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        }))
    }

    async fn get_workspace(
        &self,
        request: Request<GetWorkspaceRequest>,
    ) -> Result<Response<GetWorkspaceResponse>, Status> {
        let (principal, _) = self.prepare(&request).await?;
        let req = request.into_inner();
        let row = self
            .core
            .get_workspace(&principal, &req.workspace_id)
            .await?;
        Ok(Response::new(GetWorkspaceResponse {
            workspace: Some(workspace_proto(row)),
        }))
    }

    async fn list_workspaces(
        &self,
        request: Request<ListWorkspacesRequest>,
    ) -> Result<Response<ListWorkspacesResponse>, Status> {
        let (principal, _) = self.prepare(&request).await?;
        let req = request.into_inner();
        let page = self
            .core
            .list_workspaces(
                &principal,
                &req.organization_id,
                req.include_archived,
                &req.unit_id,
                req.page_size,
                &req.page_token,
            )
            .await?;
        Ok(Response::new(ListWorkspacesResponse {
            workspaces: page.workspaces.into_iter().map(workspace_proto).collect(),
            next_page_token: page.next_page_token,
            revision: page.revision,
        }))
    }

    async fn update_workspace(
        &self,
        request: Request<UpdateWorkspaceRequest>,
    ) -> Result<Response<UpdateWorkspaceResponse>, Status> {
        let (principal, ctx) = self.prepare(&request).await?;
        let req = request.into_inner();
        let w = req.workspace.unwrap_or_default();
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let result = self
            .core
            .update_workspace(
                &principal, &ctx, &w.id, &paths, &w.name, &w.unit_id, &req.etag,
            )
            .await;
        let attempt = workspace_attempt(&w.id, "workspace.update");
        let (row, r) = self.core.audited(&principal, &ctx, attempt, result).await?;
        Ok(Response::new(UpdateWorkspaceResponse {
            workspace: Some(workspace_proto(row)),
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        }))
    }

    async fn archive_workspace(
        &self,
        request: Request<ArchiveWorkspaceRequest>,
    ) -> Result<Response<ArchiveWorkspaceResponse>, Status> {
        let (principal, ctx) = self.prepare(&request).await?;
        let req = request.into_inner();
        let result = self
            .core
            .archive_workspace(&principal, &ctx, &req.workspace_id, &req.etag)
            .await;
        let attempt = workspace_attempt(&req.workspace_id, "workspace.archive");
        let (row, r) = self.core.audited(&principal, &ctx, attempt, result).await?;
        Ok(Response::new(ArchiveWorkspaceResponse {
            workspace: Some(workspace_proto(row)),
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        }))
    }

    async fn add_workspace_member(
        &self,
        request: Request<AddWorkspaceMemberRequest>,
    ) -> Result<Response<AddWorkspaceMemberResponse>, Status> {
        let (principal, ctx) = self.prepare(&request).await?;
        let req = request.into_inner();
        let result = self
            .core
            .add_member(
                &principal,
                &ctx,
                &req.workspace_id,
                &req.user_id,
                req.role,
                &req.request_id,
            )
            .await;
        let attempt = member_attempt(
            &principal,
            &req.workspace_id,
            &req.user_id,
            "workspace_member.add",
        );
        let (view, r) = self.core.audited(&principal, &ctx, attempt, result).await?;
        Ok(Response::new(AddWorkspaceMemberResponse {
            workspace_member: Some(member_proto(view)),
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        }))
    }

    async fn get_workspace_member(
        &self,
        request: Request<GetWorkspaceMemberRequest>,
    ) -> Result<Response<GetWorkspaceMemberResponse>, Status> {
        let (principal, _) = self.prepare(&request).await?;
        let req = request.into_inner();
        let view = self
            .core
            .get_member(&principal, &req.workspace_id, &req.user_id)
            .await?;
        Ok(Response::new(GetWorkspaceMemberResponse {
            workspace_member: Some(member_proto(view)),
        }))
    }

    async fn list_workspace_members(
        &self,
        request: Request<ListWorkspaceMembersRequest>,
    ) -> Result<Response<ListWorkspaceMembersResponse>, Status> {
        let (principal, _) = self.prepare(&request).await?;
        let req = request.into_inner();
        let (views, next_page_token) = self
            .core
            .list_members(
                &principal,
                &req.workspace_id,
                req.role,
                req.role_source,
                req.page_size,
                &req.page_token,
            )
            .await?;
        Ok(Response::new(ListWorkspaceMembersResponse {
            workspace_members: views.into_iter().map(member_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_workspace_member(
        &self,
        request: Request<UpdateWorkspaceMemberRequest>,
    ) -> Result<Response<UpdateWorkspaceMemberResponse>, Status> {
        let (principal, ctx) = self.prepare(&request).await?;
        let req = request.into_inner();
        let m = req.workspace_member.unwrap_or_default();
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let result = self
            .core
            .update_member(
                &principal,
                &ctx,
                &m.workspace_id,
                &m.user_id,
                &paths,
                m.role,
                &req.etag,
            )
            .await;
        let attempt = member_attempt(
            &principal,
            &m.workspace_id,
            &m.user_id,
            "workspace_member.update",
        );
        let (view, r) = self.core.audited(&principal, &ctx, attempt, result).await?;
        Ok(Response::new(UpdateWorkspaceMemberResponse {
            workspace_member: Some(member_proto(view)),
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        }))
    }

    async fn remove_workspace_member(
        &self,
        request: Request<RemoveWorkspaceMemberRequest>,
    ) -> Result<Response<RemoveWorkspaceMemberResponse>, Status> {
        let (principal, ctx) = self.prepare(&request).await?;
        let req = request.into_inner();
        let result = self
            .core
            .remove_member(&principal, &ctx, &req.workspace_id, &req.user_id)
            .await;
        let attempt = member_attempt(
            &principal,
            &req.workspace_id,
            &req.user_id,
            "workspace_member.remove",
        );
        let r = self.core.audited(&principal, &ctx, attempt, result).await?;
        Ok(Response::new(RemoveWorkspaceMemberResponse {
            revision: r.revision,
            workspace_revision: r.workspace_revision,
        }))
    }

    async fn check_access(
        &self,
        request: Request<CheckAccessRequest>,
    ) -> Result<Response<CheckAccessResponse>, Status> {
        // The hot path: share the auth layer's principal rather than copy it.
        let principal = Principal::shared(&request);
        principal.require_authenticated()?;
        let header = min_org_header(&request)?;
        let deadline = deadline(&request);
        let req = request.into_inner();
        let subject = match req.subject {
            Some(check_access_request::Subject::UserId(u)) if !u.is_empty() => Subject::User(u),
            Some(check_access_request::Subject::ApiKeyId(k)) if !k.is_empty() => Subject::ApiKey(k),
            _ => {
                return Err(
                    ApiError::invalid_argument("subject", "set user_id or api_key_id").into(),
                );
            }
        };
        // Who may ask: services about anyone, a user or API key about itself.
        match (&*principal, &subject) {
            (Principal::Service(_), _) => {}
            (Principal::User(u), Subject::User(s)) if &u.user_id == s => {}
            (Principal::ApiKey(k), Subject::ApiKey(s)) if &k.key_id == s => {}
            _ => {
                return Err(ApiError::permission_denied(
                    "CHECK_OWN_ACCESS_ONLY",
                    "users and API keys may only check their own access",
                )
                .into());
            }
        }
        if req.organization_id.is_empty() {
            return Err(ApiError::invalid_argument("organization_id", "required").into());
        }
        let permission = Permission::try_from(req.permission).unwrap_or(Permission::Unspecified);
        if permission == Permission::Unspecified {
            return Err(ApiError::invalid_argument("permission", "required").into());
        }
        for (field, value) in [
            ("min_organization_revision", req.min_organization_revision),
            ("min_workspace_revision", req.min_workspace_revision),
        ] {
            if value < 0 {
                return Err(
                    ApiError::invalid_argument(field, "revisions must not be negative").into(),
                );
            }
        }
        let min_org = req.min_organization_revision.max(header);
        self.core
            .wait_for(min_org, req.min_workspace_revision, deadline)
            .await?;
        let a = self.core.check_access(
            &req.organization_id,
            &req.workspace_id,
            &subject,
            permission,
        );
        Ok(Response::new(CheckAccessResponse {
            allowed: a.allowed,
            role: a.role as i32,
            role_source: a.source as i32,
            org_role: a.org_role as i32,
            denial_reason: a.denial as i32,
            organization_revision: a.organization_revision,
            workspace_revision: a.workspace_revision,
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let (principal, _) = self.prepare(&request).await?;
        let req = request.into_inner();
        let (audit_events, next_page_token) = self
            .core
            .list_audit_events(
                &principal,
                &req.organization_id,
                &req.filter.unwrap_or_default(),
                req.page_size,
                &req.page_token,
            )
            .await?;
        Ok(Response::new(ListAuditEventsResponse {
            audit_events,
            next_page_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout("12Q"), None);
    }
}
