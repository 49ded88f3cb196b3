//! Moving leadership off a node: on request (etcd's `MoveLeader`) and
//! before a graceful stop, so that a planned restart costs the cluster a
//! transfer (one round of votes) instead of an election timeout.

use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use super::event_loop::Command;
use super::Node;
use crate::core::input::Input;
use crate::core::Role;
use crate::state_machine::StateMachine;
use crate::types::NodeId;

/// Why leadership did not move.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TransferFailure {
    /// This node does not lead; only the leader can hand leadership over.
    #[error("this node is not the leader{}", match leader_hint {
        Some(leader) => format!("; the leader is probably {leader}"),
        None => "; no leader is known".to_string(),
    })]
    NotLeader {
        /// The node this node believes is the leader.
        leader_hint: Option<NodeId>,
    },
    /// The target is not a voting member.
    #[error("node {0} is not a voting member of the cluster")]
    NotAVoter(NodeId),
    /// The target did not take over within the time allowed (it may be
    /// down, cut off or too far behind); the leader has resumed.
    #[error("node {target} did not take over leadership within {} ms; the transfer was abandoned", .waited.as_millis())]
    TimedOut {
        /// The intended leader.
        target: NodeId,
        /// How long the node waited.
        waited: Duration,
    },
    /// Another node took over instead of the target.
    #[error("node {actual} took over leadership instead of node {target}")]
    OtherLeader {
        /// The intended leader.
        target: NodeId,
        /// The node that leads now.
        actual: NodeId,
    },
    /// The node is stopping or has stopped.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl<M: StateMachine> Node<M> {
    /// Hands leadership to the voter `target` (dissertation §3.10) and
    /// waits until it leads. Meanwhile this node accepts no proposals
    /// (they fail as [`super::RequestFailure::NotLeader`] with `target` as
    /// the hint); if `target` has not taken over within an election
    /// timeout, the transfer is abandoned and this node leads on. Succeeds
    /// at once if `target` already leads.
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<(), TransferFailure> {
        let status = self
            .core_status()
            .await
            .map_err(|_| TransferFailure::ShuttingDown)?;
        if !status.membership.is_voter(target) {
            return Err(TransferFailure::NotAVoter(target));
        }
        if status.leader == Some(target) {
            return Ok(());
        }
        if status.role != Role::Leader {
            return Err(TransferFailure::NotLeader {
                leader_hint: status.leader,
            });
        }
        let mut watch = self.watch_status();
        self.shared
            .commands
            .send(Command::Step(Input::TransferLeadership { target }))
            .await
            .map_err(|_| TransferFailure::ShuttingDown)?;
        let waited = self.transfer_timeout();
        let deadline = Instant::now() + waited;
        loop {
            let now = *watch.borrow_and_update();
            match now.leader {
                Some(leader) if leader == target => return Ok(()),
                Some(leader) if leader != self.shared.options.id => {
                    return Err(TransferFailure::OtherLeader {
                        target,
                        actual: leader,
                    })
                }
                _ => {}
            }
            match tokio::time::timeout_at(deadline, watch.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(TransferFailure::ShuttingDown),
                Err(_) => return Err(TransferFailure::TimedOut { target, waited }),
            }
        }
    }

    /// If this node leads a cluster with other voters, hands leadership to
    /// the most up-to-date of them (the one that can win at once) and
    /// waits for it; returns the new leader. For a graceful stop: call it
    /// before [`Node::shutdown`].
    pub async fn hand_off_leadership(&self) -> Option<NodeId> {
        let status = self.core_status().await.ok()?;
        if status.role != Role::Leader {
            return None;
        }
        let target = status
            .progress
            .iter()
            .filter(|(node, _)| status.membership.is_voter(**node))
            .max_by_key(|(node, progress)| (progress.match_index, std::cmp::Reverse(**node)))
            .map(|(node, _)| *node)?;
        match self.transfer_leadership(target).await {
            Ok(()) => Some(target),
            Err(error) => {
                tracing::warn!(%target, %error, "could not hand off leadership before stopping");
                None
            }
        }
    }

    /// How long to wait for a transfer: the core abandons it after an
    /// election timeout; the rest is room for the new leader's first
    /// heartbeat to arrive.
    fn transfer_timeout(&self) -> Duration {
        let options = &self.shared.options;
        options.tick * (options.raft.election_ticks_min + options.raft.election_ticks_max)
    }
}
