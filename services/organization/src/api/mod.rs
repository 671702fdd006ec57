//! The gRPC adapter of `orgplane.organization.v1.OrganizationService` (and, in [`AccountApi`],
//! of `AccountService`): each handler builds the
//! [`Call`](orgplane_platform::Call), takes the prost request apart into the use case's command
//! (the only place that does), runs the use case ([`crate::app`]) and encodes the answer
//! ([`convert`]). Every mutation except CreateOrganization (which has no organization yet to hold
//! the record) passes its result through [`App::audited`](crate::app::App::audited), so that its
//! refusal is audited as OUTCOME_FAILURE (ORG-10).
//!
//! The service's outbound calls (identity's user lookups, the workspace listing a re-sync reads)
//! are the platform's (`orgplane_platform::clients`).

mod accounts;
pub mod convert;
mod domains;
mod hierarchy;
mod invites;
mod members;
mod merge;
mod organizations;
mod security;
mod settings;
mod units;

use orgplane_platform::{ApiError, ApiResult};
use orgplane_proto::organization::v1::organization_service_server::OrganizationService;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response, Status};

pub use accounts::AccountApi;

use crate::app::SharedApp;

/// The gRPC handlers of `orgplane.organization.v1.OrganizationService`.
#[derive(Debug, Clone)]
pub struct OrganizationApi {
    app: SharedApp,
}

impl OrganizationApi {
    /// Handlers over `app`.
    pub fn new(app: SharedApp) -> Self {
        Self { app }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// A use case's result on the wire's error type.
fn wire<T>(result: crate::domain::Result<T>) -> ApiResult<T> {
    result.map_err(ApiError::from)
}

/// The paths of an update mask (none when the request has no mask).
fn paths(mask: Option<prost_types::FieldMask>) -> Vec<String> {
    mask.map(|m| m.paths).unwrap_or_default()
}

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    async fn create_organization(
        &self,
        request: Request<CreateOrganizationRequest>,
    ) -> Reply<CreateOrganizationResponse> {
        organizations::create(&self.app, request).await
    }

    async fn get_organization(
        &self,
        request: Request<GetOrganizationRequest>,
    ) -> Reply<GetOrganizationResponse> {
        organizations::get(&self.app, request).await
    }

    async fn get_my_organization(
        &self,
        request: Request<GetMyOrganizationRequest>,
    ) -> Reply<GetMyOrganizationResponse> {
        organizations::get_mine(&self.app, request).await
    }

    async fn list_organizations(
        &self,
        request: Request<ListOrganizationsRequest>,
    ) -> Reply<ListOrganizationsResponse> {
        organizations::list(&self.app, request).await
    }

    async fn update_organization(
        &self,
        request: Request<UpdateOrganizationRequest>,
    ) -> Reply<UpdateOrganizationResponse> {
        organizations::update(&self.app, request).await
    }

    async fn delete_organization(
        &self,
        request: Request<DeleteOrganizationRequest>,
    ) -> Reply<DeleteOrganizationResponse> {
        organizations::delete(&self.app, request).await
    }

    async fn undelete_organization(
        &self,
        request: Request<UndeleteOrganizationRequest>,
    ) -> Reply<UndeleteOrganizationResponse> {
        organizations::undelete(&self.app, request).await
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Reply<ListMembersResponse> {
        members::list(&self.app, request).await
    }

    async fn get_member(&self, request: Request<GetMemberRequest>) -> Reply<GetMemberResponse> {
        members::get(&self.app, request).await
    }

    async fn update_member_role(
        &self,
        request: Request<UpdateMemberRoleRequest>,
    ) -> Reply<UpdateMemberRoleResponse> {
        members::update_role(&self.app, request).await
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Reply<RemoveMemberResponse> {
        members::remove(&self.app, request).await
    }

    async fn transfer_ownership(
        &self,
        request: Request<TransferOwnershipRequest>,
    ) -> Reply<TransferOwnershipResponse> {
        members::transfer_ownership(&self.app, request).await
    }

    async fn create_invite(
        &self,
        request: Request<CreateInviteRequest>,
    ) -> Reply<CreateInviteResponse> {
        invites::create(&self.app, request).await
    }

    async fn get_invite(&self, request: Request<GetInviteRequest>) -> Reply<GetInviteResponse> {
        invites::get(&self.app, request).await
    }

    async fn list_invites(
        &self,
        request: Request<ListInvitesRequest>,
    ) -> Reply<ListInvitesResponse> {
        invites::list(&self.app, request).await
    }

    async fn delete_invite(
        &self,
        request: Request<DeleteInviteRequest>,
    ) -> Reply<DeleteInviteResponse> {
        invites::delete(&self.app, request).await
    }

    async fn accept_invite(
        &self,
        request: Request<AcceptInviteRequest>,
    ) -> Reply<AcceptInviteResponse> {
        invites::accept(&self.app, request).await
    }

    async fn create_unit(&self, request: Request<CreateUnitRequest>) -> Reply<CreateUnitResponse> {
        units::create(&self.app, request).await
    }

    async fn get_unit(&self, request: Request<GetUnitRequest>) -> Reply<GetUnitResponse> {
        units::get(&self.app, request).await
    }

    async fn list_units(&self, request: Request<ListUnitsRequest>) -> Reply<ListUnitsResponse> {
        units::list(&self.app, request).await
    }

    async fn update_unit(&self, request: Request<UpdateUnitRequest>) -> Reply<UpdateUnitResponse> {
        units::update(&self.app, request).await
    }

    async fn delete_unit(&self, request: Request<DeleteUnitRequest>) -> Reply<DeleteUnitResponse> {
        units::delete(&self.app, request).await
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Reply<ListAuditEventsResponse> {
        organizations::list_audit_events(&self.app, request).await
    }

    async fn get_security_policy(
        &self,
        request: Request<GetSecurityPolicyRequest>,
    ) -> Reply<GetSecurityPolicyResponse> {
        security::get(&self.app, request).await
    }

    async fn update_security_policy(
        &self,
        request: Request<UpdateSecurityPolicyRequest>,
    ) -> Reply<UpdateSecurityPolicyResponse> {
        security::update(&self.app, request).await
    }

    async fn list_role_assignments(
        &self,
        request: Request<ListRoleAssignmentsRequest>,
    ) -> Reply<ListRoleAssignmentsResponse> {
        members::list_role_assignments(&self.app, request).await
    }

    async fn create_domain(
        &self,
        request: Request<CreateDomainRequest>,
    ) -> Reply<CreateDomainResponse> {
        domains::create_domain(&self.app, request).await
    }

    async fn get_domain(&self, request: Request<GetDomainRequest>) -> Reply<GetDomainResponse> {
        domains::get_domain(&self.app, request).await
    }

    async fn list_domains(
        &self,
        request: Request<ListDomainsRequest>,
    ) -> Reply<ListDomainsResponse> {
        domains::list_domains(&self.app, request).await
    }

    async fn update_domain(
        &self,
        request: Request<UpdateDomainRequest>,
    ) -> Reply<UpdateDomainResponse> {
        domains::update_domain(&self.app, request).await
    }

    async fn delete_domain(
        &self,
        request: Request<DeleteDomainRequest>,
    ) -> Reply<DeleteDomainResponse> {
        domains::delete_domain(&self.app, request).await
    }

    async fn verify_domain(
        &self,
        request: Request<VerifyDomainRequest>,
    ) -> Reply<VerifyDomainResponse> {
        domains::verify_domain(&self.app, request).await
    }

    async fn lookup_domain(
        &self,
        request: Request<LookupDomainRequest>,
    ) -> Reply<LookupDomainResponse> {
        domains::lookup_domain(&self.app, request).await
    }

    async fn provision_member(
        &self,
        request: Request<ProvisionMemberRequest>,
    ) -> Reply<ProvisionMemberResponse> {
        domains::provision_member(&self.app, request).await
    }

    async fn deprovision_member(
        &self,
        request: Request<DeprovisionMemberRequest>,
    ) -> Reply<DeprovisionMemberResponse> {
        domains::deprovision_member(&self.app, request).await
    }
    async fn create_child_organization(
        &self,
        request: Request<CreateChildOrganizationRequest>,
    ) -> Reply<CreateChildOrganizationResponse> {
        hierarchy::create_child(&self.app, request).await
    }

    async fn list_child_organizations(
        &self,
        request: Request<ListChildOrganizationsRequest>,
    ) -> Reply<ListChildOrganizationsResponse> {
        hierarchy::list_children(&self.app, request).await
    }

    async fn get_branding(
        &self,
        request: Request<GetBrandingRequest>,
    ) -> Reply<GetBrandingResponse> {
        settings::get_branding(&self.app, request).await
    }

    async fn update_branding(
        &self,
        request: Request<UpdateBrandingRequest>,
    ) -> Reply<UpdateBrandingResponse> {
        settings::update_branding(&self.app, request).await
    }

    async fn get_effective_settings(
        &self,
        request: Request<GetEffectiveSettingsRequest>,
    ) -> Reply<GetEffectiveSettingsResponse> {
        settings::get_effective(&self.app, request).await
    }

    async fn merge_organizations(
        &self,
        request: Request<MergeOrganizationsRequest>,
    ) -> Reply<MergeOrganizationsResponse> {
        merge::merge(&self.app, request).await
    }
}
