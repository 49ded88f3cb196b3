//! `raft_client`: the RustyRaft node binary (`run`), human commands over the
//! etcd v3 API (`put`, `get`, `del`, `status`, `hash`, `members`) and a load
//! generator (`bench`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use raft::NodeId;
use raft_client::cli::bench::{self, BenchOptions};
use raft_client::cli::commands;
use raft_client::cli::endpoints::parse_endpoints;
use raft_client::kv::Limits;
use raft_client::server::{serve, ServerOptions};

/// The RustyRaft node, and a client of its etcd v3 API.
#[derive(Parser, Debug)]
#[command(name = "raft_client", version, about)]
struct Arguments {
    #[command(subcommand)]
    command: Subcommands,
}

#[derive(Subcommand, Debug)]
enum Subcommands {
    /// Run a node that serves the etcd v3 API and talks Raft to its peers,
    /// both on <server_address>.
    Run(RunArguments),
    /// Write a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// Read a key (linearizable), or every key with a prefix.
    Get {
        /// The key or prefix.
        key: String,
        /// Read every key that starts with KEY.
        #[arg(long)]
        prefix: bool,
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// Delete a key, or every key with a prefix.
    Del {
        /// The key or prefix.
        key: String,
        /// Delete every key that starts with KEY.
        #[arg(long)]
        prefix: bool,
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// Show each endpoint's member id, leader, term and indexes.
    Status {
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// Show each endpoint's member id, key-space digest and its revision.
    Hash {
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// List the cluster's members.
    Members {
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// A closed-loop load generator; the last line it prints is
    /// `ops=.. ops_per_s=.. p50_us=.. p99_us=.. p999_us=..`.
    Bench(BenchArguments),
}

#[derive(clap::Args, Debug)]
struct EndpointArguments {
    /// Comma-separated `host:port` list of members.
    #[arg(long, default_value = "127.0.0.1:2379")]
    endpoints: String,
}

#[derive(clap::Args, Debug)]
struct RunArguments {
    /// This node's id (a positive integer).
    node_id: u64,
    /// The address to listen on, `host:port`, for peers and clients.
    server_address: String,
    /// Every member as `id=host:port`, comma-separated, this node included.
    clients_info: String,
    /// The data directory [default: ./data/node-<id>].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Shortest election timeout in milliseconds.
    #[arg(long, default_value_t = 150)]
    election_timeout_min_ms: u64,
    /// Longest election timeout in milliseconds.
    #[arg(long, default_value_t = 300)]
    election_timeout_max_ms: u64,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    /// Names the cluster; the cluster id derives from it and the members.
    #[arg(long, default_value = "rustyraft")]
    cluster_token: String,
    /// Largest request accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_request_bytes)]
    max_request_bytes: usize,
    /// Serve Prometheus metrics at http://<address>/metrics (off by default).
    #[arg(long)]
    metrics_address: Option<String>,
}

#[derive(clap::Args, Debug)]
struct BenchArguments {
    #[command(flatten)]
    endpoints: EndpointArguments,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// gRPC connections the clients share.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Linearizable reads instead of writes.
    #[arg(long)]
    read: bool,
}

/// Parses `1=host:port,2=host:port`.
fn parse_members(list: &str) -> anyhow::Result<BTreeMap<NodeId, String>> {
    let mut members = BTreeMap::new();
    for item in list
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (id, address) = item
            .split_once('=')
            .with_context(|| format!("member {item:?} is not of the form id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("member id {id:?} is not a positive integer"))?;
        if id == 0 {
            bail!("member id 0 is reserved; use ids from 1");
        }
        let address = address.trim();
        if address
            .rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            bail!("member {id}'s address {address:?} is not of the form host:port");
        }
        if members.insert(NodeId(id), address.to_string()).is_some() {
            bail!("member id {id} appears twice");
        }
    }
    if members.is_empty() {
        bail!("the member list is empty; give every member as id=host:port, comma-separated");
    }
    Ok(members)
}

fn resolve(address: &str) -> anyhow::Result<SocketAddr> {
    address
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {address:?} (expected host:port)"))?
        .next()
        .with_context(|| format!("{address:?} resolves to no address"))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

async fn run_node(arguments: RunArguments) -> anyhow::Result<()> {
    if arguments.node_id == 0 {
        bail!("node id 0 is reserved; use ids from 1");
    }
    let members = parse_members(&arguments.clients_info)?;
    let id = NodeId(arguments.node_id);
    let options = ServerOptions {
        id,
        listen: resolve(&arguments.server_address)?,
        members,
        data_directory: arguments
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("./data/node-{}", arguments.node_id))),
        election_timeout_min: Duration::from_millis(arguments.election_timeout_min_ms),
        election_timeout_max: Duration::from_millis(arguments.election_timeout_max_ms),
        heartbeat: Duration::from_millis(arguments.heartbeat_ms),
        cluster_token: arguments.cluster_token,
        limits: Limits {
            max_request_bytes: arguments.max_request_bytes,
            ..Limits::default()
        },
        metrics_address: arguments
            .metrics_address
            .as_deref()
            .map(resolve)
            .transpose()?,
    };
    serve(options, shutdown_signal()).await?;
    Ok(())
}

async fn main_async(arguments: Arguments) -> anyhow::Result<()> {
    let endpoints = |list: &EndpointArguments| parse_endpoints(&list.endpoints);
    let output = match arguments.command {
        Subcommands::Run(run) => return run_node(run).await,
        Subcommands::Put {
            key,
            value,
            endpoints: list,
        } => commands::put(&endpoints(&list)?, &key, &value).await,
        Subcommands::Get {
            key,
            prefix,
            endpoints: list,
        } => commands::get(&endpoints(&list)?, &key, prefix).await,
        Subcommands::Del {
            key,
            prefix,
            endpoints: list,
        } => commands::delete(&endpoints(&list)?, &key, prefix).await,
        Subcommands::Status { endpoints: list } => commands::status(&endpoints(&list)?).await,
        Subcommands::Hash { endpoints: list } => commands::hash(&endpoints(&list)?).await,
        Subcommands::Members { endpoints: list } => commands::members(&endpoints(&list)?).await,
        Subcommands::Bench(arguments) => {
            let report = bench::run(BenchOptions {
                endpoints: endpoints(&arguments.endpoints)?,
                clients: arguments.clients,
                connections: arguments.conns,
                duration: Duration::from_secs(arguments.secs),
                value_size: arguments.value_size,
                read: arguments.read,
                keys_per_client: 1000,
            })
            .await;
            println!("errors={}", report.errors);
            Ok(report.summary_line())
        }
    };
    match output {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            Ok(())
        }
        Err(status) => bail!("{:?}: {}", status.code(), status.message()),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let arguments = Arguments::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(arguments)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
