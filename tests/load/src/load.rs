//! The load driver: a fixed number of tasks, each calling in a loop for a fixed time, with a
//! warm-up whose calls are not counted; latencies are kept in microseconds.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one measured run did.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Calls that succeeded in the measured window.
    pub calls: u64,
    /// Calls that failed in the measured window.
    pub errors: u64,
    /// The measured window.
    pub elapsed: Duration,
    /// Latencies of the successful calls (microseconds), sorted.
    pub latencies_us: Vec<u64>,
}

impl Stats {
    /// Successful calls per second.
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the latencies, in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        quantile(&self.latencies_us, q)
    }
}

/// The `q` quantile of sorted `values`.
pub fn quantile(values: &[u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let idx = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[idx.min(values.len() - 1)]
}

/// Sorts and wraps latencies measured some other way.
pub fn stats_of(mut latencies_us: Vec<u64>, elapsed: Duration, errors: u64) -> Stats {
    latencies_us.sort_unstable();
    Stats {
        calls: latencies_us.len() as u64,
        errors,
        elapsed,
        latencies_us,
    }
}

/// Runs `concurrency` tasks calling `call(task, n)` for `warmup` (not counted) and then for
/// `duration`; `call` returns whether the call succeeded.
pub async fn run<F, Fut>(concurrency: usize, warmup: Duration, duration: Duration, call: F) -> Stats
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut n = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let ok = call(task, n).await;
                n += 1;
                if t0 >= measure_from {
                    if ok {
                        latencies.push(t0.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    stats_of(all, end.saturating_duration_since(measure_from), errors)
}

/// A small deterministic generator (xorshift64*), so that seeded data is the same every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
