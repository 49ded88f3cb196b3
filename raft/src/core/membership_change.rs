//! Changing the cluster's configuration one server at a time (dissertation
//! §4.1, §4.2), with learners.
//!
//! # Why one server at a time is safe
//!
//! Each change adds or removes one voter (or touches only learners, which
//! never count). Any majority of the configuration before such a change and
//! any majority of the configuration after it share a voter, so the two
//! cannot elect different leaders in one term or commit different entries
//! at one index. A configuration entry takes effect on every server as
//! soon as it is in its log (`configuration.rs`), so the leader counts
//! votes and acknowledgements with the new configuration from the moment it
//! appends it. Two rules keep every pair of consecutive configurations one
//! server apart:
//!
//! - No change while another is uncommitted: the leader refuses a change
//!   until the latest configuration entry in its log is committed.
//! - A new leader commits an entry of its own term (its no-op) before it
//!   takes a change. Without this rule (the bug found in the single-server
//!   algorithm after the dissertation), a leader could append a change
//!   based on a configuration that an uncommitted entry of an earlier term
//!   had altered, and two configurations two servers apart could both
//!   commit entries.
//!
//! A leader that removes itself leads on, without counting itself, until
//! the change commits, then steps down. A removed server is no longer a
//! voter in its own log, so it never campaigns; one that missed its removal
//! is not a member for the others, which drop its messages, so it cannot
//! disrupt them.

use thiserror::Error;

use super::output::Output;
use super::progress::Progress;
use super::quorum::Membership;
use super::{RaftCore, Role};
use crate::error::RequestError;
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, RequestId};

/// One server's change of the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MembershipChange {
    /// Add a learner: it receives the log but neither votes nor counts.
    AddLearner(NodeId),
    /// Add a voter directly (etcd's `member add` without `--learner`).
    AddVoter(NodeId),
    /// Make a learner a voter; refused while it lags the leader by more
    /// than [`crate::Config::max_promotion_lag`] entries.
    PromoteLearner(NodeId),
    /// Remove a voter or learner.
    Remove(NodeId),
}

impl MembershipChange {
    /// The server the change is about.
    pub fn node(self) -> NodeId {
        match self {
            MembershipChange::AddLearner(node)
            | MembershipChange::AddVoter(node)
            | MembershipChange::PromoteLearner(node)
            | MembershipChange::Remove(node) => node,
        }
    }

    /// The configuration after this change, or why it cannot be made to
    /// `membership`.
    pub fn apply_to(self, membership: &Membership) -> Result<Membership, MembershipRefusal> {
        let node = self.node();
        if node == NodeId(0) {
            return Err(MembershipRefusal::ZeroId);
        }
        let mut changed = membership.clone();
        match self {
            MembershipChange::AddLearner(_) | MembershipChange::AddVoter(_) => {
                if membership.contains(node) {
                    return Err(MembershipRefusal::AlreadyMember(node));
                }
                if matches!(self, MembershipChange::AddLearner(_)) {
                    changed.learners.insert(node);
                } else {
                    changed.voters.insert(node);
                }
            }
            MembershipChange::PromoteLearner(_) => {
                if !changed.learners.remove(&node) {
                    return Err(MembershipRefusal::NotLearner(node));
                }
                changed.voters.insert(node);
            }
            MembershipChange::Remove(_) => {
                if !membership.contains(node) {
                    return Err(MembershipRefusal::NotMember(node));
                }
                if membership.voters.len() == 1 && membership.is_voter(node) {
                    return Err(MembershipRefusal::LastVoter(node));
                }
                changed.voters.remove(&node);
                changed.learners.remove(&node);
            }
        }
        Ok(changed)
    }
}

/// Why a configuration change was refused. The change had no effect.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum MembershipRefusal {
    /// Node id zero is reserved.
    #[error("node id 0 is reserved")]
    ZeroId,
    /// The node is already a voter or learner.
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    /// The node is not a member.
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    /// Only learners can be promoted.
    #[error("node {0} is not a learner")]
    NotLearner(NodeId),
    /// Removing the node would leave no voter.
    #[error("node {0} is the last voter; a cluster needs at least one")]
    LastVoter(NodeId),
    /// The learner lags too far behind to be promoted.
    #[error("learner {node} is {behind} entries behind the leader; at most {allowed} are allowed for a promotion, retry when it has caught up")]
    LearnerBehind {
        /// The learner.
        node: NodeId,
        /// How far behind it is.
        behind: u64,
        /// How far behind it may be.
        allowed: u64,
    },
    /// The previous change is not committed yet.
    #[error("the previous configuration change (index {0}) is not committed yet; retry shortly")]
    ChangeInProgress(LogIndex),
    /// A new leader first commits an entry of its own term.
    #[error("the leader has not committed an entry of its term yet; retry shortly")]
    LeaderNotReady,
}

impl RaftCore {
    /// A client asks for `change`; answered like a proposal (accepted at an
    /// index, complete when that entry is applied) or refused.
    pub(super) fn change_membership(&mut self, request_id: RequestId, change: MembershipChange) {
        let refusal = if self.role != Role::Leader {
            Some(self.not_leader_error())
        } else if let Some(error) = self.transfer_refusal() {
            Some(error)
        } else {
            self.check_change(change)
                .err()
                .map(RequestError::MembershipChangeRefused)
        };
        let membership = match refusal {
            Some(error) => {
                self.outputs
                    .push(Output::RequestFailed { request_id, error });
                return;
            }
            None => change
                .apply_to(self.membership())
                .expect("check_change applied it already"),
        };
        let index = self.log.last_index().next();
        let term = self.hard_state.term;
        tracing::info!(node = %self.id(), %term, %index, ?change, "appending a configuration change");
        self.append_as_leader(Entry {
            term,
            index,
            payload: EntryPayload::Configuration(membership),
        });
        self.outputs.push(Output::ProposalAccepted {
            request_id,
            index,
            term,
        });
        let own_id = self.id();
        let members: Vec<NodeId> = self
            .membership()
            .members()
            .filter(|member| *member != own_id)
            .collect();
        let state = self.leader_state.as_mut().expect("leader has leader state");
        state.proposals.push_back((index, request_id));
        state.progress.retain(|peer, _| members.contains(peer));
        for member in members {
            // A new member first gets the change itself; if its log is
            // shorter, the answer leads the leader back.
            state
                .progress
                .entry(member)
                .or_insert_with(|| Progress::new(index));
        }
    }

    /// The configuration after `change`, or why it is refused now.
    fn check_change(&self, change: MembershipChange) -> Result<Membership, MembershipRefusal> {
        #[cfg(feature = "bug-injection")]
        let one_at_a_time = !self.config.bug_injection.concurrent_membership_changes;
        #[cfg(not(feature = "bug-injection"))]
        let one_at_a_time = true;
        if one_at_a_time && self.log.term_at(self.log.committed()) != Some(self.hard_state.term) {
            return Err(MembershipRefusal::LeaderNotReady);
        }
        if let Some(pending) = self
            .log
            .latest_configuration_index()
            .filter(|index| one_at_a_time && *index > self.log.committed())
        {
            return Err(MembershipRefusal::ChangeInProgress(pending));
        }
        let changed = change.apply_to(self.membership())?;
        if let MembershipChange::PromoteLearner(node) = change {
            let matched = self
                .leader_state
                .as_ref()
                .and_then(|state| state.progress.get(&node))
                .map_or(LogIndex(0), |progress| progress.match_index);
            let behind = self.log.last_index().0.saturating_sub(matched.0);
            if behind > self.config.max_promotion_lag {
                return Err(MembershipRefusal::LearnerBehind {
                    node,
                    behind,
                    allowed: self.config.max_promotion_lag,
                });
            }
        }
        Ok(changed)
    }

    /// A leader whose removal has committed steps down (dissertation
    /// §4.2.2); the others elect a leader among themselves.
    pub(super) fn step_down_if_removed(&mut self) {
        if self.role != Role::Leader || self.membership().is_voter(self.id()) {
            return;
        }
        let removal_committed = self
            .log
            .latest_configuration_index()
            .is_none_or(|index| index <= self.log.committed());
        if removal_committed {
            tracing::info!(node = %self.id(), term = %self.hard_state.term,
                "stepping down: this node's removal is committed");
            let term = self.hard_state.term;
            self.become_follower(term, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(voters: &[u64], learners: &[u64]) -> Membership {
        Membership {
            voters: voters.iter().copied().map(NodeId).collect(),
            learners: learners.iter().copied().map(NodeId).collect(),
        }
    }

    #[test]
    fn each_change_moves_one_server() {
        let start = membership(&[1, 2, 3], &[4]);
        let cases = [
            (
                MembershipChange::AddLearner(NodeId(5)),
                Ok(membership(&[1, 2, 3], &[4, 5])),
            ),
            (
                MembershipChange::AddVoter(NodeId(5)),
                Ok(membership(&[1, 2, 3, 5], &[4])),
            ),
            (
                MembershipChange::PromoteLearner(NodeId(4)),
                Ok(membership(&[1, 2, 3, 4], &[])),
            ),
            (
                MembershipChange::Remove(NodeId(2)),
                Ok(membership(&[1, 3], &[4])),
            ),
            (
                MembershipChange::Remove(NodeId(4)),
                Ok(membership(&[1, 2, 3], &[])),
            ),
            (
                MembershipChange::AddVoter(NodeId(3)),
                Err(MembershipRefusal::AlreadyMember(NodeId(3))),
            ),
            (
                MembershipChange::AddLearner(NodeId(4)),
                Err(MembershipRefusal::AlreadyMember(NodeId(4))),
            ),
            (
                MembershipChange::PromoteLearner(NodeId(2)),
                Err(MembershipRefusal::NotLearner(NodeId(2))),
            ),
            (
                MembershipChange::Remove(NodeId(9)),
                Err(MembershipRefusal::NotMember(NodeId(9))),
            ),
            (
                MembershipChange::AddLearner(NodeId(0)),
                Err(MembershipRefusal::ZeroId),
            ),
        ];
        for (change, expected) in cases {
            assert_eq!(change.apply_to(&start), expected, "{change:?}");
        }
        assert_eq!(
            MembershipChange::Remove(NodeId(1)).apply_to(&membership(&[1], &[2])),
            Err(MembershipRefusal::LastVoter(NodeId(1)))
        );
    }
}
