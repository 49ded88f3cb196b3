//! The event loop's latency probes: how long appends take to become
//! durable, proposals to commit, and each peer to answer a heartbeat round.
//! They watch what the event loop does and only observe histograms; nothing
//! waits on them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;

use crate::node::metrics::{NodeMetrics, PeerLabels};
use crate::types::{LogIndex, NodeId};

/// What is in flight, and when it started.
pub(crate) struct LatencyProbes {
    metrics: Arc<NodeMetrics>,
    /// WAL submissions of entries not yet durable: sequence and when.
    appends_in_flight: VecDeque<(u64, Instant)>,
    /// A leader's proposals appended but not yet known committed: index
    /// and when.
    proposals_in_flight: VecDeque<(LogIndex, Instant)>,
    /// The last heartbeat round sent to each peer, and when.
    rounds_sent: BTreeMap<NodeId, (u64, Instant)>,
}

impl LatencyProbes {
    /// Probes observing into `metrics`.
    pub(crate) fn new(metrics: Arc<NodeMetrics>) -> LatencyProbes {
        LatencyProbes {
            metrics,
            appends_in_flight: VecDeque::new(),
            proposals_in_flight: VecDeque::new(),
            rounds_sent: BTreeMap::new(),
        }
    }

    /// Entries went to the WAL as submission `sequence`.
    pub(crate) fn append_submitted(&mut self, sequence: u64) {
        self.appends_in_flight.push_back((sequence, Instant::now()));
    }

    /// The WAL made every submission up to `sequence` durable.
    pub(crate) fn appends_durable(&mut self, sequence: u64) {
        observe_through(
            &mut self.appends_in_flight,
            sequence,
            &self.metrics.append_latency_seconds,
        );
    }

    /// This leader appended a client's proposal at `index`.
    pub(crate) fn proposal_appended(&mut self, index: LogIndex) {
        self.proposals_in_flight.push_back((index, Instant::now()));
    }

    /// The commit index is `commit_index` (on a leader): times the
    /// proposals it covers. Off a leader, those appended before are
    /// forgotten: they may yet commit under another leader, or be replaced.
    pub(crate) fn commits(&mut self, leading: bool, commit_index: LogIndex) {
        if !leading {
            self.proposals_in_flight.clear();
            return;
        }
        observe_through(
            &mut self.proposals_in_flight,
            commit_index,
            &self.metrics.proposal_commit_seconds,
        );
    }

    /// An append of heartbeat round `round` is going to `peer`, at `now`.
    /// True when the round is newer than the last one timed for it.
    pub(crate) fn round_sent(&mut self, peer: NodeId, round: u64, now: Instant) -> bool {
        let newer = self
            .rounds_sent
            .get(&peer)
            .is_none_or(|(sent, _)| *sent < round);
        if newer {
            self.rounds_sent.insert(peer, (round, now));
        }
        newer
    }

    /// `peer` answered an append of heartbeat round `round`.
    pub(crate) fn round_answered(&mut self, peer: NodeId, round: u64) {
        if let Some((sent_round, sent)) = self.rounds_sent.get(&peer) {
            if *sent_round == round {
                let labels = PeerLabels { peer: peer.0 };
                self.metrics
                    .peer_round_trip_seconds
                    .get_or_create(&labels)
                    .observe(sent.elapsed().as_secs_f64());
                self.rounds_sent.remove(&peer);
            }
        }
    }
}

/// Takes from the front of `in_flight` (keys in increasing order, each with
/// when it started) everything up to `done`, observing how long each took.
fn observe_through<K: PartialOrd>(
    in_flight: &mut VecDeque<(K, Instant)>,
    done: K,
    histogram: &Histogram,
) {
    while let Some((key, started)) = in_flight.front() {
        if *key > done {
            break;
        }
        histogram.observe(started.elapsed().as_secs_f64());
        in_flight.pop_front();
    }
}
