//! The stories of the seed documents, end to end: the real `orgplane` binary, once as `orgplane
//! all` and once as four `orgplane serve <service>` processes, on SQLite and on PostgreSQL (one
//! database per service), driven over gRPC with the generated Rust clients as users and a product
//! backend would drive it.
//!
//! Each story is written once ([`run_stories`]); the four tests run them in each layout on each
//! database. Reads that must see an earlier write pass its `revision` (`min_*_revision`, or the
//! `x-min-organization-revision` header) instead of sleeping; only the API-key deactivation
//! (an event from identity to every service) and the purge job (after moving the organization service's clock) are waited for by polling.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orgplane_platform::error::reason_of;
use orgplane_platform::testkit::{TestDb, bearer};
use orgplane_proto::billing::v1 as billing;
use orgplane_proto::identity::v1 as identity;
use orgplane_proto::organization::v1 as org;
use orgplane_proto::workspace::v1 as ws;
use support::cluster::{Cluster, Layout, PRODUCT_CLIENT_ID, PRODUCT_CLIENT_SECRET};
use support::mail;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use billing::billing_access_service_client::BillingAccessServiceClient;
use identity::identity_service_client::IdentityServiceClient;
use org::organization_service_client::OrganizationServiceClient;
use ws::workspace_service_client::WorkspaceServiceClient;

const PASSWORD: &str = "correct horse battery staple";
/// The workspace limit the stories run with, so that story 3 reaches it quickly.
const WORKSPACE_LIMIT: usize = 3;
/// Past the 7-day purge delay.
const EIGHT_DAYS_SECS: i64 = 8 * 24 * 3600;

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

#[tokio::test]
async fn stories_all_in_one_process_on_sqlite() {
    run_stories(Layout::All, Db::Sqlite).await;
}

#[tokio::test]
async fn stories_four_processes_on_sqlite() {
    run_stories(Layout::FourProcesses, Db::Sqlite).await;
}

#[tokio::test]
async fn stories_all_in_one_process_on_postgres() {
    run_stories(Layout::All, Db::Postgres).await;
}

#[tokio::test]
async fn stories_four_processes_on_postgres() {
    run_stories(Layout::FourProcesses, Db::Postgres).await;
}

/// Stories 1-6 in `layout` on `db`.
async fn run_stories(layout: Layout, db: Db) {
    let mut dbs = Vec::new();
    if let Db::Postgres = db {
        for _ in 0..4 {
            let Some(d) = TestDb::postgres().await else {
                eprintln!(
                    "skipped: ORGPLANE_TEST_POSTGRES_URL is not set ({layout:?} on PostgreSQL)"
                );
                return;
            };
            dbs.push(d);
        }
    }
    let urls = (!dbs.is_empty()).then(|| dbs.iter().map(|d| d.url.clone()).collect());
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "ORGPLANE_WORKSPACE_MAX_ACTIVE_PER_ORG",
        WORKSPACE_LIMIT.to_string(),
    )];
    let cluster = Cluster::start(layout, dir.path(), urls, env).await;
    let mut w = World::new(cluster);
    let started = std::time::Instant::now();
    story_1_owner_signs_up_and_creates_an_organization(&mut w).await;
    story_2_invited_members_get_their_roles_everywhere(&mut w).await;
    story_3_workspaces_limits_and_role_changes(&mut w).await;
    story_4_api_keys(&mut w).await;
    story_5_usage_and_cost(&mut w).await;
    story_6_transfer_delete_undelete_purge(&mut w).await;
    eprintln!(
        "stories 1-6 ({layout:?}, {db:?}) took {:?}",
        started.elapsed()
    );
    w.cluster.stop().await;
    drop(dbs);
}

/// A signed-in person.
#[derive(Clone, Debug, Default)]
struct User {
    id: String,
    email: String,
    token: String,
}

/// What the stories share: the running system and what earlier stories created.
struct World {
    cluster: Cluster,
    owner: User,
    dev: User,
    bill: User,
    admin: User,
    org_id: String,
    org_name: String,
    /// The organization service revision of the latest role change.
    org_revision: i64,
    /// Workspace ids by name.
    workspaces: Vec<(String, String)>,
    admin_key: (String, String),
    workspace_key: (String, String),
}

impl World {
    fn new(cluster: Cluster) -> Self {
        World {
            cluster,
            owner: User::default(),
            dev: User::default(),
            bill: User::default(),
            admin: User::default(),
            org_id: String::new(),
            org_name: String::new(),
            org_revision: 0,
            workspaces: Vec::new(),
            admin_key: Default::default(),
            workspace_key: Default::default(),
        }
    }

    fn identity(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.cluster.channel("identity"))
    }
    fn orgs(&self) -> OrganizationServiceClient<Channel> {
        OrganizationServiceClient::new(self.cluster.channel("organization"))
    }
    fn workspaces(&self) -> WorkspaceServiceClient<Channel> {
        WorkspaceServiceClient::new(self.cluster.channel("workspace"))
    }
    fn billing(&self) -> BillingAccessServiceClient<Channel> {
        BillingAccessServiceClient::new(self.cluster.channel("billing-access"))
    }

    fn workspace(&self, name: &str) -> String {
        self.workspaces
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
            .unwrap_or_else(|| panic!("no workspace {name}"))
    }

    /// Signs up; the account is not verified yet.
    async fn sign_up(&self, email: &str, name: &str, kind: identity::AccountType) -> String {
        let resp = self
            .identity()
            .sign_up(identity::SignUpRequest {
                email: email.into(),
                password: PASSWORD.into(),
                display_name: name.into(),
                account_type: kind as i32,
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let user = resp.user.unwrap();
        assert!(!user.email_verified);
        user.id
    }

    /// Opens the verification link mailed to `email`.
    async fn verify(&self, email: &str) {
        let token = mail::verification_token(&self.cluster.mail_dir(), email);
        let user = self
            .identity()
            .verify_email(identity::VerifyEmailRequest { token })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        assert!(user.email_verified, "{email} is verified");
    }

    async fn login(&self, email: &str) -> User {
        let resp = self
            .identity()
            .login(identity::LoginRequest {
                email: email.into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap()
            .into_inner();
        User {
            id: resp.user.unwrap().id,
            email: email.into(),
            token: resp.tokens.unwrap().access_token,
        }
    }

    /// Signs up, verifies by the mailed link, and signs in.
    async fn new_user(&self, email: &str, name: &str, kind: identity::AccountType) -> User {
        self.sign_up(email, name, kind).await;
        self.verify(email).await;
        self.login(email).await
    }

    /// A service token of the product backend's service account.
    async fn product_token(&self) -> String {
        self.identity()
            .issue_service_token(identity::IssueServiceTokenRequest {
                client_id: PRODUCT_CLIENT_ID.into(),
                client_secret: PRODUCT_CLIENT_SECRET.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .access_token
    }

    /// CheckAccess as a product backend would ask it, after `min_org` / `min_ws` revisions.
    async fn check_access(
        &self,
        subject: ws::check_access_request::Subject,
        workspace_id: &str,
        permission: ws::Permission,
        min_org: i64,
        min_ws: i64,
    ) -> ws::CheckAccessResponse {
        let token = self.product_token().await;
        self.workspaces()
            .check_access(bearer(
                ws::CheckAccessRequest {
                    organization_id: self.org_id.clone(),
                    workspace_id: workspace_id.into(),
                    subject: Some(subject),
                    permission: permission as i32,
                    min_organization_revision: min_org,
                    min_workspace_revision: min_ws,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    async fn user_access(
        &self,
        user: &User,
        workspace_id: &str,
        permission: ws::Permission,
    ) -> ws::CheckAccessResponse {
        self.check_access(
            ws::check_access_request::Subject::UserId(user.id.clone()),
            workspace_id,
            permission,
            self.org_revision,
            0,
        )
        .await
    }

    async fn billing_access(&self, user: &User) -> billing::CheckBillingAccessResponse {
        let token = self.product_token().await;
        self.billing()
            .check_billing_access(bearer(
                billing::CheckBillingAccessRequest {
                    organization_id: self.org_id.clone(),
                    subject: Some(billing::check_billing_access_request::Subject::UserId(
                        user.id.clone(),
                    )),
                    min_organization_revision: self.org_revision,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    async fn create_workspace(&mut self, name: &str) -> Result<ws::Workspace, Status> {
        let resp = self
            .workspaces()
            .create_workspace(bearer(
                ws::CreateWorkspaceRequest {
                    organization_id: self.org_id.clone(),
                    workspace: Some(ws::Workspace {
                        name: name.into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.owner.token,
            ))
            .await?
            .into_inner();
        let workspace = resp.workspace.unwrap();
        assert!(resp.revision > 0);
        self.workspaces.push((name.into(), workspace.id.clone()));
        Ok(workspace)
    }

    async fn members(&self, request: Request<org::ListMembersRequest>) -> Vec<org::Member> {
        self.orgs()
            .list_members(request)
            .await
            .unwrap()
            .into_inner()
            .members
    }

    fn list_members(&self) -> org::ListMembersRequest {
        org::ListMembersRequest {
            organization_id: self.org_id.clone(),
            page_size: 100,
            ..Default::default()
        }
    }
}

/// `message` sent with an API key.
fn with_api_key<T>(message: T, secret: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", secret.parse().unwrap());
    request
}

/// `request` with `x-min-organization-revision: revision`.
fn after_revision<T>(mut request: Request<T>, revision: i64) -> Request<T> {
    request.metadata_mut().insert(
        "x-min-organization-revision",
        revision.to_string().parse().unwrap(),
    );
    request
}

/// Asserts that `result` is an error with `code` and ErrorInfo `reason` (any reason when empty).
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, reason: &str) -> Status {
    let status = result.expect_err("the call is refused");
    assert_eq!(status.code(), code, "{status:?}");
    if !reason.is_empty() {
        assert_eq!(
            reason_of(&status).as_deref(),
            Some(reason),
            "ErrorInfo reason of {status:?}"
        );
    }
    status
}

fn now() -> prost_types::Timestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: 0,
    }
}

fn seconds_ago(secs: i64) -> prost_types::Timestamp {
    let mut t = now();
    t.seconds -= secs;
    t
}

/// Polls `check` until it returns true or `timeout` passes.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Story 1: a business owner signs up, verifies by the mailed link, creates an organization (a
// personal account and an unverified account are refused), edits it, sees the audit trail.
// ---------------------------------------------------------------------------------------------
async fn story_1_owner_signs_up_and_creates_an_organization(w: &mut World) {
    use identity::AccountType;
    let create = |name: &str, token: &str| {
        bearer(
            org::CreateOrganizationRequest {
                organization: Some(org::Organization {
                    name: name.into(),
                    r#type: org::OrganizationType::Company as i32,
                    primary_email: "owner@acme.test".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            token,
        )
    };

    // Signed up but not verified yet: may sign in, may not create an organization.
    w.sign_up("owner@acme.test", "Olivia Owner", AccountType::Business)
        .await;
    let unverified = w.login("owner@acme.test").await;
    refused(
        w.orgs()
            .create_organization(create("Acme", &unverified.token))
            .await,
        Code::FailedPrecondition,
        "EMAIL_NOT_VERIFIED",
    );

    // A personal account, verified, is refused too.
    let personal = w
        .new_user("pat@home.test", "Pat Personal", AccountType::Personal)
        .await;
    refused(
        w.orgs()
            .create_organization(create("Pat's", &personal.token))
            .await,
        Code::FailedPrecondition,
        "BUSINESS_ACCOUNT_REQUIRED",
    );

    // The owner opens the mailed link; the same session may now create the organization.
    w.verify("owner@acme.test").await;
    w.owner = unverified;
    let created = w
        .orgs()
        .create_organization(create("Acme", &w.owner.token))
        .await
        .unwrap()
        .into_inner();
    let organization = created.organization.unwrap();
    assert_eq!(organization.state, org::OrganizationState::Active as i32);
    assert_eq!(organization.owner_user_id, w.owner.id);
    assert!(created.revision > 0);
    w.org_id = organization.id.clone();
    w.org_revision = created.revision;
    let me = w
        .orgs()
        .get_member(bearer(
            org::GetMemberRequest {
                organization_id: w.org_id.clone(),
                user_id: "me".into(),
            },
            &w.owner.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(me.role, org::OrgRole::Owner as i32);

    // Edits it: a stale etag is refused, the current one works.
    let update = |etag: &str| {
        bearer(
            org::UpdateOrganizationRequest {
                organization: Some(org::Organization {
                    id: w.org_id.clone(),
                    name: "Acme Robotics".into(),
                    r#type: org::OrganizationType::Company as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                etag: etag.into(),
            },
            &w.owner.token,
        )
    };
    refused(
        w.orgs().update_organization(update("stale-etag")).await,
        Code::Aborted,
        "",
    );
    let updated = w
        .orgs()
        .update_organization(update(&organization.etag))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(updated.name, "Acme Robotics");
    w.org_name = updated.name.clone();

    // The audit trail shows who did what, newest first.
    let audit = w
        .orgs()
        .list_audit_events(bearer(
            org::ListAuditEventsRequest {
                organization_id: w.org_id.clone(),
                page_size: 100,
                ..Default::default()
            },
            &w.owner.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    let position = |a: &str| {
        actions
            .iter()
            .position(|x| *x == a)
            .unwrap_or_else(|| panic!("{a} in the audit trail {actions:?}"))
    };
    assert!(position("organization.update") < position("organization.create"));
    let update_record = &audit[position("organization.update")];
    assert_eq!(update_record.actor_id, w.owner.id);
    assert_eq!(update_record.resource_id, w.org_id);
    assert_eq!(
        update_record
            .after
            .as_ref()
            .and_then(|s| s.fields.get("name")),
        Some(&prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue(
                "Acme Robotics".into()
            ))
        }),
        "the record shows the change: {update_record:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Story 2: invites a developer, a billing person and an admin; they accept; roles show up in the
// workspace and billing services (role inheritance across workspaces, billing access).
// ---------------------------------------------------------------------------------------------
async fn story_2_invited_members_get_their_roles_everywhere(w: &mut World) {
    use identity::AccountType;
    let people = [
        ("dana@acme.test", "Dana Developer", org::OrgRole::Developer),
        ("bill@acme.test", "Bill Billing", org::OrgRole::Billing),
        ("ada@acme.test", "Ada Admin", org::OrgRole::Admin),
    ];
    for (email, _, role) in &people {
        let invite = w
            .orgs()
            .create_invite(bearer(
                org::CreateInviteRequest {
                    organization_id: w.org_id.clone(),
                    invite: Some(org::Invite {
                        email: (*email).into(),
                        role: *role as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &w.owner.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .invite
            .unwrap();
        assert_eq!(invite.state, org::InviteState::Pending as i32);
    }
    let pending = w
        .orgs()
        .list_invites(bearer(
            org::ListInvitesRequest {
                organization_id: w.org_id.clone(),
                ..Default::default()
            },
            &w.owner.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .invites;
    assert_eq!(pending.len(), 3);

    let mut members = Vec::new();
    for (email, name, role) in &people {
        // Dana joins with a personal account: invitations are open to them.
        let kind = if *role == org::OrgRole::Developer {
            AccountType::Personal
        } else {
            AccountType::Business
        };
        let user = w.new_user(email, name, kind).await;
        let invite_id = mail::invite_id(&w.cluster.mail_dir(), email);
        let seen = w
            .orgs()
            .get_invite(bearer(
                org::GetInviteRequest {
                    invite_id: invite_id.clone(),
                },
                &user.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .invite
            .unwrap();
        assert_eq!(seen.organization_name, w.org_name);
        let accepted = w
            .orgs()
            .accept_invite(bearer(org::AcceptInviteRequest { invite_id }, &user.token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(accepted.member.unwrap().role, *role as i32);
        w.org_revision = w.org_revision.max(accepted.revision);
        members.push(user);
    }
    w.dev = members[0].clone();
    w.bill = members[1].clone();
    w.admin = members[2].clone();

    let listed = w.members(bearer(w.list_members(), &w.owner.token)).await;
    let roles: Vec<(String, i32)> = listed.iter().map(|m| (m.email.clone(), m.role)).collect();
    assert_eq!(
        roles,
        [
            ("owner@acme.test".to_string(), org::OrgRole::Owner as i32),
            ("dana@acme.test".to_string(), org::OrgRole::Developer as i32),
            ("bill@acme.test".to_string(), org::OrgRole::Billing as i32),
            ("ada@acme.test".to_string(), org::OrgRole::Admin as i32),
        ]
    );

    // The workspace service knows the roles (read-your-writes with the accept's revision): in
    // the Default Workspace everyone has the role matching their org role…
    use ws::{Permission, WorkspaceRole, WorkspaceRoleSource};
    for (user, role) in [
        (&w.owner, WorkspaceRole::Admin),
        (&w.admin, WorkspaceRole::Admin),
        (&w.bill, WorkspaceRole::Billing),
        (&w.dev, WorkspaceRole::Developer),
    ] {
        let a = w.user_access(user, "", Permission::Read).await;
        assert!(
            a.allowed,
            "{} reads the Default Workspace: {a:?}",
            user.email
        );
        assert_eq!(a.role, role as i32, "{}", user.email);
        assert!(a.organization_revision >= w.org_revision);
    }
    // …and in every workspace, OWNER and ADMIN administer and BILLING sees the costs, through
    // their org role; DEVELOPER has no role until added.
    w.create_workspace("Research").await.unwrap();
    let research = w.workspace("Research");
    let a = w.user_access(&w.admin, &research, Permission::Admin).await;
    assert!(a.allowed);
    assert_eq!(a.role_source, WorkspaceRoleSource::OrgRole as i32);
    let a = w.user_access(&w.bill, &research, Permission::Billing).await;
    assert!(a.allowed);
    assert_eq!(a.role, WorkspaceRole::Billing as i32);
    let a = w.user_access(&w.bill, &research, Permission::Use).await;
    assert!(!a.allowed);
    let a = w.user_access(&w.dev, &research, Permission::Read).await;
    assert!(!a.allowed);
    assert_eq!(a.denial_reason, ws::AccessDenialReason::NoRole as i32);
    let in_research: Vec<String> = w
        .workspaces()
        .list_workspace_members(bearer(
            ws::ListWorkspaceMembersRequest {
                workspace_id: research.clone(),
                ..Default::default()
            },
            &w.owner.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .workspace_members
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    for u in [&w.owner, &w.admin, &w.bill] {
        assert!(in_research.contains(&u.id), "{} inherits a role", u.email);
    }
    assert!(!in_research.contains(&w.dev.id));

    // The billing service: OWNER, ADMIN and BILLING manage billing, DEVELOPER does not.
    for (user, allowed) in [
        (&w.owner, true),
        (&w.admin, true),
        (&w.bill, true),
        (&w.dev, false),
    ] {
        let a = w.billing_access(user).await;
        assert_eq!(a.allowed, allowed, "{} billing access: {a:?}", user.email);
    }
    let account = w
        .billing()
        .get_billing_account(bearer(
            billing::GetBillingAccountRequest {
                organization_id: w.org_id.clone(),
            },
            &w.bill.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .billing_account
        .unwrap();
    assert_eq!(account.organization_id, w.org_id);
    let billing_members: Vec<String> = w
        .billing()
        .list_billing_members(bearer(
            billing::ListBillingMembersRequest {
                organization_id: w.org_id.clone(),
                ..Default::default()
            },
            &w.bill.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .billing_members
        .into_iter()
        .map(|m| m.email)
        .collect();
    let mut expected = vec!["owner@acme.test", "bill@acme.test", "ada@acme.test"];
    expected.sort();
    let mut got = billing_members.clone();
    got.sort();
    assert_eq!(got, expected);
    refused(
        w.billing()
            .get_billing_account(bearer(
                billing::GetBillingAccountRequest {
                    organization_id: w.org_id.clone(),
                },
                &w.dev.token,
            ))
            .await,
        Code::PermissionDenied,
        "",
    );
}

// ---------------------------------------------------------------------------------------------
// Story 3: creates workspaces up to the limit, archives one, creates one more; adds the
// developer to one workspace; demotes the admin and checks access with the returned revision;
// promotes a user.
// ---------------------------------------------------------------------------------------------
async fn story_3_workspaces_limits_and_role_changes(w: &mut World) {
    use ws::{Permission, WorkspaceRole, WorkspaceRoleSource};
    // "Research" exists; fill up to the limit.
    for name in ["Staging", "Production"] {
        w.create_workspace(name).await.unwrap();
    }
    assert_eq!(w.workspaces.len(), WORKSPACE_LIMIT);
    refused(
        w.create_workspace("Sandbox").await,
        Code::ResourceExhausted,
        "WORKSPACE_LIMIT_REACHED",
    );
    let staging = w
        .workspaces()
        .get_workspace(bearer(
            ws::GetWorkspaceRequest {
                workspace_id: w.workspace("Staging"),
            },
            &w.owner.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .workspace
        .unwrap();
    let archived = w
        .workspaces()
        .archive_workspace(bearer(
            ws::ArchiveWorkspaceRequest {
                workspace_id: staging.id.clone(),
                etag: staging.etag,
            },
            &w.owner.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        archived.workspace.unwrap().state,
        ws::WorkspaceState::Archived as i32
    );
    w.create_workspace("Sandbox").await.unwrap();
    let a = w
        .check_access(
            ws::check_access_request::Subject::UserId(w.admin.id.clone()),
            &staging.id,
            Permission::Read,
            0,
            archived.workspace_revision,
        )
        .await;
    assert!(!a.allowed);
    assert_eq!(
        a.denial_reason,
        ws::AccessDenialReason::WorkspaceArchived as i32
    );

    // The developer joins Production.
    let production = w.workspace("Production");
    let added = w
        .workspaces()
        .add_workspace_member(bearer(
            ws::AddWorkspaceMemberRequest {
                workspace_id: production.clone(),
                user_id: w.dev.id.clone(),
                role: WorkspaceRole::Developer as i32,
                request_id: String::new(),
            },
            &w.admin.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let a = w
        .check_access(
            ws::check_access_request::Subject::UserId(w.dev.id.clone()),
            &production,
            Permission::Develop,
            0,
            added.workspace_revision,
        )
        .await;
    assert!(a.allowed, "{a:?}");
    assert_eq!(a.role_source, WorkspaceRoleSource::Direct as i32);
    let visible: Vec<String> = w
        .workspaces()
        .list_workspaces(bearer(
            ws::ListWorkspacesRequest {
                organization_id: w.org_id.clone(),
                ..Default::default()
            },
            &w.dev.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .workspaces
        .into_iter()
        .map(|x| x.name)
        .collect();
    assert_eq!(visible, ["Production"], "a developer sees their workspaces");

    // Demote the admin to USER; the next check with the returned revision already sees it.
    let demoted = w
        .orgs()
        .update_member_role(bearer(
            org::UpdateMemberRoleRequest {
                organization_id: w.org_id.clone(),
                user_id: w.admin.id.clone(),
                role: org::OrgRole::User as i32,
                etag: String::new(),
            },
            &w.owner.token,
        ))
        .await
        .unwrap()
        .into_inner();
    w.org_revision = demoted.revision;
    let research = w.workspace("Research");
    let a = w.user_access(&w.admin, &research, Permission::Read).await;
    assert!(!a.allowed, "no workspace role once demoted: {a:?}");
    assert!(a.organization_revision >= demoted.revision);
    assert!(!w.billing_access(&w.admin).await.allowed);
    let a = w.user_access(&w.admin, "", Permission::Admin).await;
    assert!(!a.allowed);

    // Promote them back to ADMIN.
    let promoted = w
        .orgs()
        .update_member_role(bearer(
            org::UpdateMemberRoleRequest {
                organization_id: w.org_id.clone(),
                user_id: w.admin.id.clone(),
                role: org::OrgRole::Admin as i32,
                etag: String::new(),
            },
            &w.owner.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(promoted.member.unwrap().role, org::OrgRole::Admin as i32);
    w.org_revision = promoted.revision;
    let a = w.user_access(&w.admin, &research, Permission::Admin).await;
    assert!(a.allowed, "{a:?}");
    assert!(w.billing_access(&w.admin).await.allowed);
}

// ---------------------------------------------------------------------------------------------
// Story 4: creates an admin API key and a workspace API key; uses the admin key to list members
// and to try to remove an admin (refused); removes the key's creator — the key still works;
// deactivates it — refused.
// ---------------------------------------------------------------------------------------------
async fn story_4_api_keys(w: &mut World) {
    // The admin creates the admin key (their sign-in is recent; identity waits for the
    // promotion's revision).
    let created = w
        .identity()
        .create_api_key(after_revision(
            bearer(
                identity::CreateApiKeyRequest {
                    organization_id: w.org_id.clone(),
                    api_key: Some(identity::ApiKey {
                        kind: identity::ApiKeyKind::Admin as i32,
                        name: "automation".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &w.admin.token,
            ),
            w.org_revision,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(created.secret.starts_with("opk_admin_"));
    let admin_key = created.api_key.unwrap();
    assert_eq!(admin_key.creator_user_id, w.admin.id);
    w.admin_key = (admin_key.id.clone(), created.secret.clone());

    // The developer creates a workspace key for Production.
    let production = w.workspace("Production");
    let created = w
        .identity()
        .create_api_key(bearer(
            identity::CreateApiKeyRequest {
                organization_id: w.org_id.clone(),
                api_key: Some(identity::ApiKey {
                    kind: identity::ApiKeyKind::Workspace as i32,
                    name: "production backend".into(),
                    workspace_id: production.clone(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &w.dev.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let key = created.api_key.unwrap();
    w.workspace_key = (key.id.clone(), created.secret.clone());
    // A product backend checks what the workspace key may do (once the workspace service has
    // heard of the key).
    let key_id = key.id.clone();
    let world: &World = w;
    eventually(
        "the workspace key is known to the workspace service",
        Duration::from_secs(10),
        || {
            let subject = ws::check_access_request::Subject::ApiKeyId(key_id.clone());
            let production = production.clone();
            async move {
                world
                    .check_access(subject, &production, ws::Permission::Develop, 0, 0)
                    .await
                    .allowed
            }
        },
    )
    .await;
    let a = w
        .check_access(
            ws::check_access_request::Subject::ApiKeyId(key_id.clone()),
            &w.workspace("Research"),
            ws::Permission::Read,
            0,
            0,
        )
        .await;
    assert!(!a.allowed, "a workspace key works in its workspace only");
    refused(
        w.orgs()
            .list_members(with_api_key(w.list_members(), &w.workspace_key.1))
            .await,
        Code::PermissionDenied,
        "ADMIN_API_KEY_REQUIRED",
    );

    // Automation with the admin key: discovers its organization, lists members…
    let mine = w
        .orgs()
        .get_my_organization(with_api_key(
            org::GetMyOrganizationRequest {},
            &w.admin_key.1,
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(mine.id, w.org_id);
    let members = w
        .members(with_api_key(w.list_members(), &w.admin_key.1))
        .await;
    assert_eq!(members.len(), 4);
    // …but may not remove an admin: that takes a person.
    refused(
        w.orgs()
            .remove_member(with_api_key(
                org::RemoveMemberRequest {
                    organization_id: w.org_id.clone(),
                    user_id: w.admin.id.clone(),
                },
                &w.admin_key.1,
            ))
            .await,
        Code::PermissionDenied,
        "USER_CREDENTIALS_REQUIRED",
    );

    // The owner removes the key's creator: the key belongs to the organization and still works.
    let removed = w
        .orgs()
        .remove_member(bearer(
            org::RemoveMemberRequest {
                organization_id: w.org_id.clone(),
                user_id: w.admin.id.clone(),
            },
            &w.owner.token,
        ))
        .await
        .unwrap()
        .into_inner();
    w.org_revision = removed.revision;
    let members = w
        .members(with_api_key(w.list_members(), &w.admin_key.1))
        .await;
    assert_eq!(members.len(), 3);
    assert!(!members.iter().any(|m| m.user_id == w.admin.id));
    let a = w
        .user_access(&w.admin, &w.workspace("Research"), ws::Permission::Read)
        .await;
    assert!(!a.allowed, "a removed member has no workspace access");

    // Deactivated: identity refuses it at once, every service when identity's
    // `ApiKeyStatusChanged` reaches it (its cached resolution is dropped).
    let updated = w
        .identity()
        .update_api_key(bearer(
            identity::UpdateApiKeyRequest {
                api_key: Some(identity::ApiKey {
                    id: w.admin_key.0.clone(),
                    status: identity::ApiKeyStatus::Inactive as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["status".into()],
                }),
                etag: String::new(),
            },
            &w.owner.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(updated.status, identity::ApiKeyStatus::Inactive as i32);
    let token = w.product_token().await;
    refused(
        w.identity()
            .authenticate_api_key(bearer(
                identity::AuthenticateApiKeyRequest {
                    key: w.admin_key.1.clone(),
                },
                &token,
            ))
            .await,
        Code::Unauthenticated,
        "API_KEY_INACTIVE",
    );
    eventually(
        "the deactivated admin key is refused",
        Duration::from_secs(20),
        || async {
            match w
                .orgs()
                .list_members(with_api_key(w.list_members(), &w.admin_key.1))
                .await
            {
                Ok(_) => false,
                Err(s) => {
                    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
                    true
                }
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Story 5: records usage through the internal RPC and reads usage and cost reports.
// ---------------------------------------------------------------------------------------------
async fn story_5_usage_and_cost(w: &mut World) {
    let production = w.workspace("Production");
    let record =
        |key: &str, workspace: &str, model: &str, input: i64, output: i64| billing::UsageRecord {
            organization_id: w.org_id.clone(),
            workspace_id: workspace.into(),
            api_key_id: if workspace.is_empty() {
                String::new()
            } else {
                w.workspace_key.0.clone()
            },
            user_id: if workspace.is_empty() {
                w.owner.id.clone()
            } else {
                w.dev.id.clone()
            },
            model: model.into(),
            input_tokens: input,
            output_tokens: output,
            usage_time: Some(seconds_ago(30)),
            idempotency_key: key.into(),
            account_id: String::new(),
        };
    let token = w.product_token().await;
    let results = w
        .billing()
        .record_usage(bearer(
            billing::RecordUsageRequest {
                records: vec![
                    record("req-1", &production, "orgmodel-large-2", 1_000_000, 200_000),
                    record("req-2", "", "orgmodel-small-1", 2_000_000, 0),
                    record("req-1", &production, "orgmodel-large-2", 1_000_000, 200_000),
                    record("req-4", &production, "no-such-model", 1, 1),
                ],
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    use billing::UsageRecordStatus as S;
    let statuses: Vec<i32> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            S::Accepted as i32,
            S::Accepted as i32,
            S::Duplicate as i32,
            S::Refused as i32
        ],
        "{results:?}"
    );
    assert_eq!(results[3].reason, "UNKNOWN_MODEL");
    // Only a service may record usage.
    refused(
        w.billing()
            .record_usage(bearer(
                billing::RecordUsageRequest {
                    records: vec![record("req-9", "", "orgmodel-small-1", 1, 1)],
                },
                &w.owner.token,
            ))
            .await,
        Code::PermissionDenied,
        "",
    );

    // The billing person reads usage per workspace…
    let usage = w
        .billing()
        .get_usage_report(bearer(
            billing::GetUsageReportRequest {
                organization_id: w.org_id.clone(),
                start_time: Some(seconds_ago(2 * 24 * 3600)),
                bucket_width: billing::BucketWidth::OneDay as i32,
                group_by: vec![billing::UsageDimension::Workspace as i32],
                ..Default::default()
            },
            &w.bill.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut per_workspace = std::collections::BTreeMap::new();
    for row in usage.buckets.iter().flat_map(|b| &b.rows) {
        let e = per_workspace
            .entry(row.workspace_id.clone())
            .or_insert((String::new(), 0, 0, 0));
        e.0 = row.workspace_name.clone();
        e.1 += row.input_tokens;
        e.2 += row.output_tokens;
        e.3 += row.record_count;
    }
    assert_eq!(per_workspace.len(), 2, "{per_workspace:?}");
    assert_eq!(per_workspace[""].1, 2_000_000);
    let p = &per_workspace[&production];
    assert_eq!((p.1, p.2, p.3), (1_000_000, 200_000, 1), "counted once");

    // …and what it costs: 1M input and 0.2M output of orgmodel-large-2 at 3.00 and 15.00 per
    // million, 2M input of orgmodel-small-1 at 0.25.
    let cost = w
        .billing()
        .get_cost_report(bearer(
            billing::GetCostReportRequest {
                organization_id: w.org_id.clone(),
                start_time: Some(seconds_ago(2 * 24 * 3600)),
                group_by: vec![billing::CostDimension::Description as i32],
                ..Default::default()
            },
            &w.bill.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cost.currency_code, "USD");
    let total: f64 = cost
        .buckets
        .iter()
        .map(|b| b.total_amount.parse::<f64>().unwrap())
        .sum();
    assert!((total - 6.5).abs() < 1e-9, "total cost {total}: {cost:?}");
    let lines: Vec<&str> = cost
        .buckets
        .iter()
        .flat_map(|b| &b.rows)
        .map(|r| r.description.as_str())
        .collect();
    assert!(
        lines.iter().any(|d| d.contains("orgmodel-large-2")),
        "{lines:?}"
    );
    refused(
        w.billing()
            .get_usage_report(bearer(
                billing::GetUsageReportRequest {
                    organization_id: w.org_id.clone(),
                    start_time: Some(seconds_ago(3600)),
                    ..Default::default()
                },
                &w.dev.token,
            ))
            .await,
        Code::PermissionDenied,
        "",
    );
}

// ---------------------------------------------------------------------------------------------
// Story 6: transfers ownership; deletes the org (wrong name refused, then the right name); the
// org vanishes for members at once; undeletes; deletes again; moves the clock past purge; every
// service has removed the org's data.
// ---------------------------------------------------------------------------------------------
async fn story_6_transfer_delete_undelete_purge(w: &mut World) {
    use ws::Permission;
    // Sensitive actions want a recent sign-in: both sign in again.
    w.owner = w.login("owner@acme.test").await;
    let transferred = w
        .orgs()
        .transfer_ownership(bearer(
            org::TransferOwnershipRequest {
                organization_id: w.org_id.clone(),
                new_owner_user_id: w.dev.id.clone(),
            },
            &w.owner.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        transferred.new_owner.unwrap().role,
        org::OrgRole::Owner as i32
    );
    assert_eq!(
        transferred.previous_owner.unwrap().role,
        org::OrgRole::Admin as i32
    );
    w.org_revision = transferred.revision;
    let a = w.billing_access(&w.dev).await;
    assert!(a.allowed);
    assert_eq!(a.org_role, org::OrgRole::Owner as i32);
    let (previous_owner, new_owner) = (w.owner.clone(), w.login("dana@acme.test").await);

    let delete = |confirm: &str, token: &str| {
        bearer(
            org::DeleteOrganizationRequest {
                organization_id: w.org_id.clone(),
                confirm_name: confirm.into(),
                etag: String::new(),
            },
            token,
        )
    };
    refused(
        w.orgs()
            .delete_organization(delete(&w.org_name.to_lowercase(), &new_owner.token))
            .await,
        Code::InvalidArgument,
        "CONFIRM_NAME_MISMATCH",
    );
    refused(
        w.orgs()
            .delete_organization(delete(&w.org_name, &previous_owner.token))
            .await,
        Code::PermissionDenied,
        "",
    );
    let deleted = w
        .orgs()
        .delete_organization(delete(&w.org_name, &new_owner.token))
        .await
        .unwrap()
        .into_inner();
    let organization = deleted.organization.unwrap();
    assert_eq!(organization.state, org::OrganizationState::Deleted as i32);
    assert!(organization.purge_time.is_some());
    w.org_revision = deleted.revision;

    // Gone for members at once, in every service.
    let get = |token: &str| {
        bearer(
            org::GetOrganizationRequest {
                organization_id: w.org_id.clone(),
            },
            token,
        )
    };
    refused(
        w.orgs().get_organization(get(&previous_owner.token)).await,
        Code::NotFound,
        "",
    );
    let listed = w
        .orgs()
        .list_organizations(bearer(
            org::ListOrganizationsRequest::default(),
            &w.bill.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .organizations;
    assert!(listed.is_empty(), "{listed:?}");
    let research = w.workspace("Research");
    let a = w
        .user_access(&previous_owner, &research, Permission::Read)
        .await;
    assert!(!a.allowed);
    assert_eq!(
        a.denial_reason,
        ws::AccessDenialReason::OrganizationDeleted as i32
    );
    assert!(!w.billing_access(&w.bill).await.allowed);
    let token = w.product_token().await;
    refused(
        w.identity()
            .authenticate_api_key(after_revision(
                bearer(
                    identity::AuthenticateApiKeyRequest {
                        key: w.workspace_key.1.clone(),
                    },
                    &token,
                ),
                w.org_revision,
            ))
            .await,
        Code::Unauthenticated,
        "API_KEY_INACTIVE",
    );
    // The owner still sees it, DELETED, and restores it.
    let seen = w
        .orgs()
        .get_organization(get(&new_owner.token))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(seen.state, org::OrganizationState::Deleted as i32);
    let restored = w
        .orgs()
        .undelete_organization(bearer(
            org::UndeleteOrganizationRequest {
                organization_id: w.org_id.clone(),
                etag: String::new(),
            },
            &new_owner.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        restored.organization.unwrap().state,
        org::OrganizationState::Active as i32
    );
    w.org_revision = restored.revision;
    w.orgs()
        .get_organization(get(&previous_owner.token))
        .await
        .unwrap();
    let a = w
        .user_access(&previous_owner, &research, Permission::Admin)
        .await;
    assert!(a.allowed, "restored with its roles: {a:?}");
    assert!(w.billing_access(&w.bill).await.allowed);

    // Deleted again, then the organization service's clock moves past the purge time.
    let deleted = w
        .orgs()
        .delete_organization(delete(&w.org_name, &new_owner.token))
        .await
        .unwrap()
        .into_inner();
    w.org_revision = deleted.revision;
    w.cluster
        .restart_organization(&[
            (
                "ORGPLANE_ORGANIZATION_CLOCK_OFFSET_SECS",
                EIGHT_DAYS_SECS.to_string(),
            ),
            ("ORGPLANE_ORGANIZATION_PURGE_INTERVAL_SECS", "1".to_string()),
        ])
        .await;
    eventually(
        "the organization is purged",
        Duration::from_secs(30),
        || async {
            w.orgs()
                .get_organization(get(&new_owner.token))
                .await
                .is_err_and(|s| s.code() == Code::NotFound)
        },
    )
    .await;
    let shown = w
        .orgs()
        .list_organizations(bearer(
            org::ListOrganizationsRequest {
                show_deleted: true,
                ..Default::default()
            },
            &new_owner.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .organizations;
    assert!(shown.is_empty(), "purged, not just deleted: {shown:?}");

    // Every service has removed the organization's data (its events flow to them from the
    // restarted organization service).
    let token = w.product_token().await;
    eventually(
        "the workspaces are gone",
        Duration::from_secs(30),
        || async {
            let listed = w
                .workspaces()
                .list_workspaces(bearer(
                    ws::ListWorkspacesRequest {
                        organization_id: w.org_id.clone(),
                        include_archived: true,
                        ..Default::default()
                    },
                    &token,
                ))
                .await;
            let gone = match listed {
                Ok(r) => r.into_inner().workspaces.is_empty(),
                Err(s) => s.code() == Code::NotFound,
            };
            gone && w
                .user_access(&previous_owner, &research, Permission::Read)
                .await
                .denial_reason
                == ws::AccessDenialReason::NotFound as i32
        },
    )
    .await;
    refused(
        w.workspaces()
            .get_workspace(bearer(
                ws::GetWorkspaceRequest {
                    workspace_id: research.clone(),
                },
                &token,
            ))
            .await,
        Code::NotFound,
        "",
    );
    eventually(
        "the billing account is gone",
        Duration::from_secs(30),
        || async {
            let results = w
                .billing()
                .record_usage(bearer(
                    billing::RecordUsageRequest {
                        records: vec![billing::UsageRecord {
                            organization_id: w.org_id.clone(),
                            model: "orgmodel-small-1".into(),
                            input_tokens: 1,
                            usage_time: Some(seconds_ago(5)),
                            idempotency_key: "after-purge".into(),
                            ..Default::default()
                        }],
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
                .results;
            results[0].reason == "ORGANIZATION_NOT_FOUND"
        },
    )
    .await;
    let a = w.billing_access(&new_owner).await;
    assert!(!a.allowed);
    assert_eq!(a.org_role, org::OrgRole::Unspecified as i32);
    refused(
        w.billing()
            .get_billing_account(bearer(
                billing::GetBillingAccountRequest {
                    organization_id: w.org_id.clone(),
                },
                &new_owner.token,
            ))
            .await,
        Code::NotFound,
        "",
    );
    for secret in [&w.admin_key.1, &w.workspace_key.1] {
        let status = refused(
            w.identity()
                .authenticate_api_key(bearer(
                    identity::AuthenticateApiKeyRequest {
                        key: secret.clone(),
                    },
                    &token,
                ))
                .await,
            Code::Unauthenticated,
            "",
        );
        assert!(
            matches!(
                reason_of(&status).as_deref(),
                Some("API_KEY_INACTIVE" | "API_KEY_INVALID")
            ),
            "{status:?}"
        );
    }
}
