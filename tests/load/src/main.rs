//! `orgplane-bench`: starts a fresh Orgplane in this process (SQLite on a temporary directory,
//! or PostgreSQL with `--postgres URL`), seeds it with fixed seeds, and measures each scenario of
//! issue 9 over real gRPC on loopback, as a ratio to a baseline measured in the same run.
//!
//! `orgplane-bench all [--json]` runs everything (scaled to fit 10 minutes on 2 cores; the
//! scale-downs are printed); `orgplane-bench smoke` runs everything with tiny data for seconds and
//! asserts no goal (CI runs it so the generator cannot rot).

mod baseline;
mod load;
mod rig;
mod scenarios;

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use scenarios::{Plan, Row};

/// The Orgplane load generator.
#[derive(Debug, Parser)]
#[command(name = "orgplane-bench")]
struct Args {
    /// What to run.
    #[command(subcommand)]
    what: What,
    /// Print one JSON object per scenario (besides the table, which goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Run on PostgreSQL (four fresh databases on this server, dropped afterwards).
    #[arg(long, global = true, env = "ORGPLANE_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// Measured seconds per throughput run.
    #[arg(long, global = true)]
    duration: Option<f64>,
    /// Calls in flight.
    #[arg(long, global = true, default_value_t = 64)]
    concurrency: usize,
    /// Multiplies the big volumes (members, role changes); 1.0 = the figures.
    #[arg(long, global = true)]
    scale: Option<f64>,
    /// Write an SVG chart of the latency percentiles of every scenario to this file.
    #[arg(long, global = true)]
    plot: Option<std::path::PathBuf>,
    /// Measure without the tracing stack `orgplane` installs (by default it is installed as
    /// the binary has it, log lines to stderr at `warn` unless `RUST_LOG` is set).
    #[arg(long, global = true)]
    no_telemetry: bool,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Every scenario.
    All,
    /// Every scenario, tiny and short, no goals asserted.
    Smoke,
    /// One scenario (check_access, auth_overhead, role_propagation, role_burst, watch_fanout,
    /// list_members_scale, login, usage_ingest_and_report, startup_and_memory).
    Run {
        /// The scenario names.
        scenarios: Vec<String>,
    },
    /// Runs the `orgplane` binary's code with these arguments (used by startup_and_memory).
    #[command(hide = true)]
    ExecOrgplane {
        /// The orgplane arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

const ALL: [&str; 9] = [
    "check_access",
    "auth_overhead",
    "role_propagation",
    "role_burst",
    "watch_fanout",
    "list_members_scale",
    "login",
    "usage_ingest_and_report",
    "startup_and_memory",
];

fn plan(args: &Args, smoke: bool) -> Plan {
    // Default scale: what fits the whole run in 10 minutes on 2 cores.
    let scale = args.scale.unwrap_or(if smoke { 0.01 } else { 1.0 });
    let n = |full: f64, min: usize| ((full * scale) as usize).max(min);
    Plan {
        duration: Duration::from_secs_f64(args.duration.unwrap_or(if smoke { 0.5 } else { 10.0 })),
        warmup: Duration::from_secs_f64(if smoke { 0.2 } else { 2.0 }),
        pairs: if smoke { 2 } else { 5 },
        concurrency: args.concurrency,
        connections: 4,
        users: n(10_000.0, 50),
        workspaces: if smoke { 5 } else { 100 },
        tokens: if smoke { 20 } else { 1000 },
        big_members: n(100_000.0, 300),
        role_changes: n(2_000.0, 20),
        burst: n(10_000.0, 50),
        login_concurrency: 4,
        page_samples: if smoke { 3 } else { 100 },
        report_samples: if smoke { 3 } else { 50 },
        usage_records: n(10_000_000.0, 20_000),
        assert_goals: !smoke,
        volume: scenarios::Volume {
            organizations: n(10_000.0, 20),
            members: n(1_000_000.0, 2_000),
            workspace_members: n(100_000.0, 200),
            big: n(100_000.0, 300),
        },
    }
}

/// The subscriber `orgplane` runs with (EnvFilter, OpenTelemetry layer giving every span W3C
/// ids, fmt layer), so that the figures include its per-call cost; log lines go to stderr and,
/// unless `RUST_LOG` is set, only from `warn` up, keeping the output (and `--json`) clean.
fn telemetry() -> orgplane_platform::telemetry::TelemetryGuard {
    use orgplane_platform::telemetry::{LogFormat, LogOutput, init_with};
    let quiet = std::env::var_os("RUST_LOG")
        .is_none()
        .then(|| "warn".to_owned());
    init_with(
        "orgplane",
        LogFormat::Text,
        &LogOutput {
            filter: quiet,
            stderr: true,
        },
    )
}

fn exec_orgplane(args: Vec<String>) -> std::process::ExitCode {
    let mut argv = vec!["orgplane".to_owned()];
    argv.extend(args);
    let cli = match <orgplane::Cli as Parser>::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // As the binary's `main`: startup_and_memory measures it with its tracing stack.
    let _telemetry = orgplane_platform::telemetry::init("orgplane", cli.log_format);
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        return std::process::ExitCode::FAILURE;
    };
    match rt.block_on(orgplane::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orgplane: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (names, smoke): (Vec<String>, bool) = match &args.what {
        What::ExecOrgplane { args } => return exec_orgplane(args.clone()),
        What::All => (ALL.iter().map(|s| s.to_string()).collect(), false),
        What::Smoke => (ALL.iter().map(|s| s.to_string()).collect(), true),
        What::Run { scenarios } => (scenarios.clone(), false),
    };
    for n in &names {
        if !ALL.contains(&n.as_str()) {
            eprintln!("unknown scenario {n}; known: {}", ALL.join(", "));
            return std::process::ExitCode::FAILURE;
        }
    }
    let plan = plan(&args, smoke);
    let _telemetry = (!args.no_telemetry).then(telemetry);
    // The same runtime settings for the baseline and for Orgplane: tokio's multi-threaded
    // runtime with one worker per core, client and server in this one process.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args, &names, &plan)) {
        Ok(rows) => {
            if let Some(path) = &args.plot {
                let backend = if args.postgres.is_some() {
                    "PostgreSQL"
                } else {
                    "SQLite"
                };
                let title = format!(
                    "orgplane-bench on {backend}, {} in flight",
                    plan.concurrency
                );
                if let Err(e) = std::fs::write(path, plot_svg(&rows, &title)) {
                    eprintln!("writing {}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
                eprintln!("plot written to {}", path.display());
            }
            let failed = rows.iter().filter(|r| r.met == Some(false)).count();
            if plan.assert_goals && failed > 0 {
                eprintln!("{failed} scenario(s) missed their goal");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("orgplane-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args, names: &[String], plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let total = Instant::now();
    let want = |n: &str| names.iter().any(|x| x == n);
    let backend = if args.postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    eprintln!(
        "orgplane-bench on {backend}: {} cores, {} in flight over {} connections, {:.1}s per run after {:.1}s warm-up",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        plan.concurrency,
        plan.connections,
        plan.duration.as_secs_f64(),
        plan.warmup.as_secs_f64()
    );
    eprintln!(
        "tracing: {}",
        if args.no_telemetry {
            "none (--no-telemetry)"
        } else {
            "as orgplane runs (EnvFilter, OpenTelemetry layer, fmt layer to stderr)"
        }
    );
    if plan.users < 10_000
        || plan.big_members < 100_000
        || plan.burst < 10_000
        || plan.role_changes < 2_000
        || plan.volume.members < 1_000_000
    {
        eprintln!(
            "NOTE: scaled down: {} users (issue: 10,000), {} members (100,000), {} role changes (2,000), burst {} (10,000), membership volume {} members / {} organizations / {} workspace memberships (1,000,000 / 10,000 / 100,000)",
            plan.users,
            plan.big_members,
            plan.role_changes,
            plan.burst,
            plan.volume.members,
            plan.volume.organizations,
            plan.volume.workspace_members
        );
    }
    let mut rows = Vec::new();
    // startup_and_memory measures the run's world plus the membership volume too.
    let needs_world = !names.is_empty();
    let mut world = None;
    if needs_world {
        let rig = rig::Rig::start(args.postgres.as_deref(), plan.connections).await?;
        world = Some(scenarios::seed_world(rig, plan).await?);
    }
    let emit = |row: &Row, rows: &mut Vec<Row>| {
        if args.json {
            println!("{}", json(row));
        }
        eprintln!("{}", table_line(row));
        rows.push(row.clone());
    };
    eprintln!("{}", table_header());
    if let Some(w) = &world {
        if want("check_access") {
            emit(&scenarios::check_access(w, plan).await?, &mut rows);
        }
        if want("auth_overhead") {
            emit(&scenarios::auth_overhead(w, plan).await?, &mut rows);
        }
        if want("role_propagation") {
            emit(&scenarios::role_propagation(w, plan, "").await?, &mut rows);
        }
        if want("role_burst") {
            emit(
                &scenarios::role_burst(w, plan, args.postgres.is_some()).await?,
                &mut rows,
            );
        }
        if want("watch_fanout") {
            emit(&scenarios::watch_fanout(w, plan).await?, &mut rows);
        }
        if want("list_members_scale") {
            emit(&scenarios::list_members_scale(w, plan).await?, &mut rows);
        }
        if want("login") {
            emit(&scenarios::login(w, plan).await?, &mut rows);
        }
        if want("usage_ingest_and_report") {
            emit(
                &scenarios::usage_ingest_and_report(w, plan).await?,
                &mut rows,
            );
        }
    }
    if want("startup_and_memory") {
        let settle = if plan.assert_goals {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(200)
        };
        let fresh = tempfile::tempdir()?;
        let pg = match &args.postgres {
            Some(url) => Some(rig::PgDatabases::create(url).await?),
            None => None,
        };
        let (startup, idle) =
            scenarios::exec_orgplane(&rig::orgplane_args(fresh.path(), pg.as_ref()), settle)
                .await?;
        if let Some(pg) = &pg {
            pg.drop_all().await;
        }
        let loaded = match world.take() {
            Some(w) => {
                let unloaded = scenarios::Unloaded {
                    check_access: rows
                        .iter()
                        .find(|r| r.scenario == "check_access")
                        .map(|r| r.ratio),
                };
                let (row, w) = scenarios::startup_loaded(w, plan, unloaded, settle).await?;
                world = Some(w);
                Some(row)
            }
            None => None,
        };
        let ms = startup.as_secs_f64() * 1000.0;
        let mib = idle as f64 / 1024.0;
        emit(
            &Row {
                scenario: "startup_and_memory".into(),
                value: ms,
                unit: "ms to SERVING".into(),
                baseline: 1000.0,
                ratio: ms / 1000.0,
                p50_us: 0,
                p99_us: 0,
                goal: "exec -> SERVING <= 1 s (fresh, migrations), idle RSS <= 60 MiB".into(),
                met: Some(ms <= 1000.0 && mib <= 60.0),
                note: format!("fresh data directory; idle RSS {mib:.1} MiB"),
                spread: None,
            },
            &mut rows,
        );
        if let Some(row) = loaded {
            emit(&row, &mut rows);
        }
    }
    if let Some(w) = world.as_mut() {
        w.rig.stop().await;
        w.rig.drop_databases().await;
    }
    eprintln!("total {:.0}s", total.elapsed().as_secs_f64());
    Ok(rows)
}

fn json(r: &Row) -> String {
    let (ratio_min, ratio_max, pairs) = match r.spread {
        Some((lo, hi, n)) => (Some(lo), Some(hi), Some(n)),
        None => (None, None, None),
    };
    serde_json::json!({
        "scenario": r.scenario,
        "value": r.value,
        "unit": r.unit,
        "baseline": r.baseline,
        "ratio": r.ratio,
        "p50_us": r.p50_us,
        "p99_us": r.p99_us,
        "goal": r.goal,
        "met": r.met,
        "note": r.note,
        "ratio_min": ratio_min,
        "ratio_max": ratio_max,
        "pairs": pairs,
    })
    .to_string()
}

fn table_header() -> String {
    format!(
        "{:<26} {:>12} {:<14} {:>12} {:>7} {:>8} {:>8}  {:<5} goal / note",
        "scenario", "value", "unit", "baseline", "ratio", "p50_us", "p99_us", "met"
    )
}

fn table_line(r: &Row) -> String {
    let met = match r.met {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "-",
    };
    format!(
        "{:<26} {:>12.1} {:<14} {:>12.1} {:>7.3} {:>8} {:>8}  {:<5} {}\n{:>28}{}",
        r.scenario,
        r.value,
        r.unit,
        r.baseline,
        r.ratio,
        r.p50_us,
        r.p99_us,
        met,
        r.goal,
        "",
        match r.spread {
            Some((lo, hi, n)) => format!(
                "ratio = median of {n} alternating pairs, spread {lo:.3}..{hi:.3}; {}",
                r.note
            ),
            None => r.note.clone(),
        }
    )
}

/// An SVG bar chart of the p50 and p99 latencies of every row that has them (log scale, µs):
/// the picture of a run, written with `--plot` next to its JSON.
fn plot_svg(rows: &[Row], title: &str) -> String {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.p99_us > 0).collect();
    let (left, bar, gap, width) = (190.0, 14.0, 12.0, 760.0);
    let height = 70.0 + rows.len() as f64 * (2.0 * bar + gap) + 40.0;
    let max = rows.iter().map(|r| r.p99_us).max().unwrap_or(1).max(10) as f64;
    let decades = max.log10().ceil().max(1.0);
    let x = |us: u64| left + (us.max(1) as f64).log10() / decades * (width - left - 20.0);
    let esc = |t: &str| t.replace('&', "&amp;").replace('<', "&lt;");
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\">{}</text>\n\
         <text x=\"10\" y=\"42\" fill=\"#555\">latency per call, µs (log scale): p50 light, p99 dark</text>\n",
        esc(title)
    );
    for d in 0..=decades as u32 {
        let us = 10u64.pow(d);
        let gx = x(us);
        svg.push_str(&format!(
            "<line x1=\"{gx:.1}\" y1=\"55\" x2=\"{gx:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{us}</text>\n",
            height - 30.0,
            height - 14.0
        ));
    }
    for (i, r) in rows.iter().enumerate() {
        let y = 60.0 + i as f64 * (2.0 * bar + gap);
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{left}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bar}\" fill=\"#9ecae1\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n\
             <rect x=\"{left}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar}\" fill=\"#3182bd\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            left - 8.0,
            y + bar + 4.0,
            esc(&r.scenario),
            x(r.p50_us) - left,
            x(r.p50_us) + 4.0,
            y + bar - 3.0,
            r.p50_us,
            y + bar,
            x(r.p99_us) - left,
            x(r.p99_us) + 4.0,
            y + 2.0 * bar - 3.0,
            r.p99_us,
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
