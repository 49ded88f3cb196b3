//! The sending side of the peer transport: one task per peer that keeps a
//! long-lived gRPC stream open and forwards that peer's messages on it.
//!
//! Each peer has a bounded queue. When it is full (the peer is slow or
//! unreachable) new messages are dropped and counted: Raft retransmits
//! whatever matters, so memory stays bounded and a dead peer never slows
//! the others. A failed stream is reopened with exponential backoff.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft_proto::raft as wire;
use raft_proto::raft::raft_peer_client::RaftPeerClient;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::core::message::{Message, MessageBody};
use crate::storage::ClusterId;
use crate::transport::convert::message_to_wire;
use crate::types::NodeId;

/// Settings of the outbound transport.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// Messages queued per peer before new ones are dropped.
    pub queue_messages: usize,
    /// First delay before reconnecting to a peer.
    pub backoff_min: Duration,
    /// Longest delay between reconnection attempts.
    pub backoff_max: Duration,
    /// Timeout of a connection attempt.
    pub connect_timeout: Duration,
    /// Largest message accepted or sent, in bytes.
    pub max_message_bytes: usize,
}

impl Default for PeerOptions {
    fn default() -> PeerOptions {
        PeerOptions {
            queue_messages: 4096,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_message_bytes: 64 << 20,
        }
    }
}

/// Counters of the outbound transport.
#[derive(Debug, Default)]
pub struct PeerCounters {
    /// Messages handed to a stream.
    pub sent: AtomicU64,
    /// Messages dropped because a peer's queue was full.
    pub dropped: AtomicU64,
    /// Streams (re)opened.
    pub connects: AtomicU64,
}

/// A message to send, or a snapshot transfer to start.
#[derive(Debug)]
pub enum Outbound {
    /// A message for the peer stream.
    Message(wire::PeerMessage),
    /// An `InstallSnapshot` message: stream the snapshot it names.
    Snapshot(Message),
}

/// Starts snapshot transfers for the outbound transport.
pub trait SnapshotSource: Send + Sync + 'static {
    /// Streams the snapshot `message` names to the peer over `client`,
    /// in the background.
    fn send(&self, client: RaftPeerClient<Channel>, message: Message);
}

/// One peer: where it is, the queue of what to send it, and the task that
/// sends.
struct Peer {
    address: String,
    queue: mpsc::Sender<Outbound>,
    task: JoinHandle<()>,
}

/// The outbound side: a queue and a task per peer. Peers come and go with
/// the cluster's configuration ([`Peers::set_address`]).
pub struct Peers {
    cluster: ClusterId,
    peers: BTreeMap<NodeId, Peer>,
    options: PeerOptions,
    snapshots: Arc<dyn SnapshotSource>,
    counters: Arc<PeerCounters>,
}

impl Peers {
    /// Starts a sending task for each of `peers` (id and `host:port`).
    /// Must be called within a tokio runtime.
    pub fn start(
        cluster: ClusterId,
        peers: &BTreeMap<NodeId, String>,
        options: &PeerOptions,
        snapshots: Arc<dyn SnapshotSource>,
    ) -> Peers {
        let mut started = Peers {
            cluster,
            peers: BTreeMap::new(),
            options: options.clone(),
            snapshots,
            counters: Arc::new(PeerCounters::default()),
        };
        for (&node, address) in peers {
            started.set_address(node, address);
        }
        started
    }

    /// Sends to `node` at `address` from now on: starts a task for a new
    /// peer, or replaces the task of one that moved (messages queued for
    /// the old address are dropped; Raft resends what matters).
    pub fn set_address(&mut self, node: NodeId, address: &str) {
        if self
            .peers
            .get(&node)
            .is_some_and(|peer| peer.address == address)
        {
            return;
        }
        let (queue, receiver) = mpsc::channel(self.options.queue_messages);
        let task = tokio::spawn(run_peer(
            node,
            address.to_string(),
            receiver,
            self.options.clone(),
            self.counters.clone(),
            self.snapshots.clone(),
        ));
        let peer = Peer {
            address: address.to_string(),
            queue,
            task,
        };
        if let Some(old) = self.peers.insert(node, peer) {
            tracing::info!(peer = %node, from = %old.address, to = %address, "peer address changed");
            old.task.abort();
        }
    }

    /// Stops sending to `node`.
    pub fn remove(&mut self, node: NodeId) {
        if let Some(peer) = self.peers.remove(&node) {
            peer.task.abort();
        }
    }

    /// The address each peer is sent to.
    pub fn addresses(&self) -> BTreeMap<NodeId, String> {
        self.peers
            .iter()
            .map(|(node, peer)| (*node, peer.address.clone()))
            .collect()
    }

    /// Queues `message` for its addressee; drops it if the queue is full
    /// or the addressee is unknown.
    pub fn send(&self, message: Message) {
        let Some(queue) = self.peers.get(&message.to).map(|peer| &peer.queue) else {
            tracing::warn!(to = %message.to, "dropping a message to a node whose address is unknown");
            return;
        };
        let outbound = match &message.body {
            MessageBody::InstallSnapshot(_) => Outbound::Snapshot(message),
            _ => match message_to_wire(self.cluster, &message) {
                Some(wire) => Outbound::Message(wire),
                None => return,
            },
        };
        if queue.try_send(outbound).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The transport's counters.
    pub fn counters(&self) -> &Arc<PeerCounters> {
        &self.counters
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for peer in self.peers.values() {
            peer.task.abort();
        }
    }
}

async fn run_peer(
    node: NodeId,
    address: String,
    mut queue: mpsc::Receiver<Outbound>,
    options: PeerOptions,
    counters: Arc<PeerCounters>,
    snapshots: Arc<dyn SnapshotSource>,
) {
    let endpoint = match Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => endpoint
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true),
        Err(error) => {
            tracing::error!(peer = %node, %address, %error, "invalid peer address; not sending to it");
            return;
        }
    };
    let mut backoff = options.backoff_min;
    // A refusal is logged as a warning once, then at debug level while the
    // peer keeps refusing for the same reason.
    let mut refused_for: Option<String> = None;
    loop {
        // Wait for something to send before connecting, so an idle peer
        // costs nothing and a dead one is not hammered.
        let Some(first) = queue.recv().await else {
            return;
        };
        let channel = match endpoint.connect().await {
            Ok(channel) => channel,
            Err(error) => {
                tracing::debug!(peer = %node, %address, %error, "cannot connect to peer");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.backoff_max);
                continue;
            }
        };
        counters.connects.fetch_add(1, Ordering::Relaxed);
        let client = RaftPeerClient::new(channel)
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes);
        let (stream_sender, stream_receiver) = mpsc::channel(256);
        let mut call_client = client.clone();
        let mut call = tokio::spawn(async move {
            call_client
                .stream(ReceiverStream::new(stream_receiver))
                .await
        });
        let opened = tokio::time::Instant::now();
        let mut next = Some(first);
        loop {
            let outbound = match next.take() {
                Some(outbound) => outbound,
                None => tokio::select! {
                    outbound = queue.recv() => match outbound {
                        Some(outbound) => outbound,
                        None => { call.abort(); return; }
                    },
                    ended = &mut call => {
                        if let Ok(Err(status)) = ended {
                            if status.code() == tonic::Code::PermissionDenied {
                                if refused_for.as_deref() == Some(status.message()) {
                                    tracing::debug!(peer = %node, reason = status.message(),
                                        "the peer still refuses this node's messages");
                                } else {
                                    tracing::warn!(peer = %node, reason = status.message(),
                                        "the peer refuses this node's messages");
                                    refused_for = Some(status.message().to_string());
                                }
                            } else {
                                tracing::debug!(peer = %node, %status, "peer stream ended");
                            }
                        }
                        break;
                    }
                },
            };
            match outbound {
                Outbound::Message(message) => {
                    if stream_sender.send(message).await.is_err() {
                        break;
                    }
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                Outbound::Snapshot(message) => snapshots.send(client.clone(), message),
            }
        }
        drop(stream_sender);
        call.abort();
        // A stream that lived a while was healthy: reconnect at once. One
        // that ended quickly (refused, or the peer is going down) backs off,
        // so a peer that refuses us is not hammered.
        if opened.elapsed() >= options.backoff_max {
            backoff = options.backoff_min;
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(options.backoff_max);
        }
    }
}
