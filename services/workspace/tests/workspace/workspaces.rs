//! Workspaces (WS-1 … WS-3): quota, unique names, idempotency, listing, update, archive, events,
//! audit, isolation, admin API keys and readiness.

use orgplane_platform::auth::ApiKeyKind;
use orgplane_platform::testkit::bearer;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::*;
use orgplane_workspace::Config;
use tonic::Code;
use tonic_types::StatusExt;

use crate::rig::*;

fn create(org: &str, name: &str, request_id: &str) -> CreateWorkspaceRequest {
    CreateWorkspaceRequest {
        organization_id: org.into(),
        workspace: Some(Workspace_ {
            name: name.into(),
            ..Default::default()
        }),
        request_id: request_id.into(),
    }
}

pub async fn quota_names_and_idempotency(rig: &Rig) {
    rig.organization("o1").await;
    let owner = rig.user("o1_owner");
    let mut client = rig.client();
    let first = client
        .create_workspace(bearer(create("o1", "One", "req-1"), &owner))
        .await
        .unwrap()
        .into_inner();
    let retry = client
        .create_workspace(bearer(create("o1", "One", "req-1"), &owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.workspace, retry.workspace, "request_id: same result");
    assert_eq!(first.revision, retry.revision);
    let dup = client
        .create_workspace(bearer(create("o1", " one ", ""), &owner))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert_eq!(reason(&dup), "WORKSPACE_NAME_TAKEN");
    client
        .create_workspace(bearer(create("o1", "Two", ""), &owner))
        .await
        .unwrap();
    let third = client
        .create_workspace(bearer(create("o1", "Three", ""), &owner))
        .await
        .unwrap()
        .into_inner()
        .workspace
        .unwrap();
    let over = client
        .create_workspace(bearer(create("o1", "Four", ""), &owner))
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted);
    assert_eq!(reason(&over), "WORKSPACE_LIMIT_REACHED");
    assert!(over.get_details_quota_failure().is_some());
    // Archived ones don't count, and their names are free again.
    client
        .archive_workspace(bearer(
            ArchiveWorkspaceRequest {
                workspace_id: third.id.clone(),
                etag: third.etag.clone(),
            },
            &owner,
        ))
        .await
        .unwrap();
    client
        .create_workspace(bearer(create("o1", "Three", ""), &owner))
        .await
        .unwrap();
    // Another organization has its own quota.
    rig.organization("o2").await;
    client
        .create_workspace(bearer(create("o2", "One", ""), &rig.user("o2_admin")))
        .await
        .unwrap();
}

#[tokio::test]
async fn ws_1_quota_unique_names_and_request_id() {
    let config = Config {
        max_active_per_org: 3,
        ..Config::default()
    };
    let rig = Rig::with_config(Backend::Sqlite, config).await.unwrap();
    quota_names_and_idempotency(&rig).await;
}

#[tokio::test]
async fn ws_1_quota_unique_names_and_request_id_on_postgres() {
    let config = Config {
        max_active_per_org: 3,
        ..Config::default()
    };
    let Some(rig) = Rig::with_config(Backend::Postgres, config).await else {
        return;
    };
    quota_names_and_idempotency(&rig).await;
}

#[tokio::test]
async fn ws_1_only_owner_and_admin_create_and_outsiders_get_not_found() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    rig.organization("o2").await;
    let mut client = rig.client();
    for user in ["o1_billing", "o1_dev", "o1_user"] {
        let err = client
            .create_workspace(bearer(create("o1", "X", ""), &rig.user(user)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{user}");
    }
    let err = client
        .create_workspace(bearer(create("o1", "X", ""), &rig.user("o2_owner")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let ws = rig.workspace("o1", "Alpha").await;
    for call in 0..3 {
        let token = rig.user("o2_owner");
        let code = match call {
            0 => client
                .get_workspace(bearer(
                    GetWorkspaceRequest {
                        workspace_id: ws.id.clone(),
                    },
                    &token,
                ))
                .await
                .unwrap_err()
                .code(),
            1 => client
                .list_workspaces(bearer(
                    ListWorkspacesRequest {
                        organization_id: "o1".into(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .unwrap_err()
                .code(),
            _ => client
                .list_audit_events(bearer(
                    ListAuditEventsRequest {
                        organization_id: "o1".into(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .unwrap_err()
                .code(),
        };
        assert_eq!(code, Code::NotFound, "call {call}");
    }
    // An admin API key of the org acts as ADMIN; one of another org sees nothing.
    rig.api_key("opk_admin_o1", "key_a1", "o1", ApiKeyKind::Admin);
    rig.api_key("opk_admin_o2", "key_a2", "o2", ApiKeyKind::Admin);
    let with_key = |key: &str, req: CreateWorkspaceRequest| {
        let mut r = tonic::Request::new(req);
        r.metadata_mut().insert("x-api-key", key.parse().unwrap());
        r
    };
    client
        .create_workspace(with_key("opk_admin_o1", create("o1", "By key", "")))
        .await
        .unwrap();
    let err = client
        .create_workspace(with_key("opk_admin_o2", create("o1", "By key 2", "")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn ws_2_list_with_include_archived_and_pages_and_archive_is_one_way() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(rig.workspace("o1", &format!("W{i}")).await);
    }
    let owner = rig.user("o1_owner");
    let mut client = rig.client();
    let archived = client
        .archive_workspace(bearer(
            ArchiveWorkspaceRequest {
                workspace_id: ids[1].id.clone(),
                etag: String::new(),
            },
            &owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .workspace
        .unwrap();
    assert_eq!(archived.state, WorkspaceState::Archived as i32);
    assert!(archived.archive_time.is_some());
    let again = client
        .archive_workspace(bearer(
            ArchiveWorkspaceRequest {
                workspace_id: ids[1].id.clone(),
                etag: String::new(),
            },
            &owner,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&again), "WORKSPACE_ARCHIVED");
    let rename = client
        .update_workspace(bearer(
            UpdateWorkspaceRequest {
                workspace: Some(Workspace_ {
                    id: ids[1].id.clone(),
                    name: "New".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                etag: String::new(),
            },
            &owner,
        ))
        .await
        .unwrap_err();
    assert_eq!(rename.code(), Code::FailedPrecondition);
    let list = |include_archived: bool, page_token: String| ListWorkspacesRequest {
        organization_id: "o1".into(),
        page_size: 2,
        page_token,
        include_archived,
        unit_id: String::new(),
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut revision = None;
    loop {
        let page = client
            .list_workspaces(bearer(list(false, token), &owner))
            .await
            .unwrap()
            .into_inner();
        assert!(page.workspaces.len() <= 2);
        assert_eq!(*revision.get_or_insert(page.revision), page.revision);
        seen.extend(page.workspaces.into_iter().map(|w| w.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let active: Vec<String> = ids
        .iter()
        .filter(|w| w.id != ids[1].id)
        .map(|w| w.id.clone())
        .collect();
    assert_eq!(seen, active, "oldest first, archived left out");
    let all = client
        .list_workspaces(bearer(
            ListWorkspacesRequest {
                organization_id: "o1".into(),
                include_archived: true,
                ..Default::default()
            },
            &owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .workspaces;
    assert_eq!(all.len(), 5);
    // A token is bound to its filters.
    let first = client
        .list_workspaces(bearer(list(false, String::new()), &owner))
        .await
        .unwrap()
        .into_inner();
    let err = client
        .list_workspaces(bearer(list(true, first.next_page_token), &owner))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn ws_3_update_with_mask_and_etag_and_the_default_workspace_is_not_addressable() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let ws = rig.workspace("o1", "Alpha").await;
    let owner = rig.user("o1_owner");
    let mut client = rig.client();
    let update = |id: &str, name: &str, paths: Vec<&str>, etag: &str| UpdateWorkspaceRequest {
        workspace: Some(Workspace_ {
            id: id.into(),
            name: name.into(),
            unit_id: "unit_1".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.into_iter().map(String::from).collect(),
        }),
        etag: etag.into(),
    };
    let updated = client
        .update_workspace(bearer(
            update(&ws.id, "Renamed", vec!["name"], &ws.etag),
            &owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let w = updated.workspace.unwrap();
    assert_eq!(w.name, "Renamed");
    assert_eq!(w.unit_id, "", "unit not in the mask");
    assert!(updated.revision > 0);
    let stale = client
        .update_workspace(bearer(
            update(&ws.id, "Again", vec!["name"], &ws.etag),
            &owner,
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let bad = client
        .update_workspace(bearer(update(&ws.id, "X", vec!["state"], ""), &owner))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let default = client
        .update_workspace(bearer(update("", "X", vec!["name"], ""), &owner))
        .await
        .unwrap_err();
    assert_eq!(default.code(), Code::InvalidArgument);
    // Events: WorkspaceCreated then WorkspaceUpdated, in the outbox.
    let events = rig.service.outbox().read(0, 100).await.unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match &e.payload {
            Some(Payload::WorkspaceCreated(_)) => "created",
            Some(Payload::WorkspaceUpdated(_)) => "updated",
            Some(Payload::WorkspaceArchived(_)) => "archived",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["created", "updated"]);
    assert_eq!(events[1].revision, updated.revision);
    // Audit: both mutations, for OWNER/ADMIN only (the refusals are OUTCOME_FAILURE records).
    let audit = client
        .list_audit_events(bearer(
            ListAuditEventsRequest {
                organization_id: "o1".into(),
                filter: Some(orgplane_proto::audit::v1::AuditEventFilter {
                    outcome: orgplane_proto::audit::v1::Outcome::Success as i32,
                    ..Default::default()
                }),
                ..Default::default()
            },
            &rig.user("o1_admin"),
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["workspace.update", "workspace.create"]);
    let denied = client
        .list_audit_events(bearer(
            ListAuditEventsRequest {
                organization_id: "o1".into(),
                ..Default::default()
            },
            &rig.user("o1_billing"),
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn health_is_serving_once_both_consumers_caught_up() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let mut health = HealthClient::new(rig.server.channel());
    let mut status = 0;
    for _ in 0..100 {
        status = health
            .check(HealthCheckRequest {
                service: "orgplane.workspace.v1.WorkspaceService".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 1, "SERVING");
    let _ = &rig.health;
}

#[tokio::test]
async fn org_10_stale_etag_and_refused_workspace_mutations_are_audited_as_failures() {
    use orgplane_proto::audit::v1::{AuditEventFilter, Outcome};
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    rig.organization("o2").await;
    let ws = rig.workspace("o1", "Alpha").await;
    let mut client = rig.client();
    let rename = |etag: &str, who: &str, request_id: &str| {
        let mut r = bearer(
            UpdateWorkspaceRequest {
                workspace: Some(Workspace_ {
                    id: ws.id.clone(),
                    name: "Renamed".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                etag: etag.into(),
            },
            &rig.user(who),
        );
        r.metadata_mut()
            .insert("x-request-id", request_id.parse().unwrap());
        r
    };
    client
        .update_workspace(rename(&ws.etag, "o1_owner", "req-first"))
        .await
        .unwrap();
    // The owner's second write with the old etag loses: ABORTED.
    let stale = client
        .update_workspace(rename(&ws.etag, "o1_owner", "req-stale"))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    // A developer tries to make themselves the workspace's admin.
    let escalate = client
        .add_workspace_member(bearer(
            AddWorkspaceMemberRequest {
                workspace_id: ws.id.clone(),
                user_id: "me".into(),
                role: WorkspaceRole::Admin as i32,
                request_id: String::new(),
            },
            &rig.user("o1_dev"),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(escalate.code(), Code::PermissionDenied | Code::NotFound),
        "{escalate:?}"
    );
    // Another organization's owner: NOT_FOUND, not recorded (outsiders cannot write to the log).
    let outsider = client
        .update_workspace(rename("", "o2_owner", "req-outsider"))
        .await
        .unwrap_err();
    assert_eq!(outsider.code(), Code::NotFound);
    // Not recorded: a malformed request.
    let mut malformed = rename("", "o1_owner", "req-malformed");
    malformed.get_mut().update_mask = Some(prost_types::FieldMask {
        paths: vec!["state".into()],
    });
    assert_eq!(
        client.update_workspace(malformed).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let list = |org: &str, who: &str, outcome: Outcome| {
        bearer(
            ListAuditEventsRequest {
                organization_id: org.into(),
                filter: Some(AuditEventFilter {
                    outcome: outcome as i32,
                    ..Default::default()
                }),
                page_size: 100,
                ..Default::default()
            },
            &rig.user(who),
        )
    };
    let failures = client
        .list_audit_events(list("o1", "o1_admin", Outcome::Failure))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let code = |s: &tonic::Status| orgplane_platform::metrics::code_name(s.code() as i32);
    let summary: Vec<_> = failures
        .iter()
        .map(|e| {
            (
                e.actor_id.as_str(),
                e.action.as_str(),
                e.resource_id.clone(),
                e.status_code.as_str(),
                e.error_reason.clone(),
            )
        })
        .collect();
    let mut expected = vec![(
        "o1_owner",
        "workspace.update",
        ws.id.clone(),
        "ABORTED",
        reason(&stale),
    )];
    // The developer's attempt is recorded when refused PERMISSION_DENIED; a NOT_FOUND (the
    // workspace is not theirs to see) is never recorded.
    if escalate.code() == Code::PermissionDenied {
        expected.insert(
            0,
            (
                "o1_dev",
                "workspace_member.add",
                format!("{}/o1_dev", ws.id),
                code(&escalate),
                reason(&escalate),
            ),
        );
    }
    assert_eq!(summary, expected, "newest first, nothing else");
    let aborted = failures.last().unwrap();
    assert_eq!(aborted.request_id, "req-stale");
    assert_eq!(aborted.service, "workspace");
    assert_eq!(aborted.organization_id, "o1");
    assert!(aborted.before.is_none() && aborted.after.is_none());
    let successes: Vec<String> = client
        .list_audit_events(list("o1", "o1_owner", Outcome::Success))
        .await
        .unwrap()
        .into_inner()
        .audit_events
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(successes, ["workspace.update", "workspace.create"]);
    // The outsider's own log shows nothing of it; o1's stays hidden from them.
    let own = client
        .list_audit_events(list("o2", "o2_owner", Outcome::Failure))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert!(own.is_empty(), "{own:?}");
    assert_eq!(
        client
            .list_audit_events(list("o1", "o2_owner", Outcome::Failure))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

/// A string field of an audit image.
fn field(image: &prost_types::Struct, key: &str) -> Option<String> {
    match image.fields.get(key)?.kind.as_ref()? {
        prost_types::value::Kind::StringValue(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    }
}

/// ORG-10: before/after images are the resource's proto message in canonical proto3 JSON —
/// camelCase keys and enum names — for workspaces and members alike, and the removal a
/// consumer makes is summarized the same way (was: snake_case keys and bare enum numbers).
#[tokio::test]
async fn org_10_workspace_audit_images_are_proto_json_with_enum_names() {
    use orgplane_proto::audit::v1::AuditEventFilter;
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    rig.organization("o1").await;
    let ws = rig.workspace("o1", "Alpha").await;
    let owner = rig.user("o1_owner");
    let mut client = rig.client();
    client
        .update_workspace(bearer(
            UpdateWorkspaceRequest {
                workspace: Some(Workspace_ {
                    id: ws.id.clone(),
                    name: "Beta".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                etag: ws.etag.clone(),
            },
            &owner,
        ))
        .await
        .unwrap();
    rig.add_member("o1", &ws.id, "o1_dev", WorkspaceRole::Developer)
        .await
        .unwrap();
    rig.org_event(removed("o1", "o1_dev", OrgRole::Developer))
        .await;
    let events = |action: &str| {
        bearer(
            ListAuditEventsRequest {
                organization_id: "o1".into(),
                filter: Some(AuditEventFilter {
                    action: action.into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &owner,
        )
    };
    let update = client
        .list_audit_events(events("workspace.update"))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let before = update[0].before.as_ref().unwrap();
    let after = update[0].after.as_ref().unwrap();
    assert_eq!(field(before, "name").as_deref(), Some("Alpha"));
    assert_eq!(field(after, "name").as_deref(), Some("Beta"));
    assert_eq!(
        field(after, "state").as_deref(),
        Some(WorkspaceState::Active.as_str_name())
    );
    assert_eq!(field(after, "organizationId").as_deref(), Some("o1"));
    assert_eq!(field(after, "etag"), Some("v2".to_owned()));
    assert!(field(after, "organization_id").is_none());
    assert!(after.fields.contains_key("createTime"));

    let add = client
        .list_audit_events(events("workspace_member.add"))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert!(add[0].before.is_none(), "{:?}", add[0].before);
    let after = add[0].after.as_ref().unwrap();
    assert_eq!(
        field(after, "role").as_deref(),
        Some(WorkspaceRole::Developer.as_str_name())
    );
    assert_eq!(
        field(after, "roleSource").as_deref(),
        Some(WorkspaceRoleSource::Direct.as_str_name())
    );
    assert_eq!(
        field(after, "orgRole").as_deref(),
        Some(OrgRole::Developer.as_str_name())
    );
    assert_eq!(field(after, "workspaceId"), Some(ws.id.clone()));
    assert!(field(after, "workspace_id").is_none());

    // The consumer's removal (WS-9) is a summary with the same conventions.
    let removal = client
        .list_audit_events(events("workspace_member.remove"))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let summary = removal[0].after.as_ref().unwrap();
    assert_eq!(
        field(summary, "role").as_deref(),
        Some(WorkspaceRole::Developer.as_str_name())
    );
    assert_eq!(field(summary, "workspaceId"), Some(ws.id.clone()));
    assert_eq!(field(summary, "userId").as_deref(), Some("o1_dev"));
}
