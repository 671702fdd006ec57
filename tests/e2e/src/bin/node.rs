//! The real `orgplane` program under another name, so that this crate's end-to-end tests can
//! start it as a child process (cargo tells integration tests where their own package's binaries
//! are, not other packages').
//!
//! `ORGPLANE_E2E_CONTROL_ARM=no-security-policy` runs it with organization security policies not
//! enforced (rule ORG-16): the control arm that shows the enforcement test can fail. The product
//! binary has no such switch.

fn main() -> std::process::ExitCode {
    if std::env::var("ORGPLANE_E2E_CONTROL_ARM").as_deref() == Ok("no-security-policy") {
        orgplane_platform::policy::disable_enforcement_for_control_arm();
    }
    orgplane::main_from(std::env::args_os())
}
