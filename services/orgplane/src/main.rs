//! `orgplane`: the one binary. With no command (or `all`) it runs all four services in one
//! process on one address; `serve <service>` runs one, as deployed in Kubernetes; `migrate` runs
//! the database migrations and exits.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = orgplane::Cli::parse();
    let _telemetry = orgplane_platform::telemetry::init("orgplane", cli.log_format);
    match orgplane::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "orgplane failed");
            eprintln!("orgplane: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
