//! `orgctl context`, `signup` and `login`: where to connect and as whom.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::*;

/// `orgctl context …`.
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Add a context (a server and its TLS settings); the first one becomes current.
    ///
    /// `http://` servers are plaintext gRPC (loopback and development); `https://` servers use
    /// TLS, verified against --ca-cert or the Web PKI roots, with an optional client
    /// certificate for mutual TLS.
    Add {
        /// The context's name.
        name: String,
        /// The gRPC URL, e.g. http://127.0.0.1:50051 or https://orgplane.example.com.
        #[arg(long, value_name = "URL")]
        server: String,
        /// CA certificates (PEM) that verify an https:// server.
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// A client certificate chain (PEM) for mutual TLS.
        #[arg(long, value_name = "FILE", requires = "client_key")]
        client_cert: Option<PathBuf>,
        /// The client certificate's private key (PEM).
        #[arg(long, value_name = "FILE", requires = "client_cert")]
        client_key: Option<PathBuf>,
        /// Replace an existing context of this name (its credentials are dropped).
        #[arg(long)]
        force: bool,
    },
    /// Make a context the current one.
    Use {
        /// The context's name.
        name: String,
    },
    /// List the contexts; `*` marks the current one.
    List,
    /// Delete a context and its credentials.
    Delete {
        /// The context's name.
        name: String,
    },
    /// Show a context (the current one by default), without secrets.
    Show {
        /// The context's name.
        name: Option<String>,
    },
    /// Set the organization commands use when `--org` is not given.
    SetOrg {
        /// The organization's id; omit it to clear.
        organization_id: Option<String>,
    },
    /// Store non-session credentials: an API key or a service token, read from standard input.
    ///
    /// An admin API key (`opk_admin_…`) acts with ADMIN rights in its organization. A service
    /// token is sent as a bearer token as is; with `--client-id` and `--client-secret-stdin`
    /// orgctl mints a fresh service token (IssueServiceToken) for every command instead.
    SetCredentials(SetCredentialsArgs),
}

/// `orgctl context set-credentials`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("credential").required(true).multiple(false).args(["api_key_stdin", "service_token_stdin", "client_id"])))]
pub struct SetCredentialsArgs {
    /// Read an API key from the first line of standard input.
    #[arg(long)]
    pub api_key_stdin: bool,
    /// Read a service token from the first line of standard input.
    #[arg(long)]
    pub service_token_stdin: bool,
    /// A service account's client id; its secret is read from standard input.
    #[arg(long, requires = "client_secret_stdin", value_name = "ID")]
    pub client_id: Option<String>,
    /// Read the service account's secret from the first line of standard input.
    #[arg(long, requires = "client_id")]
    pub client_secret_stdin: bool,
}

/// `orgctl signup`.
#[derive(Debug, Args)]
pub struct SignupArgs {
    /// The sign-in address; the verification link is mailed to it.
    #[arg(long)]
    pub email: String,
    /// The name other members see.
    #[arg(long)]
    pub name: String,
    /// Business accounts may create organizations; personal accounts join by invitation.
    #[arg(long, value_enum, default_value_t = AccountType::Business)]
    pub account_type: AccountType,
    /// Read the password from the first line of standard input instead of asking.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `orgctl login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The sign-in address (asked for when omitted).
    pub email: Option<String>,
    /// Read the password (and then an MFA code, when asked) from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The authenticator code (or a recovery code), when the account has a second factor.
    #[arg(long, value_name = "CODE", allow_hyphen_values = true)]
    pub mfa_code: Option<String>,
}
