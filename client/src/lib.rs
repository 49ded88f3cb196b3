//! `raft_client`: the RustyRaft node, which serves the etcd v3 API on top of
//! the Raft library.
//!
//! - [`kv`]: the replicated state machine, a key-value store with etcd's
//!   semantics whose writes arrive as encoded log commands;
//! - [`server`]: the node: the Raft peer service and the etcd services on
//!   one gRPC port, forwarding to the leader what a follower cannot answer;
//! - [`cli`]: the command line's client side: human commands and the load
//!   generator.

#![deny(missing_docs)]

pub mod cli;
pub mod kv;
pub mod server;
