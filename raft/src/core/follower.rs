//! Followers accept the leader's entries (Raft paper §5.3).

use super::message::{AppendEntries, AppendEntriesResponse, ConflictHint, Message, MessageBody};
use super::output::Output;
use super::{RaftCore, Role};
use crate::types::{LogIndex, NodeId};

impl RaftCore {
    /// Handles an append from the leader of the current term.
    pub(super) fn handle_append(&mut self, from: NodeId, mut append: AppendEntries) {
        match self.role() {
            Role::Leader => {
                // Two leaders in one term would break Election Safety; this
                // cannot happen unless votes were lost from storage.
                tracing::error!(node = %self.id(), other = %from, term = %self.hard_state.term,
                    "append from another leader of the same term; ignoring");
                return;
            }
            Role::Candidate | Role::PreCandidate | Role::Follower => {
                if self.role() != Role::Follower || self.leader != Some(from) {
                    let term = self.hard_state.term;
                    self.become_follower(term, Some(from));
                }
            }
        }
        self.election_elapsed = 0;

        // Entries up to our commit index are committed, so they match the
        // leader's (Leader Completeness): skip them.
        let committed = self.log.committed();
        if append.prev_log_index < committed {
            let skip = (committed.0 - append.prev_log_index.0) as usize;
            append.entries.advance(skip);
            append.prev_log_index = committed;
            append.prev_log_term = self
                .log
                .term_at(committed)
                .expect("the committed entry is in the log");
        }

        let response = match self.log.term_at(append.prev_log_index) {
            None => self.rejection(
                &append,
                ConflictHint::LogTooShort {
                    last_index: self.log.last_index(),
                },
            ),
            Some(term) if term != append.prev_log_term => {
                let first_index = self.log.first_index_of_term_run(append.prev_log_index);
                self.rejection(&append, ConflictHint::TermMismatch { term, first_index })
            }
            Some(_) => {
                let last_new = LogIndex(append.prev_log_index.0 + append.entries.len() as u64);
                let written = self.log.merge(append.entries);
                if let Some(first) = written.first() {
                    // Acknowledgements of entries that were just replaced
                    // must never be sent.
                    let replaced_from = first.index;
                    self.pending_acknowledgements
                        .retain(|(required, _)| *required < replaced_from);
                    self.outbox.push(Output::AppendLog { entries: written });
                }
                // Raft paper Figure 2: commitIndex = min(leaderCommit, index
                // of last new entry).
                self.log.commit_to(append.leader_commit.min(last_new));
                AppendEntriesResponse {
                    success: true,
                    match_index: last_new,
                    rejected_index: LogIndex(0),
                    conflict: None,
                    last_log_index: self.log.last_index(),
                    round: append.round,
                }
            }
        };
        let message = Message {
            from: self.id(),
            to: from,
            term: self.hard_state.term,
            body: MessageBody::AppendEntriesResponse(response),
        };
        if response.success && response.match_index > self.log.persisted() {
            // An acknowledgement promises durability: hold it until the
            // entries are on disk.
            self.pending_acknowledgements
                .push_back((response.match_index, message));
        } else {
            self.outbox.push(Output::Send(message));
        }
    }

    fn rejection(&self, append: &AppendEntries, hint: ConflictHint) -> AppendEntriesResponse {
        AppendEntriesResponse {
            success: false,
            match_index: LogIndex(0),
            rejected_index: append.prev_log_index,
            conflict: Some(hint),
            last_log_index: self.log.last_index(),
            round: append.round,
        }
    }
}
