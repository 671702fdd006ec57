//! Organizations and what belongs to them: `org`, `members`, `invites`, `units`.

use orgplane_proto::organization::v1 as pb;

use crate::app::{App, note_next_page, paginate};
use crate::cli::{InvitesCommand, MembersCommand, OrgArg, OrgCommand, UnitsCommand};
use crate::errors::Failure;
use crate::output::{self, Column, col, enum_col, proto_json};

const ORG_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("NAME", "name"),
    enum_col("TYPE", "type", "ORGANIZATION_TYPE_"),
    enum_col("STATE", "state", "ORGANIZATION_STATE_"),
    col("OWNER", "ownerUserId"),
    col("CREATED", "createTime"),
];

const MEMBER_COLUMNS: &[Column] = &[
    col("USER", "userId"),
    col("EMAIL", "email"),
    col("NAME", "displayName"),
    enum_col("ROLE", "role", "ORG_ROLE_"),
    col("JOINED", "createTime"),
];

const INVITE_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("EMAIL", "email"),
    enum_col("ROLE", "role", "ORG_ROLE_"),
    enum_col("STATE", "state", "INVITE_STATE_"),
    col("EXPIRES", "expireTime"),
];

const UNIT_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("NAME", "name"),
    col("PARENT", "parentUnitId"),
    col("DEPTH", "depth"),
];

/// Prints the revision a write produced, for people who pass it to other commands.
fn note_revision(app: &mut App, revision: i64) -> Result<(), Failure> {
    app.remember_org_revision(revision)?;
    if revision > 0 && app.format == output::Format::Table {
        eprintln!("revision: {revision}");
    }
    Ok(())
}

fn org_or(app: &App, id: Option<String>) -> Result<String, Failure> {
    match id.filter(|i| !i.is_empty()) {
        Some(id) => Ok(id),
        None => app.org(&OrgArg { org: None }),
    }
}

/// Runs `orgctl org …`.
pub async fn org(app: &mut App, command: OrgCommand) -> Result<(), Failure> {
    let api = app.api().await?;
    let mut client = api.organization();
    match command {
        OrgCommand::Create {
            name,
            org_type,
            primary_email,
            set_default,
        } => {
            let answer = client
                .create_organization(api.request(pb::CreateOrganizationRequest {
                    organization: Some(pb::Organization {
                        name,
                        r#type: org_type.number(),
                        primary_email: primary_email.unwrap_or_default(),
                        ..Default::default()
                    }),
                    request_id: uuid::Uuid::new_v4().to_string(),
                }))
                .await?
                .into_inner();
            let id = answer
                .organization
                .as_ref()
                .map(|o| o.id.clone())
                .unwrap_or_default();
            output::print_one(app.format, &proto_json(&answer), "organization");
            note_revision(app, answer.revision)?;
            if set_default {
                let org = id.clone();
                app.with_context(|c| c.organization = Some(org))?;
                eprintln!("{id} is now the context's default organization");
            } else {
                app.default_org_if_unset(&id)?;
            }
        }
        OrgCommand::Get { organization_id } => {
            let organization_id = org_or(app, organization_id)?;
            let answer = client
                .get_organization(api.request(pb::GetOrganizationRequest { organization_id }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "organization");
        }
        OrgCommand::List {
            name_contains,
            show_deleted,
            page,
        } => {
            let (items, next) = paginate(&page, |page_token, page_size| {
                let mut client = client.clone();
                let request = api.request(pb::ListOrganizationsRequest {
                    page_size,
                    page_token,
                    name_contains: name_contains.clone().unwrap_or_default(),
                    show_deleted,
                    ..Default::default()
                });
                async move {
                    let r = client.list_organizations(request).await?.into_inner();
                    Ok((r.organizations, r.next_page_token))
                }
            })
            .await?;
            let items: Vec<_> = items.iter().map(proto_json).collect();
            output::print_list(app.format, &items, ORG_COLUMNS);
            note_next_page(&next);
        }
        OrgCommand::Update {
            organization_id,
            name,
            org_type,
            primary_email,
        } => {
            let id = org_or(app, organization_id)?;
            let mut paths = Vec::new();
            let mut organization = pb::Organization {
                id,
                ..Default::default()
            };
            if let Some(name) = name {
                organization.name = name;
                paths.push("name".to_owned());
            }
            if let Some(t) = org_type {
                organization.r#type = t.number();
                paths.push("type".to_owned());
            }
            if let Some(e) = primary_email {
                organization.primary_email = e;
                paths.push("primary_email".to_owned());
            }
            if paths.is_empty() {
                return Err(Failure::usage(
                    "nothing to change: pass --name, --type or --primary-email",
                ));
            }
            let answer = client
                .update_organization(api.request(pb::UpdateOrganizationRequest {
                    organization: Some(organization),
                    update_mask: Some(prost_types::FieldMask { paths }),
                    etag: String::new(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "organization");
            note_revision(app, answer.revision)?;
        }
        OrgCommand::Merge {
            prime_organization_id,
            candidate_organization_id,
            preview,
        } => {
            let answer = client
                .merge_organizations(api.request(pb::MergeOrganizationsRequest {
                    prime_organization_id,
                    candidate_organization_id,
                    validate_only: preview,
                    request_id: uuid::Uuid::new_v4().to_string(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "plan");
            note_revision(app, answer.revision)?;
        }
        OrgCommand::Delete {
            organization_id,
            confirm,
        } => {
            let answer = client
                .delete_organization(api.request(pb::DeleteOrganizationRequest {
                    organization_id,
                    confirm_name: confirm,
                    etag: String::new(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "organization");
            note_revision(app, answer.revision)?;
        }
    }
    Ok(())
}

/// Runs `orgctl members …`.
pub async fn members(app: &mut App, command: MembersCommand) -> Result<(), Failure> {
    let api = app.api().await?;
    let client = api.organization();
    match command {
        MembersCommand::List { org, role, page } => {
            let organization_id = app.org(&org)?;
            let (items, next) = paginate(&page, |page_token, page_size| {
                let mut client = client.clone();
                let request = api.request(pb::ListMembersRequest {
                    organization_id: organization_id.clone(),
                    page_size,
                    page_token,
                    role: role.map(|r| r.number()).unwrap_or_default(),
                });
                async move {
                    let r = client.list_members(request).await?.into_inner();
                    Ok((r.members, r.next_page_token))
                }
            })
            .await?;
            let items: Vec<_> = items.iter().map(proto_json).collect();
            output::print_list(app.format, &items, MEMBER_COLUMNS);
            note_next_page(&next);
        }
        MembersCommand::SetRole { user_id, role, org } => {
            let organization_id = app.org(&org)?;
            let answer = client
                .clone()
                .update_member_role(api.request(pb::UpdateMemberRoleRequest {
                    organization_id,
                    user_id,
                    role: role.number(),
                    etag: String::new(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "member");
            note_revision(app, answer.revision)?;
        }
        MembersCommand::Remove { user_id, org } => {
            let organization_id = app.org(&org)?;
            let answer = client
                .clone()
                .remove_member(api.request(pb::RemoveMemberRequest {
                    organization_id,
                    user_id: user_id.clone(),
                }))
                .await?
                .into_inner();
            if app.format == output::Format::Json {
                output::print_json(&proto_json(&answer));
            }
            eprintln!("{user_id} removed");
            note_revision(app, answer.revision)?;
        }
    }
    Ok(())
}

/// The invite id of an invitation link, or the argument itself.
fn invite_id_of(text: &str) -> String {
    let text = text.trim();
    match text.rfind("/invites/") {
        Some(i) => text[i + "/invites/".len()..]
            .split(['?', '#', '/'])
            .next()
            .unwrap_or_default()
            .to_owned(),
        None => text.to_owned(),
    }
}

/// Runs `orgctl invites …`.
pub async fn invites(app: &mut App, command: InvitesCommand) -> Result<(), Failure> {
    let api = app.api().await?;
    let client = api.organization();
    match command {
        InvitesCommand::Create { email, role, org } => {
            let organization_id = app.org(&org)?;
            let answer = client
                .clone()
                .create_invite(api.request(pb::CreateInviteRequest {
                    organization_id,
                    invite: Some(pb::Invite {
                        email: email.clone(),
                        role: role.number(),
                        ..Default::default()
                    }),
                    request_id: uuid::Uuid::new_v4().to_string(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "invite");
            eprintln!(
                "invitation mailed to {email}; they accept with `orgctl invites accept <invite id from the mail>`"
            );
        }
        InvitesCommand::List { org, state, page } => {
            let organization_id = app.org(&org)?;
            let (items, next) = paginate(&page, |page_token, page_size| {
                let mut client = client.clone();
                let request = api.request(pb::ListInvitesRequest {
                    organization_id: organization_id.clone(),
                    page_size,
                    page_token,
                    state: state.map(|s| s.number()).unwrap_or_default(),
                    show_deleted: state == Some(crate::cli::InviteState::Deleted),
                });
                async move {
                    let r = client.list_invites(request).await?.into_inner();
                    Ok((r.invites, r.next_page_token))
                }
            })
            .await?;
            let items: Vec<_> = items.iter().map(proto_json).collect();
            output::print_list(app.format, &items, INVITE_COLUMNS);
            note_next_page(&next);
        }
        InvitesCommand::Revoke { invite_id } => {
            let answer = client
                .clone()
                .delete_invite(api.request(pb::DeleteInviteRequest { invite_id }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "invite");
        }
        InvitesCommand::Accept { token } => {
            let invite_id = invite_id_of(&token);
            if invite_id.is_empty() {
                return Err(Failure::usage("the invite id is empty"));
            }
            let answer = client
                .clone()
                .accept_invite(api.request(pb::AcceptInviteRequest { invite_id }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "member");
            if let Some(invite) = &answer.invite {
                eprintln!(
                    "you joined {} ({}); others see your role after revision {} (--min-org-revision {})",
                    invite.organization_name,
                    invite.organization_id,
                    answer.revision,
                    answer.revision
                );
                app.default_org_if_unset(&invite.organization_id)?;
            }
            note_revision(app, answer.revision)?;
        }
    }
    Ok(())
}

/// Runs `orgctl units …`.
pub async fn units(app: &mut App, command: UnitsCommand) -> Result<(), Failure> {
    let api = app.api().await?;
    let client = api.organization();
    match command {
        UnitsCommand::Create { name, parent, org } => {
            let organization_id = app.org(&org)?;
            let answer = client
                .clone()
                .create_unit(api.request(pb::CreateUnitRequest {
                    organization_id,
                    unit: Some(pb::Unit {
                        name,
                        parent_unit_id: parent.unwrap_or_default(),
                        ..Default::default()
                    }),
                    request_id: uuid::Uuid::new_v4().to_string(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "unit");
        }
        UnitsCommand::List { parent, org, page } => {
            let organization_id = app.org(&org)?;
            let (items, next) = paginate(&page, |page_token, page_size| {
                let mut client = client.clone();
                let request = api.request(pb::ListUnitsRequest {
                    organization_id: organization_id.clone(),
                    page_size,
                    page_token,
                    parent_unit_id: parent.clone().unwrap_or_default(),
                });
                async move {
                    let r = client.list_units(request).await?.into_inner();
                    Ok((r.units, r.next_page_token))
                }
            })
            .await?;
            let items: Vec<_> = items.iter().map(proto_json).collect();
            output::print_list(app.format, &items, UNIT_COLUMNS);
            note_next_page(&next);
        }
        UnitsCommand::Delete { unit_id } => {
            let answer = client
                .clone()
                .delete_unit(api.request(pb::DeleteUnitRequest {
                    unit_id: unit_id.clone(),
                    etag: String::new(),
                }))
                .await?
                .into_inner();
            if app.format == output::Format::Json {
                output::print_json(&proto_json(&answer));
            }
            eprintln!("{unit_id} deleted");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn invite_ids_come_out_of_links() {
        assert_eq!(
            super::invite_id_of("http://localhost:3000/invites/inv_abc"),
            "inv_abc"
        );
        assert_eq!(super::invite_id_of("inv_abc"), "inv_abc");
    }
}
