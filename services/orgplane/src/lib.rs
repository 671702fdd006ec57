//! The assembly of the `orgplane` binary as a library: the command line ([`cli`]) and
//! [`run::run`], which runs what it asks for. [`run::start`] starts the chosen services on a
//! listener the caller bound and returns them running, so that tools such as the load generator
//! can run exactly what the binary runs, in-process.

pub mod cli;
pub mod run;

pub use cli::{Cli, Command, Service};
pub use run::{Opened, Started, run, start};
