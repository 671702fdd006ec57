//! Domains (rule ORG-14). PLACEHOLDER: replaced by the domains work.

use orgplane_proto::organization::v1::*;
use tonic::{Request, Status};

use super::Reply as R;

pub(super) async fn create_domain<T>(
    _api: &T,
    _req: Request<CreateDomainRequest>,
) -> R<CreateDomainResponse> {
    Err(Status::unimplemented("CreateDomain is being built"))
}

pub(super) async fn get_domain<T>(
    _api: &T,
    _req: Request<GetDomainRequest>,
) -> R<GetDomainResponse> {
    Err(Status::unimplemented("GetDomain is being built"))
}

pub(super) async fn list_domains<T>(
    _api: &T,
    _req: Request<ListDomainsRequest>,
) -> R<ListDomainsResponse> {
    Err(Status::unimplemented("ListDomains is being built"))
}

pub(super) async fn update_domain<T>(
    _api: &T,
    _req: Request<UpdateDomainRequest>,
) -> R<UpdateDomainResponse> {
    Err(Status::unimplemented("UpdateDomain is being built"))
}

pub(super) async fn delete_domain<T>(
    _api: &T,
    _req: Request<DeleteDomainRequest>,
) -> R<DeleteDomainResponse> {
    Err(Status::unimplemented("DeleteDomain is being built"))
}

pub(super) async fn verify_domain<T>(
    _api: &T,
    _req: Request<VerifyDomainRequest>,
) -> R<VerifyDomainResponse> {
    Err(Status::unimplemented("VerifyDomain is being built"))
}

pub(super) async fn lookup_domain<T>(
    _api: &T,
    _req: Request<LookupDomainRequest>,
) -> R<LookupDomainResponse> {
    Err(Status::unimplemented("LookupDomain is being built"))
}

pub(super) async fn provision_member<T>(
    _api: &T,
    _req: Request<ProvisionMemberRequest>,
) -> R<ProvisionMemberResponse> {
    Err(Status::unimplemented("ProvisionMember is being built"))
}
