//! Workspaces, their members, and access checks: `workspaces`, `check`.

use orgplane_proto::workspace::v1 as pb;

use crate::app::{App, note_next_page, paginate};
use crate::cli::{CheckArgs, WorkspaceMembersCommand, WorkspacesCommand};
use crate::errors::Failure;
use crate::output::{self, Column, col, enum_col, proto_json};

const WORKSPACE_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("NAME", "name"),
    enum_col("STATE", "state", "WORKSPACE_STATE_"),
    col("UNIT", "unitId"),
    col("CREATED", "createTime"),
];

const MEMBER_COLUMNS: &[Column] = &[
    col("USER", "userId"),
    enum_col("ROLE", "role", "WORKSPACE_ROLE_"),
    enum_col("SOURCE", "roleSource", "WORKSPACE_ROLE_SOURCE_"),
    enum_col("ORG ROLE", "orgRole", "ORG_ROLE_"),
    col("SINCE", "createTime"),
];

fn note_revisions(app: &mut App, revision: i64, workspace_revision: i64) -> Result<(), Failure> {
    app.remember_org_revision(revision)?;
    app.remember_workspace_revision(workspace_revision)?;
    if workspace_revision > 0 && app.format == output::Format::Table {
        eprintln!("workspace revision: {workspace_revision}");
    }
    Ok(())
}

/// Runs `orgctl workspaces …`.
pub async fn workspaces(app: &mut App, command: WorkspacesCommand) -> Result<(), Failure> {
    let api = app.api().await?;
    let client = api.workspace();
    match command {
        WorkspacesCommand::Create { name, unit, org } => {
            let organization_id = app.org(&org)?;
            let answer = client
                .clone()
                .create_workspace(api.request(pb::CreateWorkspaceRequest {
                    organization_id,
                    workspace: Some(pb::Workspace {
                        name,
                        unit_id: unit.unwrap_or_default(),
                        ..Default::default()
                    }),
                    request_id: uuid::Uuid::new_v4().to_string(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "workspace");
            note_revisions(app, answer.revision, answer.workspace_revision)?;
        }
        WorkspacesCommand::List {
            org,
            include_archived,
            unit,
            page,
        } => {
            let organization_id = app.org(&org)?;
            let (items, next) = paginate(&page, |page_token, page_size| {
                let mut client = client.clone();
                let request = api.request(pb::ListWorkspacesRequest {
                    organization_id: organization_id.clone(),
                    page_size,
                    page_token,
                    include_archived,
                    unit_id: unit.clone().unwrap_or_default(),
                });
                async move {
                    let r = client.list_workspaces(request).await?.into_inner();
                    Ok((r.workspaces, r.next_page_token))
                }
            })
            .await?;
            let items: Vec<_> = items.iter().map(proto_json).collect();
            output::print_list(app.format, &items, WORKSPACE_COLUMNS);
            note_next_page(&next);
        }
        WorkspacesCommand::Get { workspace_id } => {
            let answer = client
                .clone()
                .get_workspace(api.request(pb::GetWorkspaceRequest { workspace_id }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "workspace");
        }
        WorkspacesCommand::Archive { workspace_id } => {
            let answer = client
                .clone()
                .archive_workspace(api.request(pb::ArchiveWorkspaceRequest {
                    workspace_id,
                    etag: String::new(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "workspace");
            note_revisions(app, answer.revision, answer.workspace_revision)?;
        }
        WorkspacesCommand::Members(command) => match command {
            WorkspaceMembersCommand::Add {
                workspace_id,
                user_id,
                role,
            } => {
                let answer = client
                    .clone()
                    .add_workspace_member(api.request(pb::AddWorkspaceMemberRequest {
                        workspace_id,
                        user_id,
                        role: role.number(),
                        request_id: uuid::Uuid::new_v4().to_string(),
                    }))
                    .await?
                    .into_inner();
                output::print_one(app.format, &proto_json(&answer), "workspaceMember");
                note_revisions(app, answer.revision, answer.workspace_revision)?;
            }
            WorkspaceMembersCommand::List {
                workspace_id,
                role,
                page,
            } => {
                let (items, next) = paginate(&page, |page_token, page_size| {
                    let mut client = client.clone();
                    let request = api.request(pb::ListWorkspaceMembersRequest {
                        workspace_id: workspace_id.clone(),
                        page_size,
                        page_token,
                        role: role.map(|r| r.number()).unwrap_or_default(),
                        role_source: 0,
                    });
                    async move {
                        let r = client.list_workspace_members(request).await?.into_inner();
                        Ok((r.workspace_members, r.next_page_token))
                    }
                })
                .await?;
                let items: Vec<_> = items.iter().map(proto_json).collect();
                output::print_list(app.format, &items, MEMBER_COLUMNS);
                note_next_page(&next);
            }
            WorkspaceMembersCommand::SetRole {
                workspace_id,
                user_id,
                role,
            } => {
                let answer = client
                    .clone()
                    .update_workspace_member(api.request(pb::UpdateWorkspaceMemberRequest {
                        workspace_member: Some(pb::WorkspaceMember {
                            workspace_id,
                            user_id,
                            role: role.number(),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["role".into()],
                        }),
                        etag: String::new(),
                    }))
                    .await?
                    .into_inner();
                output::print_one(app.format, &proto_json(&answer), "workspaceMember");
                note_revisions(app, answer.revision, answer.workspace_revision)?;
            }
            WorkspaceMembersCommand::Remove {
                workspace_id,
                user_id,
            } => {
                let answer = client
                    .clone()
                    .remove_workspace_member(api.request(pb::RemoveWorkspaceMemberRequest {
                        workspace_id,
                        user_id: user_id.clone(),
                    }))
                    .await?
                    .into_inner();
                if app.format == output::Format::Json {
                    output::print_json(&proto_json(&answer));
                }
                eprintln!("{user_id}'s direct role removed");
                note_revisions(app, answer.revision, answer.workspace_revision)?;
            }
        },
    }
    Ok(())
}

/// Runs `orgctl check`: exits 0 when allowed, 5 when denied.
pub async fn check(app: &mut App, args: CheckArgs) -> Result<(), Failure> {
    let organization_id = app.org(&args.org)?;
    let subject = match (args.user, args.api_key) {
        (_, Some(key)) => pb::check_access_request::Subject::ApiKeyId(key),
        (Some(user), None) => pb::check_access_request::Subject::UserId(user),
        (None, None) => match app.session_user()? {
            Some(user) => pb::check_access_request::Subject::UserId(user),
            None => {
                return Err(Failure::usage(
                    "whose access? pass --user USER_ID or --api-key KEY_ID",
                ));
            }
        },
    };
    let min_workspace_revision = args
        .min_workspace_revision
        .unwrap_or_else(|| app.workspace_revision());
    let api = app.api().await?;
    let answer = api
        .workspace()
        .check_access(api.request(pb::CheckAccessRequest {
            organization_id,
            workspace_id: args.workspace.unwrap_or_default(),
            subject: Some(subject),
            permission: args.permission.number(),
            min_organization_revision: api.min_org_revision,
            min_workspace_revision,
        }))
        .await?
        .into_inner();
    let value = proto_json(&answer);
    match app.format {
        output::Format::Json => output::print_json(&value),
        output::Format::Table => {
            let short = |key: &str, prefix: &str| output::cell(value.get(key), prefix);
            if answer.allowed {
                outln!(
                    "allowed: role {} ({}), organization role {}",
                    short("role", "WORKSPACE_ROLE_"),
                    short("roleSource", "WORKSPACE_ROLE_SOURCE_"),
                    or_none(short("orgRole", "ORG_ROLE_")),
                );
            } else {
                outln!(
                    "denied: {}",
                    or_none(short("denialReason", "ACCESS_DENIAL_REASON_"))
                );
            }
        }
    }
    if answer.allowed {
        Ok(())
    } else {
        Err(Failure::Denied)
    }
}

fn or_none(s: String) -> String {
    if s.is_empty() { "none".into() } else { s }
}
