//! Handlers of the member RPCs (ORG-4, ORG-5) and of the ListRoleAssignments snapshot.

use orgplane_platform::Call;
use orgplane_platform::auth::Principal;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response};

use super::convert::{member_view, organization, security_policy, verified_domain};
use super::{Reply, wire};
use crate::app::members::{ListMembers, UpdateMemberRole};
use crate::app::{App, Attempt, Scope};
use crate::domain::authz::resolve_me;

/// The member a request names, with `me` resolved for a user (as the use cases resolve it).
fn member_id(p: &Principal, user_id: &str) -> String {
    resolve_me(p, user_id).unwrap_or_else(|_| user_id.to_owned())
}

pub(super) async fn list(
    app: &App,
    request: Request<ListMembersRequest>,
) -> Reply<ListMembersResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let cmd = ListMembers {
        organization_id: req.organization_id,
        role: req.role,
        page_size: req.page_size,
        page_token: req.page_token,
    };
    let page = wire(app.list_members(&call, cmd).await)?;
    Ok(Response::new(ListMembersResponse {
        members: page.items.iter().map(member_view).collect(),
        next_page_token: page.next_page_token,
    }))
}

pub(super) async fn get(app: &App, request: Request<GetMemberRequest>) -> Reply<GetMemberResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let m = wire(
        app.get_member(&call, &req.organization_id, &req.user_id)
            .await,
    )?;
    Ok(Response::new(GetMemberResponse {
        member: Some(member_view(&m)),
    }))
}

pub(super) async fn update_role(
    app: &App,
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
    let cmd = UpdateMemberRole {
        organization_id: req.organization_id,
        user_id: req.user_id,
        role: req.role,
        etag: req.etag,
    };
    let result = wire(app.update_member_role(&call, cmd).await);
    let changed = app.audited(&call, attempt, result).await?;
    Ok(Response::new(UpdateMemberRoleResponse {
        member: Some(member_view(&changed.value)),
        revision: changed.revision,
    }))
}

pub(super) async fn remove(
    app: &App,
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
    let result = wire(
        app.remove_member(&call, &req.organization_id, &req.user_id)
            .await,
    );
    let revision = app.audited(&call, attempt, result).await?;
    Ok(Response::new(RemoveMemberResponse { revision }))
}

pub(super) async fn transfer_ownership(
    app: &App,
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
    let result = wire(
        app.transfer_ownership(&call, &req.organization_id, &req.new_owner_user_id)
            .await,
    );
    let t = app.audited(&call, attempt, result).await?;
    Ok(Response::new(TransferOwnershipResponse {
        organization: Some(organization(&t.organization)),
        new_owner: Some(member_view(&t.new_owner)),
        previous_owner: Some(member_view(&t.previous_owner)),
        revision: t.revision,
    }))
}

pub(super) async fn list_role_assignments(
    app: &App,
    request: Request<ListRoleAssignmentsRequest>,
) -> Reply<ListRoleAssignmentsResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let snapshot = wire(
        app.list_role_assignments(&call, req.page_size, &req.page_token)
            .await,
    )?;
    Ok(Response::new(ListRoleAssignmentsResponse {
        organizations: snapshot
            .organizations
            .into_iter()
            .map(|o| OrganizationRoleAssignments {
                organization: Some(organization(&o.organization)),
                role_assignments: o
                    .roles
                    .into_iter()
                    .map(|(user_id, role)| RoleAssignment { user_id, role })
                    .collect(),
                security_policy: Some(security_policy(&o.security_policy)),
                verified_domains: o.verified_domains.iter().map(verified_domain).collect(),
            })
            .collect(),
        next_page_token: snapshot.next_page_token,
        revision: snapshot.revision,
    }))
}
