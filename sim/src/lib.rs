//! RustyRaft's deterministic simulator: many Raft cores in one process over
//! a seeded network, disk and clock, with every safety property of Raft
//! checked after every step and client histories checked for
//! linearizability.
//!
//! Every choice of a run derives from one `u64` seed, so any failure replays
//! exactly: `cargo run --release --bin sim -- replay --seed S --nodes N`.

#![deny(missing_docs)]

pub mod chaos;
pub mod cluster;
pub mod core_bench;
pub mod corruption;
pub mod disk;
mod disk_faults;
pub mod invariants;
pub mod kv;
pub mod linearizability;
pub mod local_cluster;
pub mod log_view;
mod nemesis;
pub mod network;
pub mod random;
pub mod scenario;
mod scripted;
mod snapshots;
pub mod trace;
mod workload;

pub use cluster::{Cluster, RunOptions, RunOutcome, RunStats};
pub use scenario::{InjectedBug, Scenario};

/// Runs one seed.
pub fn run(options: RunOptions) -> RunOutcome {
    Cluster::new(options).run()
}

/// The command that replays a run.
pub fn replay_command(options: &RunOptions) -> String {
    let mut command = format!(
        "cargo run --release --bin sim -- replay --seed {} --nodes {}",
        options.seed, options.nodes
    );
    if let Some(bug) = options.bug {
        command.push_str(&format!(" --inject-bug {}", bug.name()));
    }
    if !options.garble_messages {
        command.push_str(" --no-garbling");
    }
    command
}
