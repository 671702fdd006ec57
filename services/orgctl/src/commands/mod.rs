//! The commands, one module per area; [`run`] dispatches the parsed command line.

mod account;
mod accounts;
mod audit;
mod billing;
mod context;
mod keys;
mod org;
mod workspace;

use crate::app::App;
use crate::cli::Command;
use crate::errors::Failure;

/// Runs one command.
pub async fn run(app: &mut App, command: Command) -> Result<(), Failure> {
    match command {
        Command::Context(c) => context::run(app, c),
        Command::Signup(args) => account::signup(app, args).await,
        Command::VerifyEmail { token } => account::verify_email(app, &token).await,
        Command::ResendVerification { email } => account::resend_verification(app, email).await,
        Command::Login(args) => account::login(app, args).await,
        Command::Logout { all_sessions } => account::logout(app, all_sessions).await,
        Command::Whoami => account::whoami(app).await,
        Command::Org(c) => org::org(app, c).await,
        Command::Members(c) => org::members(app, c).await,
        Command::Invites(c) => org::invites(app, c).await,
        Command::Units(c) => org::units(app, c).await,
        Command::Accounts(c) => accounts::run(app, c).await,
        Command::Workspaces(c) => workspace::workspaces(app, c).await,
        Command::ApiKeys(c) => keys::run(app, c).await,
        Command::Check(args) => workspace::check(app, args).await,
        Command::Audit(c) => audit::run(app, c).await,
        Command::Billing(c) => billing::run(app, c).await,
        // Handled before the configuration is read.
        Command::Completion { .. } => Ok(()),
    }
}

/// The secret on the first line of standard input, refused when empty.
fn secret_from_stdin(app: &mut App, what: &str) -> Result<String, Failure> {
    let line = app.stdin_line(what)?;
    let line = line.trim().to_owned();
    if line.is_empty() {
        return Err(Failure::usage(format!(
            "the {what} on standard input is empty"
        )));
    }
    Ok(line)
}

/// A table cell for an empty value.
fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}
