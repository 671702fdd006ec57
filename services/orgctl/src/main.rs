//! `orgctl`: the command-line tool for people operating Orgplane.
//!
//! It speaks gRPC to an Orgplane server (`orgplane all`, or the four services behind one
//! address) through the generated clients of `orgplane-proto`, and does in one command what the
//! README's tour does with `buf curl`: sign up, verify the mailed link, sign in (with a second
//! factor when the account has one), create an organization, invite people, create workspaces,
//! give roles, check access, manage API keys, read the audit trail and the billing reports.
//!
//! # Contexts and credentials
//!
//! A *context* is a server URL, its TLS settings and the credentials to use there. They live in
//! one TOML file, `$ORGCTL_CONFIG` or `${XDG_CONFIG_HOME:-~/.config}/orgctl/config.toml`,
//! written with mode 0600 (its directory, when orgctl creates it, 0700); orgctl refuses to read
//! it when group or others may. `--context NAME` or `ORGCTL_CONTEXT` picks a context for one
//! command, `orgctl context use NAME` for the following ones.
//!
//! ```text
//! orgctl context add prod --server https://orgplane.example.com --ca-cert ca.pem
//! orgctl context add local --server http://127.0.0.1:50051
//! orgctl context use local
//! ```
//!
//! Credentials per context are one of:
//!
//! - a **session** from `orgctl login` (password asked for without echo, or `--password-stdin`;
//!   when Login answers with an MFA challenge, the authenticator or recovery code is asked for and
//!   the sign-in is completed with VerifyMfaChallenge). The access token (15 minutes) is
//!   refreshed with the identity service's Refresh RPC when it is about to expire, under a lock
//!   on `<config>.lock` so that concurrent orgctl processes never spend one refresh token twice
//!   (which would end the session);
//! - an **API key** (`orgctl context set-credentials --api-key-stdin`), sent as `x-api-key`;
//! - a **service token** (`--service-token-stdin`), or a service account's client credentials
//!   (`--client-id ID --client-secret-stdin`) from which a token is minted per command.
//!
//! Writes that answer an organization `revision` (creating an organization, accepting an invite,
//! changing a role …) are remembered in the context for five minutes and sent back as
//! `x-min-organization-revision`, so the next command reads its own writes in every service;
//! `--min-org-revision` sends another one (e.g. the one another person's `invites accept`
//! printed).
//!
//! # Commands
//!
//! | command | RPCs |
//! |---|---|
//! | `context add\|use\|list\|delete\|show\|set-org\|set-credentials` | none (the file) |
//! | `signup`, `verify-email TOKEN`, `resend-verification EMAIL` | SignUp, VerifyEmail, ResendVerification |
//! | `login`, `logout`, `whoami` | Login, VerifyMfaChallenge, Logout, GetUser |
//! | `org create\|get\|list\|update\|delete` | CreateOrganization, GetOrganization, ListOrganizations, UpdateOrganization, DeleteOrganization |
//! | `members list\|set-role\|remove` | ListMembers, UpdateMemberRole, RemoveMember |
//! | `invites create\|list\|revoke\|accept` | CreateInvite, ListInvites, DeleteInvite, AcceptInvite |
//! | `units create\|list\|delete` | CreateUnit, ListUnits, DeleteUnit |
//! | `workspaces create\|list\|get\|archive` | CreateWorkspace, ListWorkspaces, GetWorkspace, ArchiveWorkspace |
//! | `workspaces members add\|list\|set-role\|remove` | AddWorkspaceMember, ListWorkspaceMembers, UpdateWorkspaceMember, RemoveWorkspaceMember |
//! | `api-keys create\|list\|revoke` | CreateApiKey, ListApiKeys, UpdateApiKey (status INACTIVE: the API has no delete) |
//! | `check` | WorkspaceService/CheckAccess |
//! | `audit list\|tail` | ListAuditEvents of all four services, merged newest first |
//! | `billing account\|usage\|cost` | GetBillingAccount, GetUsageReport, GetCostReport |
//! | `completion bash\|zsh\|fish\|powershell` | none |
//!
//! `audit tail` prints the newest records, then polls every `--interval` seconds with the
//! filter's `start_time` set to the newest record seen (less a safety margin; records are
//! de-duplicated by id), following `next_page_token` within each poll, until Ctrl-C.
//!
//! # Output
//!
//! Tables with aligned columns by default (enum prefixes dropped, times in UTC); `-o json`
//! prints canonical proto3 JSON — the response message of single calls, one array of the items
//! for lists — rendered through the embedded descriptor set with `prost-reflect`, the way the
//! audit log renders resources. Lists take `--page-size`, `--page-token` and `--all` (follow
//! every `next_page_token`); without `--all` a further page is announced on standard error.
//!
//! # Errors and exit codes
//!
//! A refused call prints `error: <message>`, `reason: <ErrorInfo reason>` (a name of
//! `orgplane.errors.v1.ErrorReason`), `code: <gRPC code>`, the ErrorInfo metadata, each
//! BadRequest field violation, precondition and quota violations, the RetryInfo delay and a
//! `hint:` for the common reasons (EMAIL_NOT_VERIFIED → `orgctl verify-email`, MFA_REQUIRED or an
//! expired session → `orgctl login`, …). Exit codes: 0 success, 1 the server refused or failed
//! the request, 2 wrong command line, 3 local configuration (file, context, credentials), 4 the
//! server could not be reached, 5 `check` answered "denied".
//!
//! # Not covered
//!
//! Second-factor enrollment, passkeys, SSO, SCIM, domains, security policies, branding,
//! operators, password resets and usage recording have RPCs but no orgctl command yet (use
//! `grpcurl`/`buf curl` as the README shows).

/// Writes to standard output (see [`output::emit`]: a closed pipe ends orgctl quietly).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::emit(&format!($($arg)*))
    };
}

/// Writes a line to standard output (see [`output::emit`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod app;
mod cli;
mod commands;
mod config;
mod conn;
mod errors;
mod output;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::app::App;
use crate::cli::Cli;
use crate::config::Store;
use crate::errors::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return ExitCode::from(u8::try_from(code).unwrap_or(errors::EXIT_USAGE));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(errors::EXIT_SERVER);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprint!("{}", failure.render());
            ExitCode::from(failure.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let cli::Command::Completion { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "orgctl", &mut std::io::stdout());
        return Ok(());
    }
    if cli.timeout == 0 {
        return Err(Failure::usage("--timeout must be at least 1 second"));
    }
    let store = Store::load()?;
    let mut app = App::new(
        store,
        cli.context,
        cli.output,
        cli.min_org_revision,
        Duration::from_secs(cli.timeout),
    );
    commands::run(&mut app, cli.command).await
}
