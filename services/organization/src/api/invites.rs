//! Handlers of the invite RPCs (ORG-6).

use orgplane_platform::Call;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response};

use super::convert::{invite_view, member_view};
use super::{Reply, wire};
use crate::app::invites::{CreateInvite, InviteFields, ListInvites};
use crate::app::{App, Attempt, Scope};

pub(super) async fn create(
    app: &App,
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
    let cmd = CreateInvite {
        organization_id: req.organization_id,
        invite: req.invite.map(|i| InviteFields {
            email: i.email,
            role: i.role,
        }),
        request_id: req.request_id,
    };
    let result = wire(app.create_invite(&call, cmd).await);
    let created = app.audited(&call, attempt, result).await?;
    Ok(Response::new(CreateInviteResponse {
        invite: Some(invite_view(&created)),
    }))
}

pub(super) async fn get(app: &App, request: Request<GetInviteRequest>) -> Reply<GetInviteResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let found = wire(app.get_invite(&call, &req.invite_id).await)?;
    Ok(Response::new(GetInviteResponse {
        invite: Some(invite_view(&found)),
    }))
}

pub(super) async fn list(
    app: &App,
    request: Request<ListInvitesRequest>,
) -> Reply<ListInvitesResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    let cmd = ListInvites {
        organization_id: req.organization_id,
        state: req.state,
        show_deleted: req.show_deleted,
        page_size: req.page_size,
        page_token: req.page_token,
    };
    let page = wire(app.list_invites(&call, cmd).await)?;
    Ok(Response::new(ListInvitesResponse {
        invites: page.items.iter().map(invite_view).collect(),
        next_page_token: page.next_page_token,
    }))
}

pub(super) async fn delete(
    app: &App,
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
    let result = wire(app.delete_invite(&call, &req.invite_id).await);
    let withdrawn = app.audited(&call, attempt, result).await?;
    Ok(Response::new(DeleteInviteResponse {
        invite: Some(invite_view(&withdrawn)),
    }))
}

pub(super) async fn accept(
    app: &App,
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
    let result = wire(app.accept_invite(&call, &req.invite_id).await);
    let accepted = app.audited(&call, attempt, result).await?;
    Ok(Response::new(AcceptInviteResponse {
        member: Some(member_view(&accepted.member)),
        invite: Some(invite_view(&accepted.invite)),
        revision: accepted.revision,
    }))
}
