//! In-memory sliding-window throttles: failed sign-ins per account and per peer address,
//! sign-ups and mail requests per peer, service-token failures per client (rule ID-3). They are
//! per replica: with N replicas an attacker gets at most N times the budget, which still bounds
//! online guessing; a shared store can replace them behind the same interface.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
        Err(ApiError::new(
            tonic::Code::ResourceExhausted,
            "RATE_LIMITED",
            "too many attempts; retry later",
        )
        .retry_after(wait))
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

    /// Gives back one event of `key` (an attempt counted by [`Self::hit`] that turned out not
    /// to count, such as a successful sign-in).
    pub fn release(&self, key: &str) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = events.get_mut(key) {
            q.pop_back();
            if q.is_empty() {
                events.remove(key);
            }
        }
    }

    /// Forgets `key` (after a successful sign-in).
    pub fn clear(&self, key: &str) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_per_key_and_says_when_to_retry() {
        let t = Throttle::new(2, Duration::from_secs(60));
        t.hit("a").unwrap();
        t.hit("a").unwrap();
        let err = t.hit("a").unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        t.hit("b").unwrap();
        t.clear("a");
        t.hit("a").unwrap();
        t.hit("a").unwrap();
        t.release("a");
        t.hit("a").unwrap();
        assert!(t.hit("a").is_err(), "a released event is given back once");
    }
}
