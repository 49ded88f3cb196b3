//! `sim`: runs the deterministic simulator over many seeds, or replays one.
//!
//! ```text
//! sim check --seeds N [--start-seed S] [--nodes 3|5|7] [--inject-bug NAME]
//! sim replay --seed S --nodes K [--inject-bug NAME]
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use sim::{replay_command, run, InjectedBug, RunOptions, RunOutcome};

#[derive(Parser, Debug)]
#[command(name = "sim", about = "RustyRaft's deterministic simulator")]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs many seeds and reports violations. The last line is
    /// `seeds=N violations=V`; the exit status is 1 when V > 0.
    Check {
        /// How many seeds to run.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        start_seed: u64,
        /// Cluster size; when absent each seed picks 3, 5 or 7.
        #[arg(long, value_parser = parse_nodes)]
        nodes: Option<usize>,
        /// Run a deliberately unsafe variant (to see the checks catch it).
        #[arg(long, value_parser = parse_bug)]
        inject_bug: Option<InjectedBug>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Never garble messages (half the seeds do otherwise).
        #[arg(long)]
        no_garbling: bool,
    },
    /// Replays one seed and prints its event trace.
    Replay {
        /// The seed to replay.
        #[arg(long)]
        seed: u64,
        /// Cluster size the seed ran with.
        #[arg(long, value_parser = parse_nodes)]
        nodes: usize,
        /// The unsafe variant the seed ran with, if any.
        #[arg(long, value_parser = parse_bug)]
        inject_bug: Option<InjectedBug>,
        /// The seed ran without garbled messages.
        #[arg(long)]
        no_garbling: bool,
    },
}

fn parse_nodes(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(nodes) if (1..=9).contains(&nodes) => Ok(nodes),
        _ => Err(format!("expected a cluster size from 1 to 9, got {text:?}")),
    }
}

fn parse_bug(text: &str) -> Result<InjectedBug, String> {
    InjectedBug::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = InjectedBug::ALL.iter().map(|bug| bug.name()).collect();
        format!("unknown bug {text:?}; known: {}", names.join(", "))
    })
}

/// The cluster size a seed uses when none is given.
fn nodes_for_seed(seed: u64) -> usize {
    [3, 5, 7][(seed % 3) as usize]
}

fn main() -> Result<ExitCode> {
    match Arguments::parse().command {
        Command::Check {
            seeds,
            start_seed,
            nodes,
            inject_bug,
            threads,
            no_garbling,
        } => check(seeds, start_seed, nodes, inject_bug, threads, !no_garbling),
        Command::Replay {
            seed,
            nodes,
            inject_bug,
            no_garbling,
        } => replay(seed, nodes, inject_bug, !no_garbling),
    }
}

fn check(
    seeds: u64,
    start_seed: u64,
    nodes: Option<usize>,
    bug: Option<InjectedBug>,
    threads: Option<usize>,
    garble_messages: bool,
) -> Result<ExitCode> {
    let Some(end_seed) = start_seed.checked_add(seeds) else {
        bail!("--start-seed plus --seeds overflows u64");
    };
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let started = Instant::now();
    let next_seed = AtomicU64::new(start_seed);
    let mut failures: Vec<RunOutcome> = Vec::new();
    let mut totals = Totals::default();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = Vec::new();
                    let mut totals = Totals::default();
                    loop {
                        let seed = next_seed.fetch_add(1, Ordering::Relaxed);
                        if seed >= end_seed {
                            break;
                        }
                        let outcome = run(RunOptions {
                            seed,
                            nodes: nodes.unwrap_or_else(|| nodes_for_seed(seed)),
                            bug,
                            trace: false,
                            garble_messages,
                        });
                        totals.add_run(&outcome.stats);
                        if outcome.violation.is_some() {
                            failures.push(outcome);
                        }
                    }
                    (failures, totals)
                })
            })
            .collect();
        for worker in workers {
            let (worker_failures, worker_totals) = worker.join().expect("worker panicked");
            failures.extend(worker_failures);
            totals.add(&worker_totals);
        }
    });
    failures.sort_by_key(|outcome| outcome.options.seed);
    for outcome in &failures {
        let violation = outcome
            .violation
            .as_ref()
            .expect("failures have violations");
        println!("seed {} FAILED: {violation}", outcome.options.seed);
        println!("  replay: {}", replay_command(&outcome.options));
    }
    let seeds_with_torn_writes = totals.seeds_with_torn_writes;
    let seeds_with_refused_disks = totals.seeds_with_refused_disks;
    let totals = totals.stats;
    println!(
        "ran in {:.1}s: {} events, {} messages, {} crashes, {} network faults, {} leadership transfers, {} configuration changes asked ({} accepted), {} leaders, {} client ops ok, {} indeterminate, {} refused, {} entries committed, {} snapshots taken, {} installed, {} histories undecided, {} messages garbled (and refused)",
        started.elapsed().as_secs_f64(),
        totals.events,
        totals.messages_sent,
        totals.crashes,
        totals.partitions,
        totals.leadership_transfers,
        totals.membership_changes,
        totals.membership_changes_accepted,
        totals.leaders_elected,
        totals.operations_ok,
        totals.operations_indeterminate,
        totals.operations_refused,
        totals.committed,
        totals.snapshots_taken,
        totals.snapshots_installed,
        totals.linearizability_undecided,
        totals.messages_garbled
    );
    println!(
        "disk faults: {} crashes aimed at writes in flight, {} at hard states in flight ({} hard states lost), {} torn writes in {} seeds, {} unacknowledged entries kept by crashes, {} replacements of a suffix cut short, {} disks corrupted, {} refused to start (in {} seeds)",
        totals.crashes_aimed_mid_write,
        totals.crashes_aimed_at_hard_states,
        totals.hard_states_lost,
        totals.torn_writes,
        seeds_with_torn_writes,
        totals.unacknowledged_entries_kept,
        totals.replacements_cut_short,
        totals.disks_corrupted,
        totals.corrupt_disks_refused,
        seeds_with_refused_disks
    );
    println!("seeds={} violations={}", seeds, failures.len());
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What many runs added up to.
#[derive(Default)]
struct Totals {
    stats: sim::RunStats,
    seeds_with_torn_writes: u64,
    seeds_with_refused_disks: u64,
}

impl Totals {
    fn add_run(&mut self, stats: &sim::RunStats) {
        add_stats(&mut self.stats, stats);
        self.seeds_with_torn_writes += u64::from(stats.torn_writes > 0);
        self.seeds_with_refused_disks += u64::from(stats.corrupt_disks_refused > 0);
    }

    fn add(&mut self, other: &Totals) {
        add_stats(&mut self.stats, &other.stats);
        self.seeds_with_torn_writes += other.seeds_with_torn_writes;
        self.seeds_with_refused_disks += other.seeds_with_refused_disks;
    }
}

fn add_stats(totals: &mut sim::RunStats, stats: &sim::RunStats) {
    totals.events += stats.events;
    totals.messages_sent += stats.messages_sent;
    totals.crashes += stats.crashes;
    totals.partitions += stats.partitions;
    totals.leadership_transfers += stats.leadership_transfers;
    totals.membership_changes += stats.membership_changes;
    totals.membership_changes_accepted += stats.membership_changes_accepted;
    totals.leaders_elected += stats.leaders_elected;
    totals.operations_ok += stats.operations_ok;
    totals.operations_indeterminate += stats.operations_indeterminate;
    totals.operations_refused += stats.operations_refused;
    totals.committed += stats.committed;
    totals.linearizability_undecided += stats.linearizability_undecided;
    totals.snapshots_taken += stats.snapshots_taken;
    totals.snapshots_installed += stats.snapshots_installed;
    totals.messages_garbled += stats.messages_garbled;
    totals.crashes_aimed_mid_write += stats.crashes_aimed_mid_write;
    totals.crashes_aimed_at_hard_states += stats.crashes_aimed_at_hard_states;
    totals.hard_states_lost += stats.hard_states_lost;
    totals.torn_writes += stats.torn_writes;
    totals.replacements_cut_short += stats.replacements_cut_short;
    totals.unacknowledged_entries_kept += stats.unacknowledged_entries_kept;
    totals.disks_corrupted += stats.disks_corrupted;
    totals.corrupt_disks_refused += stats.corrupt_disks_refused;
}

fn replay(
    seed: u64,
    nodes: usize,
    bug: Option<InjectedBug>,
    garble_messages: bool,
) -> Result<ExitCode> {
    let options = RunOptions {
        seed,
        nodes,
        bug,
        trace: true,
        garble_messages,
    };
    let scenario = sim::Cluster::new(options.clone()).scenario().clone();
    println!("seed {seed}, {nodes} nodes: {scenario:?}");
    let outcome = run(options);
    for line in &outcome.trace {
        println!("{line}");
    }
    println!("{:?}", outcome.stats);
    match &outcome.violation {
        Some(violation) => {
            println!("VIOLATION {violation}");
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!("no violation");
            Ok(ExitCode::SUCCESS)
        }
    }
}
