//! The leader: accepting proposals, replicating, committing, heartbeats and
//! CheckQuorum (Raft paper §5.3, §5.4.2; dissertation §6.2).

use bytes::Bytes;

use super::message::{AppendEntries, AppendEntriesResponse, ConflictHint, MessageBody};
use super::output::Output;
use super::{LeaderState, RaftCore, Role};
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, RequestId};

impl RaftCore {
    pub(super) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.send_heartbeats();
        }
        if !self.config.check_quorum {
            return;
        }
        let state = self.leader_state.as_mut().expect("leader has leader state");
        state.check_quorum_elapsed += 1;
        if state.check_quorum_elapsed < self.config.election_ticks_min {
            return;
        }
        state.check_quorum_elapsed = 0;
        let mut active = vec![self.config.id];
        for (node, progress) in state.progress.iter_mut() {
            if progress.recently_active {
                active.push(*node);
            }
            progress.recently_active = false;
        }
        if !self.membership.is_quorum(&active) {
            tracing::info!(node = %self.id(), term = %self.hard_state.term,
                "stepping down: no contact with a quorum for an election timeout");
            let term = self.hard_state.term;
            self.become_follower(term, None);
        }
    }

    pub(super) fn propose(&mut self, request_id: RequestId, command: Bytes) {
        if self.role != Role::Leader {
            let error = self.not_leader_error();
            self.outputs
                .push(Output::RequestFailed { request_id, error });
            return;
        }
        let index = self.log.last_index().next();
        let term = self.hard_state.term;
        self.append_as_leader(Entry {
            term,
            index,
            payload: EntryPayload::Command(command),
        });
        self.outputs.push(Output::ProposalAccepted {
            request_id,
            index,
            term,
        });
        self.leader_state_mut()
            .proposals
            .push_back((index, request_id));
    }

    /// Appends an entry this leader created; followers receive it at the
    /// next flush, so that proposals arriving together share messages.
    pub(super) fn append_as_leader(&mut self, entry: Entry) {
        self.log.push(entry.clone());
        // Merge with a directly preceding append of this step's outputs, so
        // storage sees one write per batch.
        match self.outputs.last_mut() {
            Some(Output::AppendLog { entries })
                if entries.last().is_some_and(|last| last.index.next() == entry.index) =>
            {
                entries.push(entry)
            }
            _ => self.outputs.push(Output::AppendLog {
                entries: vec![entry],
            }),
        }
        self.leader_state_mut().append_pending = true;
    }

    fn leader_state_mut(&mut self) -> &mut LeaderState {
        self.leader_state.as_mut().expect("leader has leader state")
    }

    /// Sends what the last inputs made necessary: appends carrying new
    /// entries or commit, and heartbeats for reads waiting on confirmation.
    pub(super) fn flush_leader_messages(&mut self) {
        let Some(state) = self.leader_state.as_mut() else {
            return;
        };
        if state.heartbeat_pending {
            state.heartbeat_pending = false;
            state.append_pending = false;
            self.send_heartbeats();
            self.confirm_reads();
            return;
        }
        if state.append_pending {
            state.append_pending = false;
            let peers: Vec<NodeId> = state.progress.keys().copied().collect();
            for peer in peers {
                self.send_append(peer, false);
            }
        }
    }

    /// Starts a new round and sends every peer an append (empty unless the
    /// peer is waiting for entries): the heartbeat that keeps followers from
    /// starting elections and confirms leadership for reads.
    pub(super) fn send_heartbeats(&mut self) {
        let state = self.leader_state_mut();
        state.round += 1;
        let peers: Vec<NodeId> = state.progress.keys().copied().collect();
        for peer in peers {
            self.send_append(peer, true);
        }
    }

    /// Sends `peer` the entries it needs next, if the replication window
    /// allows; with `heartbeat`, sends an empty append even when not.
    fn send_append(&mut self, peer: NodeId, heartbeat: bool) {
        let max_in_flight = self.config.max_inflight_messages;
        let max_count = self.config.max_entries_per_message;
        let max_bytes = self.config.max_message_bytes;
        let leader_commit = self.log.committed();
        let state = self.leader_state.as_mut().expect("leader has leader state");
        let round = state.round;
        let progress = state.progress.get_mut(&peer).expect("peer has progress");
        let entries = if progress.can_send(max_in_flight) {
            self.log
                .entries_from(progress.next_index, max_count, max_bytes)
        } else {
            Vec::new()
        };
        if entries.is_empty() && !heartbeat {
            return;
        }
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
    }

    pub(super) fn handle_append_response(&mut self, from: NodeId, response: AppendEntriesResponse) {
        if self.role != Role::Leader {
            return;
        }
        let state = self.leader_state.as_mut().expect("leader has leader state");
        let Some(progress) = state.progress.get_mut(&from) else {
            return;
        };
        progress.recently_active = true;
        progress.acknowledged_round = progress.acknowledged_round.max(response.round);
        if response.success {
            if progress.record_match(response.match_index) {
                self.advance_commit();
            }
            self.send_append(from, false);
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
            self.send_append(from, false);
        }
        self.confirm_reads();
    }

    /// Raft paper §5.3 and §5.4.2: commit the highest index stored on a
    /// majority, but only when that entry is of the current term (Figure 8).
    pub(super) fn advance_commit(&mut self) {
        let state = self.leader_state.as_ref().expect("leader has leader state");
        let own_id = self.config.id;
        let own_match = self.log.persisted();
        let quorum_index = self.membership.committed_index(|node| {
            if node == own_id {
                own_match
            } else {
                state
                    .progress
                    .get(&node)
                    .map_or(LogIndex(0), |progress| progress.match_index)
            }
        });
        let current_term_entry = self.log.term_at(quorum_index) == Some(self.hard_state.term);
        #[cfg(feature = "bug-injection")]
        let current_term_entry =
            current_term_entry || self.config.bug_injection.commit_previous_term_by_counting;
        if current_term_entry && self.log.commit_to(quorum_index) {
            self.on_commit_advanced();
        }
    }
}
