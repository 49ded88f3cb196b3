//! `raft_client run`: the arguments of a node and running it until SIGINT
//! or SIGTERM. Other launchers (the local cluster runner in `sim`) embed the
//! same arguments, so a node starts the same way from either.

use crate::server::tls::NodeTls;
use raft::transport::tls::Identity;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use raft::NodeId;
use thiserror::Error;

use crate::kv::Limits;
use crate::server::auto_compaction::Retention;
use crate::server::member_list::{parse_members, MembersError};
use crate::server::{serve, PeerPort, ServerError, ServerOptions};

/// How to run a node.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArguments {
    /// This node's id: a positive integer, decimal or hex with `0x` (as
    /// `etcdctl member add` prints it, without the `0x`).
    #[arg(value_parser = parse_node_id)]
    pub node_id: u64,
    /// The address to listen on, `host:port`, for peers and clients (for
    /// clients alone with --peer-address, and then published as this
    /// member's client URL: give the address clients reach it at).
    pub server_address: String,
    /// Every member as `id=host:port`, comma-separated, this node included
    /// (their peer addresses, with --peer-address).
    pub clients_info: String,
    /// Serve peer RPCs (Raft messages, snapshots, forwarded requests,
    /// joining) on this second address, as etcd's peer port, so that a
    /// firewall can keep clients away from them; the first address then
    /// refuses them. <clients_info> lists the peer addresses.
    #[arg(long, value_name = "HOST:PORT")]
    pub peer_address: Option<String>,
    /// With --peer-address: the address published as this member's client
    /// URL, when clients reach it elsewhere than <server_address> (which
    /// may then be 0.0.0.0:port) [default: <server_address>].
    #[arg(long, value_name = "HOST:PORT", requires = "peer_address")]
    pub advertise_client_address: Option<String>,
    /// The data directory [default: ./data/node-<id>].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Shortest election timeout in milliseconds.
    #[arg(long, default_value_t = 150)]
    pub election_timeout_min_ms: u64,
    /// Longest election timeout in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub election_timeout_max_ms: u64,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// Names the cluster; the cluster id derives from it and the members.
    #[arg(long, default_value = "rustyraft")]
    pub cluster_token: String,
    /// Largest request accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_request_bytes)]
    pub max_request_bytes: usize,
    /// Snapshot the key space at most every this many applied entries (etcd's
    /// `--snapshot-count`); the log keeps 5,000 entries behind a snapshot.
    #[arg(long, alias = "snapshot-count", default_value_t = raft::SnapshotPolicy::default().interval_entries)]
    pub snapshot_interval_entries: u64,
    /// Also wait for the writes since the last snapshot to add up to this
    /// many times its size, so that snapshots of a large key space cost at
    /// most 1/ratio of what the log writes (0: by entry count alone).
    #[arg(long, default_value_t = raft::SnapshotPolicy::default().log_growth_ratio)]
    pub snapshot_log_growth_ratio: u64,
    /// The largest snapshot this node takes from a leader, in bytes: a
    /// transfer announcing more is refused before anything is written (a
    /// node whose key space outgrows it cannot catch up by snapshot).
    #[arg(long, default_value_t = raft::SnapshotPolicy::default().max_receive_bytes)]
    pub max_snapshot_bytes: u64,
    /// How `--auto-compaction-retention` reads: `periodic` (a duration, in
    /// hours without a unit) or `revision` (a number of revisions), as etcd's.
    #[arg(long, default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// How much history automatic compaction keeps; 0 (the default) turns
    /// it off.
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,
    /// How often a watcher that asked for progress notifications and has
    /// had no events is told the revision it is up to (etcd's flag; a Go
    /// duration such as 10m or 30s).
    #[arg(long, default_value = "10m")]
    pub experimental_watch_progress_notify_interval: String,
    /// Serve Prometheus metrics at http://<address>/metrics (off by default).
    #[arg(long)]
    pub metrics_address: Option<String>,
    /// Join an existing cluster instead of starting a new one (etcd's
    /// `--initial-cluster-state existing`): add this node first (`raft_client
    /// members add`), then start it with <clients_info> naming members to
    /// ask. It learns the configuration from the leader. Once joined, the
    /// data directory remembers it.
    #[arg(long)]
    pub join: bool,
    /// Serve clients over TLS with this certificate (PEM; etcd's flag).
    #[arg(long, requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// The private key of --cert-file (PEM).
    #[arg(long, requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// Check client certificates against this CA (PEM).
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a client certificate that chains to --trusted-ca-file.
    #[arg(long)]
    pub client_cert_auth: bool,
    /// This member's certificate toward the others (PEM): with it, every peer
    /// RPC needs a certificate of --peer-trusted-ca-file, and this node
    /// dials the others over TLS.
    #[arg(long, requires_all = ["peer_key_file", "peer_trusted_ca_file"])]
    pub peer_cert_file: Option<PathBuf>,
    /// The private key of --peer-cert-file (PEM).
    #[arg(long, requires = "peer_cert_file")]
    pub peer_key_file: Option<PathBuf>,
    /// The CA every member's certificate chains to (PEM).
    #[arg(long, requires = "peer_cert_file")]
    pub peer_trusted_ca_file: Option<PathBuf>,
}

/// Why a node could not run.
#[derive(Debug, Error)]
pub enum RunError {
    /// The node id is 0.
    #[error("node id 0 is reserved; use ids from 1")]
    ReservedId,
    /// The member list is wrong.
    #[error(transparent)]
    Members(#[from] MembersError),
    /// The listen address does not resolve.
    #[error("cannot resolve {address:?} (expected host:port): {reason}")]
    Resolve {
        /// The address as given.
        address: String,
        /// Why.
        reason: String,
    },
    /// The client address to publish is no address a client can dial.
    #[error(
        "{address} is published as this member's client URL (with --peer-address), but clients \
         cannot dial an unspecified address: give --advertise-client-address host:port"
    )]
    Unadvertisable {
        /// The address.
        address: String,
    },
    /// The automatic compaction flags do not read.
    #[error("{0}")]
    AutoCompaction(String),
    /// The watch progress interval does not read, or is zero.
    #[error("--experimental-watch-progress-notify-interval: {0}")]
    WatchProgressInterval(String),
    /// The node failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// A node id in decimal, or in hex after `0x`.
pub fn parse_node_id(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?} is not a node id (a positive integer, or hex after 0x)"))
}

/// A certificate and key, when both are given.
fn identity(certificate: &Option<PathBuf>, key: &Option<PathBuf>) -> Option<Identity> {
    Some(Identity {
        certificate: certificate.clone()?,
        key: key.clone()?,
    })
}

fn resolve(address: &str) -> Result<SocketAddr, RunError> {
    let failure = |reason: String| RunError::Resolve {
        address: address.to_string(),
        reason,
    };
    address
        .to_socket_addrs()
        .map_err(|error| failure(error.to_string()))?
        .next()
        .ok_or_else(|| failure("it resolves to no address".to_string()))
}

impl RunArguments {
    /// The server's options these arguments describe.
    pub fn server_options(&self) -> Result<ServerOptions, RunError> {
        if self.node_id == 0 {
            return Err(RunError::ReservedId);
        }
        Ok(ServerOptions {
            id: NodeId(self.node_id),
            listen: resolve(&self.server_address)?,
            members: parse_members(&self.clients_info)?,
            data_directory: self
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("./data/node-{}", self.node_id))),
            election_timeout_min: Duration::from_millis(self.election_timeout_min_ms),
            election_timeout_max: Duration::from_millis(self.election_timeout_max_ms),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            cluster_token: self.cluster_token.clone(),
            limits: Limits {
                max_request_bytes: self.max_request_bytes,
                ..Limits::default()
            },
            snapshot_interval_entries: self.snapshot_interval_entries,
            snapshot_log_growth_ratio: self.snapshot_log_growth_ratio,
            max_snapshot_bytes: self.max_snapshot_bytes,
            metrics_address: self.metrics_address.as_deref().map(resolve).transpose()?,
            join: self.join,
            tls: NodeTls {
                client_identity: identity(&self.cert_file, &self.key_file),
                client_trusted_ca: self.trusted_ca_file.clone(),
                client_cert_auth: self.client_cert_auth,
                peer_identity: identity(&self.peer_cert_file, &self.peer_key_file),
                peer_trusted_ca: self.peer_trusted_ca_file.clone(),
            },
            peer_port: self.peer_port()?,
            auto_compaction: Retention::parse(
                &self.auto_compaction_mode,
                &self.auto_compaction_retention,
            )
            .map_err(RunError::AutoCompaction)?,
            watch_progress_notify_interval: self.watch_progress_notify_interval()?,
        })
    }

    /// The progress notification interval, which must not be zero.
    fn watch_progress_notify_interval(&self) -> Result<Duration, RunError> {
        match crate::go_duration::parse(&self.experimental_watch_progress_notify_interval) {
            Ok(interval) if interval.is_zero() => Err(RunError::WatchProgressInterval(
                "must be longer than zero".to_string(),
            )),
            Ok(interval) => Ok(interval),
            Err(reason) => Err(RunError::WatchProgressInterval(reason)),
        }
    }

    /// The peer port, with --peer-address.
    fn peer_port(&self) -> Result<Option<PeerPort>, RunError> {
        let Some(peer_address) = &self.peer_address else {
            return Ok(None);
        };
        let client_address = self
            .advertise_client_address
            .as_ref()
            .unwrap_or(&self.server_address);
        if resolve(client_address)?.ip().is_unspecified() {
            return Err(RunError::Unadvertisable {
                address: client_address.clone(),
            });
        }
        Ok(Some(PeerPort {
            listen: resolve(peer_address)?,
            client_address: client_address.clone(),
        }))
    }
}

/// Completes on the first SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
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

/// The exit status of a node process that panicked: EX_SOFTWARE, an
/// internal error.
pub const PANIC_EXIT_STATUS: i32 = 70;

/// Runs a node until SIGINT or SIGTERM, then stops it cleanly. A panic on
/// any of its threads ends the whole process (see [`exit_on_panic`]); a
/// failure of its storage or state machine ends it with an error.
pub async fn run_node(arguments: &RunArguments) -> Result<(), RunError> {
    exit_on_panic();
    serve(arguments.server_options()?, shutdown_signal()).await?;
    Ok(())
}

/// Makes a panic on any thread end the process at once with
/// [`PANIC_EXIT_STATUS`], after one log line saying where. A panic is a
/// broken invariant: a node whose event loop, applier or WAL writer died
/// must not linger with its port open, answering nothing useful while
/// clients and peers take it for alive. (Acknowledged writes are already
/// on disk; nothing is lost by not unwinding.)
pub fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        let location = info
            .location()
            .map(|location| format!("{}:{}", location.file(), location.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("a thread");
        tracing::error!(%thread, %location,
            "the node stops: {message} (a broken internal invariant)");
        std::process::exit(PANIC_EXIT_STATUS);
    }));
}

#[cfg(test)]
mod tests {
    use super::{parse_node_id, RunArguments, RunError};
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        run: RunArguments,
    }

    fn run_arguments(extra: &[&str]) -> RunArguments {
        let mut arguments = vec!["run", "1", "0.0.0.0:2379", "1=10.0.0.1:2380"];
        arguments.extend_from_slice(extra);
        Wrapper::try_parse_from(arguments)
            .expect("valid arguments")
            .run
    }

    #[test]
    fn a_peer_port_publishes_the_advertised_client_address() {
        let plain = run_arguments(&[]).server_options().expect("options");
        assert!(plain.peer_port.is_none());

        let split = run_arguments(&[
            "--peer-address",
            "127.0.0.1:2380",
            "--advertise-client-address",
            "10.0.0.1:2379",
        ])
        .server_options()
        .expect("options");
        let port = split.peer_port.expect("a peer port");
        assert_eq!(port.listen, "127.0.0.1:2380".parse().unwrap());
        assert_eq!(port.client_address, "10.0.0.1:2379");
    }

    #[test]
    fn an_unspecified_client_address_cannot_be_published() {
        let error = run_arguments(&["--peer-address", "127.0.0.1:2380"])
            .server_options()
            .expect_err("0.0.0.0 is refused");
        assert!(
            matches!(&error, RunError::Unadvertisable { address } if address == "0.0.0.0:2379"),
            "{error}"
        );
        assert!(error.to_string().contains("--advertise-client-address"));
        assert!(
            Wrapper::try_parse_from([
                "run",
                "1",
                "a:1",
                "1=a:1",
                "--advertise-client-address",
                "b:2"
            ])
            .is_err(),
            "--advertise-client-address needs --peer-address"
        );
    }

    #[test]
    fn node_ids_are_decimal_or_hex() {
        assert_eq!(parse_node_id("42"), Ok(42));
        assert_eq!(parse_node_id("0x2a"), Ok(42));
        assert_eq!(parse_node_id("0x7fffffffffffffff"), Ok(u64::MAX >> 1));
        assert!(parse_node_id("2a").is_err());
        assert!(parse_node_id("-1").is_err());
        assert!(parse_node_id("0x").is_err());
    }
}
