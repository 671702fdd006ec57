//! CheckAccess (WS-10), the hot path: the call shares the auth layer's principal (nothing
//! copied), and the waits are the app's (the header's organization revision included).

use orgplane_platform::error::{ApiError, ApiResult};
use orgplane_proto::workspace::v1::*;
use tonic::Request;

use super::{WorkspaceApi, authenticated};
use crate::app::access::{CheckAccess, Subject};

impl WorkspaceApi {
    pub(super) async fn check(
        &self,
        request: Request<CheckAccessRequest>,
    ) -> ApiResult<CheckAccessResponse> {
        let call = authenticated(&request)?;
        let req = request.into_inner();
        let subject = match req.subject {
            Some(check_access_request::Subject::UserId(u)) if !u.is_empty() => Subject::User(u),
            Some(check_access_request::Subject::ApiKeyId(k)) if !k.is_empty() => Subject::ApiKey(k),
            _ => {
                return Err(ApiError::invalid_argument(
                    "subject",
                    "set user_id or api_key_id",
                ));
            }
        };
        let cmd = CheckAccess {
            organization_id: req.organization_id,
            workspace_id: req.workspace_id,
            subject,
            permission: Permission::try_from(req.permission).unwrap_or(Permission::Unspecified),
            min_organization_revision: req.min_organization_revision,
            min_workspace_revision: req.min_workspace_revision,
        };
        let a = self.core().check_access(&call, cmd).await?;
        Ok(CheckAccessResponse {
            allowed: a.allowed,
            role: a.role as i32,
            role_source: a.source as i32,
            org_role: a.org_role as i32,
            denial_reason: a.denial as i32,
            organization_revision: a.organization_revision,
            workspace_revision: a.workspace_revision,
        })
    }
}
