//! The gRPC handlers: each reads the caller and request context, hands the message to the domain
//! ([`crate::core::Core`]) and wraps the answer. Errors are [`orgplane_platform::ApiError`]s,
//! converted into `tonic::Status` with their google.rpc details. Every mutation except
//! CreateOrganization (which has no organization yet to hold the record) goes through
//! [`crate::core::Core::audited`], so that its refusal is audited as OUTCOME_FAILURE (ORG-10).

use orgplane_platform::Call;
use orgplane_platform::auth::Principal;
use orgplane_proto::organization::v1::organization_service_server::OrganizationService;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response, Status};

use crate::core::{Attempt, Scope, SharedCore};

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

type Reply<T> = Result<Response<T>, Status>;

/// The member a request names, with `me` resolved for a user (as the handlers resolve it).
fn member_id(p: &Principal, user_id: &str) -> String {
    crate::members::resolve_me(p, user_id).unwrap_or_else(|_| user_id.to_owned())
}

/// The id of the organization a request carries, or empty.
fn id_of(organization: &Option<Organization>) -> String {
    organization
        .as_ref()
        .map(|o| o.id.clone())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    async fn create_organization(
        &self,
        request: Request<CreateOrganizationRequest>,
    ) -> Reply<CreateOrganizationResponse> {
        let call = Call::of(&request)?;
        let r = self
            .core
            .create_organization(&call, request.into_inner())
            .await?;
        Ok(Response::new(r))
    }

    async fn get_organization(
        &self,
        request: Request<GetOrganizationRequest>,
    ) -> Reply<GetOrganizationResponse> {
        let call = Call::of(&request)?;
        Ok(Response::new(
            self.core
                .get_organization(&call, request.into_inner())
                .await?,
        ))
    }

    async fn get_my_organization(
        &self,
        request: Request<GetMyOrganizationRequest>,
    ) -> Reply<GetMyOrganizationResponse> {
        let call = Call::of(&request)?;
        Ok(Response::new(self.core.get_my_organization(&call).await?))
    }

    async fn list_organizations(
        &self,
        request: Request<ListOrganizationsRequest>,
    ) -> Reply<ListOrganizationsResponse> {
        let call = Call::of(&request)?;
        Ok(Response::new(
            self.core
                .list_organizations(&call, request.into_inner())
                .await?,
        ))
    }

    async fn update_organization(
        &self,
        request: Request<UpdateOrganizationRequest>,
    ) -> Reply<UpdateOrganizationResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Organization(id_of(&req.organization)),
            "organization.update",
            "organization",
            &id_of(&req.organization),
        );
        let result = self.core.update_organization(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn delete_organization(
        &self,
        request: Request<DeleteOrganizationRequest>,
    ) -> Reply<DeleteOrganizationResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "organization.delete",
            "organization",
            &req.organization_id,
        );
        let result = self.core.delete_organization(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn undelete_organization(
        &self,
        request: Request<UndeleteOrganizationRequest>,
    ) -> Reply<UndeleteOrganizationResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "organization.undelete",
            "organization",
            &req.organization_id,
        );
        let result = self.core.undelete_organization(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Reply<ListMembersResponse> {
        let call = Call::of(&request)?;
        Ok(Response::new(
            self.core.list_members(&call, request.into_inner()).await?,
        ))
    }

    async fn get_member(&self, request: Request<GetMemberRequest>) -> Reply<GetMemberResponse> {
        let call = Call::of(&request)?;
        Ok(Response::new(
            self.core.get_member(&call, request.into_inner()).await?,
        ))
    }

    async fn update_member_role(
        &self,
        request: Request<UpdateMemberRoleRequest>,
    ) -> Reply<UpdateMemberRoleResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "member.update_role",
            "member",
            &member_id(&call.principal, &req.user_id),
        );
        let result = self.core.update_member_role(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Reply<RemoveMemberResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let user_id = member_id(&call.principal, &req.user_id);
        let leaving = matches!(call.principal.as_ref(), Principal::User(u) if u.user_id == user_id);
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            if leaving {
                "member.leave"
            } else {
                "member.remove"
            },
            "member",
            &user_id,
        );
        let result = self.core.remove_member(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn transfer_ownership(
        &self,
        request: Request<TransferOwnershipRequest>,
    ) -> Reply<TransferOwnershipResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "organization.transfer_ownership",
            "organization",
            &req.organization_id,
        );
        let result = self.core.transfer_ownership(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn create_invite(
        &self,
        request: Request<CreateInviteRequest>,
    ) -> Reply<CreateInviteResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "invite.create",
            "invite",
            "",
        );
        let result = self.core.create_invite(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn get_invite(&self, request: Request<GetInviteRequest>) -> Reply<GetInviteResponse> {
        let call = Call::of(&request)?;
        Ok(Response::new(
            self.core.get_invite(&call, request.into_inner()).await?,
        ))
    }

    async fn list_invites(
        &self,
        request: Request<ListInvitesRequest>,
    ) -> Reply<ListInvitesResponse> {
        let call = Call::of(&request)?;
        Ok(Response::new(
            self.core.list_invites(&call, request.into_inner()).await?,
        ))
    }

    async fn delete_invite(
        &self,
        request: Request<DeleteInviteRequest>,
    ) -> Reply<DeleteInviteResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Invite(req.invite_id.clone()),
            "invite.delete",
            "invite",
            &req.invite_id,
        );
        let result = self.core.delete_invite(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn accept_invite(
        &self,
        request: Request<AcceptInviteRequest>,
    ) -> Reply<AcceptInviteResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Invite(req.invite_id.clone()),
            "invite.accept",
            "invite",
            &req.invite_id,
        );
        let result = self.core.accept_invite(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn create_unit(&self, request: Request<CreateUnitRequest>) -> Reply<CreateUnitResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Organization(req.organization_id.clone()),
            "unit.create",
            "unit",
            "",
        );
        let result = self.core.create_unit(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn get_unit(&self, request: Request<GetUnitRequest>) -> Reply<GetUnitResponse> {
        let call = Call::of(&request)?;
        Ok(Response::new(
            self.core.get_unit(&call, request.into_inner()).await?,
        ))
    }

    async fn list_units(&self, request: Request<ListUnitsRequest>) -> Reply<ListUnitsResponse> {
        let call = Call::of(&request)?;
        Ok(Response::new(
            self.core.list_units(&call, request.into_inner()).await?,
        ))
    }

    async fn update_unit(&self, request: Request<UpdateUnitRequest>) -> Reply<UpdateUnitResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = {
            let id = req.unit.as_ref().map(|u| u.id.clone()).unwrap_or_default();
            Attempt::new(Scope::Unit(id.clone()), "unit.update", "unit", &id)
        };
        let result = self.core.update_unit(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn delete_unit(&self, request: Request<DeleteUnitRequest>) -> Reply<DeleteUnitResponse> {
        let call = Call::of(&request)?;
        let req = request.into_inner();
        let attempt = Attempt::new(
            Scope::Unit(req.unit_id.clone()),
            "unit.delete",
            "unit",
            &req.unit_id,
        );
        let result = self.core.delete_unit(&call, req).await;
        Ok(Response::new(
            self.core.audited(&call, attempt, result).await?,
        ))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Reply<ListAuditEventsResponse> {
        let call = Call::of(&request)?;
        Ok(Response::new(
            self.core
                .list_audit_events(&call, request.into_inner())
                .await?,
        ))
    }

    async fn list_role_assignments(
        &self,
        request: Request<ListRoleAssignmentsRequest>,
    ) -> Reply<ListRoleAssignmentsResponse> {
        let call = Call::of(&request)?;
        Ok(Response::new(
            self.core
                .list_role_assignments(&call, request.into_inner())
                .await?,
        ))
    }
}
