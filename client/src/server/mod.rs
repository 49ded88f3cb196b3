//! A RustyRaft node serving the etcd v3 API: one gRPC port carries both the
//! Raft peer service and the etcd services (KV, Watch, Lease, Cluster,
//! Maintenance), or, with a peer port of its own (`--peer-address`, as
//! etcd's peer URLs), the peer services (Raft messages and snapshots, the
//! forwarding stream, and Cluster for joining members) are served there and
//! the client port serves the etcd services alone.
//!
//! What lives here: [`serve`] (start-up and shut-down), one file per etcd
//! service (`kv_service`, `cluster_service`, `maintenance_service`,
//! `watch/`, `unbuilt_services`), the [`proposer::Proposer`] every write and
//! linearizable read goes through, both sides of forwarding to the leader
//! (`forward/`), what the services share ([`context::Context`]), TLS per
//! port, publishing client URLs, and the member list format. The command
//! line (`crate::cli`) and the harnesses in `sim/` call [`serve`] and
//! [`ServerOptions`]; nothing here calls the command line.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raft::node::{Node, NodeOptions, StartError};

use raft::transport::tls::{Reloading, ServerStream, TlsError};
use tonic::service::interceptor::InterceptedService;

use self::authority::AuthorityRepair;
use self::auto_compaction::Retention;
use self::tls::{LoadedTls, NodeTls};
use raft::ClusterId;
use raft::{Config, NodeId};
use raft_proto::etcd::etcdserverpb::cluster_server::ClusterServer;
use raft_proto::etcd::etcdserverpb::kv_server::KvServer;
use raft_proto::etcd::etcdserverpb::lease_server::LeaseServer;
use raft_proto::etcd::etcdserverpb::maintenance_server::MaintenanceServer;
use raft_proto::etcd::etcdserverpb::watch_server::WatchServer;
use raft_proto::forward::kv_forward_server::KvForwardServer;
use thiserror::Error;

use self::member_list::format_members;
use crate::kv::Limits;

pub mod authority;
pub mod auto_compaction;
pub mod cluster_service;
pub mod context;
pub mod forward;
pub mod join;
pub mod kv_service;
pub mod maintenance_service;
pub mod member_list;
pub mod metrics_http;
pub mod process_metrics;
pub mod proposer;
pub mod publish;
pub mod state_machine;
pub mod status;
pub mod store_metrics;
pub mod tls;
pub mod unbuilt_services;
pub mod watch;

use self::cluster_service::ClusterService;
use self::context::Context;
use self::forward::ForwardService;
use self::kv_service::KvService;
use self::maintenance_service::MaintenanceService;
use self::process_metrics::ProcessMetrics;
use self::proposer::Proposer;
use self::state_machine::KvStateMachine;
use self::store_metrics::StoreMetrics;
use self::unbuilt_services::UnbuiltLease;
use self::watch::{WatchService, WatchSettings};

/// How to run a node.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// This node's id.
    pub id: NodeId,
    /// The address to listen on (peers and clients).
    pub listen: SocketAddr,
    /// Every member and its `host:port`, this node included.
    pub members: BTreeMap<NodeId, String>,
    /// Where the WAL lives.
    pub data_directory: PathBuf,
    /// Shortest election timeout.
    pub election_timeout_min: Duration,
    /// Longest election timeout.
    pub election_timeout_max: Duration,
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// A token naming the cluster; with the initial members it gives the
    /// cluster id.
    pub cluster_token: String,
    /// Request limits.
    pub limits: Limits,
    /// Take a snapshot of the key space every this many applied entries.
    pub snapshot_interval_entries: u64,
    /// And only once the writes since the last snapshot add up to this
    /// many times its size ([`raft::SnapshotPolicy::log_growth_ratio`]).
    pub snapshot_log_growth_ratio: u64,
    /// The largest snapshot taken from a leader, in bytes
    /// ([`raft::SnapshotPolicy::max_receive_bytes`]).
    pub max_snapshot_bytes: u64,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics_address: Option<SocketAddr>,
    /// Join an existing cluster (`members` are members to ask) instead of
    /// bootstrapping one. A data directory that joined once stays joined.
    pub join: bool,
    /// TLS toward clients and peers (plaintext by default).
    pub tls: NodeTls,
    /// Serve peers on a port of their own; `listen` then serves clients
    /// alone, and `members` are peer addresses.
    pub peer_port: Option<PeerPort>,
    /// Automatic compaction of the key space's history (off with `None`).
    pub auto_compaction: Option<Retention>,
    /// How often idle watchers that asked for it are told their progress.
    pub watch_progress_notify_interval: Duration,
}

/// A listener for peers apart from the clients' (etcd's peer URL).
#[derive(Clone, Debug)]
pub struct PeerPort {
    /// The address peer RPCs are served on.
    pub listen: SocketAddr,
    /// Where this member's clients reach it (`host:port`), published
    /// through the log for `MemberList`.
    pub client_address: String,
}

/// Why a node could not run.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The options are inconsistent.
    #[error("invalid options: {0}")]
    Options(String),
    /// The Raft node could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The address cannot be listened on.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The metrics address cannot be listened on.
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The node cannot join the cluster.
    #[error("cannot join the cluster: {0}")]
    Join(String),
    /// The node stopped on its own: its storage or state machine failed,
    /// or its event loop died.
    #[error("the node failed: {0}")]
    NodeFailed(String),
    /// A certificate, key or CA file cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The cluster id: a 64-bit FNV-1a hash of the token and the initial
/// members, so that nodes of two clusters (or of one cluster started with
/// different member lists) refuse each other's messages and data.
pub fn cluster_id(token: &str, members: &BTreeMap<NodeId, String>) -> ClusterId {
    let mut hash = fnv1a(FNV_OFFSET, token.as_bytes());
    for (id, address) in members {
        hash = fnv1a(hash, &[0]);
        hash = fnv1a(hash, &id.get().to_le_bytes());
        hash = fnv1a(hash, address.as_bytes());
    }
    ClusterId(hash)
}

/// The 64-bit FNV-1a offset basis: the state before any byte.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a: the hash `state` continued over `bytes`.
pub(crate) fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn greatest_common_divisor(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl ServerOptions {
    /// The Raft node's options: the tick is the largest whole number of
    /// milliseconds (at most 10) that divides every timeout.
    pub fn node_options(&self) -> Result<NodeOptions, ServerError> {
        let fail = |reason: String| Err(ServerError::Options(reason));
        let millis = |duration: Duration| duration.as_millis();
        let (heartbeat, minimum, maximum) = (
            millis(self.heartbeat),
            millis(self.election_timeout_min),
            millis(self.election_timeout_max),
        );
        if heartbeat == 0 {
            return fail("the heartbeat interval must be at least 1 ms".to_string());
        }
        if heartbeat >= minimum {
            return fail(format!(
                "the heartbeat interval ({heartbeat} ms) must be below the minimum election \
                 timeout ({minimum} ms), or followers start elections under a healthy leader"
            ));
        }
        if minimum >= maximum {
            return fail(format!(
                "the minimum election timeout ({minimum} ms) must be below the maximum ({maximum} ms)"
            ));
        }
        if !self.join && !self.members.contains_key(&self.id) {
            return fail(format!(
                "node {} is not in the member list ({})",
                self.id,
                format_members(&self.members)
            ));
        }
        let tick = [heartbeat, minimum, maximum]
            .into_iter()
            .fold(10, greatest_common_divisor);
        let ticks = |value: u128| u32::try_from(value / tick).unwrap_or(u32::MAX);
        let cluster = cluster_id(&self.cluster_token, &self.members);
        let mut options = NodeOptions::new(
            self.id,
            cluster,
            self.members.clone(),
            self.data_directory.clone(),
        );
        options.tick = Duration::from_millis(tick as u64);
        options.raft = Config {
            election_ticks_min: ticks(minimum),
            election_ticks_max: ticks(maximum),
            heartbeat_ticks: ticks(heartbeat),
            ..Config::new(self.id)
        };
        options.snapshots.interval_entries = self.snapshot_interval_entries;
        options.snapshots.log_growth_ratio = self.snapshot_log_growth_ratio;
        options.snapshots.max_receive_bytes = self.max_snapshot_bytes;
        options.join = self.join;
        Ok(options)
    }
}

/// The accepted connections of `listener` (after their TLS handshake, with
/// `tls`), each behind an [`AuthorityRepair`] (etcdctl sends a URL as its
/// `:authority`), with Nagle's algorithm off: a small answer must leave at
/// once, not wait for the peer's delayed acknowledgement.
fn incoming(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<Reloading<rustls::ServerConfig>>>,
) -> impl tokio_stream::Stream<Item = std::io::Result<AuthorityRepair<ServerStream>>> {
    use tokio_stream::StreamExt;
    raft::transport::tls::accept::accept(listener, tls)
        .map(|accepted| accepted.map(AuthorityRepair::new))
}

/// Listens on `address`.
async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Listen { address, source })
}

/// Completes once `flag` is true (or its sender is gone).
async fn became_true(mut flag: tokio::sync::watch::Receiver<bool>) {
    let _ = flag.wait_for(|value| *value).await;
}

/// The etcd services clients call.
fn client_services(
    context: &Arc<Context>,
    proposer: &Arc<Proposer>,
    limits: &Limits,
    watch_settings: WatchSettings,
) -> tonic::transport::server::Router {
    // Leave room above the request limit so that an oversized request
    // reaches our check and gets its reason, rather than a transport error.
    let decode_limit = limits.max_request_bytes + (1 << 20);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            KvServer::new(KvService::new(proposer.clone()))
                .max_decoding_message_size(decode_limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(ClusterServer::new(ClusterService::new(context.clone())))
        .add_service(MaintenanceServer::new(MaintenanceService::new(
            context.clone(),
        )))
        .add_service(
            WatchServer::new(WatchService::new(context.clone(), watch_settings))
                .max_decoding_message_size(decode_limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(LeaseServer::new(UnbuiltLease))
}

/// The cluster a joining node runs in: the one its data directory joined
/// before, or the one the members it was given answer for.
async fn joined_cluster_id(
    options: &ServerOptions,
    joined: Option<ClusterId>,
    tls: &LoadedTls,
) -> Result<ClusterId, ServerError> {
    if let Some(cluster) = joined {
        return Ok(cluster);
    }
    join::check_not_bootstrapped(&options.data_directory)?;
    join::join(
        options.id,
        &options.members,
        &options.data_directory,
        tls.peer_connect.as_ref(),
    )
    .await
}

/// Serves `node`'s metrics at `http://<address>/metrics`.
async fn serve_metrics(
    address: SocketAddr,
    node: &Node<KvStateMachine>,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    let mut registry = prometheus_client::registry::Registry::default();
    node.metrics().register(&mut registry);
    registry.register_collector(Box::new(StoreMetrics::new(node.clone())));
    registry.register_collector(Box::new(ProcessMetrics));
    let task = metrics_http::serve_metrics(address, registry)
        .await
        .map_err(|source| ServerError::Metrics { address, source })?;
    tracing::info!(%address, "serving metrics at /metrics");
    Ok(task)
}

/// What the services of `node` share.
fn context(
    options: &ServerOptions,
    node: &Node<KvStateMachine>,
    cluster: ClusterId,
    tls: &LoadedTls,
) -> Context {
    let context = Context::new(
        node.clone(),
        cluster.0,
        options.members.clone(),
        options.limits.clone(),
        options.data_directory.clone(),
        tls.peer_connect.clone(),
    )
    .serving_tls(tls.server.is_some());
    match &options.peer_port {
        Some(port) => {
            context.with_peer_port(tls.peer_connect.is_some(), port.client_address.clone())
        }
        None => context,
    }
}

/// Runs a node until `shutdown` completes, then stops it cleanly: a leader
/// hands leadership to its most up-to-date voter (waiting at most about an
/// election timeout), then the node stops accepting requests, fails those
/// in flight, flushes and closes the WAL.
pub async fn serve(
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let joined = join::joined_cluster(&options.data_directory)?;
    let mut options = options;
    options.join |= joined.is_some();
    let mut node_options = options.node_options()?;
    let separate_peer_port = options.peer_port.is_some();
    options
        .tls
        .validate(separate_peer_port)
        .map_err(ServerError::Options)?;
    let tls = options.tls.load(separate_peer_port)?;
    node_options.peers.tls = tls.peer_connect.clone();
    let listener = bind(options.listen).await?;
    let peer_listener = match &options.peer_port {
        Some(port) => Some(bind(port.listen).await?),
        None => None,
    };
    if options.join {
        node_options.cluster_id = joined_cluster_id(&options, joined, &tls).await?;
    }
    let cluster = node_options.cluster_id;
    let node = Node::start(node_options, KvStateMachine::default())?;
    tracing::info!(
        node = %options.id,
        address = %options.listen,
        peer_address = ?options.peer_port.as_ref().map(|port| port.listen),
        cluster = cluster.0,
        members = options.members.len(),
        data = %options.data_directory.display(),
        "node started"
    );
    let metrics_server = match options.metrics_address {
        Some(address) => Some(serve_metrics(address, &node).await?),
        None => None,
    };
    let peer_service = node
        .peer_service()
        .ok_or_else(|| ServerError::Options("the peer service was taken".to_string()))?;
    let context = Arc::new(context(&options, &node, cluster, &tls));
    let proposer = Arc::new(Proposer::new(context.clone()));
    let publisher = tokio::spawn(publish::publish_client_urls(proposer.clone()));
    let compactor = options
        .auto_compaction
        .map(|retention| tokio::spawn(auto_compaction::run(proposer.clone(), retention)));
    // On shutdown the node stops first: requests in flight fail, the WAL is
    // flushed and closed, and peer streams end (their next message is
    // refused), so the server's graceful stop does not wait on them.
    let (stopped_sender, stopped) = tokio::sync::watch::channel(false);
    let stopping_node = node.clone();
    let stop = async move {
        shutdown.await;
        // A leader hands over first (dissertation §3.10), so the cluster
        // gets a new leader in one round of votes instead of waiting out an
        // election timeout.
        if let Some(successor) = stopping_node.hand_off_leadership().await {
            tracing::info!(%successor, "stopping: leadership handed over");
        }
        tracing::info!("stopping: refusing new requests, flushing the log");
        stopping_node.shutdown().await;
        let _ = stopped_sender.send(true);
    };
    // The peer RPCs, each behind the peer certificate check.
    let raft_service = InterceptedService::new(peer_service, tls.peer_gate.clone());
    let forward_service = InterceptedService::new(
        KvForwardServer::new(ForwardService::new(proposer.clone()))
            .max_decoding_message_size(forward::max_batch_bytes(options.limits.max_request_bytes))
            .max_encoding_message_size(usize::MAX),
        tls.peer_gate.clone(),
    );
    let watch_settings = WatchSettings {
        progress_notify_interval: options.watch_progress_notify_interval,
        max_response_bytes: options.limits.max_request_bytes,
    };
    let client_services = client_services(&context, &proposer, &options.limits, watch_settings);
    let (server, peer_server) = match peer_listener {
        // The client port serves no peer RPC: they are unknown services
        // there (Unimplemented).
        Some(peer_listener) => {
            let cluster_for_joining = InterceptedService::new(
                ClusterServer::new(ClusterService::new(context.clone())),
                tls.peer_gate.clone(),
            );
            let peer_server = tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(raft_service)
                .add_service(forward_service)
                .add_service(cluster_for_joining)
                .serve_with_incoming_shutdown(
                    incoming(peer_listener, tls.peer_server.clone()),
                    became_true(stopped.clone()),
                );
            (client_services, Some(peer_server))
        }
        None => (
            client_services
                .add_service(raft_service)
                .add_service(forward_service),
            None,
        ),
    };
    let server = server.serve_with_incoming_shutdown(incoming(listener, tls.server.clone()), stop);
    let peer_server = async move {
        match peer_server {
            Some(peer_server) => peer_server.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(server);
    tokio::pin!(peer_server);
    let failed_node = node.clone();
    let result = tokio::select! {
        result = &mut server => result.map_err(ServerError::from),
        result = &mut peer_server => result.map_err(ServerError::from),
        // A node that failed answers nothing: the server stops with it.
        reason = failed_node.failed() => Err(ServerError::NodeFailed(reason)),
        // Connections that linger after the node stopped get a short grace.
        _ = async {
            became_true(stopped).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        } => Ok(()),
    };
    publisher.abort();
    if let Some(compactor) = compactor {
        compactor.abort();
    }
    node.shutdown().await;
    if let Some(task) = metrics_server {
        task.abort();
    }
    tracing::info!(node = %options.id, "stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_id_never_changes_for_the_same_token_and_members() {
        // Data directories record it: a different function would lock every
        // node out of its own data. (The value a 3-node cluster on loopback
        // was started with.)
        let members = BTreeMap::from([
            (NodeId(1), "127.0.0.1:23791".to_string()),
            (NodeId(2), "127.0.0.1:23792".to_string()),
            (NodeId(3), "127.0.0.1:23793".to_string()),
        ]);
        assert_eq!(
            cluster_id("rustyraft", &members),
            ClusterId(9_417_387_242_987_037_179)
        );
        assert_ne!(
            cluster_id("other", &members),
            cluster_id("rustyraft", &members)
        );
    }
}
