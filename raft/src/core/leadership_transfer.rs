//! Leadership transfer (dissertation §3.10): the leader hands leadership to
//! a chosen voter, for maintenance or to move load.
//!
//! The leader stops accepting proposals (they fail with
//! [`crate::RequestError::TransferringLeadership`] and had no effect), so its log
//! stops growing; it replicates to the target as usual, and once the
//! target's log matches its own it sends `TimeoutNow`. The target then
//! campaigns at once, without a pre-vote and with the transfer flag that
//! lets voters ignore their CheckQuorum lease, and wins with its up-to-date
//! log in the next term; the old leader steps down when it hears of that
//! term. If leadership has not moved after an election timeout
//! (`election_ticks_min` ticks), the transfer is abandoned and the leader
//! accepts proposals again. Reads are served throughout: the leader's
//! ReadIndex still needs a quorum's confirmation in its own term.
//!
//! Safety is unaffected: the target wins an ordinary election (it needs a
//! quorum's votes and an up-to-date log); the transfer only decides who
//! campaigns first.

use super::leader::Leader;
use super::message::MessageBody;
use super::RaftCore;
use crate::types::NodeId;

/// A transfer in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LeadershipTransfer {
    /// The voter that is to lead.
    pub(super) target: NodeId,
    /// Ticks since the transfer began.
    pub(super) elapsed: u32,
    /// The tick (of `elapsed`) at which `TimeoutNow` was last sent.
    pub(super) timeout_now_sent_at: Option<u32>,
}

impl RaftCore {
    /// Starts handing leadership to `target`. Ignored (with a log line)
    /// unless this node leads and `target` is another voter; a transfer to
    /// another target replaces the one in progress.
    pub(super) fn transfer_leadership(&mut self, target: NodeId) {
        match self.leading() {
            Some(mut leader) => leader.transfer_leadership(target),
            None => {
                tracing::debug!(node = %self.id(), %target, "not the leader: ignoring a leadership transfer")
            }
        }
    }

    /// The voter leadership is being handed to, if any.
    pub(super) fn transfer_target(&self) -> Option<NodeId> {
        self.leader_state()
            .and_then(|state| state.transfer_target())
    }
}

impl Leader<'_> {
    fn transfer_leadership(&mut self, target: NodeId) {
        if target == self.id() || !self.membership().is_voter(target) {
            tracing::info!(node = %self.id(), %target, "ignoring a leadership transfer to a node that is not another voter");
            return;
        }
        if self.state.transfer_target() == Some(target) {
            return;
        }
        tracing::info!(node = %self.id(), term = %self.term, %target, "transferring leadership");
        self.state.transfer = Some(LeadershipTransfer {
            target,
            elapsed: 0,
            timeout_now_sent_at: None,
        });
        if !self.send_timeout_now_if_caught_up() {
            self.send_entries(target);
        }
    }

    /// One tick of a transfer: abandoned after an election timeout; while
    /// the target is caught up, `TimeoutNow` is sent again every heartbeat
    /// interval in case it was lost.
    pub(super) fn tick_transfer(&mut self) {
        let Some(transfer) = self.state.transfer.as_mut() else {
            return;
        };
        transfer.elapsed += 1;
        if transfer.elapsed >= self.config.election_ticks_min {
            let target = transfer.target;
            self.state.transfer = None;
            tracing::info!(node = %self.id(), term = %self.term, %target,
                "leadership transfer abandoned after an election timeout; accepting proposals again");
            return;
        }
        self.send_timeout_now_if_caught_up();
    }

    /// Sends `TimeoutNow` to the transfer's target if its log matches the
    /// leader's and it was not sent within a heartbeat interval. Returns
    /// whether it was sent.
    pub(super) fn send_timeout_now_if_caught_up(&mut self) -> bool {
        let last_index = self.log.last_index();
        let heartbeat = self.config.heartbeat_ticks;
        let state = &mut *self.state;
        let Some(transfer) = state.transfer.as_mut() else {
            return false;
        };
        let caught_up = state
            .progress
            .get(&transfer.target)
            .is_some_and(|progress| progress.match_index == last_index);
        let recently_sent = transfer
            .timeout_now_sent_at
            .is_some_and(|sent| transfer.elapsed < sent + heartbeat);
        if !caught_up || recently_sent {
            return false;
        }
        transfer.timeout_now_sent_at = Some(transfer.elapsed);
        let target = transfer.target;
        tracing::debug!(node = %self.id(), %target, "the transfer target is caught up: TimeoutNow");
        self.send(target, MessageBody::TimeoutNow);
        true
    }
}
