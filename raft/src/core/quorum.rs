//! Cluster membership as data, and the quorum arithmetic over it.
//!
//! Membership is never a hard-coded peer list: every quorum decision goes
//! through [`Membership`], so that membership changes (joint consensus or
//! single-server changes) only have to change this type.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{LogIndex, NodeId};

/// Who is in the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Members that vote and count toward quorums.
    pub voters: BTreeSet<NodeId>,
    /// Members that receive the log but never vote or count toward a quorum.
    pub learners: BTreeSet<NodeId>,
    /// Where members are reached (`host:port`), as given when they were
    /// added or updated. The core carries it along with the configuration
    /// and never reads it; a node's transport dials these addresses. A
    /// member without one is reached at the address its node was started
    /// with.
    pub addresses: BTreeMap<NodeId, String>,
    /// Ids removed from the cluster, which must never be members again
    /// (etcd's rule: a node that came back under a removed id, with its
    /// votes forgotten, could vote twice in one term). The core records
    /// them; refusing to add one is the operator API's job (the simulator
    /// re-adds removed nodes, which kept their data, on purpose).
    pub removed: BTreeSet<NodeId>,
}

impl Membership {
    /// A membership of voters only.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
            addresses: BTreeMap::new(),
            removed: BTreeSet::new(),
        }
    }

    /// A membership of voters with their addresses.
    pub fn with_addressed_voters(voters: &BTreeMap<NodeId, String>) -> Membership {
        Membership {
            voters: voters.keys().copied().collect(),
            learners: BTreeSet::new(),
            addresses: voters.clone(),
            removed: BTreeSet::new(),
        }
    }

    /// Whether no member is known: a node joining an existing cluster
    /// before it has learned the cluster's configuration from its leader.
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty() && self.learners.is_empty()
    }

    /// The member whose address is `address`, if any.
    pub fn member_at(&self, address: &str) -> Option<NodeId> {
        self.addresses
            .iter()
            .find(|(node, at)| at.as_str() == address && self.contains(**node))
            .map(|(node, _)| *node)
    }

    /// Every member, voter or learner.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// Whether `node` may vote.
    pub fn is_voter(&self, node: NodeId) -> bool {
        self.voters.contains(&node)
    }

    /// Whether `node` is a voter or learner.
    pub fn contains(&self, node: NodeId) -> bool {
        self.voters.contains(&node) || self.learners.contains(&node)
    }

    /// The number of voters that make a majority.
    pub fn quorum_size(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether the voters among `nodes` form a majority.
    pub fn is_quorum<'a>(&self, nodes: impl IntoIterator<Item = &'a NodeId>) -> bool {
        let count = nodes
            .into_iter()
            .filter(|node| self.voters.contains(node))
            .count();
        count >= self.quorum_size()
    }

    /// The highest index that a majority of voters has reached, given each
    /// voter's durable match index (Raft paper §5.3). Voters missing from
    /// `match_index_of` count as zero.
    pub fn committed_index(&self, match_index_of: impl Fn(NodeId) -> LogIndex) -> LogIndex {
        if self.voters.is_empty() {
            return LogIndex(0);
        }
        // A leader runs this on every acknowledgement: the usual cluster
        // sizes sort on the stack instead of allocating.
        const ON_STACK: usize = 7;
        let mut on_stack = [LogIndex(0); ON_STACK];
        let mut on_heap = Vec::new();
        let matches: &mut [LogIndex] = if self.voters.len() <= ON_STACK {
            for (slot, &voter) in on_stack.iter_mut().zip(&self.voters) {
                *slot = match_index_of(voter);
            }
            &mut on_stack[..self.voters.len()]
        } else {
            on_heap.extend(self.voters.iter().map(|&voter| match_index_of(voter)));
            &mut on_heap
        };
        // Sorted descending, the quorum_size-th value is held by a majority.
        matches.sort_unstable_by(|a, b| b.cmp(a));
        matches[self.quorum_size() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The definition, spelled out: the largest index that at least a
    /// majority of voters have reached.
    fn naive_committed_index(voters: &BTreeMap<NodeId, LogIndex>) -> LogIndex {
        let candidates: BTreeSet<LogIndex> =
            voters.values().copied().chain([LogIndex(0)]).collect();
        candidates
            .into_iter()
            .filter(|candidate| {
                let reached = voters.values().filter(|m| *m >= candidate).count();
                reached * 2 > voters.len()
            })
            .max()
            .unwrap_or(LogIndex(0))
    }

    proptest! {
        #[test]
        fn committed_index_matches_naive_oracle(matches in proptest::collection::vec(0u64..50, 1..9)) {
            let voters: BTreeMap<NodeId, LogIndex> = matches
                .iter()
                .enumerate()
                .map(|(position, m)| (NodeId(position as u64 + 1), LogIndex(*m)))
                .collect();
            let membership = Membership::with_voters(voters.keys().copied());
            let fast = membership.committed_index(|node| voters[&node]);
            prop_assert_eq!(fast, naive_committed_index(&voters));
        }

        #[test]
        fn quorum_needs_a_strict_majority(size in 1usize..10, present in 0usize..10) {
            let membership = Membership::with_voters((1..=size as u64).map(NodeId));
            let nodes: Vec<NodeId> = (1..=present.min(size) as u64).map(NodeId).collect();
            prop_assert_eq!(membership.is_quorum(&nodes), nodes.len() * 2 > size);
        }
    }

    #[test]
    fn learners_never_count() {
        let mut membership = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
        membership.learners.insert(NodeId(4));
        membership.learners.insert(NodeId(5));
        assert!(!membership.is_quorum(&[NodeId(1), NodeId(4), NodeId(5)]));
        assert_eq!(
            membership.committed_index(|node| if node.0 >= 3 {
                LogIndex(9)
            } else {
                LogIndex(1)
            }),
            LogIndex(1)
        );
    }
}
