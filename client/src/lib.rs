//! `raft_client`: the RustyRaft node, which serves the etcd v3 API on top of
//! the Raft library.
//!
//! Today this crate holds the replicated state machine, [`kv`]: a key-value
//! store with etcd's semantics whose writes arrive as encoded log commands.
//! The gRPC services and the node that drives Raft arrive with their issues.

#![deny(missing_docs)]

pub mod kv;
