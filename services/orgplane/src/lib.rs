//! The assembly of the `orgplane` binary as a library: the command line ([`cli`]) and
//! [`run::run`], which runs what it asks for. [`run::start`] starts the chosen services on a
//! listener the caller bound and returns them running, so that tools such as the load generator
//! can run exactly what the binary runs, in-process.

pub mod backup;
pub mod cli;
pub mod run;
pub mod tls;

pub use cli::{Cli, Command, Service};
pub use run::{Opened, Started, run, start};

/// The whole `orgplane` program for command-line `args` (the program name first): parse, set up
/// telemetry, run, and turn a failure into a message and exit code 1. The binary is this; test
/// and tool binaries that must run the real thing as a child process call it too.
pub fn main_from<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;
    let cli = Cli::parse_from(args);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("orgplane: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = orgplane_platform::telemetry::init(&cli.service_name(), cli.log_format);
        match run(cli).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "orgplane failed");
                eprintln!("orgplane: {e:#}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
