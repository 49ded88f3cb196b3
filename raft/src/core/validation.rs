//! What a peer message may claim, checked before the core acts on it.
//!
//! Every message comes from the network, and the network is hostile: a
//! buggy peer, a corrupted frame or a forger. [`validate`] holds a message
//! to the rules any message of a correct peer keeps, whatever the
//! receiver's state: terms and indexes far from overflow, entries numbered
//! one after another from `prev_log_index + 1`, terms that never decrease
//! along a log and never exceed the sender's term. The handlers then check
//! what depends on the receiver's state (an acknowledgement of an entry
//! the leader does not have, an answer to a heartbeat round it never
//! started, an entry that would overwrite a committed one). Either way, a
//! message that breaks a rule is dropped and reported as
//! [`crate::Output::MessageRefused`]: it changes nothing, and no assertion
//! inside the core can be reached by one.

use std::fmt;

use super::message::{ConflictHint, Message, MessageBody};
use crate::types::{LogIndex, Term};

/// The largest term or log index a message may carry, exclusive: 2^62. A
/// cluster that elected a leader every microsecond would need 146,000
/// years to reach it, and arithmetic on values below it never wraps.
pub const MESSAGE_NUMBER_LIMIT: u64 = 1 << 62;

/// Why a message was refused. [`Refusal::reason`] names each kind in a
/// few words, fit for a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// A term at or above [`MESSAGE_NUMBER_LIMIT`].
    TermTooLarge,
    /// A log index at or above [`MESSAGE_NUMBER_LIMIT`].
    IndexTooLarge,
    /// No sender (node 0), or a message from this node to itself.
    BadSender,
    /// Entries that do not follow each other from `prev_log_index + 1`.
    EntriesNotContiguous,
    /// Entry terms that decrease along the batch, or start below the term
    /// of the entry before them.
    EntryTermsDecrease,
    /// An entry of a later term than its sender's.
    EntryTermAboveSenderTerm,
    /// A candidate whose last entry is of a later term than its own.
    LogAheadOfTerm,
    /// A snapshot of a later term than its sender's, or without voters.
    BadSnapshot,
    /// A conflict hint that contradicts the rejection it comes with.
    BadConflictHint,
    /// An acknowledgement of entries beyond the leader's log.
    MatchPastLog,
    /// A rejection of an append the leader cannot have sent.
    RejectionPastLog,
    /// An answer to a heartbeat round the leader has not started.
    RoundNotSent,
    /// Entries that would replace committed ones: no leader sends them.
    ConflictsWithCommitted,
}

impl Refusal {
    /// The kind of refusal, as a metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TermTooLarge => "term_too_large",
            Refusal::IndexTooLarge => "index_too_large",
            Refusal::BadSender => "bad_sender",
            Refusal::EntriesNotContiguous => "entries_not_contiguous",
            Refusal::EntryTermsDecrease => "entry_terms_decrease",
            Refusal::EntryTermAboveSenderTerm => "entry_term_above_sender_term",
            Refusal::LogAheadOfTerm => "log_ahead_of_term",
            Refusal::BadSnapshot => "bad_snapshot",
            Refusal::BadConflictHint => "bad_conflict_hint",
            Refusal::MatchPastLog => "match_past_log",
            Refusal::RejectionPastLog => "rejection_past_log",
            Refusal::RoundNotSent => "round_not_sent",
            Refusal::ConflictsWithCommitted => "conflicts_with_committed",
        }
    }

    /// Every kind, for metrics that list each label from the start.
    pub const ALL: [Refusal; 13] = [
        Refusal::TermTooLarge,
        Refusal::IndexTooLarge,
        Refusal::BadSender,
        Refusal::EntriesNotContiguous,
        Refusal::EntryTermsDecrease,
        Refusal::EntryTermAboveSenderTerm,
        Refusal::LogAheadOfTerm,
        Refusal::BadSnapshot,
        Refusal::BadConflictHint,
        Refusal::MatchPastLog,
        Refusal::RejectionPastLog,
        Refusal::RoundNotSent,
        Refusal::ConflictsWithCommitted,
    ];
}

impl fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.reason())
    }
}

fn term(term: Term) -> Result<(), Refusal> {
    if term.0 < MESSAGE_NUMBER_LIMIT {
        Ok(())
    } else {
        Err(Refusal::TermTooLarge)
    }
}

fn index(index: LogIndex) -> Result<(), Refusal> {
    if index.0 < MESSAGE_NUMBER_LIMIT {
        Ok(())
    } else {
        Err(Refusal::IndexTooLarge)
    }
}

/// Checks the rules every message of a correct peer keeps, whatever the
/// receiver's state.
pub fn validate(message: &Message) -> Result<(), Refusal> {
    if message.from.0 == 0 || message.from == message.to {
        return Err(Refusal::BadSender);
    }
    term(message.term)?;
    match &message.body {
        MessageBody::RequestVote(request) => {
            index(request.last_log_index)?;
            term(request.last_log_term)?;
            if request.last_log_term > message.term {
                return Err(Refusal::LogAheadOfTerm);
            }
        }
        MessageBody::RequestVoteResponse(_) | MessageBody::TimeoutNow => {}
        MessageBody::AppendEntries(append) => {
            index(append.prev_log_index)?;
            term(append.prev_log_term)?;
            index(append.leader_commit)?;
            if append.prev_log_term > message.term {
                return Err(Refusal::EntryTermAboveSenderTerm);
            }
            let mut previous_term = append.prev_log_term;
            for (offset, entry) in append.entries.iter().enumerate() {
                index(entry.index)?;
                term(entry.term)?;
                // Both below the limit, so neither sum wraps.
                if entry.index.0 != append.prev_log_index.0 + 1 + offset as u64 {
                    return Err(Refusal::EntriesNotContiguous);
                }
                if entry.term < previous_term {
                    return Err(Refusal::EntryTermsDecrease);
                }
                if entry.term > message.term {
                    return Err(Refusal::EntryTermAboveSenderTerm);
                }
                previous_term = entry.term;
            }
        }
        MessageBody::AppendEntriesResponse(response) => {
            index(response.match_index)?;
            index(response.rejected_index)?;
            index(response.last_log_index)?;
            match response.conflict {
                Some(ConflictHint::LogTooShort { last_index }) => {
                    index(last_index)?;
                    if last_index >= response.rejected_index {
                        return Err(Refusal::BadConflictHint);
                    }
                }
                Some(ConflictHint::TermMismatch {
                    term: conflict_term,
                    first_index,
                }) => {
                    term(conflict_term)?;
                    index(first_index)?;
                    if first_index > response.rejected_index || first_index.0 == 0 {
                        return Err(Refusal::BadConflictHint);
                    }
                }
                None => {}
            }
        }
        MessageBody::InstallSnapshot(metadata) => {
            index(metadata.index)?;
            term(metadata.term)?;
            if metadata.term > message.term || metadata.membership.voters.is_empty() {
                return Err(Refusal::BadSnapshot);
            }
        }
        MessageBody::InstallSnapshotResponse(response) => index(response.last_log_index)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::message::{
        AppendEntries, AppendEntriesResponse, InstallSnapshotResponse, RequestVote,
    };
    use crate::core::quorum::Membership;
    use crate::core::snapshot::SnapshotMetadata;
    use crate::types::{Entry, EntryPayload, NodeId};

    fn message(term: u64, body: MessageBody) -> Message {
        Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(term),
            body,
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            payload: EntryPayload::Noop,
        }
    }

    fn append(prev: (u64, u64), entries: Vec<Entry>) -> MessageBody {
        MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(prev.0),
            prev_log_term: Term(prev.1),
            entries: entries.into(),
            leader_commit: LogIndex(0),
            round: 0,
        })
    }

    fn rejection(rejected: u64, conflict: Option<ConflictHint>) -> MessageBody {
        MessageBody::AppendEntriesResponse(AppendEntriesResponse {
            success: false,
            match_index: LogIndex(0),
            rejected_index: LogIndex(rejected),
            conflict,
            last_log_index: LogIndex(3),
            round: 0,
        })
    }

    #[test]
    fn a_correct_append_passes() {
        let body = append((4, 2), vec![entry(5, 2), entry(6, 3), entry(7, 3)]);
        assert_eq!(validate(&message(3, body)), Ok(()));
    }

    #[test]
    fn entries_must_follow_the_previous_index_one_by_one() {
        // The forged append that once panicked a follower: an entry whose
        // index disagrees with prev_log_index.
        let gap = append((4, 2), vec![entry(6, 2)]);
        assert_eq!(
            validate(&message(3, gap)),
            Err(Refusal::EntriesNotContiguous)
        );
        let repeat = append((4, 2), vec![entry(5, 2), entry(5, 2)]);
        assert_eq!(
            validate(&message(3, repeat)),
            Err(Refusal::EntriesNotContiguous)
        );
    }

    #[test]
    fn entry_terms_never_decrease_nor_pass_the_senders_term() {
        let decreasing = append((4, 2), vec![entry(5, 3), entry(6, 2)]);
        assert_eq!(
            validate(&message(3, decreasing)),
            Err(Refusal::EntryTermsDecrease)
        );
        let below_previous = append((4, 3), vec![entry(5, 2)]);
        assert_eq!(
            validate(&message(3, below_previous)),
            Err(Refusal::EntryTermsDecrease)
        );
        let ahead = append((4, 2), vec![entry(5, 4)]);
        assert_eq!(
            validate(&message(3, ahead)),
            Err(Refusal::EntryTermAboveSenderTerm)
        );
        let previous_ahead = append((4, 5), vec![]);
        assert_eq!(
            validate(&message(3, previous_ahead)),
            Err(Refusal::EntryTermAboveSenderTerm)
        );
    }

    #[test]
    fn terms_and_indexes_stay_far_from_overflow() {
        // The forged vote request that once left a cluster at term 2^64 - 1
        // for good.
        let vote = MessageBody::RequestVote(RequestVote {
            pre_vote: false,
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
            leadership_transfer: false,
        });
        assert_eq!(
            validate(&message(u64::MAX, vote.clone())),
            Err(Refusal::TermTooLarge)
        );
        assert_eq!(
            validate(&message(MESSAGE_NUMBER_LIMIT, vote.clone())),
            Err(Refusal::TermTooLarge)
        );
        assert_eq!(validate(&message(MESSAGE_NUMBER_LIMIT - 1, vote)), Ok(()));
        let far = append((MESSAGE_NUMBER_LIMIT, 1), vec![]);
        assert_eq!(validate(&message(3, far)), Err(Refusal::IndexTooLarge));
        let far_entry = append(
            (MESSAGE_NUMBER_LIMIT - 1, 1),
            vec![entry(MESSAGE_NUMBER_LIMIT, 1)],
        );
        assert_eq!(
            validate(&message(3, far_entry)),
            Err(Refusal::IndexTooLarge)
        );
        let answer = MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
            accepted: true,
            last_log_index: LogIndex(u64::MAX),
        });
        assert_eq!(validate(&message(3, answer)), Err(Refusal::IndexTooLarge));
    }

    #[test]
    fn a_candidate_log_cannot_be_ahead_of_its_term() {
        let vote = MessageBody::RequestVote(RequestVote {
            pre_vote: true,
            last_log_index: LogIndex(9),
            last_log_term: Term(5),
            leadership_transfer: false,
        });
        assert_eq!(validate(&message(4, vote)), Err(Refusal::LogAheadOfTerm));
    }

    #[test]
    fn senders_are_other_nodes() {
        let mut to_itself = message(3, MessageBody::TimeoutNow);
        to_itself.from = NodeId(1);
        assert_eq!(validate(&to_itself), Err(Refusal::BadSender));
        let mut nobody = message(3, MessageBody::TimeoutNow);
        nobody.from = NodeId(0);
        assert_eq!(validate(&nobody), Err(Refusal::BadSender));
    }

    #[test]
    fn conflict_hints_agree_with_their_rejection() {
        let short = Some(ConflictHint::LogTooShort {
            last_index: LogIndex(7),
        });
        assert_eq!(
            validate(&message(3, rejection(7, short))),
            Err(Refusal::BadConflictHint)
        );
        assert_eq!(validate(&message(3, rejection(8, short))), Ok(()));
        let mismatch = |first_index| {
            Some(ConflictHint::TermMismatch {
                term: Term(2),
                first_index: LogIndex(first_index),
            })
        };
        assert_eq!(
            validate(&message(3, rejection(5, mismatch(6)))),
            Err(Refusal::BadConflictHint)
        );
        assert_eq!(
            validate(&message(3, rejection(5, mismatch(0)))),
            Err(Refusal::BadConflictHint)
        );
        assert_eq!(validate(&message(3, rejection(5, mismatch(5)))), Ok(()));
    }

    #[test]
    fn a_snapshot_has_voters_and_no_later_term_than_its_sender() {
        let snapshot = |term, voters: &[u64]| {
            MessageBody::InstallSnapshot(SnapshotMetadata {
                index: LogIndex(10),
                term: Term(term),
                membership: Membership::with_voters(voters.iter().copied().map(NodeId)).into(),
            })
        };
        assert_eq!(validate(&message(3, snapshot(3, &[1, 2]))), Ok(()));
        assert_eq!(
            validate(&message(3, snapshot(4, &[1, 2]))),
            Err(Refusal::BadSnapshot)
        );
        assert_eq!(
            validate(&message(3, snapshot(3, &[]))),
            Err(Refusal::BadSnapshot)
        );
    }

    #[test]
    fn every_refusal_has_its_own_label() {
        let mut labels: Vec<&str> = Refusal::ALL
            .iter()
            .map(|refusal| refusal.reason())
            .collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Refusal::ALL.len());
    }
}
