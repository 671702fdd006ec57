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

/// Every Orgplane message's descriptor (and its imports'), decoded once from
/// [`FILE_DESCRIPTOR_SET`]; `None` only if the embedded set cannot be decoded.
pub fn descriptor_pool() -> Option<&'static prost_reflect::DescriptorPool> {
    static POOL: std::sync::OnceLock<Option<prost_reflect::DescriptorPool>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET).ok())
        .as_ref()
}

/// `message` as canonical proto3 JSON (lowerCamelCase field names, enum value names, RFC 3339
/// timestamps, 64-bit integers as strings, default values left out): what `grpcurl` and every
/// generated client print for the same message. The audit log stores resources this way and
/// `orgctl -o json` prints answers this way. `None` if `M` is not an Orgplane message.
pub fn proto_json<M: prost::Message + prost::Name>(message: &M) -> Option<serde_json::Value> {
    let descriptor = descriptor_pool()?.get_message_by_name(&M::full_name())?;
    let dynamic =
        prost_reflect::DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
            .ok()?;
    serde_json::to_value(&dynamic).ok()
}
