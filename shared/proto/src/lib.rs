//! Rust types, clients and servers generated from `proto/`, in one crate so that every service
//! and every test speaks exactly the same contract.
//!
//! Servers are generated with default stubs: an RPC a service has not implemented answers
//! `UNIMPLEMENTED` instead of failing to compile.

#![allow(clippy::all, missing_docs)]

/// The generated module tree (`orgplane::<service>::v1`).
pub mod generated {
    include!(concat!(env!("OUT_DIR"), "/_includes.rs"));
}

pub use generated::orgplane::*;

/// The encoded `FileDescriptorSet` of every Orgplane proto and its imports, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/orgplane_descriptor.bin"));
