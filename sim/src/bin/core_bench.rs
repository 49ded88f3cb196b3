//! An in-process benchmark of the Raft core alone, shaped like openraft's
//! `bench-minimal` so that the two can be compared. The cluster and its
//! driver are in [`sim::core_bench`]; this binary adds the wall clock.
//!
//! Time: after each round, if at least [`TICK_INTERVAL`] of wall time has
//! passed since the last tick, every node gets one tick. With the default
//! configuration (heartbeat every 2 ticks, elections after 10 to 20) that is
//! a heartbeat every 2 ms: present, but far too rare to matter. The election
//! before the measurement ticks as fast as it can and is not timed.
//!
//! Latency is the wall time from the round in which a client proposed to the
//! moment its entry is applied at the leader. Throughput is completed
//! operations over the wall time of the measured loop. The last line printed
//! is always `clients=C ops_per_s=X p50_us=Y p99_us=Z`.
//!
//! Memory comes from mimalloc, as in `raft_client` (the node); built with
//! the `system-allocator` feature, from the system's allocator instead.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use clap::Parser;
use sim::core_bench::Benchmark;

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Which allocator this build uses, for `--help` and the summary line.
const ALLOCATOR_NAME: &str = if cfg!(feature = "system-allocator") {
    "system"
} else {
    "mimalloc"
};

/// Wall time between two ticks of every node during the measurement.
const TICK_INTERVAL: Duration = Duration::from_millis(1);

/// So long without a completed operation means the run is stuck.
const STALL_LIMIT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    about = "Benchmark the Raft core in one process, with an in-memory log and network",
    after_help = "Memory comes from mimalloc, the allocator raft_client uses; build with \
                  `--features system-allocator` (package sim) for the system's. The summary \
                  line names the allocator."
)]
struct Args {
    /// Concurrent clients, each with exactly one proposal outstanding.
    #[arg(long, default_value_t = 256)]
    clients: u32,
    /// Operations to complete in total.
    #[arg(long, default_value_t = 3_000_000)]
    ops: u64,
    /// Cluster size: 1, 3 or 5 are the usual choices.
    #[arg(long, default_value_t = 3)]
    members: u64,
    /// Seed of the nodes' election timeouts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.ops > 0, "--ops must be at least 1");
    let mut benchmark = Benchmark::new(args.members, args.clients, args.ops, args.seed)?;

    let started = Instant::now();
    let mut last_tick = started;
    let mut completed_before: u64 = 0;
    let mut last_progress = started;
    while !benchmark.done() {
        let now = Instant::now();
        benchmark.round()?;
        if now.duration_since(last_tick) >= TICK_INTERVAL {
            last_tick = now;
            benchmark.tick()?;
        }
        if benchmark.completed() != completed_before {
            completed_before = benchmark.completed();
            last_progress = now;
        }
        ensure!(
            now.duration_since(last_progress) < STALL_LIMIT,
            "no operation completed for {STALL_LIMIT:?}: the run is stuck"
        );
    }
    let elapsed = started.elapsed();

    let ops_per_s = args.ops as f64 / elapsed.as_secs_f64();
    let latencies = benchmark.latencies_ns();
    let p50_us = latencies.value_at_quantile(0.50) as f64 / 1_000.0;
    let p99_us = latencies.value_at_quantile(0.99) as f64 / 1_000.0;
    println!(
        "members={} ops={} allocator={ALLOCATOR_NAME} elapsed_ms={:.1} rounds={} mean_batch={:.1} mean_us={:.2} p90_us={:.1} p999_us={:.1} max_us={:.1}",
        args.members,
        args.ops,
        elapsed.as_secs_f64() * 1_000.0,
        benchmark.rounds(),
        args.ops as f64 / benchmark.rounds() as f64,
        latencies.mean() / 1_000.0,
        latencies.value_at_quantile(0.90) as f64 / 1_000.0,
        latencies.value_at_quantile(0.999) as f64 / 1_000.0,
        latencies.max() as f64 / 1_000.0,
    );
    println!(
        "clients={} ops_per_s={:.0} p50_us={:.1} p99_us={:.1}",
        args.clients, ops_per_s, p50_us, p99_us
    );
    Ok(())
}
