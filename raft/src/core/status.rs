//! A snapshot of a node's state for monitoring, tests and the simulator.

use std::collections::BTreeMap;

use super::progress::Progress;
use super::quorum::Membership;
use super::RaftCore;
use crate::types::{LogIndex, NodeId, Term};

/// A node's role in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Runs a pre-vote round; has not raised its term.
    PreCandidate,
    /// Campaigns for votes in its current term.
    Candidate,
    /// Leads the cluster in its current term.
    Leader,
}

/// What a node looks like right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// Whom it voted for in `term`.
    pub voted_for: Option<NodeId>,
    /// The leader it knows of in `term`.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit_index: LogIndex,
    /// The last index durable in its storage.
    pub persisted_index: LogIndex,
    /// The last index its state machine reported applied.
    pub applied_index: LogIndex,
    /// The last index in its log.
    pub last_index: LogIndex,
    /// The term of its last entry.
    pub last_term: Term,
    /// The membership it works with.
    pub membership: Membership,
    /// Replication progress per peer, when leader.
    pub progress: BTreeMap<NodeId, Progress>,
    /// The voter leadership is being handed to, when leader.
    pub transfer_target: Option<NodeId>,
}

impl RaftCore {
    /// The node's current state.
    pub fn status(&self) -> Status {
        Status {
            id: self.id(),
            role: self.role(),
            term: self.hard_state.term,
            voted_for: self.hard_state.voted_for,
            leader: self.leader,
            commit_index: self.log.committed(),
            persisted_index: self.log.persisted(),
            applied_index: self.applied,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            membership: self.membership().clone(),
            progress: self
                .leader_state()
                .map(|state| state.progress.clone())
                .unwrap_or_default(),
            transfer_target: self.transfer_target(),
        }
    }

    /// The node's role, without building a whole [`Status`].
    pub fn role(&self) -> Role {
        self.role.role()
    }

    /// The node's current term.
    pub fn term(&self) -> Term {
        self.hard_state.term
    }

    /// The leader this node knows of, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The node's commit index.
    pub fn commit_index(&self) -> LogIndex {
        self.log.committed()
    }
}
