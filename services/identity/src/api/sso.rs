//! SSO connections and SSO sign-in (rule ID-13). PLACEHOLDER: replaced by the SSO work.

use orgplane_proto::identity::v1::*;
use tonic::{Request, Status};

use super::R;

pub(super) async fn create_sso_connection<T>(
    _api: &T,
    _req: Request<CreateSsoConnectionRequest>,
) -> R<CreateSsoConnectionResponse> {
    Err(Status::unimplemented("CreateSsoConnection is being built"))
}

pub(super) async fn get_sso_connection<T>(
    _api: &T,
    _req: Request<GetSsoConnectionRequest>,
) -> R<GetSsoConnectionResponse> {
    Err(Status::unimplemented("GetSsoConnection is being built"))
}

pub(super) async fn list_sso_connections<T>(
    _api: &T,
    _req: Request<ListSsoConnectionsRequest>,
) -> R<ListSsoConnectionsResponse> {
    Err(Status::unimplemented("ListSsoConnections is being built"))
}

pub(super) async fn update_sso_connection<T>(
    _api: &T,
    _req: Request<UpdateSsoConnectionRequest>,
) -> R<UpdateSsoConnectionResponse> {
    Err(Status::unimplemented("UpdateSsoConnection is being built"))
}

pub(super) async fn delete_sso_connection<T>(
    _api: &T,
    _req: Request<DeleteSsoConnectionRequest>,
) -> R<DeleteSsoConnectionResponse> {
    Err(Status::unimplemented("DeleteSsoConnection is being built"))
}

pub(super) async fn test_sso_connection<T>(
    _api: &T,
    _req: Request<TestSsoConnectionRequest>,
) -> R<TestSsoConnectionResponse> {
    Err(Status::unimplemented("TestSsoConnection is being built"))
}

pub(super) async fn start_sso_login<T>(
    _api: &T,
    _req: Request<StartSsoLoginRequest>,
) -> R<StartSsoLoginResponse> {
    Err(Status::unimplemented("StartSsoLogin is being built"))
}

pub(super) async fn complete_sso_login<T>(
    _api: &T,
    _req: Request<CompleteSsoLoginRequest>,
) -> R<CompleteSsoLoginResponse> {
    Err(Status::unimplemented("CompleteSsoLogin is being built"))
}
