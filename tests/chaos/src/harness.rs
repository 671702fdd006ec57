//! The system under test: identity runs in this process (the root of trust: it mints the tokens
//! the scenarios use and is never crashed here), organization, workspace and billing-access run
//! as separate `orgplane serve <service>` child processes on fixed ports and their own databases,
//! wired like Kubernetes, so that they can be killed with SIGKILL and restarted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tls::HarnessTls;
use anyhow::{Context, anyhow, bail};
use orgplane::{Cli, Service, Started};
use orgplane_platform::auth::{
    Capabilities, Claims, SERVICE_AUDIENCE, Signer, USER_AUDIENCE, parse_capability_list,
};
use orgplane_proto::organization::v1 as org_api;
use orgplane_proto::workspace::v1 as ws_api;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

/// The services run as child processes.
pub const CHILDREN: [&str; 3] = ["organization", "workspace", "billing-access"];

/// The product backend's service account (asks CheckAccess / CheckBillingAccess).
pub const PRODUCT: &str = "product";

/// What the suites do as the product backend: access checks, usage, provisioning (audit) and
/// watching streams (protocol limits, load).
pub const PRODUCT_CAPABILITIES: &str = "check-access+record-usage+provision-members+\
                                        watch:identity+watch:organization+watch:workspace";

const PAGE_TOKEN_SECRET: &str = "orgplane-chaos-page-token-secret";

/// How long identity counts failed sign-ins here (15 minutes in production), so that the
/// login-abuse suite can wait out a throttle.
pub const LOGIN_THROTTLE_WINDOW: Duration = Duration::from_secs(2);

/// Four PostgreSQL databases created for one run.
#[derive(Debug, Clone)]
pub struct PgDatabases {
    admin: String,
    /// identity, organization, workspace, billing-access.
    pub urls: Vec<String>,
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
        let mut urls = Vec::new();
        for s in Service::ALL {
            let name = format!(
                "orgplane_chaos_{}_{}",
                s.name().replace('-', "_"),
                &run[..8]
            );
            conn.execute_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("CREATE DATABASE {name}"),
            ))
            .await?;
            urls.push(with_database(admin, &name));
            names.push(name);
        }
        let _ = conn.close().await;
        Ok(Self {
            admin: admin.to_owned(),
            urls,
            names,
        })
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

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host}/{name}?{q}"),
        None => format!("{host}/{name}"),
    }
}

/// `client_id:sha256-hex(secret):capabilities`, as `--service-accounts` lists accounts.
fn account(client_id: &str, secret: &str, capabilities: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{client_id}:{hex}:{capabilities}")
}

/// A `orgplane` setup with the three killable services as child processes.
pub struct Harness {
    bin: PathBuf,
    /// Data directory (SQLite files, mail, process logs).
    pub dir: tempfile::TempDir,
    /// The PostgreSQL databases, when on PostgreSQL.
    pub pg: Option<PgDatabases>,
    identity: Option<Started>,
    identity_shutdown: CancellationToken,
    identity_url: String,
    ports: HashMap<&'static str, u16>,
    children: HashMap<&'static str, Child>,
    signer: Arc<Signer>,
    issuer: String,
    /// How many processes were killed with SIGKILL.
    pub kills: u64,
    /// Database URLs given to child services instead of [`Harness::database_url`] (e.g. through
    /// a fault-injecting proxy); the harness itself keeps reading the real database.
    db_overrides: HashMap<&'static str, String>,
    /// Extra environment for child services (`None`: every child), applied after the defaults.
    extra_env: Vec<(Option<&'static str>, String, String)>,
    /// The command line identity was started with (to start it again the same way).
    identity_args: Vec<String>,
    /// TLS on every listener and internal call, when the harness was started with it.
    tls: Option<HarnessTls>,
}

impl Harness {
    /// Starts identity in-process and the three other services as child processes of `bin`
    /// (an executable whose `orgplane` subcommand is the orgplane binary), on SQLite or on new
    /// databases of the PostgreSQL server `postgres`.
    pub async fn start(bin: &Path, postgres: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(bin, postgres, false).await
    }

    /// [`Harness::start`] with TLS (`tls`) on every listener and every internal call, with
    /// certificates of a CA made for the run.
    pub async fn start_with(bin: &Path, postgres: Option<&str>, tls: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let tls = if tls {
            Some(HarnessTls::new(dir.path())?)
        } else {
            None
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let pg = match postgres {
            Some(url) => Some(PgDatabases::create(url).await?),
            None => None,
        };
        let ports = orgplane_platform::testkit::reserved_ports(3);
        let ports: HashMap<&'static str, u16> = CHILDREN.iter().copied().zip(ports).collect();
        let mut accounts: Vec<String> = CHILDREN
            .iter()
            .map(|n| account(n, &format!("secret-{n}"), &format!("@{n}")))
            .collect();
        accounts.push(account(PRODUCT, "secret-product", PRODUCT_CAPABILITIES));
        let mut args = vec![
            "orgplane".to_owned(),
            "--http-listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            dir.path().join("identity").display().to_string(),
            "--mail-url".into(),
            format!("file://{}", dir.path().join("mail").display()),
            "--page-token-secret".into(),
            PAGE_TOKEN_SECRET.into(),
            "--service-accounts".into(),
            accounts.join(","),
            "--organization-url".into(),
            format!("{scheme}://127.0.0.1:{}", ports["organization"]),
            "--workspace-url".into(),
            format!("{scheme}://127.0.0.1:{}", ports["workspace"]),
            "--signing-key-encryption-key-file".into(),
            dir.path()
                .join("identity-signing.key")
                .display()
                .to_string(),
            "--password-hash-memory-kib".into(),
            "1024".into(),
            "--password-hash-iterations".into(),
            "1".into(),
            "--login-throttle-window-secs".into(),
            LOGIN_THROTTLE_WINDOW.as_secs().to_string(),
        ];
        if let Some(tls) = &tls {
            args.extend(tls.args());
        }
        if let Some(pg) = &pg {
            args.push("--identity-database-url".into());
            args.push(pg.urls[0].clone());
        }
        let cli = <Cli as clap::Parser>::try_parse_from(args.clone())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let shutdown = CancellationToken::new();
        let started = orgplane::start(&cli, &[Service::Identity], listener, shutdown.clone())
            .await
            .context("starting identity")?;
        let identity_url = format!("{scheme}://{}", started.addr);
        let signer = started
            .opened
            .identity
            .as_ref()
            .ok_or_else(|| anyhow!("identity is not running"))?
            .keys()
            .signer();
        let mut h = Harness {
            bin: bin.to_path_buf(),
            dir,
            pg,
            identity: Some(started),
            identity_shutdown: shutdown,
            identity_url,
            ports,
            children: HashMap::new(),
            signer,
            issuer: cli.issuer.clone(),
            kills: 0,
            db_overrides: HashMap::new(),
            extra_env: Vec::new(),
            identity_args: args,
            tls,
        };
        for name in CHILDREN {
            h.spawn(name).await?;
        }
        Ok(h)
    }

    /// The database URL of child service `name`.
    pub fn database_url(&self, name: &str) -> String {
        let i = CHILDREN.iter().position(|n| *n == name).unwrap_or(0) + 1;
        match &self.pg {
            Some(pg) => pg.urls[i].clone(),
            None => orgplane_platform::db::default_sqlite_url(
                &self.dir.path().join(name).join("data"),
                name,
            ),
        }
    }

    /// Makes child service `name` use `url` as its database from its next (re)start on.
    pub fn override_database_url(&mut self, name: &'static str, url: String) {
        self.db_overrides.insert(name, url);
    }

    fn env(&self, name: &str) -> Vec<(String, String)> {
        let scheme = self.scheme();
        let url = |n: &str| format!("{scheme}://127.0.0.1:{}", self.ports[n]);
        let var = match name {
            "organization" => "ORGPLANE_ORGANIZATION_DATABASE_URL",
            "workspace" => "ORGPLANE_WORKSPACE_DATABASE_URL",
            _ => "ORGPLANE_BILLING_ACCESS_DATABASE_URL",
        };
        let mail = format!("file://{}", self.dir.path().join("mail").display());
        let mut env = vec![
            (
                "ORGPLANE_LISTEN".into(),
                format!("127.0.0.1:{}", self.ports[name]),
            ),
            ("ORGPLANE_IDENTITY_URL".into(), self.identity_url.clone()),
            ("ORGPLANE_ORGANIZATION_URL".into(), url("organization")),
            ("ORGPLANE_WORKSPACE_URL".into(), url("workspace")),
            ("ORGPLANE_SERVICE_CLIENT_ID".into(), name.into()),
            (
                "ORGPLANE_SERVICE_CLIENT_SECRET".into(),
                format!("secret-{name}"),
            ),
            (
                "ORGPLANE_PAGE_TOKEN_SECRET".into(),
                PAGE_TOKEN_SECRET.into(),
            ),
            ("ORGPLANE_MAIL_URL".into(), mail.clone()),
            ("ORGPLANE_ORGANIZATION_MAIL_URL".into(), mail),
            (
                "ORGPLANE_DATA_DIR".into(),
                self.dir
                    .path()
                    .join(name)
                    .join("data")
                    .display()
                    .to_string(),
            ),
            (
                var.into(),
                self.db_overrides
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| self.database_url(name)),
            ),
            ("RUST_LOG".into(), "warn".into()),
        ];
        env.extend(self.tls.iter().flat_map(HarnessTls::env));
        env.extend(
            self.extra_env
                .iter()
                .filter(|(only, _, _)| only.is_none_or(|o| o == name))
                .map(|(_, k, v)| (k.clone(), v.clone())),
        );
        env
    }

    /// Sets `key=value` in the environment of child service `only` (every child when `None`)
    /// from its next (re)start on, overriding the harness's defaults (e.g. `RUST_LOG`).
    pub fn set_env(&mut self, only: Option<&'static str>, key: &str, value: &str) {
        self.extra_env
            .push((only, key.to_owned(), value.to_owned()));
    }

    /// Drops every `key` set with [`Harness::set_env`] for child service `only` (or for every
    /// child when `None`), so its next (re)start gets the harness's default again.
    pub fn unset_env(&mut self, only: Option<&'static str>, key: &str) {
        self.extra_env.retain(|(o, k, _)| !(*o == only && k == key));
    }

    /// Stops child service `name` with SIGTERM and starts it again (with the current
    /// environment), waiting until it is SERVING.
    pub async fn restart(&mut self, name: &'static str) -> anyhow::Result<()> {
        self.terminate(name).await?;
        self.spawn(name).await
    }

    /// Starts child service `name` and waits until it is SERVING.
    pub async fn spawn(&mut self, name: &'static str) -> anyhow::Result<()> {
        let sub = self.dir.path().join(name);
        std::fs::create_dir_all(sub.join("data"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sub.join("stderr.log"))?;
        let mut last_error = anyhow!("not started");
        // The port of a process just killed can take a moment to be free again.
        for _ in 0..50 {
            let mut cmd = Command::new(&self.bin);
            cmd.args(["orgplane", "serve", name])
                .current_dir(&sub)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log.try_clone()?))
                .kill_on_drop(true);
            for (k, v) in self.env(name) {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().context("spawning orgplane")?;
            let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
            let mut lines = BufReader::new(stdout).lines();
            let banner = tokio::time::timeout(Duration::from_secs(60), async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("orgplane ") && line.contains(" serving ") {
                        return true;
                    }
                }
                false
            })
            .await
            .unwrap_or(false);
            if banner {
                // The process's log (stdout), kept in `<service>/stdout.log` for the scenarios.
                let out_path = sub.join("stdout.log");
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut out = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(out_path)
                        .await
                        .ok();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(f) = out.as_mut() {
                            let _ = f.write_all(format!("{line}\n").as_bytes()).await;
                        }
                    }
                });
                self.children.insert(name, child);
                self.wait_serving(name, Duration::from_secs(60)).await?;
                return Ok(());
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            // The temporary directory goes with the harness: the error carries the log's end.
            let stderr = std::fs::read_to_string(sub.join("stderr.log")).unwrap_or_default();
            let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
            last_error = anyhow!(
                "{name} exited before serving; the end of its stderr:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last_error)
    }

    /// The process id of child service `name`, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.get(name).and_then(Child::id)
    }

    /// Kills child service `name` with SIGKILL and reaps it.
    pub async fn kill9(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(mut child) = self.children.remove(name) {
            child.start_kill()?;
            child.wait().await?;
            self.kills += 1;
        }
        Ok(())
    }

    /// Stops child service `name` with SIGTERM and waits for it to exit.
    pub async fn terminate(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(mut child) = self.children.remove(name) {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
                Ok(r) => {
                    r?;
                }
                Err(_) => {
                    child.start_kill()?;
                    child.wait().await?;
                    bail!("{name} did not stop within 20 s of SIGTERM");
                }
            }
        }
        Ok(())
    }

    /// Waits until child service `name` reports SERVING.
    pub async fn wait_serving(&self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        let grpc = match name {
            "organization" => "orgplane.organization.v1.OrganizationService",
            "workspace" => "orgplane.workspace.v1.WorkspaceService",
            _ => "orgplane.billing.v1.BillingAccessService",
        };
        let start = Instant::now();
        let mut client = HealthClient::new(self.channel(name));
        loop {
            let serving = client
                .check(HealthCheckRequest {
                    service: grpc.into(),
                })
                .await
                .map(|r| r.into_inner().status == ServingStatus::Serving as i32)
                .unwrap_or(false);
            if serving {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("{name} not SERVING after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `https` when the harness runs with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// A (lazily connecting, reconnecting) channel to `url`, over TLS when the harness runs
    /// with it.
    fn dial(&self, url: String) -> Channel {
        if let Some(tls) = &self.tls {
            return orgplane_platform::clients::connect_lazy(&url, Some(&tls.client))
                .map(|c| c.into_inner())
                .unwrap_or_else(|_| Endpoint::from_static("http://127.0.0.1:1").connect_lazy());
        }
        match Endpoint::from_shared(url) {
            Ok(e) => e
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(2))
                .connect_lazy(),
            Err(_) => Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
        }
    }

    /// A (lazily connecting, reconnecting) channel to child service `name`.
    pub fn channel(&self, name: &str) -> Channel {
        let port = self.ports.get(name).copied().unwrap_or(1);
        self.dial(format!("{}://127.0.0.1:{port}", self.scheme()))
    }

    /// A channel to the in-process identity service.
    pub fn identity_channel(&self) -> Channel {
        self.dial(self.identity_url.clone())
    }

    /// A channel to the in-process identity service whose connections leave from `local` (another
    /// loopback address such as 127.0.0.2, on Linux): a second peer address for per-peer limits.
    /// Plaintext harnesses only.
    pub fn identity_channel_from(&self, local: std::net::IpAddr) -> Channel {
        match Endpoint::from_shared(self.identity_url.clone()) {
            Ok(e) => e.local_address(Some(local)).connect_lazy(),
            Err(_) => Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
        }
    }

    /// The in-process identity service's password hasher (how many argon2id computations run).
    pub fn identity_hasher(
        &self,
    ) -> anyhow::Result<&orgplane_identity::crypto::PasswordHasherPool> {
        Ok(self
            .identity
            .as_ref()
            .and_then(|s| s.opened.identity.as_ref())
            .ok_or_else(|| anyhow!("no identity"))?
            .password_hasher())
    }

    /// An organization service client.
    /// A client of the in-process identity service (64 MiB messages, for oversized inputs).
    pub fn identity_client(
        &self,
    ) -> orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient<Channel> {
        orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient::new(
            self.identity_channel(),
        )
        .max_encoding_message_size(64 << 20)
    }

    /// The newest value following `marker` in a development mail to `to` (a link's token).
    pub fn mail_value(&self, to: &str, marker: &str) -> Option<String> {
        let mut found: Vec<(std::time::SystemTime, String)> = Vec::new();
        for entry in std::fs::read_dir(self.dir.path().join("mail"))
            .ok()?
            .flatten()
        {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            if let (true, Some(i)) = (text.contains(to), text.find(marker)) {
                let rest = &text[i + marker.len()..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == ')' || c == ';')
                    .unwrap_or(rest.len());
                let time = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                found.push((time, rest[..end].to_owned()));
            }
        }
        found.sort();
        found.pop().map(|(_, v)| v)
    }

    pub fn orgs(&self) -> org_api::organization_service_client::OrganizationServiceClient<Channel> {
        org_api::organization_service_client::OrganizationServiceClient::new(
            self.channel("organization"),
        )
    }

    /// An account service client (served by the organization process).
    pub fn accounts(&self) -> org_api::account_service_client::AccountServiceClient<Channel> {
        org_api::account_service_client::AccountServiceClient::new(self.channel("organization"))
    }

    /// A workspace service client.
    pub fn workspaces(&self) -> ws_api::workspace_service_client::WorkspaceServiceClient<Channel> {
        ws_api::workspace_service_client::WorkspaceServiceClient::new(self.channel("workspace"))
    }

    /// A billing-access service client.
    pub fn billing(
        &self,
    ) -> orgplane_proto::billing::v1::billing_access_service_client::BillingAccessServiceClient<
        Channel,
    > {
        orgplane_proto::billing::v1::billing_access_service_client::BillingAccessServiceClient::new(
            self.channel("billing-access"),
        )
    }

    /// Valid claims for `sub` and audience `aud` (one hour), to be altered by attack cases.
    pub fn claims(&self, sub: &str, aud: &str) -> Claims {
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

    /// An access token for `user_id`, signed with identity's key (as Login would mint it).
    pub fn user_token(&self, user_id: &str) -> anyhow::Result<String> {
        let mut c = self.claims(user_id, USER_AUDIENCE);
        c.sid = Some(format!("ses_chaos_{user_id}"));
        c.auth_time = Some(c.iat);
        Ok(self.signer.sign(&c)?)
    }

    /// `claims` signed with identity's current key.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(self.signer.sign(claims)?)
    }

    /// The in-process identity service's database.
    pub fn identity_db(&self) -> anyhow::Result<&DatabaseConnection> {
        Ok(self
            .identity
            .as_ref()
            .and_then(|s| s.opened.identity.as_ref())
            .ok_or_else(|| anyhow!("no identity"))?
            .db())
    }

    /// A service token of the product backend ([`PRODUCT_CAPABILITIES`]).
    pub fn product_token(&self) -> anyhow::Result<String> {
        let caps = parse_capability_list(PRODUCT_CAPABILITIES).map_err(|e| anyhow!(e))?;
        self.service_token_with(PRODUCT, caps)
    }

    /// A service token of the Orgplane service `name`, with what that service uses.
    pub fn service_token(&self, name: &str) -> anyhow::Result<String> {
        let caps = Capabilities::of_service(name).ok_or_else(|| anyhow!("no service {name}"))?;
        self.service_token_with(name, caps)
    }

    /// A service token of account `name` holding `capabilities`, signed with identity's key.
    pub fn service_token_with(
        &self,
        name: &str,
        capabilities: Capabilities,
    ) -> anyhow::Result<String> {
        let mut claims = self.claims(name, SERVICE_AUDIENCE);
        claims.scope = Some(capabilities.to_scope());
        Ok(self.signer.sign(&claims)?)
    }

    /// Writes a verified user through identity's store.
    pub async fn seed_user(&self, id: &str, email: &str) -> anyhow::Result<()> {
        use orgplane_identity::entity::user;
        use sea_orm::EntityTrait;
        let identity = self
            .identity
            .as_ref()
            .and_then(|s| s.opened.identity.as_ref())
            .ok_or_else(|| anyhow!("no identity"))?;
        let now = chrono::Utc::now().timestamp_millis();
        user::Entity::insert(user::ActiveModel::from(user::Model {
            id: id.into(),
            email: email.into(),
            email_key: email.to_lowercase(),
            email_verified: true,
            display_name: id.into(),
            account_type: 1,
            password_hash: String::new(),
            version: 1,
            create_time_ms: now,
            update_time_ms: now,
            signup_request_id: None,
        }))
        .exec(identity.db())
        .await?;
        Ok(())
    }

    /// Creates an organization owned by `owner` (seeded first) and a workspace in it.
    pub async fn seed_org(&self, owner: &str) -> anyhow::Result<(String, String)> {
        self.seed_user(owner, &format!("{owner}@chaos.test"))
            .await?;
        let token = self.user_token(owner)?;
        let created = self
            .orgs()
            .create_organization(bearer(
                org_api::CreateOrganizationRequest {
                    organization: Some(org_api::Organization {
                        name: format!("Org {owner}"),
                        r#type: org_api::OrganizationType::Company as i32,
                        primary_email: format!("{owner}@chaos.test"),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &token,
            ))
            .await
            .context("CreateOrganization")?
            .into_inner();
        let revision = created.revision;
        let org = created
            .organization
            .ok_or_else(|| anyhow!("no organization"))?;
        let resp = retry(|| async {
            let mut req = bearer(
                ws_api::CreateWorkspaceRequest {
                    organization_id: org.id.clone(),
                    workspace: Some(ws_api::Workspace {
                        name: format!("ws-{owner}"),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &token,
            );
            req.metadata_mut()
                .insert("x-min-organization-revision", revision.into());
            self.workspaces().create_workspace(req).await
        })
        .await
        .context("CreateWorkspace")?;
        let ws = resp.workspace.ok_or_else(|| anyhow!("no workspace"))?;
        Ok((org.id, ws.id))
    }

    /// Seeds `user` and makes them a member of `org` with `role` by invite and acceptance.
    pub async fn add_member(
        &self,
        owner: &str,
        org: &str,
        user: &str,
        role: org_api::OrgRole,
    ) -> anyhow::Result<i64> {
        let email = format!("{user}@chaos.test");
        self.seed_user(user, &email).await?;
        let invite = self
            .orgs()
            .create_invite(bearer(
                org_api::CreateInviteRequest {
                    organization_id: org.into(),
                    invite: Some(org_api::Invite {
                        email,
                        role: role as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.user_token(owner)?,
            ))
            .await
            .context("CreateInvite")?
            .into_inner()
            .invite
            .ok_or_else(|| anyhow!("no invite"))?;
        let accepted = self
            .orgs()
            .accept_invite(bearer(
                org_api::AcceptInviteRequest {
                    invite_id: invite.id,
                },
                &self.user_token(user)?,
            ))
            .await
            .context("AcceptInvite")?
            .into_inner();
        Ok(accepted.revision)
    }

    /// A connection to child service `name`'s database.
    pub async fn database(&self, name: &str) -> anyhow::Result<DatabaseConnection> {
        Ok(Database::connect(self.database_url(name)).await?)
    }

    /// The address child service `name` listens on (what a proxy in front of it targets).
    pub fn addr(&self, name: &str) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.ports.get(name).copied().unwrap_or(1)))
    }

    /// Stops the in-process identity service as SIGTERM would (calls in flight drain, then it
    /// stops listening); [`Harness::start_identity`] starts it again.
    pub async fn stop_identity(&mut self) -> anyhow::Result<()> {
        self.identity_shutdown.cancel();
        if let Some(s) = self.identity.take() {
            tokio::time::timeout(Duration::from_secs(20), s.wait())
                .await
                .map_err(|_| anyhow!("identity did not stop within 20 s"))??;
        }
        Ok(())
    }

    /// Starts identity again on the same address with the same data and keys, after
    /// [`Harness::stop_identity`].
    pub async fn start_identity(&mut self) -> anyhow::Result<()> {
        if self.identity.is_some() {
            return Ok(());
        }
        let cli = <Cli as clap::Parser>::try_parse_from(self.identity_args.clone())?;
        let addr = self
            .identity_url
            .split_once("://")
            .map_or(self.identity_url.as_str(), |(_, a)| a)
            .to_owned();
        let mut listener = None;
        for _ in 0..100 {
            match tokio::net::TcpListener::bind(addr.as_str()).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let listener = listener.ok_or_else(|| anyhow!("identity's address {addr} stays taken"))?;
        let shutdown = CancellationToken::new();
        let started = orgplane::start(&cli, &[Service::Identity], listener, shutdown.clone())
            .await
            .context("restarting identity")?;
        self.identity_shutdown = shutdown;
        self.identity = Some(started);
        Ok(())
    }

    /// Stops everything and drops PostgreSQL databases.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for name in CHILDREN.iter().rev() {
            let _ = self.terminate(name).await;
        }
        self.identity_shutdown.cancel();
        if let Some(s) = self.identity.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), s.wait()).await;
        }
        if let Some(pg) = &self.pg {
            pg.drop_all().await;
        }
        Ok(())
    }
}

/// `message` with `authorization: Bearer token` and a fresh `x-request-id`; returns the id too.
pub fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    bearer_with_id(message, token, &uuid::Uuid::new_v4().to_string())
}

/// `message` with `authorization: Bearer token` and `x-request-id: request_id`.
pub fn bearer_with_id<T>(message: T, token: &str, request_id: &str) -> tonic::Request<T> {
    let mut req = orgplane_platform::testkit::bearer_with_id(message, token, request_id);
    req.set_timeout(Duration::from_secs(10));
    req
}

/// Retries `call` while it fails the way a call to a service that is stopping or starting fails
/// ([`transient`]), for up to 60 s.
pub async fn retry<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let start = Instant::now();
    loop {
        match call().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if transient(&s) && start.elapsed() < Duration::from_secs(60) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => return Err(s),
        }
    }
}

/// Whether `status` is what a client sees of a service stopping or starting rather than an answer
/// of the service: UNAVAILABLE, UNKNOWN, CANCELLED, DEADLINE_EXCEEDED, and INTERNAL without
/// `ErrorInfo` — tonic reports a stream that a graceful shutdown's GOAWAY (`NO_ERROR`) ended as
/// INTERNAL, and every INTERNAL the services answer themselves carries `ErrorInfo`.
pub fn transient(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable
        | tonic::Code::Unknown
        | tonic::Code::Cancelled
        | tonic::Code::DeadlineExceeded => true,
        tonic::Code::Internal => orgplane_platform::error::reason_of(status).is_none(),
        _ => false,
    }
}

pub use orgplane_platform::testkit::mask;

/// `members` dealt round-robin to `clients` load tasks (empty slices left out).
pub fn slices(members: &[String], clients: usize) -> Vec<Vec<String>> {
    (0..clients)
        .map(|c| members.iter().skip(c).step_by(clients).cloned().collect())
        .filter(|mine: &Vec<String>| !mine.is_empty())
        .collect()
}
