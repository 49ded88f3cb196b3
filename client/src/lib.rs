//! `raft_client`: the RustyRaft node, which serves the etcd v3 API on top of
//! the Raft library.
//!
//! - [`kv`]: the replicated state machine, a key-value store with etcd's
//!   semantics whose writes arrive as encoded log commands;
//! - [`server`]: the node: the Raft peer service and the etcd services on
//!   one gRPC port, forwarding to the leader what a follower cannot answer;
//! - [`run`]: running a node from its arguments (`raft_client run`, and
//!   the harnesses in `sim/` that launch nodes the same way), with
//!   [`logging`] and its signals;
//! - [`connect`]: reaching a cluster as a client, over plaintext or TLS;
//! - [`pki`]: a throwaway certificate authority for TLS demos and tests;
//! - [`cli`]: the command line's client side: human commands and the load
//!   generator.
//!
//! The harnesses in `sim/` use [`run`], [`connect`], [`pki`],
//! [`logging`] and the member operations of [`cli::commands`].

#![deny(missing_docs)]

pub mod cli;
pub mod connect;
pub mod go_duration;
pub mod kv;
pub mod logging;
pub mod pki;
pub mod run;
pub mod server;
