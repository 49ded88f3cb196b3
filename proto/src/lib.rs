//! Generated protocol buffer types and gRPC stubs for RustyRaft.
//!
//! These types are wire types only: the Raft core never sees them. The
//! transport converts between them and the core's domain types at the edge.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The peer-to-peer protocol between Raft nodes (`proto/raft.proto`).
pub mod raft {
    tonic::include_proto!("rustyraft.raft.v1");
}

/// The client-facing etcd v3 API subset (`proto/etcd/`), wire-compatible with
/// etcd's own so that `etcdctl` and etcd client libraries work against a node.
///
/// The two packages sit side by side in this module because the generated
/// `etcdserverpb` code names key-values as `super::mvccpb::KeyValue`.
pub mod etcd {
    /// Keys and events (`proto/etcd/kv.proto`, package `mvccpb`).
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }

    /// The KV, Watch, Lease, Cluster and Maintenance services and their
    /// messages (`proto/etcd/rpc.proto`, package `etcdserverpb`).
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}
