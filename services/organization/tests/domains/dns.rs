//! An in-process authoritative DNS server (hickory-server) on 127.0.0.1, UDP and TCP, for the
//! test zones; records are added and removed while a test runs. The service under test asks
//! only this server (`--organization-dns-server`), never the host's resolver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

/// The running server and its zones.
pub struct TestDns {
    pub addr: SocketAddr,
    zones: HashMap<String, Arc<InMemoryZoneHandler>>,
    _server: Server<Catalog>,
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
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            server.register_listener(tcp, Duration::from_secs(5), 16);
        }
        TestDns {
            addr,
            zones,
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
