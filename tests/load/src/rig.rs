//! A fresh Orgplane in this process, exactly as the `orgplane all` binary assembles it
//! (`orgplane::start`), on a temporary directory (SQLite) or on four new PostgreSQL databases
//! that are dropped afterwards; plus the seeding helpers.
//!
//! Seeding: organizations and workspaces are created through the real RPCs; bulk members are
//! written directly through the organization service's store, each row with its `MemberAdded`
//! event appended to the organization outbox in the same transaction (exactly what AcceptInvite
//! writes, minus the invite and audit rows), so every consumer replica sees them as usual.
//! Users are written through identity's store, the shared world's members with the
//! `UserProfileChanged` event a sign-up publishes (the organization service names members from
//! it); users whose passwords matter (login) with a hash from identity's own hasher.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use orgplane::{Cli, Service, Started};
use orgplane_platform::auth::{
    Capabilities, Capability, Claims, SERVICE_AUDIENCE, Signer, USER_AUDIENCE,
};
use orgplane_proto::events::v1::{MemberAdded, UserProfileChanged, event};
use orgplane_proto::organization::v1 as org_api;
use orgplane_proto::workspace::v1 as ws_api;
use sea_orm::{ConnectionTrait, Database, DbBackend, EntityTrait, Statement};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

/// Four PostgreSQL databases created for one run, dropped by [`Rig::stop`].
#[derive(Debug, Clone)]
pub struct PgDatabases {
    admin: String,
    names: Vec<String>,
}

impl PgDatabases {
    /// Creates one database per service on the server of `admin`.
    pub async fn create(admin: &str) -> anyhow::Result<Self> {
        let conn = Database::connect(admin)
            .await
            .context("connecting to PostgreSQL")?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let mut names = Vec::new();
        for s in Service::ALL {
            let name = format!(
                "orgplane_bench_{}_{}",
                s.name().replace('-', "_"),
                &run[..8]
            );
            conn.execute_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("CREATE DATABASE {name}"),
            ))
            .await?;
            names.push(name);
        }
        let _ = conn.close().await;
        Ok(Self {
            admin: admin.to_owned(),
            names,
        })
    }

    /// `--<service>-database-url` flags.
    pub fn flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (s, name) in Service::ALL.iter().zip(&self.names) {
            out.push(format!("--{}-database-url", s.name()));
            out.push(orgplane_platform_with_database(&self.admin, name));
        }
        out
    }

    /// Drops the databases.
    pub async fn drop_all(&self) {
        if let Ok(conn) = Database::connect(self.admin.as_str()).await {
            for name in &self.names {
                let _ = conn
                    .execute_raw(Statement::from_string(
                        DbBackend::Postgres,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    ))
                    .await;
            }
            let _ = conn.close().await;
        }
    }
}

/// `url` with its database name replaced by `name`.
fn orgplane_platform_with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

/// The process-level arguments of an `orgplane all` on `dir` (and `pg`).
pub fn orgplane_args(dir: &std::path::Path, pg: Option<&PgDatabases>) -> Vec<String> {
    let mut args = vec![
        "orgplane".to_owned(),
        // A free port: runs side by side never contend for the default one.
        "--http-listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--mail-url".into(),
        format!("file://{}", dir.join("mail").display()),
        "--page-token-secret".into(),
        "orgplane-bench-page-token-secret".into(),
        "--log-format".into(),
        "text".into(),
        // A fixed key, as production sets one: no key file generated (and warned about).
        "--signing-key-encryption-key".into(),
        "b3JncGxhbmUtYmVuY2gtc2lnbmluZy1rZXktMDAwMDA=".into(),
    ];
    if let Some(pg) = pg {
        args.extend(pg.flags());
    }
    args
}

/// A running Orgplane and what the scenarios need to talk to it.
pub struct Rig {
    /// The data directory (kept until the rig is dropped).
    pub dir: tempfile::TempDir,
    /// The PostgreSQL databases, when on PostgreSQL.
    pub pg: Option<PgDatabases>,
    /// The running services.
    pub started: Option<Started>,
    /// Cancels the server.
    pub shutdown: CancellationToken,
    /// Connections the load uses (one HTTP/2 connection each).
    pub channels: Vec<Channel>,
    signer: Arc<Signer>,
    issuer: String,
}

/// Eagerly connected channels to `url`.
pub async fn connect(url: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for _ in 0..n.max(1) {
        let ch = Endpoint::from_shared(url.to_owned())?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        out.push(ch);
    }
    Ok(out)
}

/// Waits until the overall health of `channel` is SERVING.
pub async fn wait_serving(channel: Channel, timeout: Duration) -> anyhow::Result<Duration> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let start = Instant::now();
    let mut client = HealthClient::new(channel);
    loop {
        let serving = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| {
                r.into_inner().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            })
            .unwrap_or(false);
        if serving {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            return Err(anyhow!("not SERVING after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Rig {
    /// Starts a fresh `orgplane all` in this process and waits until it is SERVING.
    pub async fn start(postgres: Option<&str>, connections: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let pg = match postgres {
            Some(url) => Some(PgDatabases::create(url).await?),
            None => None,
        };
        Self::start_in(dir, pg, connections).await
    }

    /// Starts an `orgplane all` in this process on the data of a stopped rig (its directory
    /// and databases, with whatever they hold) and waits until it is SERVING.
    pub async fn start_in(
        dir: tempfile::TempDir,
        pg: Option<PgDatabases>,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let cli = <Cli as clap::Parser>::try_parse_from(orgplane_args(dir.path(), pg.as_ref()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let shutdown = CancellationToken::new();
        let started = orgplane::start(&cli, &Service::ALL, listener, shutdown.clone()).await?;
        let url = format!("http://{}", started.addr);
        let channels = connect(&url, connections).await?;
        wait_serving(channels[0].clone(), Duration::from_secs(60)).await?;
        let identity = started
            .opened
            .identity
            .as_ref()
            .ok_or_else(|| anyhow!("identity is not running"))?;
        let signer = identity.keys().signer();
        Ok(Self {
            dir,
            pg,
            started: Some(started),
            shutdown,
            channels,
            signer,
            issuer: cli.issuer.clone(),
        })
    }

    /// Stops the server (draining calls) and drops PostgreSQL databases; the SQLite files stay
    /// in [`Self::dir`] until the rig is dropped.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(s) = self.started.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), s.wait()).await;
        }
    }

    /// The data of a stopped rig (its directory and PostgreSQL databases), to start another
    /// `orgplane all` on with [`Self::start_in`].
    pub fn into_data(self) -> (tempfile::TempDir, Option<PgDatabases>) {
        (self.dir, self.pg)
    }

    /// Drops the PostgreSQL databases (after [`Self::stop`]).
    pub async fn drop_databases(&self) {
        if let Some(pg) = &self.pg {
            pg.drop_all().await;
        }
    }

    /// The running services.
    pub fn opened(&self) -> anyhow::Result<&orgplane::Opened> {
        self.started
            .as_ref()
            .map(|s| &s.opened)
            .ok_or_else(|| anyhow!("stopped"))
    }

    fn claims(&self, sub: &str, aud: &str) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            iss: self.issuer.clone(),
            sub: sub.into(),
            aud: aud.into(),
            exp: now + 3600,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            auth_time: None,
            sid: None,
            ..Default::default()
        }
    }

    /// An access token for `user_id`, signed with identity's current key (as Login would mint).
    pub fn user_token(&self, user_id: &str) -> anyhow::Result<String> {
        let mut c = self.claims(user_id, USER_AUDIENCE);
        c.sid = Some(format!("ses_bench_{user_id}"));
        c.auth_time = Some(c.iat);
        Ok(self.signer.sign(&c)?)
    }

    /// A service token of a product backend: access checks and usage.
    pub fn service_token(&self) -> anyhow::Result<String> {
        let mut claims = self.claims("product", SERVICE_AUDIENCE);
        claims.scope =
            Some(Capabilities::of(&[Capability::CheckAccess, Capability::RecordUsage]).to_scope());
        Ok(self.signer.sign(&claims)?)
    }

    /// A service token with exactly `capabilities` (e.g. a consumer that watches events).
    pub fn service_token_with(&self, capabilities: Capabilities) -> anyhow::Result<String> {
        let mut claims = self.claims("product", SERVICE_AUDIENCE);
        claims.scope = Some(capabilities.to_scope());
        Ok(self.signer.sign(&claims)?)
    }

    /// The i-th channel (round robin).
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    /// Writes a user through identity's store (verified email; `password_hash` may be empty).
    pub async fn seed_user(
        &self,
        id: &str,
        email: &str,
        password_hash: &str,
    ) -> anyhow::Result<()> {
        use orgplane_identity::entity::user;
        let identity = self
            .opened()?
            .identity
            .as_ref()
            .ok_or_else(|| anyhow!("no identity"))?;
        let now = chrono::Utc::now().timestamp_millis();
        let row = seeded_user(id, email, id, password_hash, now);
        user::Entity::insert(user::ActiveModel::from(row))
            .exec(identity.db())
            .await?;
        Ok(())
    }

    /// Writes `user_ids` as users through identity's store (verified `<id>@bench.test`, no
    /// password) with the `UserProfileChanged` a sign-up publishes, and waits until the
    /// organization service applied them: members are then named as real users are.
    pub async fn seed_users(&self, user_ids: &[String]) -> anyhow::Result<()> {
        use orgplane_identity::entity::user;
        let opened = self.opened()?;
        let identity = opened
            .identity
            .as_ref()
            .ok_or_else(|| anyhow!("no identity"))?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut revision = 0;
        for chunk in user_ids.chunks(1000) {
            let txn = orgplane_platform::db::begin_write(identity.db()).await?;
            let rows: Vec<user::Model> = chunk
                .iter()
                .map(|u| {
                    seeded_user(
                        u,
                        &format!("{u}@bench.test"),
                        &format!("Bench {u}"),
                        "",
                        now,
                    )
                })
                .collect();
            for part in rows.chunks(200) {
                user::Entity::insert_many(part.iter().cloned().map(user::ActiveModel::from))
                    .exec(&txn)
                    .await?;
            }
            for u in &rows {
                revision = identity
                    .outbox()
                    .append(
                        &txn,
                        event::Payload::UserProfileChanged(UserProfileChanged {
                            user_id: u.id.clone(),
                            display_name: u.display_name.clone(),
                            email: u.email.clone(),
                        }),
                        "bench-seed",
                    )
                    .await?;
            }
            txn.commit().await?;
            identity.outbox().committed(revision);
        }
        if let Some(org) = opened.organization.as_ref() {
            org.identity_events()
                .wait_for(revision, Duration::from_secs(120))
                .await
                .map_err(|e| anyhow!("the organization service did not apply the users: {e}"))?;
        }
        Ok(())
    }

    /// Creates an organization owned by `owner` (a seeded user) through the RPC.
    pub async fn create_org(&self, owner: &str, name: &str) -> anyhow::Result<(String, i64)> {
        let mut c =
            org_api::organization_service_client::OrganizationServiceClient::new(self.channel(0));
        let resp = c
            .create_organization(bearer(
                org_api::CreateOrganizationRequest {
                    organization: Some(org_api::Organization {
                        name: name.into(),
                        r#type: org_api::OrganizationType::Company as i32,
                        primary_email: format!("{owner}@bench.test"),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.user_token(owner)?,
            ))
            .await
            .context("CreateOrganization")?
            .into_inner();
        let org = resp
            .organization
            .ok_or_else(|| anyhow!("no organization"))?;
        Ok((org.id, resp.revision))
    }

    /// Creates a workspace through the RPC.
    pub async fn create_workspace(
        &self,
        owner: &str,
        org: &str,
        name: &str,
    ) -> anyhow::Result<(String, i64)> {
        let mut c = ws_api::workspace_service_client::WorkspaceServiceClient::new(self.channel(0));
        let resp = c
            .create_workspace(bearer(
                ws_api::CreateWorkspaceRequest {
                    organization_id: org.into(),
                    workspace: Some(ws_api::Workspace {
                        name: name.into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.user_token(owner)?,
            ))
            .await
            .context("CreateWorkspace")?
            .into_inner();
        let ws = resp.workspace.ok_or_else(|| anyhow!("no workspace"))?;
        Ok((ws.id, resp.revision))
    }

    /// Writes members `user_ids` with `role` into `org` through the organization store, each with
    /// its MemberAdded event in the same transaction (1,000 per transaction). Returns the last
    /// organization revision.
    pub async fn seed_members(
        &self,
        org: &str,
        user_ids: &[String],
        role: org_api::OrgRole,
    ) -> anyhow::Result<i64> {
        use orgplane_organization::store::member;
        let organization = self
            .opened()?
            .organization
            .as_ref()
            .ok_or_else(|| anyhow!("no organization service"))?;
        let base = chrono::Utc::now().timestamp_millis() - 10_000_000;
        let mut revision = 0;
        for (n, chunk) in user_ids.chunks(1000).enumerate() {
            let txn = orgplane_platform::db::begin_write(organization.db()).await?;
            let rows: Vec<member::ActiveModel> = chunk
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    member::ActiveModel::from(member::Model {
                        organization_id: org.into(),
                        user_id: u.clone(),
                        email: format!("{u}@bench.test"),
                        role: role as i32,
                        create_time_ms: base + (n * 1000 + i) as i64,
                        update_time_ms: base,
                        version: 1,
                    })
                })
                .collect();
            for rows in rows.chunks(200) {
                member::Entity::insert_many(rows.to_vec())
                    .exec(&txn)
                    .await?;
            }
            for u in chunk {
                revision = organization
                    .outbox()
                    .append(
                        &txn,
                        event::Payload::MemberAdded(MemberAdded {
                            organization_id: org.into(),
                            user_id: u.clone(),
                            role: role as i32,
                        }),
                        "bench-seed",
                    )
                    .await?;
            }
            txn.commit().await?;
            organization.outbox().committed(revision);
        }
        Ok(revision)
    }

    /// Waits until the workspace service applied organization revision `revision`.
    pub async fn wait_workspace_applied(&self, revision: i64) -> anyhow::Result<()> {
        let ws = self
            .opened()?
            .workspace
            .as_ref()
            .ok_or_else(|| anyhow!("no workspace service"))?;
        ws.organization_events()
            .wait_for(revision, Duration::from_secs(300))
            .await?;
        Ok(())
    }

    /// Waits until billing-access applied organization revision `revision`.
    pub async fn wait_billing_applied(&self, revision: i64) -> anyhow::Result<()> {
        let b = self
            .opened()?
            .billing_access
            .as_ref()
            .ok_or_else(|| anyhow!("no billing-access service"))?;
        b.organization_events()
            .wait_for(revision, Duration::from_secs(300))
            .await?;
        Ok(())
    }
}

pub use orgplane_platform::testkit::bearer;

/// A BUSINESS user with a verified `email`, as the bench writes it to identity's store.
fn seeded_user(
    id: &str,
    email: &str,
    display_name: &str,
    password_hash: &str,
    now: i64,
) -> orgplane_identity::entity::user::Model {
    orgplane_identity::entity::user::Model {
        id: id.into(),
        email: email.into(),
        email_key: email.to_lowercase(),
        email_verified: true,
        display_name: display_name.into(),
        account_type: 1,
        password_hash: password_hash.into(),
        version: 1,
        create_time_ms: now,
        update_time_ms: now,
        signup_request_id: None,
    }
}
