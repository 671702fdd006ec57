//! Compiles every `.proto` under the repository's `proto/` with protox (pure Rust, no system
//! `protoc`), generates tonic clients and servers, and writes the encoded descriptor set that
//! feeds server reflection.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let root = root.canonicalize()?;
    // Only the contracts: `proto/clients/` holds the generated client packages (and whatever
    // their package managers bring, .proto files included).
    let contracts = root.join("orgplane");
    println!("cargo:rerun-if-changed={}", contracts.display());
    let mut files = Vec::new();
    collect(&contracts, &mut files)?;
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("orgplane_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // `prost::Name` on every message: the audit log encodes resources as canonical proto3 JSON
    // by their full name.
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .include_file("_includes.rs")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
