//! Generated protocol buffer types and gRPC stubs for RustyRaft.
//!
//! These types are wire types only: the Raft core never sees them. The
//! transport converts between them and the core's domain types at the edge.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The peer-to-peer protocol between Raft nodes (`proto/raft.proto`).
pub mod raft {
    tonic::include_proto!("rustyraft.raft.v1");
}
