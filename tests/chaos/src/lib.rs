//! Reliability and security scenarios against the real Orgplane processes, with figures.
//!
//! [`harness::Harness`] runs identity in-process (it mints the tokens) and organization,
//! workspace and billing-access as `orgplane serve` child processes that the scenarios kill with
//! SIGKILL. Each scenario returns [`Figures`]; [`Figures::violations`] counts the figures that
//! must be 0 and are not.

pub mod accounts;
pub mod attacks;
pub mod audit;
pub mod backlog;
pub mod concurrency;
pub mod crash;
pub mod escalation;
pub mod faults;
pub mod harness;
pub mod merge;
pub mod merge_faults;
pub mod oversize;
pub mod protocol;
pub mod proxy;
pub mod restart;
pub mod resync;
pub mod ryw;
pub mod secrets;
pub mod security;
mod tls;
pub mod watch;

use std::fmt::Write as _;
use std::path::PathBuf;

/// How big the scenarios are.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Demote-then-check attempts of the read-your-writes scenario (with the revision passed).
    pub ryw_attempts: usize,
    /// Attempts without the revision (to show the check can fail without it).
    pub ryw_unpinned_attempts: usize,
    /// Role changes of the crash scenario.
    pub role_changes: usize,
    /// Concurrent clients of the crash scenario.
    pub clients: usize,
    /// Members whose roles change.
    pub members: usize,
    /// Time between organization kills, in milliseconds (random in the range).
    pub org_kill_ms: (u64, u64),
    /// Time between consumer kills, in milliseconds (random in the range).
    pub consumer_kill_ms: (u64, u64),
    /// Watch streams replaying the backlog at once.
    pub watch_streams: usize,
    /// Role changes in the backlog they replay.
    pub watch_backlog: usize,
    /// Whether latency goals are violations. Only the full run (release build, one scenario at a
    /// time) measures latency; the fast variants run beside each other in `cargo test`, unoptimized,
    /// and only report it.
    pub latency_goals: bool,
}

impl Size {
    /// The full-size scenarios the issue asks for.
    pub fn full() -> Self {
        Size {
            ryw_attempts: 1000,
            ryw_unpinned_attempts: 300,
            role_changes: 10_000,
            clients: 16,
            members: 64,
            org_kill_ms: (500, 3000),
            consumer_kill_ms: (1000, 5000),
            watch_streams: 1000,
            watch_backlog: 3000,
            latency_goals: true,
        }
    }

    /// Small variants for CI.
    pub fn fast() -> Self {
        Size {
            ryw_attempts: 1000,
            ryw_unpinned_attempts: 100,
            role_changes: 1500,
            clients: 8,
            members: 24,
            org_kill_ms: (100, 600),
            consumer_kill_ms: (300, 1000),
            watch_streams: 100,
            watch_backlog: 600,
            latency_goals: false,
        }
    }
}

/// The figures of one scenario run.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Scenario name.
    pub scenario: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// Operations driven.
    pub operations: u64,
    /// Processes killed with SIGKILL.
    pub crashes: u64,
    /// Events delivered to consumers (including redeliveries).
    pub delivered: u64,
    /// Events delivered more than once.
    pub duplicated: u64,
    /// Events (or acknowledged changes) lost. Must be 0.
    pub lost: u64,
    /// Events applied twice / replica rows that differ from the source. Must be 0.
    pub applied_twice: u64,
    /// Checks that allowed after a demotion. Must be 0 unless `stale_expected`.
    pub stale_allows: u64,
    /// Whether stale allows are the point of the scenario (the revision deliberately not passed).
    pub stale_expected: bool,
    /// Rows of another tenant returned. Must be 0.
    pub leaks: u64,
    /// Attack cases answered as the rules prescribe.
    pub attacks_passed: u64,
    /// Attack cases answered otherwise. Must be 0.
    pub attacks_failed: u64,
    /// Other broken invariants, described.
    pub failures: Vec<String>,
    /// Free-form detail for the table.
    pub notes: String,
}

impl Figures {
    /// Empty figures of `scenario` on `database`.
    pub fn new(scenario: &str, database: &str) -> Self {
        Figures {
            scenario: scenario.into(),
            database: database.into(),
            ..Default::default()
        }
    }

    /// How many figures that must be 0 are not (each listed failure counts once).
    pub fn violations(&self) -> usize {
        let mut n = self.failures.len();
        for v in [
            self.lost,
            self.applied_twice,
            self.leaks,
            self.attacks_failed,
        ] {
            if v > 0 {
                n += 1;
            }
        }
        if self.stale_allows > 0 && !self.stale_expected {
            n += 1;
        }
        n
    }

    /// The table of `rows`.
    pub fn table(rows: &[Figures]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<26} {:<8} {:>8} {:>7} {:>9} {:>9} {:>5} {:>7} {:>6} {:>5} {:>8}  notes",
            "scenario",
            "db",
            "ops",
            "crashes",
            "delivered",
            "dup-deliv",
            "lost",
            "applied2",
            "stale",
            "leaks",
            "attacks"
        );
        for r in rows {
            let stale = if r.stale_expected {
                format!("({})", r.stale_allows)
            } else {
                r.stale_allows.to_string()
            };
            let _ = writeln!(
                out,
                "{:<26} {:<8} {:>8} {:>7} {:>9} {:>9} {:>5} {:>7} {:>6} {:>5} {:>8}  {}",
                r.scenario,
                r.database,
                r.operations,
                r.crashes,
                r.delivered,
                r.duplicated,
                r.lost,
                r.applied_twice,
                stale,
                r.leaks,
                format!(
                    "{}/{}",
                    r.attacks_passed,
                    r.attacks_passed + r.attacks_failed
                ),
                r.notes
            );
            for f in &r.failures {
                let _ = writeln!(out, "    VIOLATION: {f}");
            }
        }
        let _ = writeln!(
            out,
            "(stale in parentheses: the revision deliberately not passed; allowed to be > 0)"
        );
        out
    }
}

/// The figures' database label of a run on `postgres` (SQLite when `None`).
pub fn db_label(postgres: Option<&str>) -> &'static str {
    if postgres.is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

/// The executable whose `orgplane` subcommand is the orgplane binary: this one.
pub fn this_binary() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?)
}

/// The scenarios [`run`] knows, in the order `all` runs them, each with what it proves.
pub const SCENARIOS: [(&str, &str); 18] = [
    (
        "ryw",
        "read-your-writes: demote, then check with the returned revision",
    ),
    ("security", "cross-tenant matrix generated from the protos"),
    ("attacks", "protocol input, login abuse, token attacks"),
    (
        "secrets",
        "no secret in logs, errors, list responses or audit records",
    ),
    (
        "audit",
        "every mutating RPC writes exactly one audit record",
    ),
    (
        "escalation",
        "no role above one's own, owner protected, field masks, page tokens",
    ),
    (
        "api-keys",
        "forged, inactive, foreign and purged-org API keys",
    ),
    (
        "protocol",
        "deep nesting, 1,000 streams, a Watch client that never reads",
    ),
    ("faults", "database unreachable or read-only, then back"),
    (
        "crash",
        "kill -9 of organization and of the consumers during role changes",
    ),
    (
        "watch",
        "Watch streams cut at random; resume after compaction",
    ),
    (
        "watch-backlog",
        "1,000 streams replay a 3,000-event backlog; ordinary calls unharmed",
    ),
    (
        "concurrency",
        "one request_id sent 100 times; one etag, one winner",
    ),
    ("restart", "rolling restart of every service under load"),
    (
        "restart-tls",
        "the rolling restart with TLS on every listener, call and event stream",
    ),
    (
        "resync",
        "organization re-syncs identity's and workspace's streams after compaction",
    ),
    (
        "merge-faults",
        "kill -9 of workspace and billing-access during a merge: everything moves once",
    ),
    ("all", "every scenario above"),
];

/// Runs `scenario` (one of [`SCENARIOS`]) at `size` on SQLite and, when given, PostgreSQL.
pub async fn run(
    scenario: &str,
    size: Size,
    postgres: Option<&str>,
) -> anyhow::Result<Vec<Figures>> {
    if !SCENARIOS.iter().any(|(name, _)| *name == scenario) {
        let names: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
        anyhow::bail!("unknown scenario {scenario:?}; known: {}", names.join(", "));
    }
    let bin = this_binary()?;
    let mut out = Vec::new();
    let mut dbs: Vec<Option<&str>> = vec![None];
    match postgres {
        Some(url) => dbs.push(Some(url)),
        None => eprintln!("PostgreSQL: skipped (ORGPLANE_TEST_POSTGRES_URL is not set)"),
    }
    for db in dbs {
        if matches!(scenario, "all" | "ryw") {
            out.extend(ryw::run(&bin, db, size).await?);
        }
        if matches!(scenario, "all" | "security") {
            out.push(security::run(&bin, db).await?);
        }
        if matches!(scenario, "all" | "attacks") {
            out.extend(attacks::run(&bin, db).await?);
        }
        if matches!(scenario, "all" | "secrets") {
            out.push(secrets::run(&bin, db).await?);
        }
        if matches!(scenario, "all" | "audit") {
            out.push(audit::run(&bin, db).await?);
        }
        if matches!(scenario, "all" | "escalation") {
            out.push(escalation::run(&bin, db).await?);
        }
        if matches!(scenario, "all" | "api-keys") {
            out.push(attacks::run_api_keys(&bin, db).await?);
        }
        if matches!(scenario, "all" | "protocol") {
            out.push(protocol::run(&bin, db, size.role_changes).await?);
        }
        if matches!(scenario, "all" | "faults") {
            out.push(faults::run(&bin, db, std::time::Duration::from_secs(10)).await?);
        }
        if matches!(scenario, "all" | "crash") {
            out.extend(crash::run(&bin, db, size).await?);
        }
        if matches!(scenario, "all" | "watch") {
            out.extend(watch::run(&bin, db, size).await?);
        }
        if matches!(scenario, "all" | "watch-backlog") {
            out.extend(backlog::run(&bin, db, size).await?);
        }
        if matches!(scenario, "all" | "concurrency") {
            out.extend(concurrency::run(&bin, db).await?);
        }
        if matches!(scenario, "all" | "restart") {
            out.extend(restart::run(&bin, db, size).await?);
        }
        if matches!(scenario, "all" | "restart-tls") {
            out.extend(restart::run_with(&bin, db, size, true).await?);
        }
        if matches!(scenario, "all" | "resync") {
            out.extend(resync::run(&bin, db).await?);
        }
        if matches!(scenario, "all" | "merge-faults") {
            // The size (1,000 members, 50 workspaces) unless `--fast`.
            let merge_size = if size.latency_goals {
                merge_faults::MergeSize::full()
            } else {
                merge_faults::MergeSize::fast()
            };
            out.extend(merge_faults::run(&bin, db, merge_size).await?);
        }
    }
    Ok(out)
}
