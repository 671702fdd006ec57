//! The gRPC handlers: each reads the caller and request context, hands the message to the domain
//! ([`crate::core::Core`]) and wraps the answer. Errors are [`orgplane_platform::ApiError`]s,
//! converted into `tonic::Status` with their google.rpc details.

use orgplane_platform::auth::Principal;
use orgplane_platform::context::RequestContext;
use orgplane_proto::organization::v1::organization_service_server::OrganizationService;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response, Status};

use crate::core::SharedCore;

/// The gRPC handlers of `orgplane.organization.v1.OrganizationService`.
#[derive(Debug, Clone)]
pub struct OrganizationApi {
    core: SharedCore,
}

impl OrganizationApi {
    /// Handlers over `core`.
    pub fn new(core: SharedCore) -> Self {
        Self { core }
    }
}

fn caller<T>(request: &Request<T>) -> (Principal, RequestContext) {
    (Principal::of(request), RequestContext::of(request))
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    async fn create_organization(
        &self,
        request: Request<CreateOrganizationRequest>,
    ) -> Reply<CreateOrganizationResponse> {
        let (p, ctx) = caller(&request);
        let r = self
            .core
            .create_organization(&p, &ctx, request.into_inner())
            .await?;
        Ok(Response::new(r))
    }

    async fn get_organization(
        &self,
        request: Request<GetOrganizationRequest>,
    ) -> Reply<GetOrganizationResponse> {
        let (p, _) = caller(&request);
        Ok(Response::new(
            self.core.get_organization(&p, request.into_inner()).await?,
        ))
    }

    async fn get_my_organization(
        &self,
        request: Request<GetMyOrganizationRequest>,
    ) -> Reply<GetMyOrganizationResponse> {
        let (p, _) = caller(&request);
        Ok(Response::new(self.core.get_my_organization(&p).await?))
    }

    async fn list_organizations(
        &self,
        request: Request<ListOrganizationsRequest>,
    ) -> Reply<ListOrganizationsResponse> {
        let (p, _) = caller(&request);
        Ok(Response::new(
            self.core
                .list_organizations(&p, request.into_inner())
                .await?,
        ))
    }

    async fn update_organization(
        &self,
        request: Request<UpdateOrganizationRequest>,
    ) -> Reply<UpdateOrganizationResponse> {
        let (p, ctx) = caller(&request);
        let r = self
            .core
            .update_organization(&p, &ctx, request.into_inner())
            .await?;
        Ok(Response::new(r))
    }

    async fn delete_organization(
        &self,
        request: Request<DeleteOrganizationRequest>,
    ) -> Reply<DeleteOrganizationResponse> {
        let (p, ctx) = caller(&request);
        let r = self
            .core
            .delete_organization(&p, &ctx, request.into_inner())
            .await?;
        Ok(Response::new(r))
    }

    async fn undelete_organization(
        &self,
        request: Request<UndeleteOrganizationRequest>,
    ) -> Reply<UndeleteOrganizationResponse> {
        let (p, ctx) = caller(&request);
        let r = self
            .core
            .undelete_organization(&p, &ctx, request.into_inner())
            .await?;
        Ok(Response::new(r))
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Reply<ListMembersResponse> {
        let (p, ctx) = caller(&request);
        Ok(Response::new(
            self.core
                .list_members(&p, &ctx, request.into_inner())
                .await?,
        ))
    }

    async fn get_member(&self, request: Request<GetMemberRequest>) -> Reply<GetMemberResponse> {
        let (p, ctx) = caller(&request);
        Ok(Response::new(
            self.core.get_member(&p, &ctx, request.into_inner()).await?,
        ))
    }

    async fn update_member_role(
        &self,
        request: Request<UpdateMemberRoleRequest>,
    ) -> Reply<UpdateMemberRoleResponse> {
        let (p, ctx) = caller(&request);
        let r = self
            .core
            .update_member_role(&p, &ctx, request.into_inner())
            .await?;
        Ok(Response::new(r))
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Reply<RemoveMemberResponse> {
        let (p, ctx) = caller(&request);
        Ok(Response::new(
            self.core
                .remove_member(&p, &ctx, request.into_inner())
                .await?,
        ))
    }

    async fn transfer_ownership(
        &self,
        request: Request<TransferOwnershipRequest>,
    ) -> Reply<TransferOwnershipResponse> {
        let (p, ctx) = caller(&request);
        let r = self
            .core
            .transfer_ownership(&p, &ctx, request.into_inner())
            .await?;
        Ok(Response::new(r))
    }

    async fn create_invite(
        &self,
        request: Request<CreateInviteRequest>,
    ) -> Reply<CreateInviteResponse> {
        let (p, ctx) = caller(&request);
        Ok(Response::new(
            self.core
                .create_invite(&p, &ctx, request.into_inner())
                .await?,
        ))
    }

    async fn get_invite(&self, request: Request<GetInviteRequest>) -> Reply<GetInviteResponse> {
        let (p, ctx) = caller(&request);
        Ok(Response::new(
            self.core.get_invite(&p, &ctx, request.into_inner()).await?,
        ))
    }

    async fn list_invites(
        &self,
        request: Request<ListInvitesRequest>,
    ) -> Reply<ListInvitesResponse> {
        let (p, _) = caller(&request);
        Ok(Response::new(
            self.core.list_invites(&p, request.into_inner()).await?,
        ))
    }

    async fn delete_invite(
        &self,
        request: Request<DeleteInviteRequest>,
    ) -> Reply<DeleteInviteResponse> {
        let (p, ctx) = caller(&request);
        Ok(Response::new(
            self.core
                .delete_invite(&p, &ctx, request.into_inner())
                .await?,
        ))
    }

    async fn accept_invite(
        &self,
        request: Request<AcceptInviteRequest>,
    ) -> Reply<AcceptInviteResponse> {
        let (p, ctx) = caller(&request);
        Ok(Response::new(
            self.core
                .accept_invite(&p, &ctx, request.into_inner())
                .await?,
        ))
    }

    async fn create_unit(&self, request: Request<CreateUnitRequest>) -> Reply<CreateUnitResponse> {
        let (p, ctx) = caller(&request);
        Ok(Response::new(
            self.core
                .create_unit(&p, &ctx, request.into_inner())
                .await?,
        ))
    }

    async fn get_unit(&self, request: Request<GetUnitRequest>) -> Reply<GetUnitResponse> {
        let (p, _) = caller(&request);
        Ok(Response::new(
            self.core.get_unit(&p, request.into_inner()).await?,
        ))
    }

    async fn list_units(&self, request: Request<ListUnitsRequest>) -> Reply<ListUnitsResponse> {
        let (p, _) = caller(&request);
        Ok(Response::new(
            self.core.list_units(&p, request.into_inner()).await?,
        ))
    }

    async fn update_unit(&self, request: Request<UpdateUnitRequest>) -> Reply<UpdateUnitResponse> {
        let (p, ctx) = caller(&request);
        Ok(Response::new(
            self.core
                .update_unit(&p, &ctx, request.into_inner())
                .await?,
        ))
    }

    async fn delete_unit(&self, request: Request<DeleteUnitRequest>) -> Reply<DeleteUnitResponse> {
        let (p, ctx) = caller(&request);
        Ok(Response::new(
            self.core
                .delete_unit(&p, &ctx, request.into_inner())
                .await?,
        ))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Reply<ListAuditEventsResponse> {
        let (p, _) = caller(&request);
        Ok(Response::new(
            self.core
                .list_audit_events(&p, request.into_inner())
                .await?,
        ))
    }

    async fn list_role_assignments(
        &self,
        request: Request<ListRoleAssignmentsRequest>,
    ) -> Reply<ListRoleAssignmentsResponse> {
        let (p, _) = caller(&request);
        Ok(Response::new(
            self.core
                .list_role_assignments(&p, request.into_inner())
                .await?,
        ))
    }
}
