//! The real `orgplane` program under another name, so that this crate's end-to-end tests can
//! start it as a child process (cargo tells integration tests where their own package's binaries
//! are, not other packages').

fn main() -> std::process::ExitCode {
    orgplane::main_from(std::env::args_os())
}
