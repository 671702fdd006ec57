//! Orgplane as deployed: `orgplane all`, or the four services as four `orgplane serve <service>`
//! processes on their own ports and databases, wired to each other by URL and authenticating with
//! configured service accounts, as in Kubernetes.

use std::path::{Path, PathBuf};

use super::{Orgplane, wait_serving};

/// The services in start order.
pub const SERVICE_NAMES: [&str; 4] = ["identity", "organization", "workspace", "billing-access"];

/// The gRPC names of the services, in the order of [`SERVICE_NAMES`].
pub const GRPC_SERVICES: [&str; 4] = [
    "orgplane.identity.v1.IdentityService",
    "orgplane.organization.v1.OrganizationService",
    "orgplane.workspace.v1.WorkspaceService",
    "orgplane.billing.v1.BillingAccessService",
];

/// A service account every layout trusts, standing for a product backend (usage ingestion,
/// access checks).
pub const PRODUCT_CLIENT_ID: &str = "product";
/// Its secret.
pub const PRODUCT_CLIENT_SECRET: &str = "secret-product";
/// What it may do (least privilege): access checks, usage, its callers' API keys, workspace
/// listings.
pub const PRODUCT_CAPABILITIES: &str =
    "check-access+record-usage+authenticate-api-keys+read-workspaces";
/// A backend that only checks access (`check-access`), and one holding every capability:
/// `(client id, secret, capabilities)`.
pub const CHECKER: (&str, &str, &str) = ("access-checker", "secret-checker", "check-access");
/// See [`CHECKER`].
pub const UNRESTRICTED: (&str, &str, &str) = (
    "unrestricted",
    "secret-unrestricted",
    "check-access+record-usage+authenticate-api-keys+watch:identity+watch:organization+\
     watch:workspace+read-users+read-api-keys+read-organizations+read-workspaces+\
     provision-members",
);

/// The accounts besides Orgplane's own that every layout's identity trusts.
fn backend_accounts() -> Vec<String> {
    [
        (
            PRODUCT_CLIENT_ID,
            PRODUCT_CLIENT_SECRET,
            PRODUCT_CAPABILITIES,
        ),
        CHECKER,
        UNRESTRICTED,
    ]
    .iter()
    .map(|(id, secret, caps)| account(id, secret, caps))
    .collect()
}

/// The database URL variable of `service`.
pub fn database_url_var(service: &str) -> &'static str {
    match service {
        "identity" => "ORGPLANE_IDENTITY_DATABASE_URL",
        "organization" => "ORGPLANE_ORGANIZATION_DATABASE_URL",
        "workspace" => "ORGPLANE_WORKSPACE_DATABASE_URL",
        _ => "ORGPLANE_BILLING_ACCESS_DATABASE_URL",
    }
}

/// Free loopback ports for processes that must know each other's addresses up front.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// `client_id:sha256-hex(secret):capabilities`, as `ORGPLANE_SERVICE_ACCOUNTS` lists accounts.
fn account(client_id: &str, secret: &str, capabilities: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{client_id}:{hex}:{capabilities}")
}

fn mail_env(root: &Path) -> Vec<(&'static str, String)> {
    let mail = format!("file://{}", root.join("mail").display());
    vec![
        ("ORGPLANE_MAIL_URL", mail.clone()),
        ("ORGPLANE_ORGANIZATION_MAIL_URL", mail),
    ]
}

/// The environment of service number `i` of the four-process layout.
fn four_process_env(
    root: &Path,
    i: usize,
    ports: &[u16],
    database_urls: Option<&[String]>,
    scheme: &str,
) -> Vec<(&'static str, String)> {
    let url = |i: usize| format!("{scheme}://127.0.0.1:{}", ports[i]);
    let name = SERVICE_NAMES[i];
    let mut accounts: Vec<String> = SERVICE_NAMES[1..]
        .iter()
        .map(|n| account(n, &format!("secret-{n}"), &format!("@{n}")))
        .collect();
    accounts.extend(backend_accounts());
    let mut env = vec![
        ("ORGPLANE_LISTEN", format!("127.0.0.1:{}", ports[i])),
        ("ORGPLANE_IDENTITY_URL", url(0)),
        ("ORGPLANE_ORGANIZATION_URL", url(1)),
        ("ORGPLANE_WORKSPACE_URL", url(2)),
        ("ORGPLANE_SERVICE_CLIENT_ID", name.to_string()),
        ("ORGPLANE_SERVICE_CLIENT_SECRET", format!("secret-{name}")),
        ("ORGPLANE_SERVICE_ACCOUNTS", accounts.join(",")),
        (
            "ORGPLANE_PAGE_TOKEN_SECRET",
            "shared-page-token-secret".to_string(),
        ),
    ];
    env.extend(mail_env(root));
    if let Some(urls) = database_urls {
        env.push((database_url_var(name), urls[i].clone()));
    }
    env
}

/// The four services as four processes, each with its own database and port.
pub async fn start_four_processes(
    root: &Path,
    database_urls: Option<&[String]>,
) -> Vec<(String, Orgplane)> {
    let ports = free_ports(4);
    let mut procs = Vec::new();
    for (i, name) in SERVICE_NAMES.iter().enumerate() {
        let app = start_one(root, i, &ports, database_urls, &[]).await;
        procs.push((name.to_string(), app));
    }
    procs
}

async fn start_one(
    root: &Path,
    i: usize,
    ports: &[u16],
    database_urls: Option<&[String]>,
    extra: &[(&'static str, String)],
) -> Orgplane {
    let name = SERVICE_NAMES[i];
    let sub = root.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let tls = extra.iter().any(|(k, _)| *k == "ORGPLANE_TLS_CERT");
    let scheme = if tls { "https" } else { "http" };
    let mut env = four_process_env(root, i, ports, database_urls, scheme);
    env.extend(extra.iter().cloned());
    Orgplane::start(&["serve", name], &sub, &env).await
}

/// How the services are deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `orgplane all`: one process.
    All,
    /// Four `orgplane serve <service>` processes.
    FourProcesses,
}

/// A running Orgplane in either layout, with every service SERVING.
pub struct Cluster {
    /// The layout.
    pub layout: Layout,
    root: PathBuf,
    database_urls: Option<Vec<String>>,
    env: Vec<(&'static str, String)>,
    ports: Vec<u16>,
    /// The processes, by service name (one `all` entry in the `All` layout).
    procs: Vec<(String, Orgplane)>,
    /// How the test dials `https://` processes.
    client_tls: Option<orgplane_platform::tls::client::ClientTls>,
}

impl Cluster {
    /// Starts Orgplane in `layout` under `root`, with `database_urls` (one per service, in the
    /// order of [`SERVICE_NAMES`]; SQLite files when `None`) and extra environment `env` for
    /// every process, and waits until every service is SERVING.
    pub async fn start(
        layout: Layout,
        root: &Path,
        database_urls: Option<Vec<String>>,
        env: Vec<(&'static str, String)>,
    ) -> Cluster {
        Self::start_with(layout, root, database_urls, env, None).await
    }

    /// [`Self::start`] for processes serving TLS (`env` names their certificates), dialled by the
    /// test with `client_tls`.
    pub async fn start_with(
        layout: Layout,
        root: &Path,
        database_urls: Option<Vec<String>>,
        env: Vec<(&'static str, String)>,
        client_tls: Option<orgplane_platform::tls::client::ClientTls>,
    ) -> Cluster {
        let mut cluster = Cluster {
            layout,
            root: root.to_path_buf(),
            database_urls,
            env,
            ports: free_ports(4),
            procs: Vec::new(),
            client_tls,
        };
        match layout {
            Layout::All => {
                let app = cluster.start_all(&[]).await;
                cluster.procs.push(("all".into(), app));
            }
            Layout::FourProcesses => {
                for (i, name) in SERVICE_NAMES.iter().enumerate() {
                    let app = start_one(
                        root,
                        i,
                        &cluster.ports,
                        cluster.database_urls.as_deref(),
                        &cluster.env,
                    )
                    .await;
                    cluster.procs.push((name.to_string(), app));
                }
            }
        }
        cluster.wait_serving().await;
        cluster
    }

    async fn start_all(&self, extra: &[(&'static str, String)]) -> Orgplane {
        let mut env = vec![("ORGPLANE_SERVICE_ACCOUNTS", backend_accounts().join(","))];
        env.extend(mail_env(&self.root));
        if let Some(urls) = &self.database_urls {
            for (name, url) in SERVICE_NAMES.iter().zip(urls) {
                env.push((database_url_var(name), url.clone()));
            }
        }
        env.extend(self.env.iter().cloned());
        env.extend(extra.iter().cloned());
        Orgplane::start(&["all"], &self.root, &env).await
    }

    async fn wait_serving(&self) {
        for (name, grpc) in SERVICE_NAMES.iter().zip(GRPC_SERVICES) {
            wait_serving(self.channel(name), grpc).await;
        }
    }

    /// Where every service's development mail lands.
    pub fn mail_dir(&self) -> PathBuf {
        self.root.join("mail")
    }

    /// The URL serving `service`.
    pub fn url(&self, service: &str) -> String {
        let want = match self.layout {
            Layout::All => "all",
            Layout::FourProcesses => service,
        };
        self.procs
            .iter()
            .find(|(n, _)| n == want)
            .map(|(_, p)| p.url.clone())
            .unwrap_or_else(|| panic!("no process serves {service}"))
    }

    /// A channel to `service` (identity, organization, workspace, billing-access).
    pub fn channel(&self, service: &str) -> tonic::transport::Channel {
        let url = self.url(service);
        match &self.client_tls {
            Some(tls) if url.starts_with("https://") => {
                orgplane_platform::clients::connect_lazy(&url, Some(tls))
                    .unwrap()
                    .into_inner()
            }
            _ => orgplane_platform::testkit::channel(&url),
        }
    }

    /// Stops the process running the organization service (the whole process in the `All`
    /// layout) and starts it again on the same databases with `extra` environment, for example
    /// a moved clock. Waits until every service is SERVING again.
    pub async fn restart_organization(&mut self, extra: &[(&'static str, String)]) {
        let index = match self.layout {
            Layout::All => 0,
            Layout::FourProcesses => 1,
        };
        let (name, old) = self.procs.remove(index);
        assert!(old.terminate().await.success(), "{name} stops cleanly");
        let app = match self.layout {
            Layout::All => self.start_all(extra).await,
            Layout::FourProcesses => {
                let mut env = self.env.clone();
                env.extend(extra.iter().cloned());
                start_one(
                    &self.root,
                    1,
                    &self.ports,
                    self.database_urls.as_deref(),
                    &env,
                )
                .await
            }
        };
        self.procs.insert(index, (name, app));
        self.wait_serving().await;
    }

    /// Stops every process with SIGTERM and checks each exits cleanly.
    pub async fn stop(self) {
        for (name, p) in self.procs.into_iter().rev() {
            let status = p.terminate().await;
            assert!(status.success(), "{name} exits 0 on SIGTERM: {status:?}");
        }
    }
}
