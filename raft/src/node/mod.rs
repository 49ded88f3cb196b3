//! A running Raft node on tokio: the [`RaftCore`], the write-ahead log, the
//! gRPC peer transport and a user's [`StateMachine`], wired together.
//!
//! - **Start-up** ([`Node::start`]): `bootstrap.rs` recovers what the
//!   data directory holds (WAL, latest snapshot, the core built from them);
//!   `start` then wires the event loop, the applier and the transport
//!   around it, each built by its own constructor.
//! - The **event loop** ([`event_loop`]) owns the core. It turns a timer
//!   into ticks, steps peer messages and client requests, and carries the
//!   outputs out in order: a hard state is durable before anything after it
//!   (so a vote is never sent before it is on disk); a leader submits
//!   entries to the WAL's writer thread without waiting, so it sends them
//!   to followers while they are written, and counts itself only once they
//!   are durable. A follower, which has nothing to send before its entries
//!   are durable, writes them on the event loop's own thread (as etcd's
//!   followers do), sparing two thread hand-offs per append.
//! - The **applier** ([`applier`]) is a thread of its own that applies
//!   committed entries, so a slow state machine never delays heartbeats.
//!   It wakes the event loop only when that waits for an index (a read, or
//!   an apply backlog to shrink); otherwise the loop reads its progress
//!   whenever it runs.
//! - The **transport** ([`crate::transport`]) keeps a stream open to each
//!   peer and streams snapshots in both directions (a received one waits as
//!   a candidate until the core takes or refuses it); [`Node::peer_service`]
//!   is the gRPC service to serve on this node's address.
//! - The **configuration** ([`membership`]): the event loop publishes the
//!   members it knows of ([`Node::membership`]); the transport follows
//!   them and the peer service refuses anyone else. Messages the core
//!   refuses for breaking the protocol are counted
//!   (`raft_peer_messages_refused`) and logged at most once a second
//!   (`refusals.rs`). Change the configuration with
//!   [`Node::change_membership`]; a node joins a running cluster with
//!   [`NodeOptions::join`].
//!
//! # The life of a proposal, and why each hand-off is there
//!
//! 1. [`Node::propose`] registers a reply channel and queues
//!    `Command::Step(Input::Propose)` for the event loop: the core has one
//!    owner, so callers on any task reach it through a bounded queue (its
//!    bound is the node's backpressure on clients).
//! 2. The event loop steps the core with a batch of queued inputs and takes
//!    the outputs once for the batch, so many proposals share one append,
//!    one WAL write and one message per peer.
//! 3. The outputs pass the output gate ([`crate::OutputGate`]). The leader
//!    submits its append to the WAL's writer thread and sends it to the
//!    followers at once: the fsync, not the network, is the slow step, and
//!    both run together. The writer reports the write durable as an event.
//! 4. With a quorum durable, the core commits and emits `Apply`; the event
//!    loop hands the entries to the applier thread, so the user's state
//!    machine never holds up heartbeats.
//! 5. The applier applies the entry and answers the reply channel of step 1
//!    directly (`requests.rs`), without passing through the event loop again.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::BTreeMap;
//! use raft::node::{Node, NodeOptions};
//! use raft::ClusterId;
//! use raft::{LogIndex, NodeId, SnapshotMetadata, StateMachine, StateMachineSnapshot};
//!
//! /// Counts the bytes of every command.
//! #[derive(Clone, Copy, Default)]
//! struct Counter { total: u64, applied: LogIndex }
//!
//! impl StateMachine for Counter {
//!     type Response = u64;
//!     type Error = std::io::Error;
//!     type Snapshot = Counter;
//!     fn apply(&mut self, index: LogIndex, command: &[u8]) -> std::io::Result<u64> {
//!         self.total += command.len() as u64;
//!         self.applied = index;
//!         Ok(self.total)
//!     }
//!     fn applied_index(&self) -> LogIndex {
//!         self.applied
//!     }
//!     fn snapshot(&self) -> std::io::Result<Counter> {
//!         Ok(*self)
//!     }
//!     fn restore(&mut self, reader: &mut dyn std::io::Read, metadata: &SnapshotMetadata) -> std::io::Result<()> {
//!         let mut bytes = [0; 8];
//!         reader.read_exact(&mut bytes)?;
//!         *self = Counter { total: u64::from_le_bytes(bytes), applied: metadata.index };
//!         Ok(())
//!     }
//! }
//!
//! impl StateMachineSnapshot for Counter {
//!     fn applied_index(&self) -> LogIndex {
//!         self.applied
//!     }
//!     fn write_to(&mut self, writer: &mut dyn std::io::Write) -> std::io::Result<()> {
//!         writer.write_all(&self.total.to_le_bytes())
//!     }
//! }
//!
//! let members = BTreeMap::from([(NodeId(1), "127.0.0.1:7001".to_string())]);
//! let options = NodeOptions::new(NodeId(1), ClusterId(9), members, "./data/node-1".into());
//! let node = Node::start(options, Counter::default())?;
//! // Serve node.peer_service() with tonic on 127.0.0.1:7001, then:
//! let total = node.propose("hello".into()).await?;
//! let read = node.read(|counter| counter.total).await?;
//! assert!(read >= total);
//! node.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_proto::raft::raft_peer_server::RaftPeerServer;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use self::refusals::RefusalLog;
use crate::config::Config;
use crate::core::input::Input;
use crate::core::{Role, Status};
use crate::snapshot_policy::SnapshotPolicy;
use crate::state_machine::StateMachine;
use crate::storage::snapshot::SnapshotStore;
use crate::storage::{Wal, WalOptions};
use crate::transport::convert::WireError;
use crate::transport::{inbound_queue, InboundSender, PeerOptions, PeerService, Peers};
use crate::types::ClusterId;
use crate::types::{LogIndex, NodeId, Term};

pub mod applier;
mod background;
mod bootstrap;
pub mod error;
pub mod event_loop;
mod leadership;
pub mod membership;
pub mod metrics;
mod probes;
mod refusals;
mod requests;
mod stalls;
pub mod status;

pub use self::error::{RequestFailure, StartError};
pub use self::leadership::TransferFailure;
pub use self::membership::MembershipView;
pub use self::metrics::NodeMetrics;
pub use self::status::NodeStatus;

use self::applier::{AppliedProgress, Applier, ApplierWiring};
use self::bootstrap::Recovered;
use self::event_loop::{Command, Event, EventLoop, EventLoopWiring};
use self::membership::MemberAdmission;
use self::requests::Requests;
use self::stalls::StallReporter;
use crate::transport::snapshot_receive::{
    ReceiveLimits, ReceiveSlot, SnapshotCandidates, SnapshotReceiving,
};
use crate::transport::SnapshotSending;

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// This node's id.
    pub id: NodeId,
    /// The cluster's id; messages and data directories of other clusters
    /// are refused.
    pub cluster_id: ClusterId,
    /// Every member, this node included, with its `host:port`: the
    /// cluster's first configuration when it bootstraps. Once the log holds
    /// a configuration, that one rules; these addresses only stand in for
    /// members the configuration has none for. With [`NodeOptions::join`],
    /// the members to reach at first (this node may be absent).
    pub members: BTreeMap<NodeId, String>,
    /// The node joins an existing cluster (etcd's "existing" initial
    /// cluster state) instead of bootstrapping one from `members`: with an
    /// empty data directory it knows no configuration and waits for the
    /// leader to send it one; it never campaigns before it is a voter
    /// there. Add it to the cluster first.
    pub join: bool,
    /// Where the WAL (and snapshots) live.
    pub data_directory: PathBuf,
    /// The length of one tick of the core's clock. The core's timeouts
    /// ([`Config`]) are counted in ticks.
    pub tick: Duration,
    /// The core's settings. `raft.id` must equal `id`.
    pub raft: Config,
    /// The WAL's settings. Its cluster and node ids are overwritten with
    /// `cluster_id` and `id`.
    pub wal: WalOptions,
    /// The peer transport's settings.
    pub peers: PeerOptions,
    /// When to snapshot the state machine, and the chunk size snapshots
    /// are sent in.
    pub snapshots: SnapshotPolicy,
    /// Client requests queued for the event loop before callers wait.
    pub max_queued_requests: usize,
    /// Peer messages queued for the event loop before peers are slowed.
    pub max_queued_messages: usize,
    /// And the bytes they may hold together (entries' payloads plus a
    /// small overhead per message and entry; a single larger message still
    /// passes, alone). Default 128 MiB.
    pub max_queued_message_bytes: usize,
    /// Committed entries handed to the applier and not yet applied beyond
    /// which the node takes no new client requests (they wait): a state
    /// machine slower than commit slows its clients instead of growing the
    /// apply queue without bound.
    pub max_apply_backlog: u64,
}

impl NodeOptions {
    /// Defaults: a 10 ms tick, so elections time out after 100–200 ms and
    /// heartbeats go every 20 ms with the core's default tick counts.
    pub fn new(
        id: NodeId,
        cluster_id: ClusterId,
        members: BTreeMap<NodeId, String>,
        data_directory: PathBuf,
    ) -> NodeOptions {
        NodeOptions {
            id,
            cluster_id,
            members,
            join: false,
            data_directory,
            tick: Duration::from_millis(10),
            raft: Config::new(id),
            wal: WalOptions::new(cluster_id, id),
            peers: PeerOptions::default(),
            snapshots: SnapshotPolicy::default(),
            max_queued_requests: 8192,
            max_queued_messages: 8192,
            max_queued_message_bytes: 128 << 20,
            max_apply_backlog: 65_536,
        }
    }

    fn validate(&self) -> Result<(), StartError> {
        let fail = |reason: String| Err(StartError::Options(reason));
        if self.raft.id != self.id {
            return fail(format!(
                "the core's id {} differs from the node's id {}",
                self.raft.id, self.id
            ));
        }
        if !self.join && !self.members.contains_key(&self.id) {
            return fail(format!("node {} is not among the members", self.id));
        }
        if self.members.contains_key(&NodeId(0)) {
            return fail("node id 0 is reserved".to_string());
        }
        if self.tick.is_zero() {
            return fail("the tick must be longer than zero".to_string());
        }
        if self.max_queued_requests == 0
            || self.max_queued_messages == 0
            || self.max_queued_message_bytes == 0
            || self.max_apply_backlog == 0
        {
            return fail("queue sizes must be at least 1".to_string());
        }
        self.snapshots
            .validate()
            .or_else(|error| fail(format!("snapshot policy: {error}")))?;
        self.raft
            .validate()
            .or_else(|error| fail(error.to_string()))
    }
}

struct Shared<M: StateMachine> {
    options: NodeOptions,
    commands: mpsc::Sender<Command>,
    requests: Arc<Requests<M::Response>>,
    state_machine: Arc<RwLock<M>>,
    status: watch::Receiver<NodeStatus>,
    applied: watch::Receiver<LogIndex>,
    peer_service: Mutex<Option<PeerService>>,
    event_loop: Mutex<Option<JoinHandle<Result<(), String>>>>,
    applier: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: Arc<NodeMetrics>,
    membership: watch::Receiver<MembershipView>,
    /// Where the handle sends [`Event::Stop`].
    events: mpsc::UnboundedSender<Event>,
    /// Why the node stopped on its own, once it has.
    failure: watch::Receiver<Option<String>>,
}

/// A handle to a running node; cheap to clone.
pub struct Node<M: StateMachine> {
    shared: Arc<Shared<M>>,
}

impl<M: StateMachine> Clone for Node<M> {
    fn clone(&self) -> Self {
        Node {
            shared: self.shared.clone(),
        }
    }
}

impl<M: StateMachine> Node<M> {
    /// Opens the data directory, recovers the log and starts the node.
    /// Must be called within a tokio runtime. Serve
    /// [`Node::peer_service`] on this node's address for peers to reach it.
    pub fn start(options: NodeOptions, state_machine: M) -> Result<Node<M>, StartError> {
        options.validate()?;
        let recovered = bootstrap::recover(&options, state_machine)?;
        let applied = recovered.applied();
        let Recovered {
            wal,
            snapshots,
            snapshot,
            state_machine,
            core,
            base_membership,
            durable,
        } = recovered;
        let initial_view = MembershipView::new(
            core.membership(),
            core.membership_at(core.commit_index()),
            &options.members,
        );
        let (membership_sender, membership_watch) = watch::channel(initial_view.clone());

        let (commands, command_receiver) = mpsc::channel(options.max_queued_requests);
        let (inbound, inbound_receiver) = inbound_queue(
            options.max_queued_messages,
            options.max_queued_message_bytes,
        );
        let (events, event_receiver) = mpsc::unbounded_channel();
        let stop_events = events.clone();
        let metrics = Arc::new(NodeMetrics::default());
        let stall_reporter = Arc::new(StallReporter::new(metrics.clone()));
        observe_wal(&wal, &events, &metrics, &stall_reporter);
        let requests = Arc::new(Requests::new(metrics.clone()));
        let state_machine = Arc::new(RwLock::new(state_machine));
        let (applied_sender, applied_watch) = watch::channel(applied);
        let (work, work_receiver) = std::sync::mpsc::channel();
        let progress = Arc::new(AppliedProgress::new(applied));
        let applier = Applier::new(
            ApplierWiring {
                state_machine: state_machine.clone(),
                requests: requests.clone(),
                events: events.clone(),
                applied: applied_sender,
                progress: progress.clone(),
                snapshots: snapshots.clone(),
                snapshot: snapshot
                    .as_ref()
                    .map(|file| (file.metadata().clone(), file.size_bytes())),
                membership: base_membership,
                metrics: metrics.clone(),
                stalls: stall_reporter.clone(),
            },
            options.snapshots,
        );
        let applier = std::thread::Builder::new()
            .name(format!("raft-applier-{}", options.id))
            .spawn(move || applier.run_guarded(work_receiver))
            .map_err(|error| StartError::Options(format!("cannot start the applier: {error}")))?;

        let candidates = Arc::new(SnapshotCandidates::default());
        let (mut peers, peer_service) = start_transport(
            &options,
            &snapshots,
            &candidates,
            inbound,
            membership_watch.clone(),
            &metrics,
        );
        initial_view.update_peers(options.id, &mut peers, &options.members);

        let initial_status = NodeStatus {
            id: options.id,
            role: Role::Follower,
            term: wal.hard_state().term,
            leader: None,
            commit_index: LogIndex(0),
        };
        let (status_sender, status) = watch::channel(initial_status);
        let event_loop = EventLoop::new(
            EventLoopWiring {
                core,
                wal: wal.clone(),
                peers,
                requests: requests.clone(),
                applier: work,
                status: status_sender,
                commands: command_receiver,
                inbound: inbound_receiver,
                events: event_receiver,
                metrics: metrics.clone(),
                progress,
                membership: membership_sender,
                snapshot_candidates: candidates,
                stalls: stall_reporter,
                durable,
                applied,
            },
            &options,
        );
        let node_id = options.id;
        let (failure_sender, failure) = watch::channel(None);
        let running = tokio::spawn(event_loop.run());
        let event_loop = tokio::spawn(async move {
            let result = match running.await {
                Ok(result) => result,
                Err(error) => Err(format!("the event loop failed: {error}")),
            };
            if let Err(error) = &result {
                tracing::error!(node = %node_id, %error, "the node stopped after a failure");
                failure_sender.send_replace(Some(error.clone()));
            }
            // The WAL closes (flushing what was submitted) when the last
            // reference, this one, goes.
            drop(wal);
            result
        });
        Ok(Node {
            shared: Arc::new(Shared {
                options,
                commands,
                requests,
                state_machine,
                status,
                applied: applied_watch,
                peer_service: Mutex::new(Some(peer_service)),
                event_loop: Mutex::new(Some(event_loop)),
                applier: Mutex::new(Some(applier)),
                metrics,
                membership: membership_watch,
                events: stop_events,
                failure,
            }),
        })
    }

    /// The gRPC service peers talk to; serve it on this node's address.
    /// Returns `None` after the first call.
    pub fn peer_service(&self) -> Option<RaftPeerServer<PeerService>> {
        let service = self.shared.peer_service.lock().ok()?.take()?;
        let limit = self.shared.options.peers.max_message_bytes;
        Some(
            RaftPeerServer::new(service)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
    }

    /// This node's options.
    pub fn options(&self) -> &NodeOptions {
        &self.shared.options
    }

    /// Replicates `command` and returns the state machine's response once
    /// it is committed and applied. Fails at once with
    /// [`RequestFailure::NotLeader`] on a node that is not the leader.
    pub async fn propose(&self, command: Bytes) -> Result<M::Response, RequestFailure> {
        let (reply, answer) = oneshot::channel();
        let request_id = self.shared.requests.register_proposal(reply);
        self.submit(
            request_id,
            Command::Step(Input::Propose {
                request_id,
                command,
            }),
        )
        .await?;
        answer.await.unwrap_or(Err(RequestFailure::ShuttingDown))
    }

    /// Confirms leadership (ReadIndex, Raft dissertation §6.4) and waits
    /// until the state machine has applied everything committed before the
    /// read began: what the state machine then holds is linearizable.
    /// Returns the read index. Fails with [`RequestFailure::NotLeader`] on a
    /// node that is not the leader.
    pub async fn read_index(&self) -> Result<LogIndex, RequestFailure> {
        let (reply, answer) = oneshot::channel();
        let request_id = self.shared.requests.register_read(reply);
        self.submit(request_id, Command::Step(Input::Read { request_id }))
            .await?;
        let read_index = answer.await.unwrap_or(Err(RequestFailure::ShuttingDown))?;
        self.wait_applied(read_index).await?;
        Ok(read_index)
    }

    /// Runs `reader` on the state machine after [`Node::read_index`]: a
    /// linearizable read.
    pub async fn read<T>(&self, reader: impl FnOnce(&M) -> T) -> Result<T, RequestFailure> {
        self.read_index().await?;
        Ok(self.read_local(reader))
    }

    /// Runs `reader` on the local state machine now, without confirming
    /// leadership: fast, but possibly stale (a serializable read).
    pub fn read_local<T>(&self, reader: impl FnOnce(&M) -> T) -> T {
        let state_machine = self
            .shared
            .state_machine
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reader(&state_machine)
    }

    /// Waits until the state machine has applied `index`.
    pub async fn wait_applied(&self, index: LogIndex) -> Result<(), RequestFailure> {
        let mut applied = self.shared.applied.clone();
        applied
            .wait_for(|applied| *applied >= index)
            .await
            .map(drop)
            .map_err(|_| RequestFailure::ShuttingDown)
    }

    /// The index the state machine has applied.
    pub fn applied_index(&self) -> LogIndex {
        *self.shared.applied.borrow()
    }

    /// The index the state machine has applied, as it moves: the receiver
    /// sees a change once the state machine holds every entry up to it.
    pub fn watch_applied(&self) -> watch::Receiver<LogIndex> {
        self.shared.applied.clone()
    }

    /// The node's role, term, leader and commit index now.
    pub fn status(&self) -> NodeStatus {
        *self.shared.status.borrow()
    }

    /// A receiver that sees every change of [`Node::status`].
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.shared.status.clone()
    }

    /// The core's full status (membership, progress of each follower).
    pub async fn core_status(&self) -> Result<Status, RequestFailure> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Status(reply))
            .await
            .map_err(|_| RequestFailure::ShuttingDown)?;
        answer.await.map_err(|_| RequestFailure::ShuttingDown)
    }

    /// The node's counters.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.shared.metrics
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.status().term
    }

    async fn submit(
        &self,
        request_id: crate::types::RequestId,
        command: Command,
    ) -> Result<(), RequestFailure> {
        if self.shared.commands.send(command).await.is_err() {
            self.shared
                .requests
                .fail(request_id, RequestFailure::ShuttingDown);
            return Err(RequestFailure::ShuttingDown);
        }
        Ok(())
    }

    /// Completes, with the reason, when the node stops on its own: its
    /// storage or state machine failed, or its event loop panicked. A
    /// program serving the node should then stop too (the node answers
    /// nothing any more); `raft_client run` exits with an error.
    pub async fn failed(&self) -> String {
        let mut failure = self.shared.failure.clone();
        let reason = match failure.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            // The sender is gone only once the event loop ended without a
            // failure: a clean stop.
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// Stops the node: fails requests in flight, flushes and closes the
    /// WAL and stops the applier. Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.shared.events.send(Event::Stop);
        let event_loop = self
            .shared
            .event_loop
            .lock()
            .ok()
            .and_then(|mut task| task.take());
        if let Some(event_loop) = event_loop {
            let _ = event_loop.await;
        }
        let applier = self
            .shared
            .applier
            .lock()
            .ok()
            .and_then(|mut thread| thread.take());
        if let Some(applier) = applier {
            let _ = tokio::task::spawn_blocking(move || applier.join()).await;
        }
    }
}

/// Ties the WAL's reports to the event loop (what became durable, a
/// failure that stops the node) and to the metrics (fdatasync latency and
/// stalls).
fn observe_wal(
    wal: &Wal,
    events: &mpsc::UnboundedSender<Event>,
    metrics: &NodeMetrics,
    stalls: &Arc<StallReporter>,
) {
    let listener_events = events.clone();
    wal.set_durable_listener(move |durable| {
        let _ = listener_events.send(Event::Durable(durable));
    });
    // A WAL that failed stops the node at once, even one with nothing more
    // to write (a leader whose clients wait, say).
    let failure_events = events.clone();
    wal.set_failure_observer(move |error| {
        let _ = failure_events.send(Event::Fatal(format!("the WAL failed: {error}")));
    });
    let fsync_latency = metrics.fsync_latency_seconds.clone();
    let sync_stalls = stalls.clone();
    wal.set_sync_observer(move |took| {
        fsync_latency.observe(took.as_secs_f64());
        sync_stalls.fdatasync(took, std::time::Instant::now());
    });
}

/// The transport of a node: a sender per peer (none yet: the event loop's
/// configuration adds them) with its snapshot sending, and the peer
/// service, which admits what the configuration `view` allows, queues
/// messages on `inbound` and keeps received snapshots in `candidates`.
fn start_transport(
    options: &NodeOptions,
    snapshots: &SnapshotStore,
    candidates: &Arc<SnapshotCandidates>,
    inbound: InboundSender,
    view: watch::Receiver<MembershipView>,
    metrics: &Arc<NodeMetrics>,
) -> (Peers, PeerService) {
    let sending = Arc::new(SnapshotSending::new(
        options.cluster_id,
        snapshots.clone(),
        options.snapshots.chunk_size_bytes,
    ));
    let receiving = Arc::new(SnapshotReceiving {
        store: snapshots.clone(),
        limits: ReceiveLimits {
            max_bytes: options.snapshots.max_receive_bytes,
            idle_timeout: options
                .tick
                .saturating_mul(options.raft.election_ticks_max)
                .saturating_mul(10),
        },
        slot: ReceiveSlot::default(),
        candidates: candidates.clone(),
    });
    let peers = Peers::start(
        options.cluster_id,
        &BTreeMap::new(),
        &options.peers,
        sending,
        metrics.peers.clone(),
    );
    let admission = Arc::new(MemberAdmission {
        node: options.id,
        cluster: options.cluster_id,
        view,
    });
    // Streams the transport refuses are counted and logged as the
    // core's refusals are.
    let stream_refusals = Mutex::new(RefusalLog::default());
    let refusal_metrics = metrics.clone();
    let peer_service = PeerService::new(admission, inbound, receiving).with_refusal_observer(
        Arc::new(move |error: &WireError| {
            refusal_metrics.count_refusal(error.reason());
            if let Ok(mut log) = stream_refusals.lock() {
                log.refused(error.reason(), error, Instant::now());
            }
        }),
    );
    (peers, peer_service)
}
