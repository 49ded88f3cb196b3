//! A leader's view of one follower's replication progress.

use std::collections::VecDeque;

use crate::types::LogIndex;

/// How the leader sends entries to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// The leader does not know where the follower's log matches: it sends
    /// one append at a time and waits for the answer.
    Probe,
    /// The follower's log matches up to `match_index`: the leader streams
    /// appends optimistically, up to the in-flight window.
    Replicate,
}

/// Replication progress of one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Highest index known to be durable on the follower and matching.
    pub match_index: LogIndex,
    /// Next index to send.
    pub next_index: LogIndex,
    /// The sending mode.
    pub state: ReplicationState,
    /// In probe state: an append is outstanding, so send no more until an
    /// answer or the next heartbeat.
    pub probe_in_flight: bool,
    /// Last index of each append in flight, oldest first (replicate state).
    pub in_flight: VecDeque<LogIndex>,
    /// Heard from the follower since the last CheckQuorum round.
    pub recently_active: bool,
    /// Highest heartbeat round the follower has echoed in this term.
    pub acknowledged_round: u64,
    /// A snapshot on its way to the follower: its index and the heartbeat
    /// round it was sent in. No appends go out until it is answered.
    pub snapshot_in_flight: Option<(LogIndex, u64)>,
}

impl Progress {
    /// Progress of a follower the leader knows nothing about yet.
    pub(crate) fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ReplicationState::Probe,
            probe_in_flight: false,
            in_flight: VecDeque::new(),
            recently_active: true,
            acknowledged_round: 0,
            snapshot_in_flight: None,
        }
    }

    /// Whether the leader may send another append carrying entries now.
    pub(crate) fn can_send(&self, max_in_flight: usize) -> bool {
        if self.snapshot_in_flight.is_some() {
            return false;
        }
        match self.state {
            ReplicationState::Probe => !self.probe_in_flight,
            ReplicationState::Replicate => self.in_flight.len() < max_in_flight,
        }
    }

    /// Records an append that carried entries up to `last_index`.
    pub(crate) fn record_sent(&mut self, last_index: LogIndex) {
        match self.state {
            ReplicationState::Probe => self.probe_in_flight = true,
            ReplicationState::Replicate => {
                self.next_index = last_index.next();
                self.in_flight.push_back(last_index);
            }
        }
    }

    /// The follower holds a matching log up to `index`. Returns whether the
    /// match index moved.
    pub(crate) fn record_match(&mut self, index: LogIndex) -> bool {
        self.probe_in_flight = false;
        while self.in_flight.front().is_some_and(|last| *last <= index) {
            self.in_flight.pop_front();
        }
        if self.state == ReplicationState::Probe {
            self.become_replicate(index);
        }
        if index > self.match_index {
            self.match_index = index;
            self.next_index = self.next_index.max(index.next());
            true
        } else {
            false
        }
    }

    /// Switches to optimistic streaming after a successful probe.
    fn become_replicate(&mut self, matched: LogIndex) {
        self.state = ReplicationState::Replicate;
        self.next_index = matched.max(self.match_index).next();
        self.in_flight.clear();
    }

    /// Forgets a snapshot sent `retry_rounds` heartbeat rounds or more
    /// before `round` without an answer (the transfer or its answer was
    /// lost), and probes again, so that it is sent anew if still needed.
    pub(crate) fn expire_lost_snapshot(&mut self, round: u64, retry_rounds: u64) {
        if let Some((_, sent_round)) = self.snapshot_in_flight {
            if round >= sent_round + retry_rounds {
                self.snapshot_in_flight = None;
                self.become_probe(self.next_index);
            }
        }
    }

    /// The follower rejected an append: go back to probing at `next_index`.
    pub(crate) fn become_probe(&mut self, next_index: LogIndex) {
        self.state = ReplicationState::Probe;
        self.probe_in_flight = false;
        self.in_flight.clear();
        self.next_index = next_index.max(self.match_index.next());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sends_one_at_a_time() {
        let mut progress = Progress::new(LogIndex(5));
        assert!(progress.can_send(4));
        progress.record_sent(LogIndex(7));
        assert!(!progress.can_send(4));
        assert_eq!(progress.next_index, LogIndex(5));
    }

    #[test]
    fn successful_probe_starts_streaming_with_a_bounded_window() {
        let mut progress = Progress::new(LogIndex(5));
        progress.record_sent(LogIndex(7));
        assert!(progress.record_match(LogIndex(7)));
        assert_eq!(progress.state, ReplicationState::Replicate);
        assert_eq!(progress.next_index, LogIndex(8));
        progress.record_sent(LogIndex(9));
        progress.record_sent(LogIndex(11));
        assert!(!progress.can_send(2));
        assert_eq!(progress.next_index, LogIndex(12));
        progress.record_match(LogIndex(9));
        assert!(progress.can_send(2));
    }

    #[test]
    fn rejection_never_moves_below_match() {
        let mut progress = Progress::new(LogIndex(1));
        progress.record_match(LogIndex(6));
        progress.become_probe(LogIndex(3));
        assert_eq!(progress.next_index, LogIndex(7));
        assert_eq!(progress.state, ReplicationState::Probe);
    }
}
