//! What a running node measures, as Prometheus metrics. A program that
//! serves `/metrics` registers them with [`NodeMetrics::register`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::core::Role;
use crate::transport::PeerCounters;

/// Labels of a per-peer metric: the transport's, shared.
pub use crate::transport::PeerLabels;

/// Labels of the refused-message counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Why messages were refused ([`crate::Refusal::reason`]).
    pub reason: String,
}

/// Labels of the stall counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StallLabels {
    /// What was late: `event_loop_late`, `heartbeat_late`, `slow_fdatasync`
    /// or `slow_apply`.
    pub kind: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 3.3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// The metrics of one node. Counters and gauges are cheap to clone handles.
#[derive(Debug)]
pub struct NodeMetrics {
    /// The current term.
    pub term: Gauge,
    /// The role: 0 follower, 1 pre-candidate, 2 candidate, 3 leader.
    pub role: Gauge,
    /// The highest index known to be committed.
    pub commit_index: Gauge,
    /// The index the state machine has applied.
    pub applied_index: Gauge,
    /// Entries the state machine applied (commands and no-ops).
    pub entries_applied: Counter,
    /// Proposals applied and answered.
    pub proposals_committed: Counter,
    /// Proposals and reads that failed (not leader, leadership lost, ...).
    pub requests_failed: Counter,
    /// Times the known leader changed.
    pub leader_changes: Counter,
    /// Times this node became the leader.
    pub elections_won: Counter,
    /// Snapshots of the state machine this node wrote.
    pub snapshots_taken: Counter,
    /// Snapshots received from a leader and restored.
    pub snapshots_installed: Counter,
    /// From submitting log entries to the WAL to their being durable
    /// (a write and an fdatasync, shared by a batch).
    pub append_latency_seconds: Histogram,
    /// One fdatasync of a WAL segment.
    pub fsync_latency_seconds: Histogram,
    /// At the leader, from a proposal's entry being appended to its being
    /// committed (replication to a quorum, their fdatasyncs included).
    pub proposal_commit_seconds: Histogram,
    /// From committed entries being handed to the applier to their being
    /// applied (waiting for the applier included), per batch applied.
    pub apply_latency_seconds: Histogram,
    /// The time the state machine took to apply a batch of entries.
    pub apply_duration_seconds: Histogram,
    /// How late the event loop handled each tick of its clock.
    pub event_loop_lag_seconds: Histogram,
    /// At the leader, how much later than the heartbeat interval each
    /// heartbeat round went to a peer.
    pub heartbeat_delay_seconds: Histogram,
    /// Pauses past their warning threshold, by kind (each also logged, at
    /// most once a second per kind).
    pub stalls: Family<StallLabels, Counter>,
    /// From sending a heartbeat round to a peer to its answer.
    pub peer_round_trip_seconds: Family<PeerLabels, Histogram>,
    /// Messages sent to each peer, dropped for it, and streams opened to it.
    pub peers: PeerCounters,
    /// Peer messages refused, by reason: malformed, from another cluster
    /// or a non-member (the transport), or breaking a rule every correct
    /// peer keeps (the core).
    pub peer_messages_refused: Family<RefusalLabels, Counter>,
}

impl Default for NodeMetrics {
    fn default() -> NodeMetrics {
        NodeMetrics {
            term: Gauge::default(),
            role: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            entries_applied: Counter::default(),
            proposals_committed: Counter::default(),
            requests_failed: Counter::default(),
            leader_changes: Counter::default(),
            elections_won: Counter::default(),
            snapshots_taken: Counter::default(),
            snapshots_installed: Counter::default(),
            append_latency_seconds: latency_histogram(),
            fsync_latency_seconds: latency_histogram(),
            proposal_commit_seconds: latency_histogram(),
            apply_latency_seconds: latency_histogram(),
            apply_duration_seconds: latency_histogram(),
            event_loop_lag_seconds: latency_histogram(),
            heartbeat_delay_seconds: latency_histogram(),
            stalls: Family::default(),
            peer_round_trip_seconds: Family::new_with_constructor(latency_histogram),
            peers: PeerCounters::default(),
            peer_messages_refused: Family::default(),
        }
    }
}

impl NodeMetrics {
    /// Registers every metric under the prefix `raft`.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("raft");
        registry.register("term", "The current term", self.term.clone());
        registry.register(
            "role",
            "0 follower, 1 pre-candidate, 2 candidate, 3 leader",
            self.role.clone(),
        );
        registry.register(
            "commit_index",
            "The highest committed index known",
            self.commit_index.clone(),
        );
        registry.register(
            "applied_index",
            "The index the state machine applied",
            self.applied_index.clone(),
        );
        registry.register(
            "entries_applied",
            "Entries applied",
            self.entries_applied.clone(),
        );
        registry.register(
            "proposals_committed",
            "Proposals applied and answered",
            self.proposals_committed.clone(),
        );
        registry.register(
            "requests_failed",
            "Proposals and reads that failed",
            self.requests_failed.clone(),
        );
        registry.register(
            "leader_changes",
            "Times the known leader changed",
            self.leader_changes.clone(),
        );
        registry.register(
            "elections_won",
            "Times this node became the leader",
            self.elections_won.clone(),
        );
        registry.register(
            "snapshots_taken",
            "Snapshots written",
            self.snapshots_taken.clone(),
        );
        registry.register(
            "snapshots_installed",
            "Snapshots received from a leader and restored",
            self.snapshots_installed.clone(),
        );
        registry.register(
            "append_latency_seconds",
            "From submitting entries to the WAL to their being durable (write and fdatasync)",
            self.append_latency_seconds.clone(),
        );
        registry.register(
            "fsync_latency_seconds",
            "One fdatasync of a WAL segment",
            self.fsync_latency_seconds.clone(),
        );
        registry.register(
            "proposal_commit_seconds",
            "At the leader, from a proposal's entry being appended to its commit",
            self.proposal_commit_seconds.clone(),
        );
        registry.register(
            "apply_latency_seconds",
            "From committed entries being handed to the applier to their being applied",
            self.apply_latency_seconds.clone(),
        );
        registry.register(
            "apply_duration_seconds",
            "The time the state machine took to apply a batch of entries",
            self.apply_duration_seconds.clone(),
        );
        registry.register(
            "event_loop_lag_seconds",
            "How late the event loop handled each tick of its clock",
            self.event_loop_lag_seconds.clone(),
        );
        registry.register(
            "heartbeat_delay_seconds",
            "At the leader, how much later than the interval each heartbeat round went to a peer",
            self.heartbeat_delay_seconds.clone(),
        );
        registry.register(
            "stalls",
            "Pauses past their warning threshold, by kind",
            self.stalls.clone(),
        );
        registry.register(
            "peer_round_trip_seconds",
            "From sending a heartbeat round to a peer to its answer",
            self.peer_round_trip_seconds.clone(),
        );
        registry.register(
            "peer_messages_sent",
            "Messages handed to a peer's stream",
            self.peers.sent.clone(),
        );
        registry.register(
            "peer_messages_dropped",
            "Messages dropped because a peer's queue was full (Raft resends what matters)",
            self.peers.dropped.clone(),
        );
        registry.register(
            "peer_connects",
            "Streams opened to a peer",
            self.peers.connects.clone(),
        );
        registry.register(
            "peer_messages_refused",
            "Peer messages refused, by reason: malformed, from another cluster or a non-member, or breaking the protocol",
            self.peer_messages_refused.clone(),
        );
    }

    /// Counts a refused peer message.
    pub(crate) fn count_refusal(&self, reason: &str) {
        self.peer_messages_refused
            .get_or_create(&RefusalLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(crate) fn set_role(&self, role: Role) {
        let value = match role {
            Role::Follower => 0,
            Role::PreCandidate => 1,
            Role::Candidate => 2,
            Role::Leader => 3,
        };
        self.role.set(value);
    }
}
