//! Harnesses of real `raft_client run` processes on this machine:
//! [`local_cluster`] (the `run_n_clients` demo: writes while leaders are
//! killed, shown live) and [`chaos`] (kill -9, SIGSTOP, partitions and disk
//! faults, every key's history checked with `crate::linearizability`).
//!
//! They start nodes through `raft_client`'s library (`raft_client::run`)
//! and reach them through `raft_client::connect`; the binaries in
//! `sim/src/bin/` call them.

pub mod chaos;
pub mod local_cluster;
