//! Authentication: one tower layer turns request metadata into a [`Principal`] — a user (a JWT in
//! `authorization: Bearer …`), an API key (`x-api-key`, resolved through identity and cached
//! briefly) or a service (a service token) — and puts it in the request's extensions, where
//! handlers read it. Health and reflection pass without credentials (Kubernetes probes send
//! none). Authorization against roles happens in the services; the guards here only say *who*.
//! A verified (or cached) access token whose session ended is refused afterwards through the
//! process's [`SessionRevocations`] (see [`crate::revocation`]).
//!
//! Token verification deliberately overrides `jsonwebtoken`'s lax defaults: the algorithm is
//! pinned to EdDSA, `iss aud exp nbf iat sub` are required, the leeway is small and explicit, the
//! key is chosen by `kid` from the JWKS here (refetched on an unknown `kid`, rate-limited),
//! headers that ask for other key sources (`jku`, `jwk`, `x5u`) or carry `crit` are refused, and
//! tokens over 8 KiB are refused before parsing.
//!
//! Layout: [`principal`] (who), [`capability`] (what a service account may do), [`verify`] (tokens and key sources), [`api_keys`] (resolution and
//! its cache), [`layer`] (the tower layer), [`signer`] (minting, used by identity). Outbound
//! calls (service tokens, `outgoing`) live in [`crate::clients`].

pub mod api_keys;
pub mod capability;
pub mod layer;
pub mod principal;
pub mod signer;
pub mod verify;

pub use api_keys::*;
pub use capability::*;
pub use layer::*;
pub use principal::*;
pub use signer::*;
pub use verify::*;

pub use crate::tokens::*;

#[cfg(test)]
mod tests;
