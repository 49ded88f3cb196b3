//! Generated protocol buffer types and gRPC stubs for RustyRaft.
//!
//! These types are wire types only: the Raft core never sees them. The
//! transport converts between them and the core's domain types at the edge.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The peer-to-peer protocol between Raft nodes (`proto/raft.proto`).
pub mod raft {
    tonic::include_proto!("rustyraft.raft.v1");
}

/// Clients' writes forwarded from a member to the leader in batches over
/// one stream (`proto/forward.proto`).
pub mod forward {
    pub use crate::etcd::rustyraft::forward::v1::*;
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

    /// `proto/forward.proto` (package `rustyraft.forward.v1`), nested here
    /// because its generated code reaches etcd's responses four modules up
    /// (`super::super::super::super::etcdserverpb`); see [`crate::forward`].
    pub mod rustyraft {
        /// Forwarding.
        pub mod forward {
            /// Version 1.
            pub mod v1 {
                tonic::include_proto!("rustyraft.forward.v1");
            }
        }
    }
}
