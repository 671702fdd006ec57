//! The mechanisms every Orgplane service shares, each in one place: server bootstrap
//! ([`server`]), per-RPC context and tracing ([`context`], [`telemetry`]), authentication
//! ([`auth`]), errors with google.rpc details ([`error`]), page tokens ([`pagination`]), the
//! database bootstrap ([`db`]), the HTTP listener ([`http`]), the events outbox, watch server and consumer ([`events`]), the
//! revocations of ended sessions ([`revocation`]), and an injectable clock ([`clock`]).

pub mod audit;
pub mod auth;
pub mod backup;
pub mod call;
pub mod clients;
pub mod clock;
pub mod context;
pub mod convert;
pub mod db;
pub mod email;
pub mod error;
pub mod events;
pub mod host;
pub mod http;
pub mod mail;
pub mod message_limit;
pub mod metrics;
pub mod pagination;
pub mod policy;
pub mod replica;
pub mod revocation;
pub mod roles;
pub mod runtime;
pub mod schema;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;
pub mod tokens;

pub use call::Call;
pub use error::{ApiError, ApiResult};
