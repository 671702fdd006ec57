//! Handlers of the domain RPCs (ORG-14) and of the internal LookupDomain, ProvisionMember and
//! DeprovisionMember.

use orgplane_platform::Call;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response};

use super::convert::{domain_view, verified_domain};
use super::{Reply, paths, wire};
use crate::app::domains::{CreateDomain, DomainFields, ListDomains, UpdateDomain};
use crate::app::provision::{DeprovisionMember, ProvisionMember};
use crate::app::{App, Attempt, Scope};

fn fields(d: Domain) -> DomainFields {
    DomainFields {
        id: d.id,
        domain_name: d.domain_name,
        policy: d.policy,
    }
}

pub(super) async fn create_domain(
    app: &App,
    request: Request<CreateDomainRequest>,
) -> Reply<CreateDomainResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let attempt = Attempt::new(
        Scope::Organization(req.organization_id.clone()),
        "domain.create",
        "domain",
        "",
    );
    let cmd = CreateDomain {
        organization_id: req.organization_id,
        domain: req.domain.map(fields),
        request_id: req.request_id,
    };
    let result = wire(app.create_domain(&call, cmd).await);
    let created = app.audited(&call, attempt, result).await?;
    Ok(Response::new(CreateDomainResponse {
        domain: Some(domain_view(&created)),
    }))
}

pub(super) async fn get_domain(
    app: &App,
    request: Request<GetDomainRequest>,
) -> Reply<GetDomainResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let found = wire(app.get_domain(&call, &req.domain_id).await)?;
    Ok(Response::new(GetDomainResponse {
        domain: Some(domain_view(&found)),
    }))
}

pub(super) async fn list_domains(
    app: &App,
    request: Request<ListDomainsRequest>,
) -> Reply<ListDomainsResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let cmd = ListDomains {
        organization_id: req.organization_id,
        state: req.state,
        page_size: req.page_size,
        page_token: req.page_token,
    };
    let page = wire(app.list_domains(&call, cmd).await)?;
    Ok(Response::new(ListDomainsResponse {
        domains: page.items.iter().map(domain_view).collect(),
        next_page_token: page.next_page_token,
    }))
}

pub(super) async fn update_domain(
    app: &App,
    request: Request<UpdateDomainRequest>,
) -> Reply<UpdateDomainResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let id = req
        .domain
        .as_ref()
        .map(|d| d.id.clone())
        .unwrap_or_default();
    let attempt = Attempt::new(Scope::Domain(id.clone()), "domain.update", "domain", &id);
    let cmd = UpdateDomain {
        domain: req.domain.map(fields),
        paths: paths(req.update_mask),
        etag: req.etag,
    };
    let result = wire(app.update_domain(&call, cmd).await);
    let updated = app.audited(&call, attempt, result).await?;
    Ok(Response::new(UpdateDomainResponse {
        domain: Some(domain_view(&updated.value)),
        revision: updated.revision,
    }))
}

pub(super) async fn delete_domain(
    app: &App,
    request: Request<DeleteDomainRequest>,
) -> Reply<DeleteDomainResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let attempt = Attempt::new(
        Scope::Domain(req.domain_id.clone()),
        "domain.delete",
        "domain",
        &req.domain_id,
    );
    let result = wire(app.delete_domain(&call, &req.domain_id, &req.etag).await);
    let revision = app.audited(&call, attempt, result).await?;
    Ok(Response::new(DeleteDomainResponse { revision }))
}

pub(super) async fn verify_domain(
    app: &App,
    request: Request<VerifyDomainRequest>,
) -> Reply<VerifyDomainResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let attempt = Attempt::new(
        Scope::Domain(req.domain_id.clone()),
        "domain.verify",
        "domain",
        &req.domain_id,
    );
    let result = wire(app.verify_domain(&call, &req.domain_id).await);
    let checked = app.audited(&call, attempt, result).await?;
    Ok(Response::new(VerifyDomainResponse {
        domain: Some(domain_view(&checked.value)),
        revision: checked.revision,
    }))
}

pub(super) async fn lookup_domain(
    app: &App,
    request: Request<LookupDomainRequest>,
) -> Reply<LookupDomainResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let found = wire(app.lookup_domain(&call, &req.email).await)?;
    Ok(Response::new(LookupDomainResponse {
        canonical_email: found.email.address,
        verified_domains: found.verified.iter().map(verified_domain).collect(),
        invited_organization_ids: found.invited_organization_ids,
    }))
}

pub(super) async fn provision_member(
    app: &App,
    request: Request<ProvisionMemberRequest>,
) -> Reply<ProvisionMemberResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let attempt = Attempt::new(
        Scope::Organization(req.organization_id.clone()),
        "member.provision",
        "member",
        &req.user_id,
    );
    let cmd = ProvisionMember {
        organization_id: req.organization_id,
        user_id: req.user_id,
        role: req.role,
        request_id: req.request_id,
        source: req.source,
        set_role: req.set_role,
    };
    let result = wire(app.provision_member(&call, cmd).await);
    let done = app.audited(&call, attempt, result).await?;
    Ok(Response::new(ProvisionMemberResponse {
        role: done.role,
        created: done.created,
        revision: done.revision,
    }))
}

pub(super) async fn deprovision_member(
    app: &App,
    request: Request<DeprovisionMemberRequest>,
) -> Reply<DeprovisionMemberResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let attempt = Attempt::new(
        Scope::Organization(req.organization_id.clone()),
        "member.deprovision",
        "member",
        &req.user_id,
    );
    let cmd = DeprovisionMember {
        organization_id: req.organization_id,
        user_id: req.user_id,
        request_id: req.request_id,
        source: req.source,
    };
    let result = wire(app.deprovision_member(&call, cmd).await);
    let done = app.audited(&call, attempt, result).await?;
    Ok(Response::new(DeprovisionMemberResponse {
        removed: done.removed,
        revision: done.revision,
    }))
}
