//! `raft_client`: the RustyRaft node binary (`run`), human commands over the
//! etcd v3 API (`put`, `get`, `del`, `status`, `hash`, `members`) and load
//! generators (`bench`, `watch-bench`, `history-bench`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand};
use raft_client::cli::bench::{self, BenchOptions};
use raft_client::cli::commands;
use raft_client::cli::history_bench::{self, HistoryBenchOptions, HistoryStep};
use raft_client::cli::watch_bench::{self, WatchBenchOptions};
use raft_client::cli::watch_streams::WatchPlan;
use raft_client::connect::endpoints::{ClientTlsFiles, Endpoints};
use raft_client::logging::init_logging;
use raft_client::pki::ThrowawayPki;
use raft_client::run::{run_node, RunArguments, RunError};
use raft_client::server::ServerError;

/// A node allocates and frees small buffers for every request on several
/// threads at once; mimalloc does that several times faster than the
/// system allocator (a quarter of a leader's CPU went to malloc and free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Run(Box<RunArguments>),
    /// Write a throwaway PKI into DIRECTORY for a TLS demo or benchmark (a CA
    /// and one certificate for members and clients, for 127.0.0.1 and
    /// localhost; never for production) and print its files.
    Pki {
        /// Where to write it.
        directory: PathBuf,
    },
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
    /// Print changes to a key, or to every key with a prefix, as they
    /// happen (from a past revision with --rev), resuming on another
    /// endpoint when one fails; Ctrl-C stops.
    Watch {
        /// The key or prefix.
        key: String,
        /// Watch every key that starts with KEY.
        #[arg(long)]
        prefix: bool,
        /// Start at this revision (0: from now on).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Print each key's previous value too.
        #[arg(long)]
        prev_kv: bool,
        /// Stop after this many events (0: never).
        #[arg(long, default_value_t = 0)]
        max_events: u64,
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
    /// List the cluster's members, or change them (one at a time).
    #[command(args_conflicts_with_subcommands = true)]
    Members {
        #[command(subcommand)]
        action: Option<MembersAction>,
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// Hand leadership to member <ID> and wait until it leads (etcd's
    /// `move-leader`).
    TransferLeader {
        /// The member that is to lead.
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// A closed-loop load generator; the last line it prints is
    /// `ops=.. ops_per_s=.. p50_us=.. p99_us=.. p999_us=..`.
    Bench(BenchArguments),
    /// Watch fan-out: watchers on one prefix and open-loop puts under it;
    /// the last line is `watchers=.. events_per_sec=.. p50_ms=.. p99_ms=..
    /// ...`. With `--idle`, closed-loop puts elsewhere with the watchers
    /// attached (compare with `--watchers 0`).
    WatchBench(WatchBenchArguments),
    /// History: a range at an old revision, many versions, a compaction;
    /// one `name=value` line per step.
    HistoryBench(HistoryBenchArguments),
}

#[derive(Subcommand, Debug)]
enum MembersAction {
    /// List the members (the default).
    List {
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// Add member <ID> at <ADDRESS> (`host:port`); start it afterwards with
    /// `raft_client run <ID> <ADDRESS> <members> --join`.
    Add {
        /// The new member's id.
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// Where the members reach it, `host:port`.
        address: String,
        /// Add it as a learner (it gets the log but does not vote); promote
        /// it once it has caught up.
        #[arg(long)]
        learner: bool,
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// Remove member <ID>.
    Remove {
        /// The member.
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// Make learner <ID> a voter; refused until it has caught up.
    Promote {
        /// The learner.
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
    /// Change where member <ID> is reached.
    Update {
        /// The member.
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// Its new address, `host:port`.
        address: String,
        #[command(flatten)]
        endpoints: EndpointArguments,
    },
}

#[derive(clap::Args, Debug)]
struct EndpointArguments {
    /// Comma-separated list of members: `host:port`, `http://host:port` or
    /// `https://host:port`.
    #[arg(long, default_value = "127.0.0.1:2379")]
    endpoints: String,
    /// Verify `https://` endpoints' certificates with this CA (PEM).
    #[arg(long = "cacert")]
    client_ca: Option<PathBuf>,
    /// Present this client certificate to `https://` endpoints (PEM).
    #[arg(long = "cert", requires_all = ["client_key", "client_ca"])]
    client_certificate: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long = "key", requires = "client_certificate")]
    client_key: Option<PathBuf>,
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
    /// With `--read`: serializable reads, each answered by the member it is
    /// sent to from its own store (etcd's `benchmark range --consistency s`).
    #[arg(long, requires = "read")]
    serializable: bool,
    /// Distinct keys each client cycles through (`bench/<client>/<n>`), in
    /// order: `--clients 256 --keys-per-client 8192` writes 2M distinct
    /// keys before any is written again.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    keys_per_client: u64,
    /// Each client writes (or reads) each of its keys once, then stops: a
    /// load of `--clients × --keys-per-client` distinct keys, bounded by
    /// `--secs`.
    #[arg(long)]
    once: bool,
}

#[derive(clap::Args, Debug)]
struct WatchBenchArguments {
    #[command(flatten)]
    endpoints: EndpointArguments,
    /// Watchers, all on --prefix.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Bidirectional Watch streams the watchers are spread over, round-robin
    /// over the endpoints.
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// HTTP/2 connections the streams share (a multiple of the endpoint
    /// count keeps the streams evenly spread over the endpoints).
    #[arg(long = "watch-conns", default_value_t = 3)]
    watch_connections: usize,
    /// Puts per second, open loop.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of puts.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Longest wait, in milliseconds, for missing events after the puts.
    #[arg(long, default_value_t = 2000)]
    drain_ms: u64,
    /// The watched prefix (the fan-out's puts go under it).
    #[arg(long, default_value = "watchbench/")]
    prefix: String,
    /// Distinct keys the fan-out's puts cycle through.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Bytes per value (the first eight carry the send time).
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Seconds every watcher may take to be created.
    #[arg(long, default_value_t = 60)]
    created_timeout_secs: u64,
    /// Idle watchers: closed-loop puts under bench/ (as `bench` does them),
    /// which the watchers do not see.
    #[arg(long)]
    idle: bool,
    /// With --idle: concurrent put clients.
    #[arg(long, default_value_t = 64, requires = "idle")]
    clients: usize,
    /// With --idle: connections the put clients share.
    #[arg(long, default_value_t = 16, requires = "idle")]
    conns: usize,
}

#[derive(clap::Args, Debug)]
struct HistoryBenchArguments {
    #[command(flatten)]
    endpoints: EndpointArguments,
    /// Which step to run (all: range, versions, compact in order).
    #[arg(long, value_enum, default_value_t = HistoryStep::All)]
    step: HistoryStep,
    /// Every key written starts with this.
    #[arg(long, default_value = "historybench/")]
    prefix: String,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Overwrites of every key after the old revision.
    #[arg(long, default_value_t = 1)]
    overwrites: u64,
    /// Ranges timed at each revision.
    #[arg(long, default_value_t = 5)]
    range_repeats: usize,
    /// Versions the versions step writes.
    #[arg(long, default_value_t = 1_000_000)]
    versions: u64,
    /// Puts per transaction (etcd refuses more than 128 by default).
    #[arg(long, default_value_t = 100)]
    puts_per_txn: u64,
    /// Closed-loop writers.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// Compact without `physical` (answer before the history is dropped).
    #[arg(long)]
    no_physical: bool,
}

async fn main_async(arguments: Arguments) -> anyhow::Result<()> {
    let endpoints = |list: &EndpointArguments| {
        let files = ClientTlsFiles {
            ca: list.client_ca.clone(),
            certificate: list.client_certificate.clone(),
            key: list.client_key.clone(),
        };
        Endpoints::parse(&list.endpoints, &files)
    };
    let output = match arguments.command {
        Subcommands::Run(run) => return Ok(run_node(&run).await?),
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
        Subcommands::Watch {
            key,
            prefix,
            rev,
            prev_kv,
            max_events,
            endpoints: list,
        } => {
            let options = commands::WatchOptions {
                prefix,
                start_revision: rev,
                prev_kv,
                max_events,
            };
            let mut print = |text: &str| {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            };
            let mut reconnecting = |text: &str| eprintln!("{text}");
            commands::watch(
                &endpoints(&list)?,
                &key,
                options,
                &mut print,
                &mut reconnecting,
            )
            .await
        }
        Subcommands::Status { endpoints: list } => commands::status(&endpoints(&list)?).await,
        Subcommands::Hash { endpoints: list } => commands::hash(&endpoints(&list)?).await,
        Subcommands::Members {
            action,
            endpoints: list,
        } => match action {
            None => commands::members(&endpoints(&list)?).await,
            Some(MembersAction::List { endpoints: list }) => {
                commands::members(&endpoints(&list)?).await
            }
            Some(MembersAction::Add {
                id,
                address,
                learner,
                endpoints: list,
            }) => commands::add_member(&endpoints(&list)?, id, &address, learner).await,
            Some(MembersAction::Remove {
                id,
                endpoints: list,
            }) => commands::remove_member(&endpoints(&list)?, id).await,
            Some(MembersAction::Promote {
                id,
                endpoints: list,
            }) => commands::promote_member(&endpoints(&list)?, id).await,
            Some(MembersAction::Update {
                id,
                address,
                endpoints: list,
            }) => commands::update_member(&endpoints(&list)?, id, &address).await,
        },
        Subcommands::Pki { directory } => {
            let pki = ThrowawayPki::create(&directory)?;
            Ok(format!(
                "ca={}\ncert={}\nkey={}",
                pki.ca.display(),
                pki.member.certificate.display(),
                pki.member.key.display()
            ))
        }
        Subcommands::TransferLeader {
            id,
            endpoints: list,
        } => commands::transfer_leader(&endpoints(&list)?, id).await,
        Subcommands::Bench(arguments) => {
            let endpoints = endpoints(&arguments.endpoints)?;
            let report = bench::run(BenchOptions {
                endpoints,
                clients: arguments.clients,
                connections: arguments.conns,
                duration: Duration::from_secs(arguments.secs),
                value_size: arguments.value_size,
                read: arguments.read,
                serializable: arguments.serializable,
                keys_per_client: usize::try_from(arguments.keys_per_client).unwrap_or(usize::MAX),
                once: arguments.once,
            })
            .await;
            for line in report.error_lines() {
                println!("{line}");
            }
            println!("errors={}", report.errors());
            Ok(report.summary_line())
        }
        Subcommands::WatchBench(arguments) => {
            let list = endpoints(&arguments.endpoints)?;
            Ok(watch_bench_command(arguments, list).await?)
        }
        Subcommands::HistoryBench(arguments) => {
            let options = HistoryBenchOptions {
                endpoints: endpoints(&arguments.endpoints)?,
                prefix: arguments.prefix.into_bytes(),
                keys: arguments.keys,
                overwrites: arguments.overwrites,
                range_repeats: arguments.range_repeats,
                versions: arguments.versions,
                puts_per_transaction: arguments.puts_per_txn,
                clients: arguments.clients,
                value_size: arguments.value_size,
                physical: !arguments.no_physical,
                step: arguments.step,
            };
            let lines = history_bench::run(&options)
                .await
                .map_err(anyhow::Error::msg)?;
            Ok(lines.join("\n"))
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

/// `watch-bench`: the fan-out or idle run; its summary line, or why it
/// could not run.
async fn watch_bench_command(
    arguments: WatchBenchArguments,
    endpoints: Endpoints,
) -> anyhow::Result<String> {
    let options = WatchBenchOptions {
        watch: WatchPlan {
            endpoints,
            watchers: arguments.watchers,
            streams: arguments.streams,
            connections: arguments.watch_connections,
            prefix: arguments.prefix.into_bytes(),
            created_timeout: Duration::from_secs(arguments.created_timeout_secs),
        },
        rate: arguments.rate,
        duration: Duration::from_secs(arguments.secs),
        drain: Duration::from_millis(arguments.drain_ms),
        value_size: arguments.value_size.max(8),
        keys: arguments.keys,
        idle: arguments
            .idle
            .then_some((arguments.clients, arguments.conns)),
    };
    if options.idle.is_some() {
        let (events, report) = watch_bench::run_idle(&options)
            .await
            .map_err(anyhow::Error::msg)?;
        let watchers = options.watch.watchers;
        return Ok(watch_bench::idle_summary_line(watchers, events, &report));
    }
    let report = watch_bench::run_fan_out(&options)
        .await
        .map_err(anyhow::Error::msg)?;
    if let Some(reason) = &report.stream_failure {
        eprintln!("a watch stream failed during the run: {reason}");
    }
    Ok(report.summary_line())
}

fn main() -> ExitCode {
    init_logging("info");
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
            // Unusable options, certificates included, exit 2 (as a usage
            // error does); anything else 1.
            let unusable = matches!(
                error.downcast_ref::<RunError>(),
                Some(RunError::Server(
                    ServerError::Tls(_) | ServerError::Options(_)
                ))
            );
            if unusable {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
