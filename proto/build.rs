//! Compiles the `.proto` files with the pure-Rust `protox` compiler, so building
//! needs nothing but the Rust toolchain (no system `protoc`).
//!
//! The include root is this folder: `etcd/rpc.proto` imports `etcd/kv.proto`
//! by that path. Each proto package becomes one generated file named after it
//! (`rustyraft.raft.v1.rs`, `etcdserverpb.rs`, `mvccpb.rs`,
//! `rustyraft.forward.v1.rs`), which `src/lib.rs`
//! includes.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "raft.proto",
        "etcd/kv.proto",
        "etcd/rpc.proto",
        "forward.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Entry payloads and snapshot chunks are shared, not copied.
        .bytes(".rustyraft.raft.v1")
        .compile_fds(descriptors)?;
    Ok(())
}
