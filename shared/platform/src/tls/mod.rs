//! TLS wherever Orgplane listens or calls (rustls on ring, no OpenSSL): the gRPC listener, the
//! HTTP listener, the metrics listener, and every internal client.
//!
//! - [`TlsSettings`] is what the command line says: the certificate and key (PEM files), the CA
//!   bundle clients verify the other services with, and for mutual TLS the CA that client
//!   certificates must chain to and whether one is required.
//! - [`CertificateFiles`] holds the certificate and key and re-reads them when either file
//!   changes (cert-manager replaces them in place): each new handshake, server or client side,
//!   gets the newest valid pair; connections already open keep theirs. A pair that does not
//!   load (half written, key not matching) is logged and the previous one kept.
//! - [`server`] accepts TLS connections for tonic and axum, handshakes off the accept loop, and
//!   records the client certificate's names on the connection ([`server::ConnectionInfo`]).
//! - [`client`] dials `https://` URLs for tonic channels.
//! - [`CertificateAccounts`] maps a client certificate's names (SAN URI or DNS) to a service
//!   account and its capabilities: with mutual TLS, a service presenting such a certificate is
//!   that service principal without a service token.

pub mod client;
pub mod server;
#[cfg(feature = "testkit")]
pub mod testing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::auth::{Capabilities, Principal, ServicePrincipal, parse_capability_list};
use crate::error::Reason;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{path}: {why}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the configuration (for example a key that does not match the certificate).
    #[error("{0}")]
    Rustls(String),
    /// The settings are incomplete or contradict each other.
    #[error("{0}")]
    Settings(String),
}

/// Whether clients must present a certificate (mutual TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// A certificate is verified when presented; callers without one use tokens or API keys.
    #[default]
    Optional,
    /// Every connection must present a certificate chaining to the client CA, and every request
    /// but health and reflection must come from one whose name maps to a service account.
    Required,
}

/// TLS as configured: the server side (certificate, key, client CA) and the client side (the
/// CA that verifies the other services; the same certificate and key as client identity when a
/// server asks for one).
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// The certificate chain (PEM), leaf first.
    pub cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA certificates (PEM) that servers this process calls must chain to; the bundled Web PKI
    /// roots when unset.
    pub ca: Option<PathBuf>,
    /// CA certificates (PEM) client certificates must chain to: set, the servers ask for one.
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is required (with `client_ca`).
    pub client_auth: ClientAuth,
}

impl TlsSettings {
    /// Whether the servers of this process terminate TLS.
    pub fn serves_tls(&self) -> bool {
        self.cert.is_some()
    }

    /// Checks that the settings go together: certificate and key both or neither, a client CA
    /// only with a certificate, `required` only with a client CA.
    pub fn validate(&self) -> Result<(), TlsError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err(TlsError::Settings("--tls-cert needs --tls-key".into())),
            (None, Some(_)) => return Err(TlsError::Settings("--tls-key needs --tls-cert".into())),
            _ => {}
        }
        if self.client_ca.is_some() && self.cert.is_none() {
            return Err(TlsError::Settings(
                "--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key".into(),
            ));
        }
        if self.client_auth == ClientAuth::Required && self.client_ca.is_none() {
            return Err(TlsError::Settings(
                "--tls-client-auth required needs --tls-client-ca".into(),
            ));
        }
        Ok(())
    }

    /// The certificate and key, loaded (and watched), when configured.
    pub fn certificate(&self) -> Result<Option<Arc<CertificateFiles>>, TlsError> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some(CertificateFiles::open(cert, key)?)),
            _ => Ok(None),
        }
    }
}

/// The one crypto provider every TLS configuration here uses (ring), stated explicitly so that
/// no process-wide default has to be installed.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in the PEM file at `path` (at least one).
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            why: "no CERTIFICATE in the file".into(),
        });
    }
    Ok(certs)
}

/// A root store of the CA certificates in the PEM file at `path`.
pub(crate) fn read_roots(path: &Path) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            why: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// What identifies a version of a file: replaced files differ in one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        })
    }
}

/// A certificate and its key, read from PEM files and re-read when either changes; see the
/// module docs. Serves as both the server's and the client's certificate resolver.
pub struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
}

struct Loaded {
    stamps: (Option<Stamp>, Option<Stamp>),
    current: Arc<CertifiedKey>,
}

impl std::fmt::Debug for CertificateFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl CertificateFiles {
    /// Loads the pair; an error when it does not load now.
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let stamps = (Stamp::of(cert), Stamp::of(key));
        let current = Arc::new(load_pair(cert, key)?);
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            state: Mutex::new(Loaded { stamps, current }),
        }))
    }

    /// The newest pair that loads: re-read when either file changed since the last look.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let stamps = (Stamp::of(&self.cert), Stamp::of(&self.key));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.stamps != stamps {
            state.stamps = stamps;
            match load_pair(&self.cert, &self.key) {
                Ok(pair) => {
                    state.current = Arc::new(pair);
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => tracing::warn!(
                    cert = %self.cert.display(),
                    error = %e,
                    "the changed TLS certificate or key does not load; still serving the previous one"
                ),
            }
        }
        state.current.clone()
    }

    /// The first DNS name (else IP address) of the leaf certificate now served: the name a
    /// client dialling this process at a loopback address verifies it by.
    pub fn server_name(&self) -> Option<rustls::pki_types::ServerName<'static>> {
        let current = self.current();
        let leaf = current.cert.first()?;
        certificate_server_name(leaf)
    }
}

fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(cert)?;
    let pem = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: key.to_owned(),
        why: format!("no private key: {e}"),
    })?;
    CertifiedKey::from_der(chain, private, &provider())
        .map_err(|e| TlsError::Rustls(format!("{} and {}: {e}", cert.display(), key.display())))
}

impl rustls::server::ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for CertificateFiles {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The reason of a request whose client certificate names no configured service account where
/// mutual TLS is required.
pub const UNKNOWN_CLIENT_CERTIFICATE: Reason = Reason::UnknownClientCertificate;

/// Which client certificate names are which service accounts (`--tls-client-accounts`).
#[derive(Debug, Clone, Default)]
pub struct CertificateAccounts {
    by_name: HashMap<String, Arc<Principal>>,
}

impl CertificateAccounts {
    /// Parses comma-separated `<name>=<account>:<capabilities>` entries: `name` a SAN URI or
    /// DNS name of client certificates, `capabilities` as in `--service-accounts`
    /// (`check-access+record-usage`, `@workspace`).
    pub fn parse(list: &str) -> Result<Self, TlsError> {
        let mut by_name = HashMap::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad =
                |why: &str| TlsError::Settings(format!("--tls-client-accounts {entry:?}: {why}"));
            let (name, rest) = entry
                .rsplit_once('=')
                .ok_or_else(|| bad("expected <certificate name>=<account>:<capabilities>"))?;
            let (account, caps) = rest.split_once(':').unwrap_or((rest, ""));
            let (name, account) = (name.trim(), account.trim());
            if name.is_empty() || account.is_empty() {
                return Err(bad(
                    "the certificate name and the account must not be empty",
                ));
            }
            let capabilities = parse_capability_list(caps).map_err(|why| bad(&why))?;
            if capabilities.is_empty() {
                return Err(bad("name at least one capability (for example @workspace)"));
            }
            let principal = Principal::Service(ServicePrincipal {
                name: account.to_owned(),
                capabilities,
            });
            // DNS names compare case-insensitively, as certificate names are read.
            let key = if name.contains("://") {
                name.to_owned()
            } else {
                name.to_ascii_lowercase()
            };
            if by_name.insert(key, Arc::new(principal)).is_some() {
                return Err(bad("the certificate name is listed twice"));
            }
        }
        Ok(Self { by_name })
    }

    /// Whether no account is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The service principal of the first of `names` that is configured.
    pub fn account_of(&self, names: &[String]) -> Option<Arc<Principal>> {
        names.iter().find_map(|n| self.by_name.get(n).cloned())
    }

    /// These accounts and `name` as `account` with `capabilities`.
    pub fn with(mut self, name: &str, account: &str, capabilities: Capabilities) -> Self {
        self.by_name.insert(
            name.to_owned(),
            Arc::new(Principal::Service(ServicePrincipal {
                name: account.to_owned(),
                capabilities,
            })),
        );
        self
    }
}

/// The SAN URIs and DNS names of a DER certificate, in that order; empty when it does not parse.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::URI(u) => uris.push((*u).to_owned()),
            GeneralName::DNSName(d) => dns.push(d.to_ascii_lowercase()),
            _ => {}
        }
    }
    uris.extend(dns);
    uris
}

/// The first DNS name, else the first IP address, of a DER certificate's SANs.
pub fn certificate_server_name(der: &[u8]) -> Option<rustls::pki_types::ServerName<'static>> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let names = &san.value.general_names;
    let dns = names.iter().find_map(|n| match n {
        GeneralName::DNSName(d) => rustls::pki_types::ServerName::try_from(d.to_string()).ok(),
        _ => None,
    });
    dns.or_else(|| {
        names.iter().find_map(|n| match n {
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?),
                    16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?),
                    _ => return None,
                };
                Some(rustls::pki_types::ServerName::IpAddress(ip.into()))
            }
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Capability;

    #[test]
    fn certificate_accounts_parse_names_accounts_and_capabilities() {
        let accounts = CertificateAccounts::parse(
            "spiffe://orgplane/workspace=workspace:@workspace, Gateway.Example=gw:check-access",
        )
        .unwrap();
        let principal = accounts
            .account_of(&["spiffe://orgplane/workspace".into()])
            .unwrap();
        let Principal::Service(service) = &*principal else {
            panic!("a service principal: {principal:?}");
        };
        assert_eq!(service.name, "workspace");
        assert!(service.capabilities.has(Capability::WatchOrganization));
        let Principal::Service(gateway) =
            &*accounts.account_of(&["gateway.example".into()]).unwrap()
        else {
            panic!("a service principal");
        };
        assert_eq!(
            gateway.capabilities,
            Capabilities::of(&[Capability::CheckAccess])
        );
        assert!(accounts.account_of(&["stranger.example".into()]).is_none());
        for bad in [
            "no-equals-sign",
            "=account:check-access",
            "name=:check-access",
            "name=account",
            "name=account:fly",
            "a=x:check-access,a=y:check-access",
        ] {
            assert!(
                CertificateAccounts::parse(bad).is_err(),
                "{bad:?} is refused"
            );
        }
        assert!(CertificateAccounts::parse(" , ").unwrap().is_empty());
    }

    #[test]
    fn certificate_names_lists_uris_then_dns_names_and_the_server_name_prefers_dns() {
        let ca = testing::TestCa::new("ca");
        let cert = ca.issue(&[
            "10.0.0.1",
            "Workspace.Orgplane.svc",
            "spiffe://orgplane/workspace",
        ]);
        let der = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            certificate_names(&der),
            vec!["spiffe://orgplane/workspace", "workspace.orgplane.svc"]
        );
        assert_eq!(
            certificate_server_name(&der).unwrap().to_str(),
            "Workspace.Orgplane.svc"
        );
        let ip_only = ca.issue(&["127.0.0.1"]);
        let der = CertificateDer::from_pem_slice(ip_only.cert_pem.as_bytes()).unwrap();
        assert_eq!(certificate_server_name(&der).unwrap().to_str(), "127.0.0.1");
        assert!(certificate_names(b"not a certificate").is_empty());
    }

    #[test]
    fn settings_that_do_not_go_together_are_refused() {
        let path = || Some(PathBuf::from("x.pem"));
        for settings in [
            TlsSettings {
                cert: path(),
                ..Default::default()
            },
            TlsSettings {
                key: path(),
                ..Default::default()
            },
            TlsSettings {
                client_ca: path(),
                ..Default::default()
            },
            TlsSettings {
                cert: path(),
                key: path(),
                client_auth: ClientAuth::Required,
                ..Default::default()
            },
        ] {
            assert!(settings.validate().is_err(), "{settings:?}");
        }
        assert!(TlsSettings::default().validate().is_ok());
    }
}
