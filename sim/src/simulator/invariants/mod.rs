//! The safety properties of Raft (paper §5.2–§5.4, Figure 3), checked after
//! every step of a simulation. One file per property.

mod committed_durable;
mod election_safety;
mod leader_append_only;
mod leader_completeness;
mod log_matching;
mod state_machine_safety;

use std::collections::BTreeSet;
use std::fmt;

use raft::{Entry, LogIndex, Membership, NodeId, Role, Term};

use crate::simulator::log_view::LogView;

pub use committed_durable::CommittedDurable;
pub use election_safety::ElectionSafety;
pub use leader_append_only::LeaderAppendOnly;
pub use leader_completeness::LeaderCompleteness;
pub use log_matching::LogMatching;
pub use state_machine_safety::StateMachineSafety;

/// A broken safety property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property, as the Raft paper names it.
    pub property: &'static str,
    /// What was observed.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.property, self.detail)
    }
}

/// What the checks see of one node after a step.
#[derive(Clone, Copy, Debug)]
pub struct NodeView<'a> {
    /// The node.
    pub id: NodeId,
    /// False while crashed.
    pub alive: bool,
    /// Its role (meaningless while crashed).
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// Its commit index.
    pub commit_index: LogIndex,
    /// Its log as the core holds it (volatile).
    pub log: &'a LogView,
    /// Its durable log.
    pub durable: &'a LogView,
    /// The configuration in effect at its commit index (while up).
    pub committed_membership: Option<&'a Membership>,
}

/// The prefix of the log known to be committed, shared by the checks: the
/// chained hash of each committed index and the term in which its commit
/// was first observed.
#[derive(Clone, Debug, Default)]
pub struct CommittedLog {
    chains: Vec<u64>,
    observed_in_term: Vec<Term>,
    /// The voters of the latest configuration entry in the committed
    /// prefix; `None` while it holds none (every node is a voter then).
    voters: Option<BTreeSet<NodeId>>,
}

impl CommittedLog {
    /// The number of committed entries known.
    pub fn len(&self) -> LogIndex {
        LogIndex(self.chains.len() as u64)
    }

    /// Whether nothing is known committed.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// The chained hash at a committed index.
    pub fn chain_at(&self, index: LogIndex) -> u64 {
        if index.0 == 0 {
            return 0;
        }
        self.chains[index.0 as usize - 1]
    }

    /// The highest index whose commit was observed before `term`.
    pub fn last_committed_before(&self, term: Term) -> LogIndex {
        LogIndex(
            self.observed_in_term
                .partition_point(|observed| *observed < term) as u64,
        )
    }

    /// The voters of the committed configuration; `None` for the initial
    /// one (every node).
    pub fn voters(&self) -> Option<&BTreeSet<NodeId>> {
        self.voters.as_ref()
    }

    /// Extends the committed prefix to `up_to` from `node`'s log (whose
    /// commit index it is), taking the configuration in effect there from
    /// its core: its log may no longer hold the entries (a snapshot).
    fn extend(&mut self, node: &NodeView<'_>, up_to: LogIndex) {
        for index in self.chains.len() as u64 + 1..=up_to.0 {
            self.chains.push(node.log.chain_at(LogIndex(index)));
            self.observed_in_term.push(node.term);
        }
        if let Some(membership) = node.committed_membership {
            self.voters = Some(membership.voters.clone());
        }
    }
}

/// Every safety check, with the history each needs.
#[derive(Debug, Default)]
pub struct SafetyChecker {
    committed: CommittedLog,
    election_safety: ElectionSafety,
    leader_append_only: LeaderAppendOnly,
    log_matching: LogMatching,
    leader_completeness: LeaderCompleteness,
    state_machine_safety: StateMachineSafety,
    committed_durable: CommittedDurable,
}

impl SafetyChecker {
    /// Checks an append a node's core asked for, before it is applied to the
    /// node's log view.
    pub fn check_append(
        &mut self,
        node: NodeId,
        role: Role,
        log_before: &LogView,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        self.leader_append_only
            .check_append(node, role, log_before, entries)
    }

    /// Checks the node's log after an append was applied to its view.
    pub fn check_appended(
        &mut self,
        node: NodeId,
        log: &LogView,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        self.log_matching.check(node, log, entries)
    }

    /// Checks entries a node hands to its state machine.
    pub fn check_apply(
        &mut self,
        node: NodeId,
        log: &LogView,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        self.state_machine_safety
            .check_apply(node, log, entries, &self.committed)
    }

    /// Checks the whole cluster after a step.
    pub fn check_step(&mut self, nodes: &[NodeView<'_>]) -> Result<(), Violation> {
        self.election_safety.check(nodes)?;
        self.leader_append_only.check(nodes)?;
        self.state_machine_safety
            .check_commits(nodes, &mut self.committed)?;
        self.leader_completeness.check(nodes, &self.committed)?;
        self.committed_durable.check(nodes, &self.committed)?;
        Ok(())
    }

    /// The committed prefix known so far.
    pub fn committed(&self) -> &CommittedLog {
        &self.committed
    }
}
