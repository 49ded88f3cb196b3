//! Helpers for the lab scenario tests: waiting for leaders and commits with
//! a clear failure message, node arithmetic, and the proposers of the churn
//! tests. Every wait runs the cluster, so the safety checks run too, and a
//! violation fails the test through `unwrap`.

use std::collections::BTreeSet;
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use raft::{LogIndex, NodeId, Term};
use sim::simulator::random::pick;
use sim::Cluster;

/// The longest election timeout of the default configuration, in ticks.
pub const ELECTION_TICKS: u64 = 20;

/// The default heartbeat interval, in ticks.
pub const HEARTBEAT_TICKS: u64 = 2;

/// How long a test waits for a leader: several election rounds, since split
/// votes are possible.
pub const LEADER_WAIT_TICKS: u64 = 10 * ELECTION_TICKS;

/// How long a test waits for a value to commit: room for a few elections
/// and the catch-up of a lagging follower.
pub const COMMIT_WAIT_TICKS: u64 = 20 * ELECTION_TICKS;

/// The seeded generator for a test's own choices.
pub fn test_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Runs `scenario` once per seed; when one panics, says which seed before
/// passing the panic on, so that it can be replayed alone.
pub fn for_each_seed(seeds: Range<u64>, scenario: impl Fn(u64)) {
    for seed in seeds {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| scenario(seed))) {
            eprintln!("failed with seed {seed}");
            resume_unwind(panic);
        }
    }
}

/// The node `offset` places after `node` in a cluster of `nodes`, wrapping
/// around (ids are 1..=nodes), like the lab's `(leader + offset) % servers`.
pub fn after(node: NodeId, offset: u64, nodes: usize) -> NodeId {
    NodeId((node.0 - 1 + offset) % nodes as u64 + 1)
}

/// Waits for exactly one leader among the connected, running nodes.
pub fn one_leader(cluster: &mut Cluster) -> NodeId {
    cluster
        .wait_for_leader(LEADER_WAIT_TICKS)
        .unwrap()
        .unwrap_or_else(|| panic!("no leader within {LEADER_WAIT_TICKS} ticks"))
}

/// Commits `value` on at least `expected_nodes` nodes (the lab's `one()`)
/// and returns its index.
pub fn commit(cluster: &mut Cluster, value: u64, expected_nodes: usize) -> LogIndex {
    commit_within(cluster, value, expected_nodes, COMMIT_WAIT_TICKS)
}

/// [`commit`] with an explicit deadline.
pub fn commit_within(
    cluster: &mut Cluster,
    value: u64,
    expected_nodes: usize,
    max_ticks: u64,
) -> LogIndex {
    cluster
        .commit_one(value, expected_nodes, max_ticks)
        .unwrap()
        .unwrap_or_else(|| {
            panic!("value {value} did not reach {expected_nodes} nodes in {max_ticks} ticks")
        })
}

/// Runs until at least `expected_nodes` nodes applied `value` at `index`
/// (the lab's `wait()`); returns whether they did within `max_ticks`.
pub fn wait_applied(
    cluster: &mut Cluster,
    index: LogIndex,
    value: u64,
    expected_nodes: usize,
    max_ticks: u64,
) -> bool {
    for _ in 0..max_ticks {
        let (count, applied) = cluster.applied_count(index);
        if count >= expected_nodes && applied == Some(value) {
            return true;
        }
        cluster.run_ticks(1).unwrap();
    }
    false
}

/// The term all of `nodes` are in; panics if they disagree.
pub fn agreed_term(cluster: &Cluster, nodes: &[NodeId]) -> Term {
    let terms: BTreeSet<Term> = nodes
        .iter()
        .map(|node| cluster.status(*node).expect("node is up").term)
        .collect();
    assert_eq!(
        terms.len(),
        1,
        "nodes {nodes:?} disagree on the term: {terms:?}"
    );
    *terms.first().expect("one term")
}

/// Panics if any of `connected` believes it leads.
pub fn assert_no_leader(cluster: &Cluster, connected: &[NodeId]) {
    let leaders: Vec<(NodeId, Term)> = cluster
        .leaders()
        .into_iter()
        .filter(|(node, _)| connected.contains(node))
        .collect();
    assert!(
        leaders.is_empty(),
        "expected no leader among {connected:?}, found {leaders:?}"
    );
}

/// The highest index any running node has applied.
pub fn highest_applied(cluster: &Cluster) -> LogIndex {
    cluster
        .node_ids()
        .into_iter()
        .filter_map(|node| cluster.status(node))
        .map(|status| status.applied_index)
        .max()
        .unwrap_or_default()
}

/// The terms of the entries in `lagging` that `reference` does not hold at
/// the same index (by Log Matching, equal terms mean equal entries): the
/// conflicting runs a leader has to skip to repair the lagging log.
pub fn conflicting_terms(lagging: &[Term], reference: &[Term]) -> BTreeSet<Term> {
    lagging
        .iter()
        .enumerate()
        .filter(|(position, term)| reference.get(*position) != Some(*term))
        .map(|(_, term)| *term)
        .collect()
}

/// A value a churn proposer is waiting to see applied.
#[derive(Clone, Copy, Debug)]
struct Pending {
    index: LogIndex,
    value: u64,
    give_up_tick: u64,
}

/// Proposers that run alongside churn, like the lab's client goroutines but
/// stepped tick by tick: each offers a fresh value to a random node, waits
/// to see it applied at the index the node gave (or something else there,
/// or a timeout), and records what it saw commit.
pub struct Proposers {
    pending: Vec<Option<Pending>>,
    next_value: u64,
    /// (index, value) of every proposal seen applied where it was placed.
    pub confirmed: Vec<(LogIndex, u64)>,
}

impl Proposers {
    /// `count` idle proposers whose values start at `first_value`.
    pub fn new(count: usize, first_value: u64) -> Proposers {
        Proposers {
            pending: vec![None; count],
            next_value: first_value,
            confirmed: Vec::new(),
        }
    }

    /// One round: every proposer checks its pending value or offers a new
    /// one. `now_tick` is the test's clock.
    pub fn step(&mut self, cluster: &mut Cluster, rng: &mut ChaCha8Rng, now_tick: u64) {
        let nodes = cluster.node_ids();
        for slot in &mut self.pending {
            match *slot {
                Some(pending) => {
                    let (count, applied) = cluster.applied_count(pending.index);
                    if count > 0 {
                        if applied == Some(pending.value) {
                            self.confirmed.push((pending.index, pending.value));
                        }
                        *slot = None;
                    } else if now_tick >= pending.give_up_tick {
                        *slot = None;
                    }
                }
                None => {
                    let value = self.next_value;
                    self.next_value += 1;
                    let node = pick(rng, &nodes);
                    if let Some(index) = cluster.propose(node, value) {
                        *slot = Some(Pending {
                            index,
                            value,
                            give_up_tick: now_tick + 5 * ELECTION_TICKS,
                        });
                    }
                }
            }
        }
    }
}
