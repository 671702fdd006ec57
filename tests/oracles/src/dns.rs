//! An in-process authoritative DNS server (hickory-server) on 127.0.0.1, UDP and TCP, for the
//! test zones; records are added and removed while a test runs. The service under test asks
//! only this server (`--organization-dns-server`), never the host's resolver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::rr::rdata::{SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

/// Queries of a held name wait until the test releases them (`arrived` is notified first).
type Holds =
    Arc<std::sync::Mutex<HashMap<String, (Arc<tokio::sync::Notify>, Arc<tokio::sync::Semaphore>)>>>;

/// The catalog, with the queries of held names delayed: how a test makes a change while a
/// domain check waits for DNS.
struct Handler {
    catalog: Catalog,
    holds: Holds,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let name = request
            .request_info()
            .map(|i| i.query.name().to_string().trim_end_matches('.').to_owned())
            .unwrap_or_default();
        let held = self.holds.lock().unwrap().get(&name).cloned();
        if let Some((arrived, release)) = held {
            arrived.notify_one();
            release.acquire().await.unwrap().forget();
        }
        self.catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// The running server and its zones.
pub struct TestDns {
    pub addr: SocketAddr,
    zones: HashMap<String, Arc<InMemoryZoneHandler>>,
    holds: Holds,
    _server: Server<Handler>,
}

/// A held name: the query's arrival, and its release.
pub struct Hold {
    pub arrived: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Semaphore>,
}

impl Hold {
    /// Lets one waiting (or the next) query of the name through.
    pub fn release(&self) {
        self.release.add_permits(1);
    }
}

impl TestDns {
    /// A server authoritative for `origins` (e.g. `test`), on a free UDP port of 127.0.0.1
    /// with TCP on the same port.
    pub async fn start(origins: &[&str]) -> TestDns {
        let mut catalog = Catalog::new();
        let mut zones = HashMap::new();
        for origin in origins {
            let name = Name::from_str(&format!("{origin}.")).unwrap();
            let zone =
                InMemoryZoneHandler::empty(name.clone(), ZoneType::Primary, AxfrPolicy::Deny);
            let soa = SOA::new(
                Name::from_str(&format!("ns.{origin}.")).unwrap(),
                Name::from_str(&format!("hostmaster.{origin}.")).unwrap(),
                1,
                3600,
                600,
                86400,
                0,
            );
            assert!(
                zone.upsert(Record::from_rdata(name.clone(), 0, RData::SOA(soa)), 1)
                    .await
            );
            let zone = Arc::new(zone);
            let handler: Arc<dyn ZoneHandler> = zone.clone();
            catalog.upsert(LowerName::new(&name), vec![handler]);
            zones.insert((*origin).to_owned(), zone);
        }
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let holds: Holds = Arc::default();
        let mut server = Server::new(Handler {
            catalog,
            holds: holds.clone(),
        });
        server.register_socket(udp);
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            server.register_listener(tcp, Duration::from_secs(5), 16);
        }
        TestDns {
            addr,
            zones,
            holds,
            _server: server,
        }
    }

    fn zone_of(&self, name: &str) -> &Arc<InMemoryZoneHandler> {
        self.zones
            .iter()
            .filter(|(origin, _)| name == origin.as_str() || name.ends_with(&format!(".{origin}")))
            .max_by_key(|(origin, _)| origin.len())
            .map(|(_, z)| z)
            .unwrap_or_else(|| panic!("no test zone holds {name}"))
    }

    /// Holds the queries of `name` until [`Hold::release`].
    pub fn hold(&self, name: &str) -> Hold {
        let arrived = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        self.holds
            .lock()
            .unwrap()
            .insert(name.to_owned(), (arrived.clone(), release.clone()));
        Hold { arrived, release }
    }

    /// Replaces the TXT records at `name` (no trailing dot) with one record per value.
    pub async fn set_txt(&self, name: &str, values: &[&str]) {
        self.remove_txt(name).await;
        let zone = self.zone_of(name);
        let fqdn = Name::from_str(&format!("{name}.")).unwrap();
        for v in values {
            let record =
                Record::from_rdata(fqdn.clone(), 0, RData::TXT(TXT::new(vec![(*v).to_owned()])));
            assert!(zone.upsert(record, 2).await, "TXT {name} {v}");
        }
    }

    /// Removes every TXT record at `name`.
    pub async fn remove_txt(&self, name: &str) {
        let zone = self.zone_of(name);
        let key = RrKey::new(
            LowerName::new(&Name::from_str(&format!("{name}.")).unwrap()),
            RecordType::TXT,
        );
        zone.records_mut().await.remove(&key);
    }
}
