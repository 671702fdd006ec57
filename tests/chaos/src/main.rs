//! `orgplane-chaos`: runs the reliability and security scenarios at full size against real
//! Orgplane processes and prints their figures. `orgplane-chaos orgplane <args>` is the
//! `orgplane` binary itself (the scenarios start this executable that way, so that what they kill
//! is exactly what ships).

use clap::Parser;
use orgplane_chaos::{Figures, Size};

/// The scenarios to run.
#[derive(Debug, Parser)]
#[command(name = "orgplane-chaos")]
struct Args {
    /// The scenario: `all` or one name of `--list`.
    #[arg(default_value = "all")]
    scenario: String,
    /// Print the scenarios and what each proves, then exit.
    #[arg(long)]
    list: bool,
    /// Run the small (CI) sizes instead of the full ones.
    #[arg(long)]
    fast: bool,
    /// Also run every scenario on this PostgreSQL server (default: ORGPLANE_TEST_POSTGRES_URL).
    #[arg(long, env = "ORGPLANE_TEST_POSTGRES_URL")]
    postgres: Option<String>,
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("orgplane") {
        return orgplane::main_from(argv[1..].to_vec());
    }
    let args = Args::parse();
    if args.list {
        for (name, what) in orgplane_chaos::SCENARIOS {
            println!("{name:<12} {what}");
        }
        return std::process::ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("orgplane-chaos: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let size = if args.fast {
        Size::fast()
    } else {
        Size::full()
    };
    let result = runtime.block_on(orgplane_chaos::run(
        &args.scenario,
        size,
        args.postgres.as_deref(),
    ));
    match result {
        Ok(figures) => {
            print!("{}", Figures::table(&figures));
            let violations: usize = figures.iter().map(Figures::violations).sum();
            println!("violations: {violations}");
            if violations > 0 {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("orgplane-chaos: {e:#}");
            println!("violations: 1");
            std::process::ExitCode::FAILURE
        }
    }
}
