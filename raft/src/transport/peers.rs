//! The sending side of the peer transport: one task per peer that keeps a
//! long-lived gRPC stream open; the stream's body takes that peer's
//! messages straight from its queue.
//!
//! Each peer has a bounded queue. When it is full (the peer is slow or
//! unreachable) new messages are dropped and counted: Raft retransmits
//! whatever matters, so memory stays bounded and a dead peer never slows
//! the others. A failed stream is reopened with exponential backoff.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use raft_proto::raft as wire;
use raft_proto::raft::raft_peer_client::RaftPeerClient;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint};

use crate::core::message::{Message, MessageBody};
use crate::transport::convert::message_to_wire;
use crate::transport::snapshot_send::SnapshotSending;
use crate::transport::tls::TlsConnect;
use crate::types::ClusterId;
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
    /// Speak TLS to peers with this connector (presenting this node's peer
    /// certificate and checking theirs); plaintext when `None`.
    pub tls: Option<TlsConnect>,
}

impl Default for PeerOptions {
    fn default() -> PeerOptions {
        PeerOptions {
            queue_messages: 4096,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_message_bytes: 64 << 20,
            tls: None,
        }
    }
}

/// Labels of a per-peer metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer's node id.
    pub peer: u64,
}

/// Counters of the outbound transport, per peer (Prometheus counters: a
/// program that serves metrics registers them, as
/// [`crate::node::NodeMetrics`] does).
#[derive(Clone, Debug, Default)]
pub struct PeerCounters {
    /// Messages handed to a stream.
    pub sent: Family<PeerLabels, Counter>,
    /// Messages dropped because a peer's queue was full.
    pub dropped: Family<PeerLabels, Counter>,
    /// Streams (re)opened.
    pub connects: Family<PeerLabels, Counter>,
}

/// One peer's counters of [`PeerCounters`].
#[derive(Clone, Debug)]
struct PeerCounter {
    sent: Counter,
    dropped: Counter,
    connects: Counter,
}

impl PeerCounters {
    fn of(&self, node: NodeId) -> PeerCounter {
        let labels = PeerLabels { peer: node.0 };
        PeerCounter {
            sent: self.sent.get_or_create(&labels).clone(),
            dropped: self.dropped.get_or_create(&labels).clone(),
            connects: self.connects.get_or_create(&labels).clone(),
        }
    }
}

/// A message to send, or a snapshot transfer to start.
#[derive(Debug)]
pub enum Outbound {
    /// A message for the peer stream.
    Message(wire::PeerMessage),
    /// An `InstallSnapshot` message: stream the snapshot it names.
    Snapshot(Message),
}

/// One peer: where it is, the queue of what to send it, and the task that
/// sends.
struct Peer {
    address: String,
    queue: mpsc::Sender<Outbound>,
    task: JoinHandle<()>,
    dropped: Counter,
}

/// The outbound side: a queue and a task per peer. Peers come and go with
/// the cluster's configuration ([`Peers::set_address`]).
pub struct Peers {
    cluster: ClusterId,
    peers: BTreeMap<NodeId, Peer>,
    options: PeerOptions,
    snapshots: Arc<SnapshotSending>,
    counters: PeerCounters,
}

impl Peers {
    /// Starts a sending task for each of `peers` (id and `host:port`),
    /// counting what it does in `counters`. Must be called within a tokio
    /// runtime.
    pub fn start(
        cluster: ClusterId,
        peers: &BTreeMap<NodeId, String>,
        options: &PeerOptions,
        snapshots: Arc<SnapshotSending>,
        counters: PeerCounters,
    ) -> Peers {
        let mut started = Peers {
            cluster,
            peers: BTreeMap::new(),
            options: options.clone(),
            snapshots,
            counters,
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
        let counters = self.counters.of(node);
        let dropped = counters.dropped.clone();
        let task = tokio::spawn(run_peer(
            node,
            address.to_string(),
            receiver,
            self.options.clone(),
            counters,
            self.snapshots.clone(),
        ));
        let peer = Peer {
            address: address.to_string(),
            queue,
            task,
            dropped,
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
        let Some(peer) = self.peers.get(&message.to) else {
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
        if peer.queue.try_send(outbound).is_err() {
            peer.dropped.inc();
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for peer in self.peers.values() {
            peer.task.abort();
        }
    }
}

/// The queue of one peer, shared by the peer's task (which waits on it for
/// the first message before connecting) and the open stream's body (which
/// takes messages straight from it, with no relay task in between).
type SharedQueue = Arc<Mutex<QueueState>>;

struct QueueState {
    receiver: mpsc::Receiver<Outbound>,
    /// Bumped each time a new reader takes over (a new stream, or the task
    /// waiting to reconnect). A stream body of an older generation that is
    /// still polled after its call ended gets nothing: it must neither take
    /// messages nor leave its waker in the receiver in place of the live
    /// reader's.
    generation: u64,
}

impl QueueState {
    fn poll_as(&mut self, generation: u64, context: &mut Context<'_>) -> Poll<Option<Outbound>> {
        if generation != self.generation {
            return Poll::Ready(None);
        }
        self.receiver.poll_recv(context)
    }
}

/// The body of one open stream: the peer's queued messages, in order.
/// Snapshots are handed to the [`SnapshotSending`] on the way (they travel
/// on their own call); the stream ends when the queue is closed (the peer
/// task, waiting for a first message again, then sees it closed too).
struct Outgoing {
    queue: SharedQueue,
    generation: u64,
    first: Option<Outbound>,
    client: RaftPeerClient<Channel>,
    snapshots: Arc<SnapshotSending>,
    sent: Counter,
}

impl Stream for Outgoing {
    type Item = wire::PeerMessage;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut queue = this.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let outbound = match this.first.take() {
                Some(outbound) => outbound,
                None => match ready!(queue.poll_as(this.generation, context)) {
                    Some(outbound) => outbound,
                    None => return Poll::Ready(None),
                },
            };
            match outbound {
                Outbound::Message(message) => {
                    this.sent.inc();
                    return Poll::Ready(Some(message));
                }
                Outbound::Snapshot(message) => this.snapshots.send(this.client.clone(), message),
            }
        }
    }
}

async fn run_peer(
    node: NodeId,
    address: String,
    queue: mpsc::Receiver<Outbound>,
    options: PeerOptions,
    counters: PeerCounter,
    snapshots: Arc<SnapshotSending>,
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
    let queue: SharedQueue = Arc::new(Mutex::new(QueueState {
        receiver: queue,
        generation: 0,
    }));
    let take_over = || {
        let mut state = queue.lock().unwrap_or_else(PoisonError::into_inner);
        state.generation += 1;
        state.generation
    };
    let mut backoff = options.backoff_min;
    // A refusal is logged as a warning once, then at debug level while the
    // peer keeps refusing for the same reason.
    let mut refused_for: Option<String> = None;
    loop {
        // Wait for something to send before connecting, so an idle peer
        // costs nothing and a dead one is not hammered. A closed queue (the
        // peer was removed) ends the task.
        let waiting = take_over();
        let first = std::future::poll_fn(|context| {
            queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .poll_as(waiting, context)
        })
        .await;
        let Some(first) = first else {
            return;
        };
        let connected = match &options.tls {
            Some(tls) => tls.channel(endpoint.clone()).await,
            None => endpoint.connect().await,
        };
        let channel = match connected {
            Ok(channel) => channel,
            Err(error) => {
                tracing::debug!(peer = %node, %address, %error, "cannot connect to peer");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.backoff_max);
                continue;
            }
        };
        counters.connects.inc();
        let mut client = RaftPeerClient::new(channel)
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes);
        let outgoing = Outgoing {
            queue: queue.clone(),
            generation: take_over(),
            first: Some(first),
            client: client.clone(),
            snapshots: snapshots.clone(),
            sent: counters.sent.clone(),
        };
        let opened = tokio::time::Instant::now();
        // The call lasts as long as the stream: the peer answers when it
        // ends, or refuses it.
        match client.stream(outgoing).await {
            Err(status) if status.code() == tonic::Code::PermissionDenied => {
                if refused_for.as_deref() == Some(status.message()) {
                    tracing::debug!(peer = %node, reason = status.message(),
                        "the peer still refuses this node's messages");
                } else {
                    tracing::warn!(peer = %node, reason = status.message(),
                        "the peer refuses this node's messages");
                    refused_for = Some(status.message().to_string());
                }
            }
            Err(status) => tracing::debug!(peer = %node, %status, "peer stream ended"),
            Ok(_) => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn a_reader_of_an_older_generation_takes_nothing_from_the_queue() {
        let (sender, receiver) = mpsc::channel(4);
        let mut state = QueueState {
            receiver,
            generation: 2,
        };
        let mut context = Context::from_waker(Waker::noop());
        assert!(state.poll_as(2, &mut context).is_pending());
        sender
            .try_send(Outbound::Message(wire::PeerMessage::default()))
            .unwrap();
        // The stream of the previous connection, polled once more after its
        // call ended, ends without taking the message.
        assert!(matches!(state.poll_as(1, &mut context), Poll::Ready(None)));
        assert!(matches!(
            state.poll_as(2, &mut context),
            Poll::Ready(Some(Outbound::Message(_)))
        ));
        assert!(state.poll_as(2, &mut context).is_pending());
        drop(sender);
        assert!(matches!(state.poll_as(2, &mut context), Poll::Ready(None)));
    }
}
