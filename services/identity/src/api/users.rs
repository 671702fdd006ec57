//! Users: GetUser, BatchGetUsers, UpdateUser, DeleteUser, and the member resets of rule ID-8
//! (AdminResetPassword, AdminResetMfa).

use orgplane_platform::ApiError;
use orgplane_proto::identity::v1::*;
use tonic::{Request, Response};

use super::convert::paths;
use super::{IdentityApi, R};
use crate::app::admin::MemberReset;
use crate::app::users::UpdateUser;

pub(super) async fn get_user(
    api: &IdentityApi,
    req: Request<GetUserRequest>,
) -> R<GetUserResponse> {
    let call = api.call(&req).await?;
    let user = api.app.get_user(&call, &req.get_ref().user_id).await?;
    Ok(Response::new(GetUserResponse {
        user: Some(User::from(&user)),
    }))
}

pub(super) async fn batch_get_users(
    api: &IdentityApi,
    req: Request<BatchGetUsersRequest>,
) -> R<BatchGetUsersResponse> {
    let call = api.call(&req).await?;
    let (users, missing) = api
        .app
        .batch_get_users(&call, &req.get_ref().user_ids)
        .await?;
    Ok(Response::new(BatchGetUsersResponse {
        users: users.iter().map(User::from).collect(),
        missing_user_ids: missing,
    }))
}

pub(super) async fn update_user(
    api: &IdentityApi,
    req: Request<UpdateUserRequest>,
) -> R<UpdateUserResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let patch = r
        .user
        .ok_or_else(|| ApiError::invalid_argument("user", "required"))?;
    let user = api
        .app
        .update_user(
            &call,
            UpdateUser {
                user_id: patch.id,
                display_name: patch.display_name,
                account_type: patch.account_type,
                email: patch.email,
                paths: paths(r.update_mask),
                etag: r.etag,
            },
        )
        .await?;
    Ok(Response::new(UpdateUserResponse {
        user: Some(User::from(&user)),
    }))
}

pub(super) async fn delete_user(
    api: &IdentityApi,
    req: Request<DeleteUserRequest>,
) -> R<DeleteUserResponse> {
    let call = api.call(&req).await?;
    let revision = api.app.delete_user(&call, &req.get_ref().user_id).await?;
    Ok(Response::new(DeleteUserResponse { revision }))
}

pub(super) async fn admin_reset_password(
    api: &IdentityApi,
    req: Request<AdminResetPasswordRequest>,
) -> R<AdminResetPasswordResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let ended = api
        .app
        .admin_reset_password(
            &call,
            MemberReset {
                organization_id: r.organization_id,
                user_id: r.user_id,
            },
        )
        .await?;
    Ok(Response::new(AdminResetPasswordResponse {
        ended_session_count: ended,
    }))
}

pub(super) async fn admin_reset_mfa(
    api: &IdentityApi,
    req: Request<AdminResetMfaRequest>,
) -> R<AdminResetMfaResponse> {
    let call = api.call(&req).await?;
    let r = req.into_inner();
    let (removed, ended) = api
        .app
        .admin_reset_mfa(
            &call,
            MemberReset {
                organization_id: r.organization_id,
                user_id: r.user_id,
            },
        )
        .await?;
    Ok(Response::new(AdminResetMfaResponse {
        removed_factor_count: removed,
        ended_session_count: ended,
    }))
}
