//! The DNS TXT lookups of domain verification (rule ORG-14): a small trait the use case calls,
//! [`TxtLookup`], and its implementation over `hickory-resolver` ([`HickoryTxt`]) asking the
//! configured servers (`--organization-dns-server`) or the system's resolver configuration,
//! within a timeout and without a cache (a re-check must see a removed record).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::domain::domains::TxtAnswer;

/// Looks up the TXT values at a DNS name.
pub trait TxtLookup: Send + Sync + std::fmt::Debug {
    /// The TXT values at `name` (a fully qualified name without the trailing dot).
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, TxtAnswer>;
}

/// A shared lookup.
pub type SharedTxtLookup = Arc<dyn TxtLookup>;

/// [`TxtLookup`] over `hickory-resolver`.
pub struct HickoryTxt {
    resolver: TokioResolver,
    timeout: Duration,
}

impl std::fmt::Debug for HickoryTxt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryTxt")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HickoryTxt {
    /// A resolver asking `servers` (UDP, then TCP for truncated answers) in order, or the
    /// system's configuration when there are none; each lookup gives up after `timeout`.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<Self, String> {
        let mut builder = if servers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(b) => b,
                Err(e) => {
                    // Domain checks then answer LOOKUP_FAILED (no server to ask) until the
                    // operator sets --organization-dns-server; the rest of the service works.
                    tracing::warn!(error = %e, "no system DNS configuration: domain checks will fail until --organization-dns-server is set");
                    TokioResolver::builder_with_config(
                        ResolverConfig::from_name_servers(Vec::new()),
                        TokioRuntimeProvider::default(),
                    )
                }
            }
        } else {
            let name_servers = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(name_servers),
                TokioRuntimeProvider::default(),
            )
        };
        let options = builder.options_mut();
        options.timeout = timeout;
        options.attempts = 1;
        options.cache_size = 0;
        options.ndots = 0;
        let resolver = builder
            .build()
            .map_err(|e| format!("the DNS resolver: {e}"))?;
        Ok(Self { resolver, timeout })
    }
}

impl TxtLookup for HickoryTxt {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, TxtAnswer> {
        Box::pin(async move {
            // No answer from an earlier check may stand in for this one.
            self.resolver.clear_cache();
            let fqdn = format!("{name}.");
            let lookup = tokio::time::timeout(
                self.timeout + Duration::from_millis(100),
                self.resolver.txt_lookup(fqdn.as_str()),
            )
            .await;
            match lookup {
                Err(_) => TxtAnswer::Failed("timed out".to_owned()),
                Ok(Ok(found)) => {
                    let values: Vec<String> = found
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::TXT(txt) => Some(
                                txt.txt_data
                                    .iter()
                                    .map(|part| String::from_utf8_lossy(part).into_owned())
                                    .collect::<String>(),
                            ),
                            _ => None,
                        })
                        .collect();
                    if values.is_empty() {
                        TxtAnswer::NoRecords
                    } else {
                        TxtAnswer::Values(values)
                    }
                }
                Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => TxtAnswer::NoRecords,
                Ok(Err(e)) => TxtAnswer::Failed(e.to_string()),
            }
        })
    }
}
