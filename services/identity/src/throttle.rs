//! The throttles of rule ID-3. The sign-in budgets — failed passwords and second-factor codes
//! per account and per peer address, and the addresses each account signed in from — live in
//! identity's database and are shared by every replica ([`sign_in`]). The others stay in each
//! replica's memory as sliding windows ([`Throttle`]): sign-ups and mail requests per peer,
//! SSO sign-ins started per peer, service-token failures per client. With N replicas those give
//! at most N times their budget, which still bounds what they protect (mail volume, sign-up
//! spam, a misconfigured client), and a restart forgets them.
//!
//! The peer address is the TCP peer's, unless that peer is a configured trusted proxy (a product
//! backend or load balancer calling Login for its users): then it is the client address the
//! proxies recorded in `x-forwarded-for` ([`TrustedProxies`]).

pub mod sign_in;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use orgplane_platform::error::Reason;
use orgplane_platform::{ApiError, ApiResult};

/// At most `limit` events per `window` for each key.
#[derive(Debug)]
pub struct Throttle {
    limit: usize,
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    /// A throttle allowing `limit` events per `window` and key.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit as usize,
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// RESOURCE_EXHAUSTED with RetryInfo when `key` has used up its budget.
    pub fn check(&self, key: &str) -> ApiResult<()> {
        let now = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = events.get_mut(key) else {
            return Ok(());
        };
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() < self.limit {
            return Ok(());
        }
        let oldest = q.front().copied().unwrap_or(now);
        let wait = self
            .window
            .saturating_sub(now.duration_since(oldest))
            .max(Duration::from_secs(1));
        Err(ApiError::rate_limited(
            Reason::RateLimited,
            "too many attempts; retry later",
            wait,
        ))
    }

    /// Counts one event for `key`.
    pub fn record(&self, key: &str) {
        let now = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() > 100_000 {
            let window = self.window;
            events.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = events.entry(key.to_owned()).or_default();
        q.push_back(now);
        while q.len() > self.limit.max(1) * 2 {
            q.pop_front();
        }
    }

    /// Checks, then counts: for requests limited whatever their outcome.
    pub fn hit(&self, key: &str) -> ApiResult<()> {
        self.check(key)?;
        self.record(key);
        Ok(())
    }
}

/// The proxies whose `x-forwarded-for` names the client address the per-peer throttles key on.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR ranges (`10.0.0.0/8, ::1`).
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR range"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The client address of a request from `remote` with `forwarded_for` (the
    /// `x-forwarded-for` values, comma-separated, oldest hop first): walking it from its last
    /// entry back, each address handed over by a trusted proxy replaces it, until one is not a
    /// trusted proxy (or an entry is not an address). Without trusted proxies, `remote` itself:
    /// a client cannot choose its address by sending the header.
    pub fn client_address(
        &self,
        remote: Option<IpAddr>,
        forwarded_for: Option<&str>,
    ) -> Option<IpAddr> {
        let mut client = remote?;
        if self.0.is_empty() {
            return Some(client);
        }
        let hops = forwarded_for.unwrap_or("").split(',').map(str::trim);
        for hop in hops.rev() {
            if !self.trusts(client) {
                break;
            }
            match hop.parse::<IpAddr>() {
                Ok(addr) => client = addr,
                Err(_) => break,
            }
        }
        Some(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> Option<String> {
        (!values.is_empty()).then(|| values.join(", "))
    }

    #[test]
    fn id_3_the_peer_is_the_forwarded_client_only_behind_a_trusted_proxy() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let chain = forwarded(&["203.0.113.9, 10.1.1.1"]);
        // Through two trusted hops: the client they recorded.
        assert_eq!(
            proxies.client_address(ip("10.2.2.2"), chain.as_deref()),
            ip("203.0.113.9")
        );
        // From an untrusted peer the header is the peer's own claim: ignored.
        assert_eq!(
            proxies.client_address(ip("198.51.100.1"), chain.as_deref()),
            ip("198.51.100.1")
        );
        // A client's forged entry before the first untrusted address is never reached.
        let forged = forwarded(&["1.2.3.4", "203.0.113.9, 10.1.1.1"]);
        assert_eq!(
            proxies.client_address(ip("192.168.1.7"), forged.as_deref()),
            ip("203.0.113.9")
        );
        // Garbage stops the walk at the last trusted-proxy-vouched address.
        let garbage = forwarded(&["not-an-ip, 10.1.1.1"]);
        assert_eq!(
            proxies.client_address(ip("10.2.2.2"), garbage.as_deref()),
            ip("10.1.1.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            proxies.client_address(ip("10.2.2.2"), forwarded(&[]).as_deref()),
            ip("10.2.2.2")
        );
        // Without trusted proxies nothing is believed.
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_address(ip("10.2.2.2"), chain.as_deref()),
            ip("10.2.2.2")
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.internal").is_err());
    }

    #[test]
    fn the_budget_is_per_key_and_says_when_to_retry() {
        let t = Throttle::new(2, Duration::from_secs(60));
        t.hit("a").unwrap();
        t.hit("a").unwrap();
        let err = t.hit("a").unwrap_err();
        assert_eq!(
            err.code(),
            orgplane_platform::error::Code::ResourceExhausted
        );
        t.hit("b").unwrap();
    }
}
