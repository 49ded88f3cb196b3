//! `run_n_clients`: runs a local cluster of real nodes, writes to it while
//! killing its leader again and again, and checks that nothing
//! acknowledged was lost and that every node ends with the same store.
//!
//! ```text
//! run_n_clients [NUMBER_OF_NODES] [--duration S] [--kill-every S]
//!               [--clients N] [--data-dir DIR] [--keep] [--scale]
//! ```
//!
//! The last line is `verdict=OK` or `verdict=FAIL <reason>` (exit status
//! 1). The nodes are this executable re-run with the hidden `node`
//! subcommand, which takes the arguments of `raft_client run`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use raft_client::logging::init_logging;
use raft_client::run::shutdown_signal;
use sim::processes::local_cluster::node_process::{launcher_main, NodeArguments};
use sim::processes::local_cluster::reach;
use sim::processes::local_cluster::{run, LocalCluster, RunnerOptions};

/// Runs a local cluster of RustyRaft nodes under a write workload, killing
/// the leader at intervals, and checks it.
#[derive(Parser, Debug)]
#[command(name = "run_n_clients", args_conflicts_with_subcommands = true)]
struct Arguments {
    #[command(subcommand)]
    node: Option<NodeCommand>,
    #[command(flatten)]
    cluster: ClusterArguments,
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Runs one node (what the launcher starts for each).
    #[command(hide = true)]
    Node(NodeArguments),
}

#[derive(clap::Args, Debug)]
struct ClusterArguments {
    /// How many nodes to run.
    #[arg(default_value_t = 5)]
    number_of_nodes: usize,
    /// Seconds of writes (and leader kills).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds between leader kills (SIGKILL); 0: none.
    #[arg(long, default_value_t = 5)]
    kill_every: u64,
    /// Concurrent write clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Where the nodes keep data and logs (node-<id>/, node-<id>.log); an
    /// empty or missing directory [default: a temporary one, removed at
    /// the end unless the run fails].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Leave the cluster running after the checks, until Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// Scale live instead of killing leaders: start 3 members, add the
    /// others one by one (learner, catch up, promote), move leadership to
    /// the last, remove them again (the leader first), and report how long
    /// writes were unavailable around each change.
    #[arg(long)]
    scale: bool,
    /// Run the cluster with mutual TLS between members and with clients,
    /// from a throwaway PKI (a CA and one certificate, made for this run);
    /// the writers present a client certificate.
    #[arg(long)]
    tls: bool,
}

/// Prints how to reach the kept cluster, then waits for Ctrl-C.
async fn keep_running(cluster: &LocalCluster) {
    println!("the cluster keeps running; Ctrl-C stops it");
    for (id, pid) in cluster.process_ids() {
        println!("node {} pid {pid} {}", id.get(), cluster.members()[&id]);
    }
    let endpoints = cluster.endpoints().join(",");
    let flags = if reach::tls() {
        " --cacert <ca.crt> --cert <member.crt> --key <member.key> (the files printed above)"
    } else {
        ""
    };
    println!("endpoints={endpoints}");
    println!("try: etcdctl --endpoints={endpoints} put greeting hello{flags}");
    println!("     etcdctl --endpoints={endpoints} endpoint status -w table{flags}");
    shutdown_signal().await;
    println!("stopping every node");
}

async fn launch(arguments: ClusterArguments) -> anyhow::Result<ExitCode> {
    let pki_directory = tempfile::Builder::new()
        .prefix("run_n_clients-pki-")
        .tempdir()?;
    if arguments.tls {
        reach::use_tls(pki_directory.path(), &[]).map_err(anyhow::Error::msg)?;
        println!(
            "mutual TLS: certificates in {}",
            pki_directory.path().display()
        );
    }
    let options = RunnerOptions {
        nodes: arguments.number_of_nodes,
        duration: Duration::from_secs(arguments.duration),
        kill_every: Duration::from_secs(arguments.kill_every),
        clients: arguments.clients,
        data_directory: arguments.data_dir,
        executable: std::env::current_exe()?,
        terminal: std::io::stdout().is_terminal(),
        scale: arguments.scale,
    };
    // Dropping the run on Ctrl-C drops the cluster, which stops every node.
    let (summary, mut cluster) = tokio::select! {
        outcome = run(options) => outcome?,
        _ = shutdown_signal() => {
            println!("interrupted: stopping every node");
            return Ok(ExitCode::from(130));
        }
    };
    for line in summary.lines() {
        println!("{line}");
    }
    if arguments.keep {
        keep_running(&cluster).await;
    }
    cluster.stop();
    Ok(if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    init_logging("warn");
    let arguments = Arguments::parse();
    let Arguments { node, cluster } = arguments;
    let node = node.map(|NodeCommand::Node(node)| node);
    launcher_main(node, launch(cluster), ExitCode::FAILURE)
}
