//! Identity's pure rules: what a valid email address, display name, password or token input is,
//! second factors' codes ([`mfa`]), SSO connections and sign-in ([`sso`]), and the refusals of the service ([`Error`]). Nothing here touches tonic or the database.

pub mod error;
pub mod mfa;
pub mod scim_admin;
pub mod sso;
pub mod validation;

pub use error::Error;
