//! `chaos`: runs real RustyRaft nodes under injected faults (kill -9,
//! SIGSTOP, isolation, minority splits, bridges) while clients read, write
//! and compare-and-set over the etcd v3 API and watchers follow the keys,
//! then checks every key's history for linearizability, every watcher's
//! events against the writes, and every member for the same store.
//!
//! ```text
//! chaos [--nodes N] [--secs S] [--seed S] [--clients C]
//!       [--network auto|namespaces|loopback] [--serializable-reads]
//!       [--watchers-per-member W] [--break-watcher skip-one]
//!       [--data-dir DIR] [--keep]
//! ```
//!
//! The last line is `ops=.. ok=.. indeterminate=.. faults=.. keys=..
//! watchers=.. watch_events=.. violations=..`. Exit status: 0 when every check passed, 1 on a violation
//! (the history and the members' logs are kept in a folder it names), 2
//! when the run could not be carried out or the checker could not decide.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use raft_client::logging::init_logging;
use raft_client::run::shutdown_signal;
use sim::processes::chaos::{namespaces_available, run, ChaosOptions, NetworkMode, WatcherFault};
use sim::processes::local_cluster::node_process::{launcher_main, NodeArguments};

/// Runs real nodes under injected faults and checks linearizability.
#[derive(Parser, Debug)]
#[command(name = "chaos", args_conflicts_with_subcommands = true)]
struct Arguments {
    #[command(subcommand)]
    node: Option<NodeCommand>,
    #[command(flatten)]
    run: RunArguments,
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Runs one node (what the harness starts for each).
    #[command(hide = true)]
    Node(NodeArguments),
}

/// Where the nodes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Network {
    /// Namespaces when running as root on Linux, else loopback.
    Auto,
    /// One network namespace per node (root on Linux): network faults too.
    Namespaces,
    /// Loopback ports: process faults only.
    Loopback,
}

/// A bug to put into the harness's own watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BrokenWatcher {
    /// Watcher 0 drops the tenth event it is told.
    SkipOne,
}

#[derive(clap::Args, Debug)]
struct RunArguments {
    /// Members of the cluster.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    nodes: u64,
    /// Seconds of faults under load (a heal phase and the checks follow).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    secs: u64,
    /// Seeds the fault plan and the clients' choices [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Concurrent clients, spread over the members.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1000))]
    clients: u64,
    /// Where the nodes run.
    #[arg(long, value_enum, default_value_t = Network::Auto)]
    network: Network,
    /// Serve every workload read from the member alone (etcd's
    /// `serializable`), without ReadIndex: stale reads the checks must
    /// catch.
    #[arg(long)]
    serializable_reads: bool,
    /// Seconds the workload goes on after every fault is undone.
    #[arg(long, default_value_t = 5)]
    heal_secs: u64,
    /// Where to put the run's folder [default: the system's temporary
    /// directory]; the folder is removed after a passing run.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the run's folder even when the run passes.
    #[arg(long)]
    keep: bool,
    /// Run the cluster with mutual TLS between members and with clients
    /// (a throwaway PKI in the run's folder); the workload presents a
    /// client certificate.
    #[arg(long)]
    tls: bool,
    /// Watchers on each member: the first watches every key, the others
    /// a part of them; their events are checked against the writes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=100))]
    watchers_per_member: u64,
    /// Break the harness's own watcher 0 (not the server) to show that the
    /// watch checks catch it: the run must then fail.
    #[arg(long, value_enum)]
    break_watcher: Option<BrokenWatcher>,
}

async fn launch(arguments: RunArguments) -> anyhow::Result<ExitCode> {
    let can_make_hosts = namespaces_available();
    let network = match arguments.network {
        Network::Loopback => NetworkMode::Loopback,
        Network::Namespaces if can_make_hosts => NetworkMode::Namespaces,
        Network::Namespaces => anyhow::bail!(
            "--network namespaces needs root on Linux and the `ip` command (iproute2)"
        ),
        Network::Auto if can_make_hosts => NetworkMode::Namespaces,
        Network::Auto => {
            println!(
                "note: not root on Linux (or no `ip` command): the nodes run on loopback \
                 and only process faults (kill -9, SIGSTOP) are injected"
            );
            NetworkMode::Loopback
        }
    };
    let seed = arguments.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64)
    });
    let options = ChaosOptions {
        nodes: arguments.nodes as usize,
        duration: Duration::from_secs(arguments.secs),
        seed,
        clients: arguments.clients as usize,
        network,
        serializable_reads: arguments.serializable_reads,
        executable: std::env::current_exe()?,
        parent_directory: arguments.data_dir,
        heal_time: Duration::from_secs(arguments.heal_secs),
        keep: arguments.keep,
        tls: arguments.tls,
        watchers_per_member: arguments.watchers_per_member as usize,
        watcher_fault: arguments
            .break_watcher
            .map(|BrokenWatcher::SkipOne| WatcherFault::SkipOne),
    };
    let network_flag = if network == NetworkMode::Loopback {
        " --network loopback"
    } else {
        ""
    };
    let reads_flag = match (arguments.serializable_reads, arguments.tls) {
        (false, false) => "",
        (true, false) => " --serializable-reads",
        (false, true) => " --tls",
        (true, true) => " --serializable-reads --tls",
    };
    let mut watch_flags = format!(" --watchers-per-member {}", arguments.watchers_per_member);
    if arguments.break_watcher.is_some() {
        watch_flags.push_str(" --break-watcher skip-one");
    }
    println!(
        "chaos: seed={seed} nodes={} secs={} clients={} network={network}{reads_flag}{watch_flags}",
        arguments.nodes, arguments.secs, arguments.clients
    );
    println!(
        "the same plan again: cargo run --release --bin chaos -- --nodes {} --secs {} --clients {} --seed {seed}{network_flag}{reads_flag}{watch_flags}",
        arguments.nodes, arguments.secs, arguments.clients
    );
    // Dropping the run on Ctrl-C stops every node and removes the hosts.
    let report = tokio::select! {
        outcome = run(&options) => outcome?,
        _ = shutdown_signal() => {
            println!("interrupted: every node stopped, every test host removed");
            return Ok(ExitCode::from(130));
        }
    };
    for problem in &report.problems {
        println!("VIOLATION: {problem}");
    }
    if let Some(folder) = &report.kept_folder {
        println!(
            "the history (history.txt), the faults (faults.txt) and the members' logs are in {}",
            folder.display()
        );
    }
    println!(
        "reads_failed={} cas_answered={} cas_swapped={} undecided={} faults: {}",
        report.failed_reads,
        report.cas_answered,
        report.cas_succeeded,
        report.undecided,
        report.faults
    );
    println!(
        "watchers={} watch_events={} watch_reconnects={} watch_violations={}",
        report.watchers, report.watch_events, report.watch_reconnects, report.watch_violations
    );
    println!("{}", report.last_line());
    Ok(if report.violations > 0 {
        ExitCode::from(1)
    } else if report.undecided > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    init_logging("warn");
    let arguments = Arguments::parse();
    let Arguments { node, run } = arguments;
    let node = node.map(|NodeCommand::Node(node)| node);
    launcher_main(node, launch(run), ExitCode::from(2))
}
