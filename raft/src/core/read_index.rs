//! Linearizable reads with ReadIndex (dissertation §6.4): the leader records
//! its commit index when a read arrives, confirms it is still the leader with
//! a round of heartbeats acknowledged by a quorum, and lets the read proceed
//! once the state machine has applied up to that index. A new leader first
//! waits for an entry of its own term to commit, since only then does its
//! commit index cover everything earlier leaders committed.

use std::collections::VecDeque;

use super::leader::Leader;
use super::output::Output;
use super::RaftCore;
use crate::types::{LogIndex, RequestId};

/// Reads a leader holds, oldest first.
#[derive(Debug, Default)]
pub(super) struct ReadQueue {
    /// Reads waiting for a quorum to acknowledge `round`.
    unconfirmed: VecDeque<PendingRead>,
    /// Confirmed reads waiting for their read index (unknown until the first
    /// commit of this term) and for the state machine to reach it.
    confirmed: VecDeque<PendingRead>,
}

#[derive(Debug)]
struct PendingRead {
    request_id: RequestId,
    /// The heartbeat round that must be acknowledged by a quorum.
    round: u64,
    /// The commit index the read must observe, once known.
    read_index: Option<LogIndex>,
}

impl ReadQueue {
    /// Every read still held, for failing them when leadership is lost.
    pub(super) fn drain(&mut self) -> Vec<RequestId> {
        self.unconfirmed
            .drain(..)
            .chain(self.confirmed.drain(..))
            .map(|read| read.request_id)
            .collect()
    }
}

impl RaftCore {
    /// A client's read: held by a leader until it may be served, failed
    /// elsewhere.
    pub(super) fn read(&mut self, request_id: RequestId) {
        if let Some(mut leader) = self.leading_for(request_id) {
            leader.read(request_id);
        }
    }

    /// The index the state machine must reach before the oldest confirmed
    /// read can be answered, when it has not yet: a driver that learns of
    /// applying without being told each time ([`crate::Input::Applied`])
    /// must make sure to step it by then.
    pub fn applied_awaited(&self) -> Option<LogIndex> {
        let state = self.leader_state()?;
        let read_index = state.reads.confirmed.front()?.read_index?;
        (read_index > self.applied).then_some(read_index)
    }
}

impl Leader<'_> {
    fn read(&mut self, request_id: RequestId) {
        let read_index = self
            .committed_in_current_term()
            .then(|| self.log.committed());
        let read = PendingRead {
            request_id,
            // Only acknowledgements of messages sent after this read arrived
            // prove that we were still the leader when it arrived.
            round: self.state.round + 1,
            read_index,
        };
        #[cfg(feature = "bug-injection")]
        if self.config.bug_injection.read_without_leadership_check {
            self.state.reads.confirmed.push_back(PendingRead {
                read_index: Some(self.log.committed()),
                ..read
            });
            self.release_reads_ready_to_serve();
            return;
        }
        self.state.reads.unconfirmed.push_back(read);
        self.state.heartbeat_pending = true;
        // A single voter is a quorum by itself.
        self.confirm_reads();
    }

    fn committed_in_current_term(&self) -> bool {
        self.log.term_at(self.log.committed()) == Some(self.term)
    }

    /// Moves reads whose round a quorum has acknowledged to the confirmed
    /// queue.
    pub(super) fn confirm_reads(&mut self) {
        let own_id = self.config.id;
        let state = &mut *self.state;
        let membership = self.log.membership();
        let mut moved = false;
        while let Some(read) = state.reads.unconfirmed.front() {
            let acknowledged = membership.voters.iter().filter(|voter| {
                **voter == own_id
                    || state
                        .progress
                        .get(voter)
                        .is_some_and(|progress| progress.acknowledged_round >= read.round)
            });
            if !membership.is_quorum(acknowledged) {
                break;
            }
            let read = state.reads.unconfirmed.pop_front().expect("front exists");
            state.reads.confirmed.push_back(read);
            moved = true;
        }
        if moved {
            self.release_reads_ready_to_serve();
        }
    }

    /// The first commit of this term fixes the read index of earlier reads.
    pub(super) fn on_commit_advanced(&mut self) {
        if !self.committed_in_current_term() {
            return;
        }
        let committed = self.log.committed();
        let reads = &mut self.state.reads;
        for read in reads
            .unconfirmed
            .iter_mut()
            .chain(reads.confirmed.iter_mut())
        {
            read.read_index.get_or_insert(committed);
        }
        self.release_reads_ready_to_serve();
    }

    /// Answers confirmed reads whose read index the state machine reached.
    pub(super) fn release_reads_ready_to_serve(&mut self) {
        let confirmed = &mut self.state.reads.confirmed;
        while let Some(read) = confirmed.front() {
            match read.read_index {
                Some(read_index) if read_index <= self.applied => {
                    let read = confirmed.pop_front().expect("front exists");
                    self.outbox.push(Output::ReadReady {
                        request_id: read.request_id,
                        read_index,
                    });
                }
                _ => break,
            }
        }
    }
}
