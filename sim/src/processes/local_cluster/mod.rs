//! A cluster of real node processes on loopback ports, for
//! `run_n_clients`: start the nodes, watch them, write to them while their
//! leader is killed again and again, and check at the end that no
//! acknowledged write was lost and every node holds the same store.
//!
//! Unlike the rest of this crate nothing here is simulated: the nodes are
//! `raft_client` servers (this same executable re-run with the hidden
//! `node` subcommand), talking gRPC over real sockets and writing real
//! files.

pub mod cluster;
pub mod display;
pub mod error;
pub mod monitor;
pub mod node_process;
pub mod ports;
pub mod processes;
pub mod reach;
pub mod runner;
pub mod scale;
pub mod summary;
pub mod verification;
pub mod workload;

pub use cluster::LocalCluster;
pub use error::LocalClusterError;
pub use runner::{run, RunnerOptions};
pub use summary::Summary;
