//! The deterministic simulator: many Raft cores in one process over a
//! seeded network ([`network`]), disk ([`disk`]) and clock, driven by a
//! seeded workload and nemesis, with every safety property of Raft checked
//! after every step ([`invariants`]) and client histories checked for
//! linearizability (`crate::linearizability`). [`cluster`] runs one seed;
//! `driver.rs` carries each node's outputs out through the node's own
//! [`raft::OutputGate`], so a hard state is written in the background and
//! what follows it waits for its flush, as in the real node.
//!
//! Called by the `sim` binary and the scenario tests; nothing here starts a
//! process, opens a socket or reads the clock.

pub mod cluster;
pub mod corruption;
pub mod disk;
mod disk_faults;
mod driver;
pub mod invariants;
pub mod kv;
pub mod log_view;
mod nemesis;
pub mod network;
pub mod random;
pub mod scenario;
mod scripted;
mod snapshots;
pub mod trace;
mod workload;
