//! A leader replicating its log (Raft paper §5.3): appends and heartbeats
//! to each peer within its in-flight window, and what the peers' answers
//! do to their progress and to the commit index.

use std::ops::Bound;

use super::leader::Leader;
use super::message::{AppendEntries, AppendEntriesResponse, ConflictHint, MessageBody};
use super::snapshot::SNAPSHOT_RETRY_ROUNDS;
use super::validation::Refusal;
use super::RaftCore;
use crate::entries::Entries;
use crate::types::NodeId;

impl RaftCore {
    /// A peer answered an append. Only a leader sent appends; at any other
    /// role the answer is stale and dropped.
    pub(super) fn handle_append_response(&mut self, from: NodeId, response: AppendEntriesResponse) {
        if let Some(mut leader) = self.leading() {
            leader.handle_append_response(from, response);
        }
    }

    /// Sends what the last inputs made necessary, if this node leads.
    pub(super) fn flush_leader_messages(&mut self) {
        if let Some(mut leader) = self.leading() {
            leader.flush();
        }
    }
}

impl Leader<'_> {
    /// Sends what the last inputs made necessary: appends carrying new
    /// entries or commit, and heartbeats for reads waiting on confirmation.
    pub(super) fn flush(&mut self) {
        if self.state.heartbeat_pending {
            self.state.heartbeat_pending = false;
            self.state.append_pending = false;
            self.send_heartbeats();
            self.confirm_reads();
            return;
        }
        if self.state.append_pending {
            self.state.append_pending = false;
            let mut next = self.peer_after(None);
            while let Some(peer) = next {
                self.send_entries(peer);
                next = self.peer_after(Some(peer));
            }
        }
    }

    /// The peer this leader replicates to after `peer` in id order (the
    /// first with `None`): a walk over the peers that allocates nothing
    /// and leaves `self` free to send.
    fn peer_after(&self, peer: Option<NodeId>) -> Option<NodeId> {
        let after = match peer {
            Some(peer) => (Bound::Excluded(peer), Bound::Unbounded),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        self.state
            .progress
            .range(after)
            .next()
            .map(|(peer, _)| *peer)
    }

    /// Sends `peer` every batch it needs next, as far as the in-flight
    /// window allows (one in probe state).
    pub(super) fn send_entries(&mut self, peer: NodeId) {
        while self.send_append(peer, false) {}
    }

    /// Starts a new round and sends every peer an append (empty unless the
    /// peer is waiting for entries): the heartbeat that keeps followers from
    /// starting elections and confirms leadership for reads.
    pub(super) fn send_heartbeats(&mut self) {
        self.state.round += 1;
        let mut next = self.peer_after(None);
        while let Some(peer) = next {
            self.send_append(peer, true);
            next = self.peer_after(Some(peer));
        }
    }

    /// Sends `peer` the next batch of entries it needs, if the replication
    /// window allows; with `heartbeat`, sends an empty append even when not.
    /// Returns whether entries were sent.
    fn send_append(&mut self, peer: NodeId, heartbeat: bool) -> bool {
        self.outbox.seal(self.log);
        let max_in_flight = self.config.max_inflight_messages;
        let max_count = self.config.max_entries_per_message;
        let max_bytes = self.config.max_message_bytes;
        let leader_commit = self.log.committed();
        let round = self.state.round;
        let progress = self.state.progress_of(peer);
        progress.expire_lost_snapshot(round, SNAPSHOT_RETRY_ROUNDS);
        if progress.next_index.previous() < self.log.base_index() {
            // The entries the follower needs are compacted: it gets the
            // snapshot; a heartbeat still goes out at the log's start.
            if heartbeat {
                self.send_heartbeat_at_base(peer);
            }
            self.send_snapshot(peer);
            return false;
        }
        let entries = if progress.can_send(max_in_flight) {
            self.log
                .entries_from(progress.next_index, max_count, max_bytes)
        } else {
            Entries::new()
        };
        if entries.is_empty() && !heartbeat {
            return false;
        }
        let sent_entries = !entries.is_empty();
        let prev_log_index = progress.next_index.previous();
        if let Some(last) = entries.last() {
            progress.record_sent(last.index);
        }
        let prev_log_term = self
            .log
            .term_at(prev_log_index)
            .expect("the leader holds every entry a follower needs");
        self.send(
            peer,
            MessageBody::AppendEntries(AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                round,
            }),
        );
        sent_entries
    }

    /// A heartbeat for a follower that is waiting for a snapshot.
    fn send_heartbeat_at_base(&mut self, peer: NodeId) {
        let prev_log_index = self.log.base_index();
        let prev_log_term = self
            .log
            .term_at(prev_log_index)
            .expect("the base term is known");
        let append = AppendEntries {
            prev_log_index,
            prev_log_term,
            entries: Entries::new(),
            leader_commit: self.log.committed(),
            round: self.state.round,
        };
        self.send(peer, MessageBody::AppendEntries(append));
    }

    fn handle_append_response(&mut self, from: NodeId, response: AppendEntriesResponse) {
        let last_index = self.log.last_index();
        // What no answer to this leader's own appends can say.
        let refusal = if response.round > self.state.round {
            Some(Refusal::RoundNotSent)
        } else if response.success && response.match_index > last_index {
            Some(Refusal::MatchPastLog)
        } else if !response.success && response.rejected_index > last_index {
            Some(Refusal::RejectionPastLog)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.outbox.refuse(self.config.id, from, refusal);
            return;
        }
        let Some(progress) = self.state.progress.get_mut(&from) else {
            return;
        };
        progress.recently_active = true;
        progress.acknowledged_round = progress.acknowledged_round.max(response.round);
        if response.success {
            if progress.snapshot_in_flight.is_some()
                && response.match_index >= self.log.base_index()
            {
                // The follower caught up from the log after all: the
                // snapshot is not needed.
                progress.snapshot_in_flight = None;
            }
            // Only an index past the commit index can move it.
            if progress.record_match(response.match_index)
                && response.match_index > self.log.committed()
            {
                self.advance_commit();
            }
            self.send_entries(from);
            if self.state.transfer_target() == Some(from) {
                self.send_timeout_now_if_caught_up();
            }
        } else if progress.snapshot_in_flight.is_some() {
            // Waiting for the snapshot's answer: appends cannot help yet.
        } else if response.rejected_index > progress.match_index {
            let next_index = match response.conflict {
                Some(ConflictHint::LogTooShort { last_index }) => last_index.next(),
                Some(ConflictHint::TermMismatch { term, first_index }) => {
                    // Skip the follower's whole conflicting term: if we have
                    // entries of that term, continue after our last one;
                    // otherwise jump before the follower's run of it.
                    match self.log.last_index_of_term(term) {
                        Some(last) => last.next(),
                        None => first_index,
                    }
                }
                None => response.rejected_index,
            };
            let next_index = next_index.min(response.rejected_index);
            progress.become_probe(next_index);
            tracing::trace!(node = %self.id(), follower = %from, next = %next_index, "append rejected; probing");
            self.send_entries(from);
        }
        self.confirm_reads();
    }
}
