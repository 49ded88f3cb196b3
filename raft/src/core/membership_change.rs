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
//! the change commits, then steps down, sending `TimeoutNow` to a voter
//! that holds its whole log so that the cluster elects a new leader at once.
//! A removed server is no longer a voter in its own log, so it never
//! campaigns; one that missed its removal
//! is not a member for the others, which drop its messages, so it cannot
//! disrupt them.

use thiserror::Error;

use super::leader::{Leader, Leadership};
use super::message::MessageBody;
use super::output::Output;
use super::progress::Progress;
use super::quorum::Membership;
use super::RaftCore;
use crate::error::RequestError;
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, RequestId};

/// One server's change of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MembershipChange {
    /// Add a learner: it receives the log but neither votes nor counts.
    /// The address (`host:port`) is where members reach it, if given.
    AddLearner(NodeId, Option<String>),
    /// Add a voter directly (etcd's `member add` without `--learner`).
    AddVoter(NodeId, Option<String>),
    /// Make a learner a voter; refused while it lags the leader by more
    /// than [`crate::Config::max_promotion_lag`] entries.
    PromoteLearner(NodeId),
    /// Remove a voter or learner.
    Remove(NodeId),
    /// Change where a member is reached (etcd's `member update`). Quorums
    /// are unchanged; the change still goes through the log, one at a
    /// time, so every member learns it in order.
    UpdateAddress(NodeId, String),
}

impl MembershipChange {
    /// The server the change is about.
    pub fn node(&self) -> NodeId {
        match self {
            MembershipChange::AddLearner(node, _)
            | MembershipChange::AddVoter(node, _)
            | MembershipChange::PromoteLearner(node)
            | MembershipChange::Remove(node)
            | MembershipChange::UpdateAddress(node, _) => *node,
        }
    }

    /// The configuration after this change, or why it cannot be made to
    /// `membership`.
    pub fn apply_to(&self, membership: &Membership) -> Result<Membership, MembershipRefusal> {
        let node = self.node();
        if node == NodeId(0) {
            return Err(MembershipRefusal::ZeroId);
        }
        let address_free = |address: &str| match membership.member_at(address) {
            Some(holder) if holder != node => Err(MembershipRefusal::AddressInUse { node, holder }),
            _ => Ok(()),
        };
        let mut changed = membership.clone();
        match self {
            MembershipChange::AddLearner(_, address) | MembershipChange::AddVoter(_, address) => {
                if membership.contains(node) {
                    return Err(MembershipRefusal::AlreadyMember(node));
                }
                // Added again (the simulator does this with nodes that
                // kept their data): no longer a removed id.
                changed.removed.remove(&node);
                if let Some(address) = address {
                    address_free(address)?;
                    changed.addresses.insert(node, address.clone());
                }
                if matches!(self, MembershipChange::AddLearner(..)) {
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
                changed.addresses.remove(&node);
                changed.removed.insert(node);
            }
            MembershipChange::UpdateAddress(_, address) => {
                if !membership.contains(node) {
                    return Err(MembershipRefusal::NotMember(node));
                }
                address_free(address)?;
                changed.addresses.insert(node, address.clone());
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
    #[error("node {} is already a member", .0.get())]
    AlreadyMember(NodeId),
    /// The node is not a member.
    #[error("node {} is not a member", .0.get())]
    NotMember(NodeId),
    /// Another member already has the address.
    #[error("the address given for node {} is already member {}'s", .node.get(), .holder.get())]
    AddressInUse {
        /// The node the change is about.
        node: NodeId,
        /// The member at that address.
        holder: NodeId,
    },
    /// Only learners can be promoted.
    #[error("node {} is not a learner", .0.get())]
    NotLearner(NodeId),
    /// Removing the node would leave no voter.
    #[error("node {} is the last voter; a cluster needs at least one", .0.get())]
    LastVoter(NodeId),
    /// The learner lags too far behind to be promoted.
    #[error("learner {} is {behind} entries behind the leader; at most {allowed} are allowed for a promotion, retry when it has caught up", .node.get())]
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
        if let Some(mut leader) = self.leading_for(request_id) {
            leader.change_membership(request_id, change);
        }
    }

    /// A leader whose removal has committed steps down (dissertation
    /// §4.2.2); the others elect a leader among themselves.
    pub(super) fn step_down_if_removed(&mut self) {
        self.lead(|leader| leader.hand_over_if_removed());
    }
}

impl Leader<'_> {
    fn change_membership(&mut self, request_id: RequestId, change: MembershipChange) {
        let refusal = match self.state.transfer_target() {
            Some(target) => Some(RequestError::TransferringLeadership { target }),
            None => self
                .check_change(&change)
                .err()
                .map(RequestError::MembershipChangeRefused),
        };
        if let Some(error) = refusal {
            self.outbox
                .push(Output::RequestFailed { request_id, error });
            return;
        }
        let membership = change
            .apply_to(self.membership())
            .expect("check_change applied it already");
        let index = self.log.last_index().next();
        let term = self.term;
        tracing::info!(node = %self.id(), %term, %index, ?change, "appending a configuration change");
        self.append(Entry {
            term,
            index,
            payload: EntryPayload::Configuration(membership.into()),
        });
        self.outbox.push(Output::ProposalAccepted {
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
        self.state.proposals.push_back((index, request_id));
        self.state.progress.retain(|peer, _| members.contains(peer));
        for member in members {
            // A new member first gets the change itself; if its log is
            // shorter, the answer leads the leader back.
            self.state
                .progress
                .entry(member)
                .or_insert_with(|| Progress::new(index));
        }
    }

    /// The configuration after `change`, or why it is refused now.
    fn check_change(&self, change: &MembershipChange) -> Result<Membership, MembershipRefusal> {
        #[cfg(feature = "bug-injection")]
        let one_at_a_time = !self.config.bug_injection.concurrent_membership_changes;
        #[cfg(not(feature = "bug-injection"))]
        let one_at_a_time = true;
        if one_at_a_time && self.log.term_at(self.log.committed()) != Some(self.term) {
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
        if let MembershipChange::PromoteLearner(node) = *change {
            let matched = self
                .state
                .progress
                .get(&node)
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

    /// Once this leader's own removal has committed, it hands over on the
    /// way out (as a transfer would): the voter that holds the whole log
    /// campaigns at once, so the cluster has a leader in one round of votes
    /// instead of after an election timeout. Any election is safe; this one
    /// is only sooner. With none caught up, the others time out as usual.
    fn hand_over_if_removed(&mut self) -> Leadership {
        if self.membership().is_voter(self.id()) {
            return Leadership::Kept;
        }
        let removal_committed = self
            .log
            .latest_configuration_index()
            .is_none_or(|index| index <= self.log.committed());
        if !removal_committed {
            return Leadership::Kept;
        }
        let last_index = self.log.last_index();
        let successor = self
            .state
            .progress
            .iter()
            .filter(|(peer, progress)| {
                self.membership().is_voter(**peer) && progress.match_index == last_index
            })
            .map(|(peer, _)| *peer)
            .next();
        tracing::info!(node = %self.id(), term = %self.term, ?successor,
            "stepping down: this node's removal is committed");
        if let Some(successor) = successor {
            self.send(successor, MessageBody::TimeoutNow);
        }
        Leadership::Lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(voters: &[u64], learners: &[u64]) -> Membership {
        Membership {
            voters: voters.iter().copied().map(NodeId).collect(),
            learners: learners.iter().copied().map(NodeId).collect(),
            ..Membership::default()
        }
    }

    #[test]
    fn addresses_follow_their_members() {
        let start = membership(&[1, 2, 3], &[]);
        let address = |text: &str| Some(text.to_string());
        let added = MembershipChange::AddLearner(NodeId(4), address("h4:1"))
            .apply_to(&start)
            .unwrap();
        assert_eq!(added.addresses[&NodeId(4)], "h4:1");
        assert_eq!(added.member_at("h4:1"), Some(NodeId(4)));
        assert_eq!(
            MembershipChange::AddVoter(NodeId(5), address("h4:1")).apply_to(&added),
            Err(MembershipRefusal::AddressInUse {
                node: NodeId(5),
                holder: NodeId(4)
            })
        );
        let moved = MembershipChange::UpdateAddress(NodeId(4), "h4:2".to_string())
            .apply_to(&added)
            .unwrap();
        assert_eq!(moved.addresses[&NodeId(4)], "h4:2");
        assert_eq!(moved.learners, added.learners, "an update moves no server");
        // Updating a member to its own address changes nothing but is allowed.
        assert!(
            MembershipChange::UpdateAddress(NodeId(4), "h4:2".to_string())
                .apply_to(&moved)
                .is_ok()
        );
        assert_eq!(
            MembershipChange::UpdateAddress(NodeId(9), "h9:1".to_string()).apply_to(&moved),
            Err(MembershipRefusal::NotMember(NodeId(9)))
        );
        let removed = MembershipChange::Remove(NodeId(4))
            .apply_to(&moved)
            .unwrap();
        assert!(!removed.addresses.contains_key(&NodeId(4)));
        assert!(
            removed.removed.contains(&NodeId(4)),
            "a removed id is remembered"
        );
        // A removed member's address is free again.
        assert!(MembershipChange::AddLearner(NodeId(6), address("h4:2"))
            .apply_to(&removed)
            .is_ok());
    }

    #[test]
    fn each_change_moves_one_server() {
        let start = membership(&[1, 2, 3], &[4]);
        let cases = [
            (
                MembershipChange::AddLearner(NodeId(5), None),
                Ok(membership(&[1, 2, 3], &[4, 5])),
            ),
            (
                MembershipChange::AddVoter(NodeId(5), None),
                Ok(membership(&[1, 2, 3, 5], &[4])),
            ),
            (
                MembershipChange::PromoteLearner(NodeId(4)),
                Ok(membership(&[1, 2, 3, 4], &[])),
            ),
            (
                MembershipChange::Remove(NodeId(2)),
                Ok(Membership {
                    removed: [NodeId(2)].into(),
                    ..membership(&[1, 3], &[4])
                }),
            ),
            (
                MembershipChange::Remove(NodeId(4)),
                Ok(Membership {
                    removed: [NodeId(4)].into(),
                    ..membership(&[1, 2, 3], &[])
                }),
            ),
            (
                MembershipChange::AddVoter(NodeId(3), None),
                Err(MembershipRefusal::AlreadyMember(NodeId(3))),
            ),
            (
                MembershipChange::AddLearner(NodeId(4), None),
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
                MembershipChange::AddLearner(NodeId(0), None),
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
