//! Everything a run does, derived from its seed: the cluster's settings, how
//! the network misbehaves, how often the nemesis strikes, and the workload.

use rand_chacha::ChaCha8Rng;

use raft::NodeId;

use crate::simulator::network::NetworkFaults;
use crate::simulator::random::{chance, pick, uniform};

/// Simulated microseconds per tick.
pub const TICK_US: u64 = 1_000;

/// The fraction of runs in which one node's disk is corrupted.
pub const DISK_CORRUPTION_PROBABILITY: f64 = 0.3;

/// A deliberately unsafe variant of the algorithm, for proving that the
/// checks catch bugs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum InjectedBug {
    /// Votes are granted without the log up-to-date check.
    VoteWithoutLogCheck,
    /// Entries of earlier terms commit by counting replicas (Figure 8).
    CommitPreviousTermByCounting,
    /// ReadIndex answers without confirming leadership.
    ReadWithoutLeadershipCheck,
    /// Configuration changes are taken while another is uncommitted.
    ConcurrentMembershipChanges,
    /// Peer messages are acted on without being validated.
    SkipMessageValidation,
    /// Outputs after a hard state are carried out before it is durable (a
    /// vote sent, then forgotten by a crash).
    ActBeforeHardStateDurable,
}

impl InjectedBug {
    /// Every injectable bug.
    pub const ALL: [InjectedBug; 6] = [
        InjectedBug::VoteWithoutLogCheck,
        InjectedBug::CommitPreviousTermByCounting,
        InjectedBug::ReadWithoutLeadershipCheck,
        InjectedBug::ConcurrentMembershipChanges,
        InjectedBug::SkipMessageValidation,
        InjectedBug::ActBeforeHardStateDurable,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            InjectedBug::VoteWithoutLogCheck => "vote-without-log-check",
            InjectedBug::CommitPreviousTermByCounting => "commit-previous-term-by-counting",
            InjectedBug::ReadWithoutLeadershipCheck => "read-without-leadership-check",
            InjectedBug::ConcurrentMembershipChanges => "concurrent-membership-changes",
            InjectedBug::SkipMessageValidation => "skip-message-validation",
            InjectedBug::ActBeforeHardStateDurable => "act-before-hard-state-durable",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<InjectedBug> {
        InjectedBug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

/// The shape of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Number of nodes.
    pub nodes: usize,
    /// Network behaviour during the fault phase.
    pub network: NetworkFaults,
    /// Core settings.
    pub pre_vote: bool,
    /// Core settings.
    pub check_quorum: bool,
    /// Core settings: small windows and batches exercise pipelining and
    /// make entries of different terms travel separately.
    pub max_inflight_messages: usize,
    /// Core settings.
    pub max_entries_per_message: usize,
    /// Disk write latency range, simulated microseconds.
    pub disk_latency_us: (u64, u64),
    /// Probability that a crash with log writes in flight keeps a random
    /// prefix of their entries (possibly all, possibly none) rather than
    /// none of them: a write cut short.
    pub torn_write_probability: f64,
    /// Probability that a log write that leaves two entries or more in
    /// flight, or that replaces durable entries, is followed by a crash of
    /// its node before it is durable.
    pub mid_write_crash_probability: f64,
    /// The most crashes a run aims at writes in flight.
    pub mid_write_crashes_max: u64,
    /// The node whose disk gets a bit flipped in a record before its log's
    /// tail, while it is down after its first crash with two durable
    /// entries; it then refuses to start for the rest of the run. Only in
    /// clusters of three or more, where the others keep a quorum.
    pub corrupt_disk: Option<NodeId>,
    /// Ticks of faults, then ticks of calm during which the cluster must
    /// recover.
    pub fault_ticks: u64,
    /// See `fault_ticks`.
    pub heal_ticks: u64,
    /// Mean ticks between nemesis actions.
    pub nemesis_interval_ticks: u64,
    /// Probability that a nemesis action crashes a node (else it changes
    /// the network).
    pub crash_weight: f64,
    /// Probability that the nemesis aims at the current leader.
    pub leader_bias: f64,
    /// Probability that a nemesis action asks the leader to hand
    /// leadership to another node instead of injecting a fault.
    pub transfer_weight: f64,
    /// Probability that a nemesis action asks the leader for a
    /// configuration change (add, promote or remove one server) instead.
    pub membership_change_weight: f64,
    /// How long a crashed node stays down, in ticks (range).
    pub downtime_ticks: (u64, u64),
    /// Probability that a new leader crashes right after its first commit,
    /// before it can tell anyone: where commit-rule bugs show (Figure 8).
    pub first_commit_crash_probability: f64,
    /// Probability that a node is cut off the moment it wins an election,
    /// so that its no-op never leaves it and logs diverge.
    pub election_isolation_probability: f64,
    /// Applied entries between snapshots (0: never).
    pub snapshot_interval_entries: u64,
    /// Entries kept in the log behind a snapshot.
    pub snapshot_trailing_entries: u64,
    /// Number of concurrent clients.
    pub clients: usize,
    /// Number of registers they use.
    pub keys: u64,
    /// Ticks a client waits for an answer before giving up.
    pub client_timeout_ticks: u64,
}

impl Scenario {
    /// Draws a scenario for a cluster of `nodes` from the run's generator.
    pub fn generate(rng: &mut ChaCha8Rng, nodes: usize) -> Scenario {
        let delay_min_us = uniform(rng, 50, 600);
        let network = NetworkFaults {
            drop_probability: pick(rng, &[0.0, 0.01, 0.05, 0.1, 0.2]),
            duplicate_probability: pick(rng, &[0.0, 0.01, 0.05]),
            delay_min_us,
            delay_max_us: delay_min_us + uniform(rng, 100, 4_000),
            long_delay_probability: pick(rng, &[0.0, 0.01, 0.05]),
        };
        // Half of the runs hunt leaders: frequent faults aimed at the leader,
        // quick restarts, new leaders cut off the moment they are elected or
        // crashed right after their first commit, and entries sent one per
        // message so that entries of different terms travel separately.
        // Together these build the divergent logs and the races between
        // replication, commit and elections of Raft's Figure 8.
        let hunting = chance(rng, 0.5);
        let max_entries_per_message = if hunting {
            pick(rng, &[1, 1, 1, 64])
        } else {
            pick(rng, &[1, 2, 64])
        };
        // A window of one with one entry per message would make a lagging
        // follower catch up one entry per round trip, too slow for the calm
        // phase, so that pair is not drawn.
        let max_inflight_messages = if max_entries_per_message == 1 {
            pick(rng, &[2, 4, 256])
        } else {
            pick(rng, &[1, 2, 4, 256])
        };
        Scenario {
            nodes,
            max_inflight_messages,
            max_entries_per_message,
            network,
            pre_vote: !chance(rng, 0.15),
            check_quorum: !chance(rng, 0.15),
            disk_latency_us: (uniform(rng, 10, 200), uniform(rng, 200, 3_000)),
            torn_write_probability: pick(rng, &[0.7, 1.0]),
            mid_write_crash_probability: pick(rng, &[0.5, 0.8]),
            mid_write_crashes_max: uniform(rng, 3, 12),
            corrupt_disk: (nodes >= 3 && chance(rng, DISK_CORRUPTION_PROBABILITY))
                .then(|| NodeId(uniform(rng, 1, nodes as u64 + 1))),
            fault_ticks: uniform(rng, 300, 700),
            heal_ticks: 500,
            nemesis_interval_ticks: if hunting {
                uniform(rng, 2, 12)
            } else {
                uniform(rng, 10, 80)
            },
            crash_weight: pick(rng, &[0.2, 0.4, 0.6]),
            leader_bias: if hunting { 0.9 } else { 0.5 },
            // Not drawn, so that every other knob keeps its draw.
            transfer_weight: 0.1,
            membership_change_weight: 0.3,
            downtime_ticks: if hunting { (1, 20) } else { (5, 150) },
            first_commit_crash_probability: if hunting { 0.6 } else { 0.0 },
            election_isolation_probability: if hunting { 0.4 } else { 0.0 },
            // Low thresholds, so that compaction and snapshot transfers to
            // lagging and restarted followers happen in most runs.
            snapshot_interval_entries: pick(rng, &[0, 20, 50, 100]),
            snapshot_trailing_entries: pick(rng, &[0, 5, 30]),
            clients: uniform(rng, 2, 6) as usize,
            keys: uniform(rng, 1, 5),
            client_timeout_ticks: 40,
        }
    }
}
