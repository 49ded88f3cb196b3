//! A node's role together with what only that role holds: a campaign's
//! votes, a leader's replication state. A leader's state exists exactly
//! while the node leads, so code that needs it cannot run otherwise (see
//! [`super::leader::Leader`]).

use std::collections::BTreeMap;

use super::leader::LeaderState;
use super::status::Role;
use crate::types::NodeId;

/// The role a node plays in its current term, with that role's state.
#[derive(Debug)]
pub(super) enum RoleState {
    /// Follows a leader, or waits for one.
    Follower,
    /// Runs a pre-vote round.
    PreCandidate(Votes),
    /// Campaigns for votes in its current term.
    Candidate(Votes),
    /// Leads in its current term.
    Leader(LeaderState),
}

impl RoleState {
    /// The role, without its state.
    pub(super) fn role(&self) -> Role {
        match self {
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate(_) => Role::PreCandidate,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }
}

/// The answers of one campaign (votes or pre-votes), the node's own
/// included.
#[derive(Debug, Default)]
pub(super) struct Votes {
    answers: BTreeMap<NodeId, bool>,
}

impl Votes {
    /// A campaign in which `own` has voted for itself.
    pub(super) fn for_self(own: NodeId) -> Votes {
        Votes {
            answers: BTreeMap::from([(own, true)]),
        }
    }

    /// Records `from`'s answer; only its first answer counts.
    pub(super) fn record(&mut self, from: NodeId, granted: bool) {
        self.answers.entry(from).or_insert(granted);
    }

    /// The nodes that granted their vote.
    pub(super) fn granted(&self) -> impl Iterator<Item = &NodeId> {
        self.answers
            .iter()
            .filter_map(|(node, granted)| granted.then_some(node))
    }

    /// How many nodes refused.
    pub(super) fn refused(&self) -> usize {
        self.answers.values().filter(|granted| !**granted).count()
    }
}
