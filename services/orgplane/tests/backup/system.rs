//! A running Orgplane for the backup suite: all four services in this process (`orgplane::start`)
//! on a data directory of SQLite files, tokens minted with identity's own signing key, and the
//! few writes the scenarios drive (users seeded through identity's store; organizations,
//! members, roles and workspaces through the real RPCs).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orgplane::{Cli, Service, Started};
use orgplane_platform::auth::{Capabilities, Claims, SERVICE_AUDIENCE, Signer, USER_AUDIENCE};
use orgplane_platform::testkit::bearer;
use orgplane_proto::organization::v1 as org;
use orgplane_proto::organization::v1::organization_service_client::OrganizationServiceClient;
use orgplane_proto::workspace::v1 as ws;
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, Statement};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The command line of an `orgplane all` on `data_dir`.
pub fn cli(data_dir: &Path) -> Cli {
    <Cli as clap::Parser>::try_parse_from([
        "orgplane".to_owned(),
        "--http-listen".into(),
        "off".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--mail-url".into(),
        format!("file://{}", data_dir.join("mail").display()),
        "--organization-mail-url".into(),
        format!("file://{}", data_dir.join("mail").display()),
    ])
    .unwrap()
}

/// A running system.
pub struct System {
    pub data_dir: PathBuf,
    pub cli: Cli,
    started: Option<Started>,
    shutdown: CancellationToken,
    pub channel: Channel,
    signer: std::sync::Arc<Signer>,
}

impl System {
    /// Starts `orgplane all` on `data_dir` (existing files are used as they are).
    pub async fn start(data_dir: &Path) -> System {
        Self::start_with(data_dir, None).await
    }

    /// [`System::start`], the consumers of organization's events reaching it at
    /// `organization_url` (for example a [`Gate`]) when given.
    pub async fn start_with(data_dir: &Path, organization_url: Option<String>) -> System {
        let mut cli = cli(data_dir);
        cli.organization_url = organization_url;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let started = orgplane::start(&cli, &Service::ALL, listener, shutdown.clone())
            .await
            .unwrap();
        let channel = Channel::from_shared(format!("http://{}", started.addr))
            .unwrap()
            .connect_lazy();
        let signer = started.opened.identity.as_ref().unwrap().keys().signer();
        System {
            data_dir: data_dir.to_owned(),
            cli,
            started: Some(started),
            shutdown,
            channel,
            signer,
        }
    }

    /// The address all four services listen on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.started.as_ref().unwrap().addr
    }

    /// Stops the system (calls in flight drain).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(s) = self.started.take() {
            tokio::time::timeout(Duration::from_secs(20), s.wait())
                .await
                .unwrap()
                .unwrap();
        }
    }

    fn claims(&self, sub: &str, aud: &str) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            iss: self.cli.issuer.clone(),
            sub: sub.into(),
            aud: aud.into(),
            exp: now + 3600,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        }
    }

    /// An access token of `user`, as Login would mint it.
    pub fn user_token(&self, user: &str) -> String {
        let mut c = self.claims(user, USER_AUDIENCE);
        c.sid = Some(format!("ses_backup_{user}"));
        c.auth_time = Some(c.iat);
        self.signer.sign(&c).unwrap()
    }

    /// A token of this process's service account, with what it holds: the capabilities of
    /// all four services.
    pub fn service_token(&self) -> String {
        let mut claims = self.claims(&self.cli.service_client_id, SERVICE_AUDIENCE);
        claims.scope = Some(
            Service::ALL
                .iter()
                .filter_map(|s| Capabilities::of_service(s.name()))
                .fold(Capabilities::NONE, Capabilities::union)
                .to_scope(),
        );
        self.signer.sign(&claims).unwrap()
    }

    /// The database of `service`, as the running service uses it.
    pub fn db(&self, service: Service) -> &DatabaseConnection {
        let o = &self.started.as_ref().unwrap().opened;
        match service {
            Service::Identity => o.identity.as_ref().unwrap().db(),
            Service::Organization => o.organization.as_ref().unwrap().db(),
            Service::Workspace => o.workspace.as_ref().unwrap().db(),
            Service::BillingAccess => o.billing_access.as_ref().unwrap().db(),
        }
    }

    /// The rows of `sql` on `service`'s database, every column as text.
    pub async fn rows(&self, service: Service, sql: &str) -> Vec<Vec<String>> {
        rows(self.db(service), sql).await
    }

    /// Writes a verified user `id` through identity's store.
    pub async fn seed_user(&self, id: &str) {
        use orgplane_identity::entity::user;
        let now = chrono::Utc::now().timestamp_millis();
        let email = format!("{id}@backup.test");
        user::Entity::insert(user::ActiveModel::from(user::Model {
            id: id.into(),
            email: email.clone(),
            email_key: email,
            email_verified: true,
            display_name: id.into(),
            account_type: 1,
            password_hash: String::new(),
            version: 1,
            create_time_ms: now,
            update_time_ms: now,
            signup_request_id: None,
        }))
        .exec(self.db(Service::Identity))
        .await
        .unwrap();
    }

    pub fn orgs(&self) -> OrganizationServiceClient<Channel> {
        OrganizationServiceClient::new(self.channel.clone())
    }

    pub fn workspaces(&self) -> WorkspaceServiceClient<Channel> {
        WorkspaceServiceClient::new(self.channel.clone())
    }

    /// Creates an organization owned by `owner` (seeded first): its id.
    pub async fn create_org(&self, owner: &str) -> String {
        self.seed_user(owner).await;
        self.orgs()
            .create_organization(bearer(
                org::CreateOrganizationRequest {
                    organization: Some(org::Organization {
                        name: format!("Org of {owner}"),
                        r#type: org::OrganizationType::Company as i32,
                        primary_email: format!("{owner}@backup.test"),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.user_token(owner),
            ))
            .await
            .unwrap()
            .into_inner()
            .organization
            .unwrap()
            .id
    }

    /// Makes `user` a member of `org` with `role` (or changes their role): the organization's
    /// revision of the change.
    pub async fn provision(&self, org_id: &str, user: &str, role: org::OrgRole) -> i64 {
        self.orgs()
            .provision_member(bearer(
                org::ProvisionMemberRequest {
                    organization_id: org_id.into(),
                    user_id: user.into(),
                    role: role as i32,
                    request_id: uuid::Uuid::new_v4().to_string(),
                    source: "scim".into(),
                    set_role: true,
                },
                &self.service_token(),
            ))
            .await
            .unwrap()
            .into_inner()
            .revision
    }

    /// Changes `user`'s role in `org` as its owner.
    pub async fn update_role(&self, owner: &str, org_id: &str, user: &str, role: org::OrgRole) {
        self.orgs()
            .update_member_role(bearer(
                org::UpdateMemberRoleRequest {
                    organization_id: org_id.into(),
                    user_id: user.into(),
                    role: role as i32,
                    etag: String::new(),
                },
                &self.user_token(owner),
            ))
            .await
            .unwrap();
    }

    /// Creates a workspace in `org` as its owner and adds `member` to it as a developer, once
    /// the workspace service has applied the organization's `revision`.
    pub async fn create_workspace(
        &self,
        owner: &str,
        org_id: &str,
        name: &str,
        member: &str,
        revision: i64,
    ) {
        let token = self.user_token(owner);
        let workspace = self
            .workspaces()
            .create_workspace(at(
                revision,
                bearer(
                    ws::CreateWorkspaceRequest {
                        organization_id: org_id.into(),
                        workspace: Some(ws::Workspace {
                            name: name.into(),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                    &token,
                ),
            ))
            .await
            .unwrap()
            .into_inner()
            .workspace
            .unwrap();
        self.workspaces()
            .add_workspace_member(at(
                revision,
                bearer(
                    ws::AddWorkspaceMemberRequest {
                        workspace_id: workspace.id,
                        user_id: member.into(),
                        role: ws::WorkspaceRole::Developer as i32,
                        request_id: String::new(),
                    },
                    &token,
                ),
            ))
            .await
            .unwrap();
    }

    /// Whether the workspace service lets `user` read `org`'s Default Workspace, once it has
    /// applied the organization's `revision`.
    pub async fn can_read(&self, org_id: &str, user: &str, revision: i64) -> bool {
        self.workspaces()
            .check_access(bearer(
                ws::CheckAccessRequest {
                    organization_id: org_id.into(),
                    workspace_id: String::new(),
                    subject: Some(ws::check_access_request::Subject::UserId(user.into())),
                    permission: ws::Permission::Read as i32,
                    min_organization_revision: revision,
                    ..Default::default()
                },
                &self.service_token(),
            ))
            .await
            .unwrap()
            .into_inner()
            .allowed
    }

    /// Each producer's outbox head.
    pub async fn heads(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for s in [Service::Identity, Service::Organization, Service::Workspace] {
            let r = self
                .rows(s, "SELECT revision FROM outbox_head WHERE id = 1")
                .await;
            out.push((s.name().to_owned(), r[0][0].parse().unwrap()));
        }
        out
    }

    /// Every consumer cursor: (consumer, producer, revision).
    pub async fn cursors(&self) -> Vec<(String, String, i64)> {
        let mut out = Vec::new();
        for s in Service::ALL {
            for r in self
                .rows(s, "SELECT producer, revision FROM consumer_cursors")
                .await
            {
                out.push((s.name().to_owned(), r[0].clone(), r[1].parse().unwrap()));
            }
        }
        out
    }

    /// Waits until every consumer's cursor is at its producer's head (all events applied).
    pub async fn wait_in_step(&self) {
        let start = Instant::now();
        loop {
            let heads = self.heads().await;
            let cursors = self.cursors().await;
            let behind: Vec<_> = cursors
                .iter()
                .filter(|(_, p, c)| heads.iter().any(|(h, r)| h == p && r != c))
                .collect();
            if behind.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "consumers not in step after 30 s: cursors {cursors:?}, heads {heads:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The organization's members: (organization, user, role).
    pub async fn members(&self) -> Vec<Vec<String>> {
        self.rows(
            Service::Organization,
            "SELECT organization_id, user_id, role FROM members ORDER BY 1, 2",
        )
        .await
    }

    /// `service`'s replica of the organization's members.
    pub async fn replica(&self, service: Service) -> Vec<Vec<String>> {
        self.rows(
            service,
            "SELECT organization_id, user_id, role FROM replica_members ORDER BY 1, 2",
        )
        .await
    }
}

/// `req` answered only once the organization's `revision` is applied.
fn at<T>(revision: i64, mut req: tonic::Request<T>) -> tonic::Request<T> {
    req.metadata_mut()
        .insert("x-min-organization-revision", revision.into());
    req
}

/// The rows of `sql` on `db`, every column as text (integers and text columns only).
pub async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<Vec<String>> {
    db.query_all_raw(Statement::from_string(DbBackend::Sqlite, sql.to_owned()))
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            (0..)
                .map_while(|i| {
                    row.try_get_by_index::<String>(i)
                        .or_else(|_| row.try_get_by_index::<i64>(i).map(|v| v.to_string()))
                        .ok()
                })
                .collect()
        })
        .collect()
}

/// Copies the database files (and the key file) of backup `from` into the new data directory
/// `to`: the restore.
pub fn restore(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name != orgplane::backup::MANIFEST {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

/// A loopback port that refuses connections until [`Gate::open`], then forwards each to the
/// system: consumers pointed at it connect only when the scenario lets them.
pub struct Gate {
    addr: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gate {
    /// A closed gate on a free port.
    pub fn closed() -> Gate {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        Gate { addr, task: None }
    }

    /// The URL to point clients at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, connections are accepted and forwarded to `to`.
    pub async fn open(&mut self, to: std::net::SocketAddr) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        }));
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
