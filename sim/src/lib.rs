//! RustyRaft's deterministic simulator: many Raft cores in one process over
//! a seeded network, disk and clock, with every safety property of Raft
//! checked after every step and client histories checked for
//! linearizability.
//!
//! Every choice of a run derives from one `u64` seed, so any failure replays
//! exactly: `cargo run --release --bin sim -- replay --seed S --nodes N`.

#![deny(missing_docs)]
//!
//! Three rooms:
//!
//! - [`simulator`]: the deterministic simulator (the `sim` binary, the
//!   scenario tests): cores in one process, a seeded network, disk and
//!   clock, and the invariants checked on every step;
//! - [`processes`]: harnesses of real `raft_client` processes:
//!   [`processes::local_cluster`] behind `run_n_clients`, and
//!   [`processes::chaos`] behind `chaos`; they start nodes through
//!   `raft_client`'s library ([`raft_client::run`], [`raft_client::connect`]);
//! - what both use: the [`linearizability`] checker; and [`core_bench`],
//!   the cores alone with the thinnest driver, for `core_bench` and the
//!   allocation-budget test.

pub mod core_bench;
pub mod linearizability;
pub mod processes;
pub mod simulator;

pub use simulator::cluster::{Cluster, RunOptions, RunOutcome, RunStats};
pub use simulator::scenario::{InjectedBug, Scenario};

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
