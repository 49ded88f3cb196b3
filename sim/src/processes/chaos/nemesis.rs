//! The chaos harness's nemesis: faults on the nodes' processes and links,
//! chosen and timed from the run's seed.
//!
//! Two kinds of fault run side by side, at most one of each at a time, so
//! they overlap: a process fault (SIGKILL then restart, the leader more
//! often than chance; SIGSTOP then SIGCONT; SIGTERM, a graceful stop in
//! which a leader hands leadership over, then restart; or a leadership
//! transfer asked of the leader) and, when the nodes have
//! hosts of their own, a network fault (one member isolated; a minority
//! split from the majority; a bridge: two halves that one member sees
//! both of). Each lasts a drawn time and is then undone; a drawn pause
//! follows before the next of its kind. The draws derive from the seed;
//! when faults land depends on real time, so a seed does not replay a run
//! exactly, only its plan.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use raft::NodeId;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::simulator::random::{chance, pick, uniform};

/// A fault the nemesis can inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the node; restart it (same data) when the fault ends.
    Kill(NodeId),
    /// SIGSTOP the node; SIGCONT it when the fault ends.
    Pause(NodeId),
    /// SIGTERM the node (a graceful stop: a leader hands leadership over
    /// first); restart it when the fault ends.
    Terminate(NodeId),
    /// Ask the leader (through any member) to hand leadership to the node.
    MoveLeader(NodeId),
    /// Cut every link of one node.
    Isolate(NodeId),
    /// Cut every link between a minority and the rest.
    Split {
        /// The minority side.
        minority: BTreeSet<NodeId>,
    },
    /// Cut every link between two halves except those of one member, which
    /// both halves still reach.
    Bridge {
        /// One half, without the bridge.
        left: BTreeSet<NodeId>,
        /// The member both halves reach.
        bridge: NodeId,
        /// The other half, without the bridge.
        right: BTreeSet<NodeId>,
    },
}

/// The kinds of fault, for counting.
pub const FAULT_KINDS: [&str; 7] = [
    "kill",
    "pause",
    "terminate",
    "move-leader",
    "isolate",
    "split",
    "bridge",
];

impl Fault {
    /// The kind's name (one of [`FAULT_KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill(_) => "kill",
            Fault::Pause(_) => "pause",
            Fault::Terminate(_) => "terminate",
            Fault::MoveLeader(_) => "move-leader",
            Fault::Isolate(_) => "isolate",
            Fault::Split { .. } => "split",
            Fault::Bridge { .. } => "bridge",
        }
    }

    /// The links this fault cuts (none for a process fault), among `nodes`.
    pub fn cut_links(&self, nodes: &[NodeId]) -> BTreeSet<(NodeId, NodeId)> {
        let across = |left: &BTreeSet<NodeId>, right: &BTreeSet<NodeId>| {
            left.iter()
                .flat_map(|&a| right.iter().map(move |&b| (a.min(b), a.max(b))))
                .collect::<BTreeSet<_>>()
        };
        let everyone_else = |side: &BTreeSet<NodeId>| {
            nodes
                .iter()
                .copied()
                .filter(|id| !side.contains(id))
                .collect::<BTreeSet<_>>()
        };
        match self {
            Fault::Kill(_) | Fault::Pause(_) | Fault::Terminate(_) | Fault::MoveLeader(_) => {
                BTreeSet::new()
            }
            Fault::Isolate(id) => {
                let alone = BTreeSet::from([*id]);
                across(&alone, &everyone_else(&alone))
            }
            Fault::Split { minority } => across(minority, &everyone_else(minority)),
            Fault::Bridge { left, right, .. } => across(left, right),
        }
    }
}

fn names(nodes: &BTreeSet<NodeId>) -> String {
    nodes
        .iter()
        .map(|id| id.get().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(id) => write!(formatter, "kill -9 node {}", id.get()),
            Fault::Pause(id) => write!(formatter, "SIGSTOP node {}", id.get()),
            Fault::Terminate(id) => write!(formatter, "SIGTERM node {}", id.get()),
            Fault::MoveLeader(id) => write!(formatter, "move the leader to node {}", id.get()),
            Fault::Isolate(id) => write!(formatter, "isolate node {}", id.get()),
            Fault::Split { minority } => {
                write!(formatter, "split nodes {} from the rest", names(minority))
            }
            Fault::Bridge {
                left,
                bridge,
                right,
            } => write!(
                formatter,
                "bridge: nodes {} | node {} | nodes {}",
                names(left),
                bridge.get(),
                names(right)
            ),
        }
    }
}

/// A fault in progress.
#[derive(Clone, Debug)]
pub struct ActiveFault {
    /// The fault.
    pub fault: Fault,
    /// When to undo it.
    pub until: Instant,
}

/// Draws the faults and their timing from the seed.
pub struct Nemesis {
    rng: ChaCha8Rng,
    nodes: Vec<NodeId>,
    network_faults: bool,
    /// When the next process fault and network fault may start.
    next_process: Instant,
    next_network: Instant,
}

/// How long a fault lasts, in milliseconds: `[low, high)`.
const FAULT_MILLIS: (u64, u64) = (1_000, 5_000);

/// The quiet time between two faults of one kind, in milliseconds.
const QUIET_MILLIS: (u64, u64) = (500, 3_000);

/// How likely a kill aims at the leader (when one is known).
const KILL_LEADER_PROBABILITY: f64 = 0.6;

impl Nemesis {
    /// A nemesis over `nodes`, with network faults only if
    /// `network_faults`; the first faults may start a quiet time after
    /// `now`.
    pub fn new(seed: u64, nodes: Vec<NodeId>, network_faults: bool, now: Instant) -> Nemesis {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let next_process = now + quiet(&mut rng);
        let next_network = now + quiet(&mut rng);
        Nemesis {
            rng,
            nodes,
            network_faults,
            next_process,
            next_network,
        }
    }

    /// Whether a process fault may start at `now`.
    pub fn process_fault_due(&self, now: Instant) -> bool {
        now >= self.next_process
    }

    /// A process fault to start at `now`, if one is due; `leader` is the
    /// current leader, if known.
    pub fn next_process_fault(
        &mut self,
        now: Instant,
        leader: Option<NodeId>,
    ) -> Option<ActiveFault> {
        if now < self.next_process {
            return None;
        }
        let victim = |rng: &mut ChaCha8Rng| match leader {
            Some(leader) if chance(rng, KILL_LEADER_PROBABILITY) => leader,
            _ => pick(rng, &self.nodes),
        };
        let fault = match uniform(&mut self.rng, 0, 20) {
            0..=8 => Fault::Kill(victim(&mut self.rng)),
            9..=14 => Fault::Pause(pick(&mut self.rng, &self.nodes)),
            15..=17 => Fault::Terminate(victim(&mut self.rng)),
            _ => Fault::MoveLeader(pick(&mut self.rng, &self.nodes)),
        };
        Some(self.active(fault, now))
    }

    /// A network fault to start at `now`, if one is due.
    pub fn next_network_fault(&mut self, now: Instant) -> Option<ActiveFault> {
        if !self.network_faults || now < self.next_network || self.nodes.len() < 2 {
            return None;
        }
        let mut shuffled = self.nodes.clone();
        for index in (1..shuffled.len()).rev() {
            let other = uniform(&mut self.rng, 0, index as u64 + 1) as usize;
            shuffled.swap(index, other);
        }
        let draw = uniform(&mut self.rng, 0, 3);
        let fault = if draw == 0 || self.nodes.len() < 3 {
            Fault::Isolate(shuffled[0])
        } else if draw == 1 {
            let largest_minority = (self.nodes.len() - 1) / 2;
            let size = uniform(&mut self.rng, 1, largest_minority as u64 + 1) as usize;
            Fault::Split {
                minority: shuffled[..size].iter().copied().collect(),
            }
        } else {
            // Halves as even as they come, around the bridge.
            let rest = &shuffled[1..];
            let middle = rest.len() / 2;
            Fault::Bridge {
                left: rest[..middle].iter().copied().collect(),
                bridge: shuffled[0],
                right: rest[middle..].iter().copied().collect(),
            }
        };
        Some(self.active(fault, now))
    }

    /// Records that the process fault ended at `now`.
    pub fn process_fault_ended(&mut self, now: Instant) {
        self.next_process = now + quiet(&mut self.rng);
    }

    /// Records that the network fault ended at `now`.
    pub fn network_fault_ended(&mut self, now: Instant) {
        self.next_network = now + quiet(&mut self.rng);
    }

    fn active(&mut self, fault: Fault, now: Instant) -> ActiveFault {
        let millis = uniform(&mut self.rng, FAULT_MILLIS.0, FAULT_MILLIS.1);
        ActiveFault {
            fault,
            until: now + Duration::from_millis(millis),
        }
    }
}

fn quiet(rng: &mut ChaCha8Rng) -> Duration {
    Duration::from_millis(uniform(rng, QUIET_MILLIS.0, QUIET_MILLIS.1))
}

/// How many faults of each kind were injected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts(pub BTreeMap<&'static str, u64>);

impl FaultCounts {
    /// Counts one more `fault`.
    pub fn count(&mut self, fault: &Fault) {
        *self.0.entry(fault.kind()).or_default() += 1;
    }

    /// Every fault.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &FaultCounts) {
        for (kind, count) in &other.0 {
            *self.0.entry(kind).or_default() += count;
        }
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = FAULT_KINDS
            .iter()
            .map(|kind| format!("{kind}={}", self.0.get(kind).copied().unwrap_or(0)))
            .collect();
        formatter.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::RangeInclusive<u64>) -> Vec<NodeId> {
        range.map(NodeId).collect()
    }

    #[test]
    fn an_isolated_node_loses_every_link_and_only_those() {
        let cut = Fault::Isolate(NodeId(2)).cut_links(&ids(1..=3));
        assert_eq!(
            cut,
            BTreeSet::from([(NodeId(1), NodeId(2)), (NodeId(2), NodeId(3))])
        );
    }

    #[test]
    fn a_bridge_keeps_the_links_of_the_bridging_member() {
        let fault = Fault::Bridge {
            left: BTreeSet::from([NodeId(1), NodeId(2)]),
            bridge: NodeId(3),
            right: BTreeSet::from([NodeId(4), NodeId(5)]),
        };
        let cut = fault.cut_links(&ids(1..=5));
        assert_eq!(cut.len(), 4);
        assert!(cut.iter().all(|&(a, b)| a != NodeId(3) && b != NodeId(3)));
        assert!(cut.contains(&(NodeId(1), NodeId(4))));
        assert!(!cut.contains(&(NodeId(1), NodeId(2))));
    }

    #[test]
    fn a_split_cuts_the_minority_from_the_majority() {
        let fault = Fault::Split {
            minority: BTreeSet::from([NodeId(5), NodeId(1)]),
        };
        assert_eq!(fault.cut_links(&ids(1..=5)).len(), 6);
    }

    #[test]
    fn the_same_seed_draws_the_same_plan() {
        let start = Instant::now();
        let plan = |seed| {
            let mut nemesis = Nemesis::new(seed, ids(1..=5), true, start);
            let later = start + Duration::from_secs(10);
            (0..20)
                .filter_map(|_| {
                    let process = nemesis.next_process_fault(later, Some(NodeId(1)))?;
                    let network = nemesis.next_network_fault(later)?;
                    Some((process.fault, network.fault))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(plan(7), plan(7));
        assert_ne!(plan(7), plan(8));
        assert!(!plan(7).is_empty());
    }

    #[test]
    fn splits_leave_a_majority_and_faults_are_counted_by_kind() {
        let start = Instant::now();
        let mut nemesis = Nemesis::new(3, ids(1..=5), true, start);
        let mut counts = FaultCounts::default();
        for round in 0..200 {
            let now = start + Duration::from_secs(10 + round);
            if let Some(active) = nemesis.next_network_fault(now) {
                if let Fault::Split { minority } = &active.fault {
                    assert!(minority.len() <= 2 && !minority.is_empty());
                }
                counts.count(&active.fault);
            }
            if let Some(active) = nemesis.next_process_fault(now, None) {
                counts.count(&active.fault);
            }
        }
        assert_eq!(counts.total(), 400);
        assert!(FAULT_KINDS
            .iter()
            .all(|kind| counts.0.get(kind).copied().unwrap_or(0) > 0));
        assert!(counts.to_string().starts_with("kill="));
    }
}
