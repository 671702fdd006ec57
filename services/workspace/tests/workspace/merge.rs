//! Organization merge in the workspace service (rule ORG-15), driven by real
//! `OrganizationsMerged` events through the fake organization producer: every workspace of the
//! candidate (active and archived, listed or not) moves to the prime with its id, members and
//! keys; a name taken in the prime is renamed `"<name> (merged)"`; the moved members' roles
//! (the candidate's OWNER an ADMIN, a member of both the higher role) decide CheckAccess; the
//! candidate answers NOT_FOUND; the WS-1 quota counts the moved workspaces once; a second delivery
//! changes nothing. SQLite and PostgreSQL.

use std::collections::BTreeMap;

use orgplane_platform::testkit::{MemberMove, bearer, organizations_merged};
use orgplane_proto::events::v1::ApiKeyCreated;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1::*;
use orgplane_workspace::Config;
use orgplane_workspace::store::entity::workspace as ws_row;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Statement};
use tonic::Code;

use crate::rig::*;

/// The `OrganizationsMerged` of `candidate` into `prime` moving `members`
/// (`(user, candidate role, prime role, resulting role)`).
pub fn merged(
    prime: &str,
    candidate: &str,
    members: &[MemberMove<'_>],
    workspaces: &[&str],
) -> Payload {
    let owner = format!("{candidate}_owner");
    organizations_merged(prime, candidate, &owner, members, workspaces, &[])
}

/// The merge of `oc` into `op` as `Rig::organization` set them up, plus `both` (a DEVELOPER of
/// the candidate and an ADMIN of the prime: keeps ADMIN).
fn merge_event(workspaces: &[&str]) -> Payload {
    use OrgRole::*;
    merged(
        "op",
        "oc",
        &[
            ("oc_owner", Owner, Unspecified, Admin),
            ("oc_admin", Admin, Unspecified, Admin),
            ("oc_billing", Billing, Unspecified, Billing),
            ("oc_dev", Developer, Unspecified, Developer),
            ("oc_user", User, Unspecified, User),
            ("both", Developer, Admin, Admin),
        ],
        workspaces,
    )
}

/// Everything a second application could change, as text rows: workspaces, direct roles,
/// counters, the key replica, the merge's audit records and this service's events.
async fn fingerprint(rig: &Rig) -> BTreeMap<&'static str, Vec<String>> {
    let db = rig.service.db();
    let mut out = BTreeMap::new();
    for (name, sql) in [
        (
            "workspaces",
            "SELECT id || '|' || organization_id || '|' || name || '|' || CAST(state AS TEXT) \
             || '|' || CAST(version AS TEXT) AS r FROM workspaces",
        ),
        (
            "members",
            "SELECT workspace_id || '|' || user_id || '|' || organization_id || '|' \
             || CAST(role AS TEXT) AS r FROM workspace_members",
        ),
        (
            "counters",
            "SELECT organization_id || '|' || CAST(active_count AS TEXT) AS r \
             FROM workspace_org_counters",
        ),
        (
            "keys",
            "SELECT api_key_id || '|' || organization_id AS r FROM replica_api_keys",
        ),
        (
            "audit",
            "SELECT organization_id || '|' || resource_id AS r FROM audit_log \
             WHERE action = 'workspace.merge'",
        ),
    ] {
        let rows = db
            .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap();
        let mut v: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String>("", "r").unwrap())
            .collect();
        v.sort();
        out.insert(name, v);
    }
    let events = rig.service.outbox().read(0, 100_000).await.unwrap();
    out.insert("events", vec![events.len().to_string()]);
    out
}

async fn list(rig: &Rig, org: &str, token: &str) -> Result<Vec<Workspace_>, tonic::Status> {
    rig.client()
        .list_workspaces(bearer(
            ListWorkspacesRequest {
                organization_id: org.into(),
                include_archived: true,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().workspaces)
}

async fn create(rig: &Rig, org: &str, name: &str) -> Result<Workspace_, tonic::Status> {
    rig.client()
        .create_workspace(bearer(
            CreateWorkspaceRequest {
                organization_id: org.into(),
                workspace: Some(Workspace {
                    name: name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &rig.user(&format!("{org}_owner")),
        ))
        .await
        .map(|r| r.into_inner().workspace.unwrap())
}

async fn check_key(rig: &Rig, org: &str, workspace: &str, key: &str) -> CheckAccessResponse {
    rig.client()
        .check_access(bearer(
            CheckAccessRequest {
                organization_id: org.into(),
                workspace_id: workspace.into(),
                subject: Some(check_access_request::Subject::ApiKeyId(key.into())),
                permission: Permission::Read as i32,
                min_organization_revision: 0,
                min_workspace_revision: 0,
            },
            &rig.service_token(),
        ))
        .await
        .unwrap()
        .into_inner()
}

fn denial(a: &CheckAccessResponse) -> AccessDenialReason {
    AccessDenialReason::try_from(a.denial_reason).unwrap()
}

async fn flow(backend: Backend) {
    let config = Config {
        max_active_per_org: 4,
        ..Config::default()
    };
    let Some(rig) = Rig::with_config(backend, config).await else {
        return;
    };
    rig.organization("op").await;
    rig.organization("oc").await;
    rig.org_event(added("op", "both", OrgRole::Admin)).await;
    rig.org_event(added("oc", "both", OrgRole::Developer)).await;
    let prime_shared = rig.workspace("op", "Shared").await;
    // A rename raced the merge's conflict check: the candidate has a "shared" too.
    let shared = rig.workspace("oc", "shared").await;
    let data = rig.workspace("oc", "Data").await;
    let old = rig.workspace("oc", "Old").await;
    rig.add_member("oc", &data.id, "oc_user", WorkspaceRole::Developer)
        .await
        .unwrap();
    rig.client()
        .archive_workspace(bearer(
            ArchiveWorkspaceRequest {
                workspace_id: old.id.clone(),
                etag: String::new(),
            },
            &rig.user("oc_owner"),
        ))
        .await
        .unwrap();
    rig.identity_event(Payload::ApiKeyCreated(ApiKeyCreated {
        api_key_id: "key_oc_admin".into(),
        organization_id: "oc".into(),
        workspace_id: String::new(),
        admin: true,
        active: true,
    }))
    .await;
    rig.identity_event(Payload::ApiKeyCreated(ApiKeyCreated {
        api_key_id: "key_oc_data".into(),
        organization_id: "oc".into(),
        workspace_id: data.id.clone(),
        admin: false,
        active: true,
    }))
    .await;
    // Before: the candidate's OWNER is a stranger to the prime's workspace.
    let before = rig
        .check("op", &prime_shared.id, "oc_owner", Permission::Read, 0)
        .await;
    assert_eq!(denial(&before), AccessDenialReason::NotFound);

    // The archived workspace is not in the event's list: it moves all the same.
    let event = merge_event(&[&shared.id, &data.id]);
    let rev = rig.org_event(event.clone()).await;

    // Roles after the merge, as CheckAccess sees them (WS-5: org ADMIN → workspace ADMIN in
    // every workspace of the prime, the moved ones and the prime's own).
    for (ws, user, role, org_role) in [
        (&data.id, "oc_owner", WorkspaceRole::Admin, OrgRole::Admin),
        (
            &prime_shared.id,
            "oc_owner",
            WorkspaceRole::Admin,
            OrgRole::Admin,
        ),
        (&data.id, "both", WorkspaceRole::Admin, OrgRole::Admin),
        (&data.id, "oc_user", WorkspaceRole::Developer, OrgRole::User),
        (&shared.id, "op_owner", WorkspaceRole::Admin, OrgRole::Owner),
    ] {
        let a = rig.check("op", ws, user, Permission::Read, rev).await;
        assert!(a.allowed, "{user} in {ws}: {a:?}");
        assert_eq!(
            (a.role, a.org_role),
            (role as i32, org_role as i32),
            "{user} in {ws}"
        );
    }
    // The candidate is gone: NOT_FOUND, for its workspaces and the Default Workspace alike.
    for ws in [data.id.as_str(), ""] {
        let a = rig.check("oc", ws, "oc_owner", Permission::Read, rev).await;
        assert!(!a.allowed);
        assert_eq!(denial(&a), AccessDenialReason::NotFound);
    }
    let err = list(&rig, "oc", &rig.user("oc_owner")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The candidate's keys are keys of the prime now.
    assert!(
        check_key(&rig, "op", &data.id, "key_oc_admin")
            .await
            .allowed
    );
    assert!(check_key(&rig, "op", &data.id, "key_oc_data").await.allowed);
    let a = check_key(&rig, "oc", &data.id, "key_oc_admin").await;
    assert_eq!(denial(&a), AccessDenialReason::NotFound);
    // The prime lists them all, ids kept; the clashing name was renamed.
    let mut names: Vec<(String, String, i32)> = list(&rig, "op", &rig.user("op_owner"))
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.id, w.name, w.state))
        .collect();
    names.sort();
    let mut want = vec![
        (
            prime_shared.id.clone(),
            "Shared".to_owned(),
            WorkspaceState::Active as i32,
        ),
        (
            shared.id.clone(),
            "shared (merged)".to_owned(),
            WorkspaceState::Active as i32,
        ),
        (
            data.id.clone(),
            "Data".to_owned(),
            WorkspaceState::Active as i32,
        ),
        (
            old.id.clone(),
            "Old".to_owned(),
            WorkspaceState::Archived as i32,
        ),
    ];
    want.sort();
    assert_eq!(names, want);
    // Downstream consumers learn the new organization: one WorkspaceUpdated per moved workspace.
    let updates: Vec<(String, String)> = rig
        .service
        .outbox()
        .read(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.payload {
            Some(Payload::WorkspaceUpdated(u)) => Some((u.workspace_id, u.organization_id)),
            _ => None,
        })
        .collect();
    let mut moved: Vec<&str> = updates.iter().map(|(w, _)| w.as_str()).collect();
    moved.sort();
    let mut expect = vec![shared.id.as_str(), data.id.as_str(), old.id.as_str()];
    expect.sort();
    assert_eq!(moved, expect);
    assert!(updates.iter().all(|(_, o)| o == "op"));

    // Exactly once: the same event delivered again leaves the same state.
    let after = fingerprint(&rig).await;
    assert_eq!(
        after["audit"].len(),
        3,
        "one audit record per moved workspace"
    );
    assert_eq!(after["counters"], vec!["op|3".to_owned()]);
    rig.org_event(event.clone()).await;
    assert_eq!(fingerprint(&rig).await, after);
    // WS-1 counts the moved active workspaces once: one more fits under 4, then the quota.
    create(&rig, "op", "Fourth").await.unwrap();
    let err = create(&rig, "op", "Fifth").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);

    // Control arm: a redelivery really reaches the apply, and the fingerprint sees what it
    // changes — a candidate workspace the first delivery did not see (written behind the
    // service's back) is moved and renamed by the redelivery.
    let settled = fingerprint(&rig).await;
    let now = chrono::Utc::now().timestamp_millis();
    ws_row::ActiveModel::from(ws_row::Model {
        id: "wrkspc_stray".into(),
        organization_id: "oc".into(),
        name: "Shared".into(),
        name_key: "shared".into(),
        unit_id: String::new(),
        state: WorkspaceState::Active as i32,
        create_time_ms: now,
        update_time_ms: now,
        archive_time_ms: None,
        version: 1,
    })
    .insert(rig.service.db())
    .await
    .unwrap();
    rig.org_event(event).await;
    let changed = fingerprint(&rig).await;
    assert_ne!(changed, settled);
    assert!(
        changed["workspaces"]
            .iter()
            .any(|w| w.starts_with("wrkspc_stray|op|Shared (merged 2)|")),
        "{:?}",
        changed["workspaces"]
    );
    assert_eq!(changed["audit"].len(), 4);
}

#[tokio::test]
async fn org_15_workspaces_members_and_keys_move_to_the_prime_exactly_once() {
    flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_15_workspaces_members_and_keys_move_to_the_prime_exactly_once_on_postgres() {
    flow(Backend::Postgres).await;
}

#[tokio::test]
async fn org_15_a_moved_member_is_subject_to_the_prime_s_mfa_policy() {
    let Some(rig) = Rig::new(Backend::Sqlite).await else {
        return;
    };
    rig.organization("op").await;
    rig.organization("oc").await;
    rig.org_event(policy_changed(
        "op",
        orgplane_proto::organization::v1::MfaRequirement::Required,
    ))
    .await;
    let password = rig
        .auth
        .user_token_with("oc_dev", |c| c.amr = vec!["pwd".into()]);
    // Control arm: in the candidate (no MFA requirement) the password sign-in is enough.
    list(&rig, "oc", &password).await.unwrap();
    rig.org_event(merge_event(&[])).await;
    let err = list(&rig, "op", &password).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(reason(&err), "MFA_REQUIRED");
    let mfa = rig.auth.user_token_with("oc_dev", |c| {
        c.amr = vec!["pwd".into(), "otp".into(), "mfa".into()];
        c.mfa_enrolled = true;
    });
    list(&rig, "op", &mfa).await.unwrap();
    assert_eq!(
        list(&rig, "oc", &mfa).await.unwrap_err().code(),
        Code::NotFound
    );
}

/// The re-sync path: the merge's event was compacted before this consumer applied it, so the
/// snapshot's MERGED candidate (naming its prime) is what moves the candidate's workspaces. The
/// control arm: an organization absent from the snapshot is treated as purged — its workspaces
/// are removed — which is why a MERGED organization must be in the snapshot.
#[tokio::test]
async fn org_15_a_resync_moves_the_workspaces_of_a_merge_whose_event_it_never_saw() {
    use orgplane_platform::audit::AuditLogWriter;
    use orgplane_platform::events::EventHandler;
    use orgplane_proto::organization::v1::{Organization, OrganizationState};
    use orgplane_workspace::sync::organization::OrgEvents;
    use sea_orm::TransactionTrait;

    let Some(rig) = Rig::new(Backend::Sqlite).await else {
        return;
    };
    rig.organization("op").await;
    rig.organization("oc").await;
    rig.organization("ox").await;
    let data = rig.workspace("oc", "Data").await;
    let gone = rig.workspace("ox", "Gone").await;
    rig.identity_event(Payload::ApiKeyCreated(ApiKeyCreated {
        api_key_id: "key_oc_admin".into(),
        organization_id: "oc".into(),
        workspace_id: String::new(),
        admin: true,
        active: true,
    }))
    .await;
    let org = |id: &str, state: OrganizationState, into: &str| Organization {
        id: id.into(),
        name: format!("{id} Inc"),
        owner_user_id: format!("{id}_owner"),
        state: state as i32,
        merged_into_organization_id: into.into(),
        ..Default::default()
    };
    *rig.fake_org.snapshot.lock().unwrap() = Snapshot {
        revision: rig.org.outbox.head().await.unwrap().revision,
        organizations: vec![
            (
                org("oc", OrganizationState::Merged, "op"),
                vec![("oc_owner".into(), OrgRole::Owner)],
            ),
            (
                org("op", OrganizationState::Active, ""),
                vec![
                    ("op_owner".into(), OrgRole::Owner),
                    ("oc_owner".into(), OrgRole::Admin),
                ],
            ),
        ],
    };
    let handler = OrgEvents::handler(
        rig.service.replica().clone(),
        rig.service.memory().clone(),
        AuditLogWriter::new("workspace"),
        rig.service.outbox().clone(),
    );
    let txn = rig.service.db().begin().await.unwrap();
    handler.resync(&txn).await.unwrap();
    txn.commit().await.unwrap();
    handler.committed(&[], true).await;

    let a = rig
        .check("op", &data.id, "oc_owner", Permission::Read, 0)
        .await;
    assert!(a.allowed, "{a:?}");
    assert_eq!(a.role, WorkspaceRole::Admin as i32);
    let a = rig
        .check("oc", &data.id, "oc_owner", Permission::Read, 0)
        .await;
    assert_eq!(denial(&a), AccessDenialReason::NotFound);
    assert!(
        check_key(&rig, "op", &data.id, "key_oc_admin")
            .await
            .allowed
    );
    let names: Vec<String> = list(&rig, "op", &rig.user("op_owner"))
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(names, vec![data.id.clone()]);
    // Control arm: absent from the snapshot = purged; its workspace is gone.
    let a = rig
        .check("ox", &gone.id, "ox_owner", Permission::Read, 0)
        .await;
    assert_eq!(denial(&a), AccessDenialReason::NotFound);
    let fp = fingerprint(&rig).await;
    assert!(!fp["workspaces"].iter().any(|w| w.starts_with(&gone.id)));
    assert_eq!(fp["audit"].len(), 1);
}
