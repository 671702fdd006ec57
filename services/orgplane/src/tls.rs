//! The TLS options of the command line, what they make (server and client configurations), and
//! the refusal to listen in plaintext beyond loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use orgplane_platform::clients::{CertificateIdentity, ServiceTokenSource};
use orgplane_platform::tls::client::ClientTls;
use orgplane_platform::tls::server::{ALPN_H2, ALPN_HTTP1, ServerTls};
use orgplane_platform::tls::{CertificateAccounts, CertificateFiles, ClientAuth, TlsSettings};

/// TLS of the listeners and the internal clients.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// The certificate chain (PEM, leaf first) the gRPC, HTTP and metrics listeners serve; with
    /// `--tls-key`. Re-read when the file changes.
    #[arg(long, env = "ORGPLANE_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1). Re-read when it changes.
    #[arg(long, env = "ORGPLANE_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) the other services' certificates are verified with on `https://`
    /// service URLs (the bundled Web PKI roots when unset).
    #[arg(long, env = "ORGPLANE_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,

    /// CA certificates (PEM) client certificates must chain to: set, the servers ask clients
    /// for a certificate (mutual TLS).
    #[arg(long, env = "ORGPLANE_TLS_CLIENT_CA", global = true)]
    pub tls_client_ca: Option<PathBuf>,

    /// With `--tls-client-ca`: `optional` verifies a certificate when one is presented;
    /// `required` refuses connections without one and requests whose certificate names no
    /// account of `--tls-client-accounts`.
    #[arg(
        long,
        env = "ORGPLANE_TLS_CLIENT_AUTH",
        default_value = "optional",
        global = true
    )]
    pub tls_client_auth: ClientAuthArg,

    /// Client certificates that are service accounts, comma-separated
    /// `<SAN URI or DNS name>=<account>:<capabilities>` (capabilities as in
    /// `--service-accounts`, e.g. `workspace.orgplane.svc=workspace:@workspace`). A request
    /// without a token on such a certificate is that service principal.
    #[arg(
        long,
        env = "ORGPLANE_TLS_CLIENT_ACCOUNTS",
        default_value = "",
        global = true
    )]
    pub tls_client_accounts: String,

    /// How this process authenticates its calls to the other services: `token` (a service
    /// token from identity) or `certificate` (its TLS certificate, which the others map with
    /// `--tls-client-accounts`; no token is sent).
    #[arg(
        long,
        env = "ORGPLANE_SERVICE_AUTH",
        default_value = "token",
        global = true
    )]
    pub service_auth: ServiceAuth,

    /// Listen in plaintext on addresses other than loopback (when a proxy or service mesh
    /// terminates TLS in front of Orgplane); refused at start otherwise.
    #[arg(long, env = "ORGPLANE_ALLOW_PLAINTEXT", global = true)]
    pub allow_plaintext: bool,
}

/// `--tls-client-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientAuthArg {
    /// Verify a client certificate when one is presented.
    Optional,
    /// Require one that names a configured service account.
    Required,
}

/// `--service-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceAuth {
    /// A service token from identity.
    Token,
    /// The process's TLS client certificate.
    Certificate,
}

/// What the TLS options make for one process.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The settings.
    pub settings: TlsSettings,
    /// The certificate and key, when TLS is served.
    pub certificate: Option<Arc<CertificateFiles>>,
    /// The gRPC listener's configuration (ALPN h2), when TLS is served.
    pub grpc: Option<ServerTls>,
    /// The HTTP and metrics listeners' configuration (ALPN http/1.1), when TLS is served.
    pub http: Option<ServerTls>,
    /// How internal `https://` URLs are dialled.
    pub client: ClientTls,
    /// The client certificates that are service accounts.
    pub accounts: Arc<CertificateAccounts>,
}

impl TlsArgs {
    /// The settings the flags name.
    pub fn settings(&self) -> TlsSettings {
        TlsSettings {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
            client_ca: self.tls_client_ca.clone(),
            client_auth: match self.tls_client_auth {
                ClientAuthArg::Optional => ClientAuth::Optional,
                ClientAuthArg::Required => ClientAuth::Required,
            },
        }
    }

    /// Loads certificates and builds the configurations; a clear error for incomplete or
    /// unreadable settings.
    pub fn load(&self) -> anyhow::Result<Tls> {
        let settings = self.settings();
        settings.validate()?;
        if self.service_auth == ServiceAuth::Certificate && settings.cert.is_none() {
            anyhow::bail!("--service-auth certificate needs --tls-cert and --tls-key");
        }
        let certificate = settings
            .certificate()
            .context("loading the TLS certificate")?;
        let (grpc, http) = match &certificate {
            Some(files) => (
                Some(ServerTls::new(&settings, files.clone(), &[ALPN_H2])?),
                Some(ServerTls::new(&settings, files.clone(), &[ALPN_HTTP1])?),
            ),
            None => (None, None),
        };
        let client = ClientTls::new(&settings, certificate.clone())
            .context("loading the TLS CA bundle (--tls-ca)")?;
        let accounts = Arc::new(CertificateAccounts::parse(&self.tls_client_accounts)?);
        if !accounts.is_empty() && settings.client_ca.is_none() {
            anyhow::bail!("--tls-client-accounts needs --tls-client-ca (mutual TLS)");
        }
        Ok(Tls {
            settings,
            certificate,
            grpc,
            http,
            client,
            accounts,
        })
    }

    /// No service token where this process is known by its certificate
    /// (`--service-auth certificate`); `None` to use service tokens.
    pub fn certificate_identity(&self) -> Option<Arc<dyn ServiceTokenSource>> {
        (self.service_auth == ServiceAuth::Certificate)
            .then(|| Arc::new(CertificateIdentity) as Arc<dyn ServiceTokenSource>)
    }

    /// Refuses plaintext on any of `addrs` that is not loopback, unless `--allow-plaintext`.
    pub fn check_plaintext(&self, addrs: &[SocketAddr]) -> anyhow::Result<()> {
        if self.tls_cert.is_some() || self.allow_plaintext {
            return Ok(());
        }
        if let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            anyhow::bail!(
                "refusing to listen in plaintext on {addr}, which is not a loopback address: \
                 passwords and tokens would cross the network unencrypted. Give --tls-cert and \
                 --tls-key (ORGPLANE_TLS_CERT, ORGPLANE_TLS_KEY), or --allow-plaintext \
                 (ORGPLANE_ALLOW_PLAINTEXT=true) when a proxy or service mesh terminates TLS in \
                 front of Orgplane"
            );
        }
        Ok(())
    }
}

impl Tls {
    /// How to dial this process itself at a loopback address: as the TLS client, but verifying
    /// the server's certificate for the first name it carries.
    pub fn self_client(&self) -> anyhow::Result<ClientTls> {
        match &self.certificate {
            None => Ok(self.client.clone()),
            Some(files) => {
                let name = files.server_name().context(
                    "the TLS certificate names no DNS name or IP address to reach this process by",
                )?;
                Ok(self.client.clone().with_server_name(name))
            }
        }
    }
}

/// `orgplane health`: asks this process's own gRPC server (the `--listen` port, at loopback when
/// it listens on every address) whether `service` is SERVING, over TLS when configured and
/// presenting the process's certificate (so that it passes where mutual TLS is required).
pub async fn probe(cli: &crate::cli::Cli, service: &str) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let tls = cli.tls.load()?;
    let addr = reachable(cli.listen);
    let (url, client) = match tls.grpc {
        Some(_) => (format!("https://{addr}"), tls.self_client()?),
        None => (format!("http://{addr}"), tls.client.clone()),
    };
    let channel = orgplane_platform::clients::connect_lazy(&url, Some(&client))?;
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        HealthClient::new(channel).check(request),
    )
    .await
    .with_context(|| format!("{url} did not answer within 5 s"))?
    .with_context(|| format!("asking {url}"))?;
    let status = answer.into_inner().status();
    let what = if service.is_empty() {
        "the server"
    } else {
        service
    };
    if status == ServingStatus::Serving {
        println!("{what}: SERVING");
        Ok(())
    } else {
        anyhow::bail!("{what}: {}", status.as_str_name())
    }
}

/// Where this process is reached from itself: `addr`, or loopback when it listens on every
/// address.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}
