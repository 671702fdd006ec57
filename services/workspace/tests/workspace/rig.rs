//! The test rig: fake organization and identity producers, a fake ListRoleAssignments, and the
//! real workspace service on loopback.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orgplane_platform::auth::{
    ApiKeyKind, ApiKeyPrincipal, Authenticator, StaticKeys, TokenVerifier,
};
use orgplane_platform::events::{EventServer, Outbox};
use orgplane_platform::host::Host;
use orgplane_platform::server::{GrpcServer, ServerConfig};
use orgplane_platform::testkit::{RunningServer, TEST_ISSUER, TestAuth, TestDb, bearer, channel};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::event_service_server::EventServiceServer;
use orgplane_proto::events::v1::*;
use orgplane_proto::organization::v1::organization_service_server::{
    OrganizationService, OrganizationServiceServer,
};
use orgplane_proto::organization::v1::{
    ListRoleAssignmentsRequest, ListRoleAssignmentsResponse, OrgRole, Organization,
    OrganizationRoleAssignments, RoleAssignment, SecurityPolicy,
};
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;
use orgplane_proto::workspace::v1::*;
use orgplane_workspace::{Config, Workspace};
use sea_orm::TransactionTrait;
use tonic::transport::Channel;

pub use orgplane_platform::testkit::ProducerTables as ProducerMigrator;

/// The snapshot the fake ListRoleAssignments serves.
#[derive(Default, Clone)]
pub struct Snapshot {
    pub revision: i64,
    pub organizations: Vec<(Organization, Vec<(String, OrgRole)>)>,
}

/// An OrganizationService with only ListRoleAssignments (pages of one organization).
#[derive(Clone, Default)]
pub struct FakeOrganization {
    pub snapshot: Arc<Mutex<Snapshot>>,
    /// The security policies the snapshot carries, by organization (none: the field is unset).
    pub policies: Arc<Mutex<HashMap<String, SecurityPolicy>>>,
}

#[tonic::async_trait]
impl OrganizationService for FakeOrganization {
    async fn list_role_assignments(
        &self,
        request: tonic::Request<ListRoleAssignmentsRequest>,
    ) -> Result<tonic::Response<ListRoleAssignmentsResponse>, tonic::Status> {
        orgplane_platform::auth::Principal::of(&request)
            .require_capability(orgplane_platform::auth::Capability::WatchOrganization)?;
        let snap = self.snapshot.lock().unwrap().clone();
        let policies = self.policies.lock().unwrap().clone();
        let index: usize = request.get_ref().page_token.parse().unwrap_or(0);
        let organizations = snap
            .organizations
            .get(index)
            .map(|(o, members)| {
                vec![OrganizationRoleAssignments {
                    organization: Some(o.clone()),
                    role_assignments: members
                        .iter()
                        .map(|(u, r)| RoleAssignment {
                            user_id: u.clone(),
                            role: *r as i32,
                        })
                        .collect(),
                    security_policy: policies.get(&o.id).cloned(),
                    verified_domains: Vec::new(),
                }]
            })
            .unwrap_or_default();
        let next = if index + 1 < snap.organizations.len() {
            (index + 1).to_string()
        } else {
            String::new()
        };
        Ok(tonic::Response::new(ListRoleAssignmentsResponse {
            organizations,
            next_page_token: next,
            revision: snap.revision,
        }))
    }
}

/// The API keys the test authenticator knows.
pub type FakeKeys = orgplane_platform::testkit::FakeApiKeys;

pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fake producer: an outbox in its own database.
pub struct Producer {
    pub outbox: Outbox,
    _db: TestDb,
}

impl Producer {
    async fn new(
        backend: &Backend,
        producer: orgplane_proto::events::v1::Producer,
    ) -> Option<Self> {
        let db = match backend {
            Backend::Sqlite => TestDb::sqlite(),
            Backend::Postgres => TestDb::postgres().await?,
        };
        let conn = db.open::<ProducerMigrator>().await;
        Some(Self {
            outbox: Outbox::new(conn, producer),
            _db: db,
        })
    }

    /// Appends and commits one event; returns its revision.
    pub async fn emit(&self, payload: Payload) -> i64 {
        let txn = self.outbox.connection().begin().await.unwrap();
        let revision = self.outbox.append(&txn, payload, "req-test").await.unwrap();
        txn.commit().await.unwrap();
        self.outbox.committed(revision);
        revision
    }
}

pub struct Rig {
    pub auth: TestAuth,
    pub org: Producer,
    pub identity: Producer,
    pub fake_org: FakeOrganization,
    pub keys: FakeKeys,
    pub fakes: RunningServer,
    pub service: Arc<Workspace>,
    pub server: RunningServer,
    pub ws_db: TestDb,
    pub health: orgplane_platform::server::Health,
}

impl Rig {
    pub async fn new(backend: Backend) -> Option<Rig> {
        Self::with_config(backend, Config::default()).await
    }

    pub async fn with_config(backend: Backend, config: Config) -> Option<Rig> {
        let auth = TestAuth::new();
        let Some(org) =
            Producer::new(&backend, orgplane_proto::events::v1::Producer::Organization).await
        else {
            eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
            return None;
        };
        let identity =
            Producer::new(&backend, orgplane_proto::events::v1::Producer::Identity).await?;
        let fake_org = FakeOrganization::default();
        let mut fake_server = GrpcServer::new(ServerConfig::default());
        let events = EventServer::new(
            [org.outbox.clone(), identity.outbox.clone()],
            fake_server.shutdown_token(),
        )
        .with_poll_interval(Duration::from_millis(50));
        fake_server
            .add_ready_service(EventServiceServer::new(events))
            .await;
        fake_server
            .add_ready_service(OrganizationServiceServer::new(fake_org.clone()))
            .await;
        let fakes = RunningServer::start(fake_server, auth.authenticator(), None).await;
        let ws_db = match backend {
            Backend::Sqlite => TestDb::sqlite(),
            Backend::Postgres => TestDb::postgres().await?,
        };
        let keys = FakeKeys::default();
        let (service, server, health) =
            start_service(&auth, &fakes.url(), &ws_db.url, &config, &keys).await;
        Some(Rig {
            auth,
            org,
            identity,
            fake_org,
            keys,
            fakes,
            service,
            server,
            ws_db,
            health,
        })
    }

    pub fn client(&self) -> WorkspaceServiceClient<Channel> {
        WorkspaceServiceClient::new(self.server.channel())
    }

    pub fn user(&self, user: &str) -> String {
        self.auth.user_token(user)
    }

    pub fn service_token(&self) -> String {
        self.auth.service_token("product-backend")
    }

    /// Emits an org event and waits until the service applied it.
    pub async fn org_event(&self, payload: Payload) -> i64 {
        let revision = self.org.emit(payload).await;
        self.service
            .organization_events()
            .wait_for(revision, Duration::from_secs(10))
            .await
            .unwrap();
        revision
    }

    /// Emits an identity event and waits until the service applied it.
    pub async fn identity_event(&self, payload: Payload) -> i64 {
        let revision = self.identity.emit(payload).await;
        self.service
            .identity_events()
            .wait_for(revision, Duration::from_secs(10))
            .await
            .unwrap();
        revision
    }

    /// An organization with an owner and one member of every other role: `<org>_owner`,
    /// `<org>_admin`, `<org>_billing`, `<org>_dev`, `<org>_user`.
    pub async fn organization(&self, org: &str) -> i64 {
        self.org.emit(created(org, &format!("{org}_owner"))).await;
        let mut last = 0;
        for (suffix, role) in [
            ("admin", OrgRole::Admin),
            ("billing", OrgRole::Billing),
            ("dev", OrgRole::Developer),
            ("user", OrgRole::User),
        ] {
            last = self
                .org
                .emit(added(org, &format!("{org}_{suffix}"), role))
                .await;
        }
        self.service
            .organization_events()
            .wait_for(last, Duration::from_secs(10))
            .await
            .unwrap();
        last
    }

    /// Creates a workspace as `<org>_owner`.
    pub async fn workspace(&self, org: &str, name: &str) -> Workspace_ {
        let resp = self
            .client()
            .create_workspace(bearer(
                CreateWorkspaceRequest {
                    organization_id: org.into(),
                    workspace: Some(orgplane_proto::workspace::v1::Workspace {
                        name: name.into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.user(&format!("{org}_owner")),
            ))
            .await
            .unwrap()
            .into_inner();
        resp.workspace.unwrap()
    }

    /// CheckAccess as a product service.
    pub async fn check(
        &self,
        org: &str,
        workspace: &str,
        user: &str,
        permission: Permission,
        min_org: i64,
    ) -> CheckAccessResponse {
        self.client()
            .check_access(bearer(
                CheckAccessRequest {
                    organization_id: org.into(),
                    workspace_id: workspace.into(),
                    subject: Some(check_access_request::Subject::UserId(user.into())),
                    permission: permission as i32,
                    min_organization_revision: min_org,
                    min_workspace_revision: 0,
                },
                &self.service_token(),
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// The effective role of `user` in `workspace` per CheckAccess.
    pub async fn role(&self, org: &str, workspace: &str, user: &str) -> WorkspaceRole {
        let a = self.check(org, workspace, user, Permission::Read, 0).await;
        WorkspaceRole::try_from(a.role).unwrap()
    }

    pub async fn add_member(
        &self,
        org: &str,
        workspace: &str,
        user: &str,
        role: WorkspaceRole,
    ) -> Result<AddWorkspaceMemberResponse, tonic::Status> {
        self.client()
            .add_workspace_member(bearer(
                AddWorkspaceMemberRequest {
                    workspace_id: workspace.into(),
                    user_id: user.into(),
                    role: role as i32,
                    request_id: String::new(),
                },
                &self.user(&format!("{org}_owner")),
            ))
            .await
            .map(|r| r.into_inner())
    }

    /// Registers an API key secret with the test authenticator.
    pub fn api_key(&self, secret: &str, key_id: &str, org: &str, kind: ApiKeyKind) {
        self.keys.insert(
            secret,
            ApiKeyPrincipal {
                key_id: key_id.into(),
                organization_id: org.into(),
                workspace_id: None,
                kind,
            },
        );
    }
}

pub type Workspace_ = orgplane_proto::workspace::v1::Workspace;

/// Starts a workspace service against the fakes at `fakes_url`, waiting until it is ready.
pub async fn start_service(
    auth: &TestAuth,
    fakes_url: &str,
    db_url: &str,
    config: &Config,
    keys: &FakeKeys,
) -> (
    Arc<Workspace>,
    RunningServer,
    orgplane_platform::server::Health,
) {
    let mut runtime =
        orgplane_platform::testkit::runtime(fakes_url, auth, orgplane_platform::clock::system());
    runtime.endpoints.workspace = channel("http://127.0.0.1:9").into();
    let mut host = Host::new(runtime);
    let service = host.open::<Workspace>(db_url, config).await.unwrap();
    let mut server = GrpcServer::new(ServerConfig::default());
    host.register(&mut server).await;
    let health = server.health();
    let verifier = TokenVerifier::new(
        TEST_ISSUER,
        Arc::new(StaticKeys(vec![auth.signer.public_key()])),
    );
    let authenticator = Authenticator::new(Arc::new(verifier), Some(Arc::new(keys.clone())));
    let running = RunningServer::start(server, authenticator, None).await;
    host.start(&health);
    tokio::time::timeout(Duration::from_secs(10), async {
        service.organization_events().wait_caught_up().await;
        service.identity_events().wait_caught_up().await;
    })
    .await
    .expect("consumers caught up");
    (service, running, health)
}

pub fn created(org: &str, owner: &str) -> Payload {
    Payload::OrganizationCreated(OrganizationCreated {
        organization_id: org.into(),
        name: format!("{org} Inc"),
        owner_user_id: owner.into(),
        primary_email: String::new(),
        ..Default::default()
    })
}

pub fn added(org: &str, user: &str, role: OrgRole) -> Payload {
    Payload::MemberAdded(MemberAdded {
        organization_id: org.into(),
        user_id: user.into(),
        role: role as i32,
    })
}

pub fn role_changed(org: &str, user: &str, old: OrgRole, new: OrgRole) -> Payload {
    Payload::MemberRoleChanged(MemberRoleChanged {
        organization_id: org.into(),
        user_id: user.into(),
        old_role: old as i32,
        new_role: new as i32,
    })
}

pub fn removed(org: &str, user: &str, old: OrgRole) -> Payload {
    Payload::MemberRemoved(MemberRemoved {
        organization_id: org.into(),
        user_id: user.into(),
        old_role: old as i32,
    })
}

/// A SecurityPolicyChanged setting `org`'s MFA requirement (the rest of the policy default).
pub fn policy_changed(org: &str, mfa: orgplane_proto::organization::v1::MfaRequirement) -> Payload {
    Payload::SecurityPolicyChanged(SecurityPolicyChanged {
        organization_id: org.into(),
        security_policy: Some(mfa_policy(org, mfa)),
    })
}

/// `org`'s default security policy with MFA requirement `mfa`.
pub fn mfa_policy(
    org: &str,
    mfa: orgplane_proto::organization::v1::MfaRequirement,
) -> SecurityPolicy {
    SecurityPolicy {
        mfa_requirement: mfa as i32,
        ..orgplane_platform::policy::SecurityPolicy::default().to_proto(org)
    }
}

pub fn purged(org: &str) -> Payload {
    Payload::OrganizationPurged(OrganizationPurged {
        organization_id: org.into(),
    })
}

/// One replicated organization: name, owner, state, members.
pub type OrgView = (String, String, i32, BTreeMap<String, i32>);

/// The replica's view of some organizations, sorted, for comparisons.
pub fn replica_view(service: &Workspace, orgs: &[&str]) -> BTreeMap<String, Option<OrgView>> {
    orgs.iter()
        .map(|o| {
            let entry = service.replica().organization(o).map(|e| {
                (
                    e.name,
                    e.owner_user_id,
                    e.state,
                    e.members
                        .into_iter()
                        .map(|(u, r)| (u, r as i32))
                        .collect::<BTreeMap<_, _>>(),
                )
            });
            (o.to_string(), entry)
        })
        .collect()
}

pub fn reason(status: &tonic::Status) -> String {
    orgplane_platform::error::reason_of(status).unwrap_or_default()
}
