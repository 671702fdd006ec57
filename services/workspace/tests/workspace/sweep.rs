//! The sweep: every RPC answers an empty request with a deliberate code, never UNIMPLEMENTED or
//! INTERNAL — without credentials (UNAUTHENTICATED), and with a user's token.

use orgplane_platform::testkit::bearer;
use orgplane_proto::workspace::v1::*;
use tonic::Code;

use crate::rig::*;

macro_rules! sweep {
    ($client:expr, $token:expr, $( $method:ident($req:ty) ),* $(,)?) => {{
        let mut codes = Vec::new();
        $(
            let request = match $token {
                Some(t) => bearer(<$req>::default(), t),
                None => tonic::Request::new(<$req>::default()),
            };
            let code = match $client.$method(request).await {
                Ok(_) => Code::Ok,
                Err(s) => s.code(),
            };
            codes.push((stringify!($method), code));
        )*
        codes
    }};
}

#[tokio::test]
async fn sweep_every_rpc_answers_an_empty_request_deliberately() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let mut client = rig.client();
    let user = rig.user("o1_owner");
    for token in [None, Some(user.as_str())] {
        let codes = sweep!(
            client,
            token,
            create_workspace(CreateWorkspaceRequest),
            get_workspace(GetWorkspaceRequest),
            list_workspaces(ListWorkspacesRequest),
            update_workspace(UpdateWorkspaceRequest),
            archive_workspace(ArchiveWorkspaceRequest),
            add_workspace_member(AddWorkspaceMemberRequest),
            get_workspace_member(GetWorkspaceMemberRequest),
            list_workspace_members(ListWorkspaceMembersRequest),
            update_workspace_member(UpdateWorkspaceMemberRequest),
            remove_workspace_member(RemoveWorkspaceMemberRequest),
            check_access(CheckAccessRequest),
            list_audit_events(ListAuditEventsRequest),
        );
        assert_eq!(codes.len(), 12);
        for (method, code) in codes {
            if token.is_none() {
                assert_eq!(code, Code::Unauthenticated, "{method}");
            } else {
                assert!(
                    matches!(code, Code::InvalidArgument | Code::NotFound),
                    "{method}: {code:?}"
                );
            }
        }
    }
}
