//! The rig of the merge tests: the organization service with its DNS checks pointed at the
//! in-process test DNS server (zone `test`) and its workspace client at a fake workspace
//! service, and the calls the tests repeat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use orgplane_platform::error::reason_of;
use orgplane_proto::organization::v1::account_service_client::AccountServiceClient;
use orgplane_proto::organization::v1::*;
use orgplane_proto::workspace::v1::workspace_service_server::{
    WorkspaceService, WorkspaceServiceServer,
};
use orgplane_proto::workspace::v1::{
    ListWorkspacesRequest, ListWorkspacesResponse, Workspace, WorkspaceState,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::harness::{Backend, Rig};
use orgplane_oracles::dns::TestDns;

/// The fake workspace service: `ListWorkspaces` of every organization (`-`) from `all`;
/// UNAVAILABLE while `down`.
#[derive(Clone, Default)]
pub struct FakeWorkspaces {
    pub all: Arc<Mutex<Vec<Workspace>>>,
    pub down: Arc<AtomicBool>,
}

impl FakeWorkspaces {
    /// Adds workspace `id` named `name` to `org`.
    pub fn add(&self, org: &str, id: &str, name: &str, archived: bool) {
        let state = if archived {
            WorkspaceState::Archived
        } else {
            WorkspaceState::Active
        };
        self.all.lock().unwrap().push(Workspace {
            id: id.into(),
            organization_id: org.into(),
            name: name.into(),
            state: state as i32,
            ..Default::default()
        });
    }

    /// Changes workspace `id`.
    pub fn set(&self, id: &str, f: impl FnOnce(&mut Workspace)) {
        let mut all = self.all.lock().unwrap();
        f(all.iter_mut().find(|w| w.id == id).unwrap());
    }
}

#[tonic::async_trait]
impl WorkspaceService for FakeWorkspaces {
    async fn list_workspaces(
        &self,
        request: Request<ListWorkspacesRequest>,
    ) -> Result<Response<ListWorkspacesResponse>, Status> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("the workspace service is down"));
        }
        let org = request.into_inner().organization_id;
        let workspaces = self
            .all
            .lock()
            .unwrap()
            .iter()
            .filter(|w| org == "-" || w.organization_id == org)
            .cloned()
            .collect();
        Ok(Response::new(ListWorkspacesResponse {
            workspaces,
            next_page_token: String::new(),
            revision: 1,
        }))
    }
}

/// The rig with its DNS server and fake workspace service.
pub struct Env {
    pub rig: Rig,
    pub dns: TestDns,
    pub workspaces: FakeWorkspaces,
    stop: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::ops::Deref for Env {
    type Target = Rig;
    fn deref(&self) -> &Rig {
        &self.rig
    }
}

/// The rig on `backend` with `configure` applied, or `None` without PostgreSQL.
pub async fn env_with(
    backend: Backend,
    configure: impl FnOnce(&mut orgplane_organization::Config),
) -> Option<Env> {
    let dns = TestDns::start(&["test"]).await;
    let workspaces = FakeWorkspaces::default();
    let addr = std::net::SocketAddr::from((
        [127, 0, 0, 1],
        orgplane_platform::testkit::reserved_ports(1)[0],
    ));
    let stop = CancellationToken::new();
    let server = tonic::transport::Server::builder()
        .add_service(WorkspaceServiceServer::new(workspaces.clone()))
        .serve_with_shutdown(addr, stop.clone().cancelled_owned());
    tokio::spawn(server);
    let url = format!("http://{addr}");
    let dns_addr = dns.addr;
    let Some(rig) = Rig::with_config(
        backend,
        |rt| {
            rt.endpoints.workspace = orgplane_platform::clients::connect_lazy(&url, None).unwrap();
        },
        |c| {
            c.dns_servers = vec![dns_addr];
            c.domain_check_interval_secs = 0;
            configure(c);
        },
    )
    .await
    else {
        stop.cancel();
        return None;
    };
    Some(Env {
        rig,
        dns,
        workspaces,
        stop,
    })
}

/// Both backends' rigs, one after the other (PostgreSQL only when configured).
pub async fn each_env(
    configure: impl Fn(&mut orgplane_organization::Config) + Copy,
) -> Vec<(Backend, Env)> {
    let mut out = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if let Some(env) = env_with(backend, configure).await {
            out.push((backend, env));
        }
    }
    out
}

pub fn accounts(rig: &Rig) -> AccountServiceClient<Channel> {
    AccountServiceClient::new(rig.channel())
}

/// Asserts `r` failed with `code` and ErrorInfo `reason`; answers the status.
pub fn expect_err<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, reason: &str) -> Status {
    let err = r.expect_err("expected an error");
    assert_eq!(err.code(), code, "{err:?}");
    assert_eq!(reason_of(&err).as_deref(), Some(reason), "{err:?}");
    err
}

/// An organization created by `owner` (of `kind`).
pub async fn create_org_of(rig: &Rig, owner: &str, name: &str, kind: OrganizationKind) -> String {
    rig.client()
        .create_organization(rig.as_user(
            owner,
            CreateOrganizationRequest {
                organization: Some(Organization {
                    name: name.into(),
                    kind: kind as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap()
        .id
}

/// A STANDARD organization created by `owner`.
pub async fn create_org(rig: &Rig, owner: &str, name: &str) -> String {
    create_org_of(rig, owner, name, OrganizationKind::Standard).await
}

/// Gives `user` the email `email` at identity (before they join anything).
pub fn set_email(rig: &Rig, user: &str, email: &str) {
    let email = email.to_owned();
    rig.identity.set(user, |u| u.email = email);
}

/// A pending invite of `email` to `org` as `role`, sent by `inviter`.
pub async fn invite(rig: &Rig, org: &str, inviter: &str, email: &str, role: OrgRole) -> Invite {
    rig.client()
        .create_invite(rig.as_user(
            inviter,
            CreateInviteRequest {
                organization_id: org.into(),
                invite: Some(Invite {
                    email: email.into(),
                    role: role as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invite
        .unwrap()
}

/// Invites `user` (at the email identity knows for them) to `org` as `role` and accepts.
pub async fn join(rig: &Rig, org: &str, inviter: &str, user: &str, role: OrgRole) {
    let email = rig.identity.user(user).unwrap().email;
    let inv = invite(rig, org, inviter, &email, role).await;
    rig.client()
        .accept_invite(rig.as_user(user, AcceptInviteRequest { invite_id: inv.id }))
        .await
        .unwrap();
}

/// Registers `name` for `org` (as `owner`), publishes its challenge and verifies it.
pub async fn verified_domain(env: &Env, owner: &str, org: &str, name: &str) {
    crate::harness::dns::verified_domain(&env.rig, &env.dns, owner, org, name).await;
}

/// The merge (or preview) request of `candidate` into `prime`.
pub fn merge_req(prime: &str, candidate: &str, validate_only: bool) -> MergeOrganizationsRequest {
    MergeOrganizationsRequest {
        prime_organization_id: prime.into(),
        candidate_organization_id: candidate.into(),
        validate_only,
        request_id: String::new(),
    }
}

/// MergeOrganizations as `caller`, signed in just now.
pub async fn merge(
    rig: &Rig,
    caller: &str,
    req: MergeOrganizationsRequest,
) -> Result<MergeOrganizationsResponse, Status> {
    rig.client()
        .merge_organizations(rig.as_user(caller, req))
        .await
        .map(|r| r.into_inner())
}

/// `user_o` (email `user_o@acme.test`) owning a prime holding `acme.test` VERIFIED and a
/// candidate: `(prime, candidate)`.
pub async fn ready_pair(env: &Env) -> (String, String) {
    set_email(env, "user_o", "user_o@acme.test");
    let prime = create_org(env, "user_o", "Prime").await;
    let candidate = create_org(env, "user_o", "Candidate").await;
    verified_domain(env, "user_o", &prime, "acme.test").await;
    (prime, candidate)
}

/// Account `name` created in `org` by `caller`.
pub async fn create_account(rig: &Rig, caller: &str, org: &str, name: &str) -> Account {
    accounts(rig)
        .create_account(rig.as_user(
            caller,
            CreateAccountRequest {
                organization_id: org.into(),
                account: Some(Account {
                    display_name: name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap()
}

/// Top-level unit (or child of `parent`) `name` of `org`, created by `caller`.
pub async fn create_unit(rig: &Rig, caller: &str, org: &str, name: &str, parent: &str) -> Unit {
    rig.client()
        .create_unit(rig.as_user(
            caller,
            CreateUnitRequest {
                organization_id: org.into(),
                unit: Some(Unit {
                    name: name.into(),
                    parent_unit_id: parent.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap()
}

/// The kinds of `conflicts`, in order.
pub fn kinds(conflicts: &[MergeConflict]) -> Vec<MergeConflictKind> {
    conflicts.iter().map(|c| c.kind()).collect()
}

/// The audit records of `org` with `action`, straight from the database (a MERGED
/// organization's log is no longer readable over the API).
pub async fn audit_rows(
    rig: &Rig,
    org: &str,
    action: &str,
) -> Vec<orgplane_platform::audit::row::Model> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    orgplane_platform::audit::row::Entity::find()
        .filter(orgplane_platform::audit::row::Column::OrganizationId.eq(org))
        .filter(orgplane_platform::audit::row::Column::Action.eq(action))
        .all(rig.org.db())
        .await
        .unwrap()
}
