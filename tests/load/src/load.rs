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

/// A scenario measured against its baseline in alternating slices (baseline first), so that a
/// noisy moment on a shared machine moves one pair, not the result: the ratio reported is the
/// median of the per-pair ratios, with their spread.
#[derive(Debug, Clone, Default)]
pub struct Paired {
    /// Every baseline slice, merged.
    pub baseline: Stats,
    /// Every scenario slice, merged.
    pub scenario: Stats,
    /// scenario rate ÷ baseline rate, per pair, in the order measured.
    pub ratios: Vec<f64>,
}

impl Paired {
    /// The median of the per-pair ratios.
    pub fn median(&self) -> f64 {
        let mut r = self.ratios.clone();
        r.sort_by(f64::total_cmp);
        match r.len() {
            0 => 0.0,
            n if n % 2 == 1 => r[n / 2],
            n => (r[n / 2 - 1] + r[n / 2]) / 2.0,
        }
    }

    /// The lowest and highest per-pair ratio.
    pub fn spread(&self) -> (f64, f64) {
        let lo = self.ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self
            .ratios
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if self.ratios.is_empty() {
            (0.0, 0.0)
        } else {
            (lo, hi)
        }
    }
}

/// Measures `scenario` against `baseline` in `pairs` alternating slices of `slice` each, at
/// `concurrency`: `warmup` before the first slice of each, a tenth of a slice before the others
/// (enough to refill the pipeline, not counted).
pub async fn paired<B, BFut, S, SFut>(
    pairs: usize,
    concurrency: usize,
    warmup: Duration,
    slice: Duration,
    baseline: B,
    scenario: S,
) -> Paired
where
    B: Fn(usize, u64) -> BFut + Clone + Send + Sync + 'static,
    BFut: Future<Output = bool> + Send + 'static,
    S: Fn(usize, u64) -> SFut + Clone + Send + Sync + 'static,
    SFut: Future<Output = bool> + Send + 'static,
{
    let mut out = Paired::default();
    let (mut base_lat, mut scen_lat) = (Vec::new(), Vec::new());
    for pair in 0..pairs.max(1) {
        let warm = if pair == 0 { warmup } else { slice / 10 };
        let b = run(concurrency, warm, slice, baseline.clone()).await;
        let s = run(concurrency, warm, slice, scenario.clone()).await;
        out.ratios.push(s.rate() / b.rate().max(1e-9));
        for (merged, lat, one) in [
            (&mut out.baseline, &mut base_lat, b),
            (&mut out.scenario, &mut scen_lat, s),
        ] {
            merged.calls += one.calls;
            merged.errors += one.errors;
            merged.elapsed += one.elapsed;
            lat.extend(one.latencies_us);
        }
    }
    base_lat.sort_unstable();
    scen_lat.sort_unstable();
    out.baseline.latencies_us = base_lat;
    out.scenario.latencies_us = scen_lat;
    out
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
