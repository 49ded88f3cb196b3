//! The leader: accepting proposals, replicating, committing, heartbeats and
//! CheckQuorum (Raft paper §5.3, §5.4.2; dissertation §6.2).

use std::ops::Bound;

use bytes::Bytes;

use super::message::{AppendEntries, AppendEntriesResponse, ConflictHint, MessageBody};
use super::output::Output;
use super::snapshot::SNAPSHOT_RETRY_ROUNDS;
use super::validation::Refusal;
use super::{LeaderState, RaftCore, Role};
use crate::entries::Entries;
use crate::error::RequestError;
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, RequestId};

impl RaftCore {
    pub(super) fn tick_leader(&mut self) {
        self.tick_transfer();
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
        if !self.membership().is_quorum(&active) {
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
        if let Some(error) = self.transfer_refusal() {
            self.outputs
                .push(Output::RequestFailed { request_id, error });
            return;
        }
        if !self.membership().is_voter(self.id()) {
            // This leader has removed itself and steps down once that
            // commits; a new leader takes proposals. Taking none meanwhile
            // leaves its log ending at its removal, so the voters that
            // acknowledge the removal hold the whole log and one can take
            // over at once (`step_down_if_removed`).
            let error = RequestError::NotLeader { leader_hint: None };
            self.outputs
                .push(Output::RequestFailed { request_id, error });
            return;
        }
        let index = self.log.last_index().next();
        let term = self.hard_state.term;
        let append_position = self.append_as_leader(Entry {
            term,
            index,
            payload: EntryPayload::Command(command),
        });
        self.outputs.push(Output::ProposalAccepted {
            request_id,
            index,
            term,
        });
        self.proposal_append = Some((append_position, self.outputs.len()));
        self.leader_state_mut()
            .proposals
            .push_back((index, request_id));
    }

    /// Appends an entry this leader created; followers receive it at the
    /// next flush, so that proposals arriving together share messages.
    /// Returns the position in `outputs` of the `AppendLog` that will hold
    /// it.
    pub(super) fn append_as_leader(&mut self, entry: Entry) -> usize {
        // Join the unsealed entries' append when nothing but acceptances of
        // proposals came after it, so storage sees one write per batch.
        let extendable = match (self.unsealed_append, self.proposal_append) {
            (Some(position), Some((proposals_position, outputs_len)))
                if proposals_position == position && outputs_len == self.outputs.len() =>
            {
                Some(position)
            }
            (Some(position), _) if position + 1 == self.outputs.len() => Some(position),
            _ => None,
        };
        let position = extendable.unwrap_or_else(|| {
            self.seal_appends();
            self.outputs.push(Output::AppendLog {
                entries: Entries::new(),
            });
            let position = self.outputs.len() - 1;
            self.unsealed_append = Some(position);
            position
        });
        self.log.push(entry);
        self.leader_state_mut().append_pending = true;
        position
    }

    /// Makes the entries appended since the last call one shared run and
    /// puts it in the `AppendLog` waiting for it. Done before entries are
    /// sent or outputs taken, and when leadership ends.
    #[inline]
    pub(super) fn seal_appends(&mut self) {
        // Called before every send: nearly always there is nothing to seal.
        let Some(position) = self.unsealed_append.take() else {
            return;
        };
        let run = self
            .log
            .seal()
            .expect("an AppendLog waits only for unsealed entries");
        self.outputs[position] = Output::AppendLog { entries: run };
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
        let progress = &self.leader_state.as_ref()?.progress;
        let after = match peer {
            Some(peer) => (Bound::Excluded(peer), Bound::Unbounded),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        progress.range(after).next().map(|(peer, _)| *peer)
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
        self.leader_state_mut().round += 1;
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
        self.seal_appends();
        let max_in_flight = self.config.max_inflight_messages;
        let max_count = self.config.max_entries_per_message;
        let max_bytes = self.config.max_message_bytes;
        let leader_commit = self.log.committed();
        let state = self.leader_state.as_mut().expect("leader has leader state");
        let round = state.round;
        let progress = state.progress.get_mut(&peer).expect("peer has progress");
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
        let round = self
            .leader_state
            .as_ref()
            .expect("leader has leader state")
            .round;
        let prev_log_index = self.log.base_index();
        let prev_log_term = self
            .log
            .term_at(prev_log_index)
            .expect("the base term is known");
        let leader_commit = self.log.committed();
        self.send(
            peer,
            MessageBody::AppendEntries(AppendEntries {
                prev_log_index,
                prev_log_term,
                entries: Entries::new(),
                leader_commit,
                round,
            }),
        );
    }

    pub(super) fn handle_append_response(&mut self, from: NodeId, response: AppendEntriesResponse) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let state = self.leader_state.as_mut().expect("leader has leader state");
        // What no answer to this leader's own appends can say.
        let refusal = if response.round > state.round {
            Some(Refusal::RoundNotSent)
        } else if response.success && response.match_index > last_index {
            Some(Refusal::MatchPastLog)
        } else if !response.success && response.rejected_index > last_index {
            Some(Refusal::RejectionPastLog)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.refuse(from, refusal);
            return;
        }
        let Some(progress) = state.progress.get_mut(&from) else {
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
            if self.transfer_target() == Some(from) {
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

    /// Raft paper §5.3 and §5.4.2: commit the highest index stored on a
    /// majority, but only when that entry is of the current term (Figure 8).
    pub(super) fn advance_commit(&mut self) {
        let state = self.leader_state.as_ref().expect("leader has leader state");
        let own_id = self.config.id;
        let own_match = self.log.persisted();
        let quorum_index = self.membership().committed_index(|node| {
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

#[cfg(test)]
mod tests {
    use crate::{
        Config, Entry, Input, LogIndex, NodeId, Output, RaftCore, RequestId, RestoredState, Role,
    };

    /// A one-node leader whose no-op entry is durable and applied.
    fn single_node_leader() -> RaftCore {
        let config = Config::new(NodeId(1));
        let mut core = RaftCore::new(config, RestoredState::new_cluster([NodeId(1)]), 3).unwrap();
        while core.role() != Role::Leader {
            core.step(Input::Tick);
        }
        let mut outputs = core.take_outputs();
        while !outputs.is_empty() {
            for output in outputs {
                match output {
                    Output::AppendLog { entries } => {
                        let last = entries.last().unwrap();
                        core.step(Input::LogPersisted {
                            index: last.index,
                            term: last.term,
                        });
                    }
                    Output::Apply { entries } => {
                        core.step(Input::Applied {
                            index: entries.last().unwrap().index,
                        });
                    }
                    _ => {}
                }
            }
            outputs = core.take_outputs();
        }
        core
    }

    fn propose(core: &mut RaftCore, request_id: u64) {
        core.step(Input::Propose {
            request_id: RequestId(request_id),
            command: "x".into(),
        });
    }

    fn appended_indexes(output: &Output) -> Vec<u64> {
        match output {
            Output::AppendLog { entries } => {
                entries.iter().map(|entry: &Entry| entry.index.0).collect()
            }
            other => panic!("expected an AppendLog, got {other:?}"),
        }
    }

    #[test]
    fn proposals_stepped_together_share_one_append() {
        let mut core = single_node_leader();
        let term = core.term();
        for request_id in 1..=3 {
            propose(&mut core, request_id);
        }
        let outputs = core.take_outputs();
        assert_eq!(outputs.len(), 4, "{outputs:?}");
        assert_eq!(appended_indexes(&outputs[0]), vec![2, 3, 4]);
        for (offset, output) in outputs[1..].iter().enumerate() {
            let expected = Output::ProposalAccepted {
                request_id: RequestId(offset as u64 + 1),
                index: LogIndex(offset as u64 + 2),
                term,
            };
            assert_eq!(*output, expected);
        }
    }

    #[test]
    fn an_append_already_taken_is_never_extended() {
        let mut core = single_node_leader();
        propose(&mut core, 1);
        assert_eq!(appended_indexes(&core.take_outputs()[0]), vec![2]);
        propose(&mut core, 2);
        assert_eq!(appended_indexes(&core.take_outputs()[0]), vec![3]);
    }
}
