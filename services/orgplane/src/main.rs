//! `orgplane`: the one binary. With no command (or `all`) it runs all four services in one
//! process on one address; `serve <service>` runs one, as deployed in Kubernetes; `migrate` runs
//! the database migrations and exits.

fn main() -> std::process::ExitCode {
    orgplane::main_from(std::env::args_os())
}
