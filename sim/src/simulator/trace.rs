//! One-line, human-readable descriptions of messages for replay traces.

use raft::{ConflictHint, Entry, Message, MessageBody};

/// Describes a message briefly, e.g. `append prev=i4/t2 [i5..=i7 t3] commit=i4 round=9`.
pub fn describe(message: &Message) -> String {
    let body = match &message.body {
        MessageBody::RequestVote(request) => format!(
            "{}vote request last=i{}/t{}{}",
            if request.pre_vote { "pre-" } else { "" },
            request.last_log_index.0,
            request.last_log_term.0,
            if request.leadership_transfer {
                " (transfer)"
            } else {
                ""
            }
        ),
        MessageBody::RequestVoteResponse(response) => format!(
            "{}vote {}",
            if response.pre_vote { "pre-" } else { "" },
            if response.granted {
                "granted"
            } else {
                "refused"
            }
        ),
        MessageBody::AppendEntries(append) => format!(
            "append prev=i{}/t{} {} commit=i{} round={}",
            append.prev_log_index.0,
            append.prev_log_term.0,
            describe_entries(&append.entries),
            append.leader_commit.0,
            append.round
        ),
        MessageBody::AppendEntriesResponse(response) if response.success => format!(
            "append ok match=i{} round={}",
            response.match_index.0, response.round
        ),
        MessageBody::AppendEntriesResponse(response) => format!(
            "append rejected at i{} ({}) round={}",
            response.rejected_index.0,
            match response.conflict {
                Some(ConflictHint::LogTooShort { last_index }) => {
                    format!("log ends at i{}", last_index.0)
                }
                Some(ConflictHint::TermMismatch { term, first_index }) => {
                    format!("has t{} from i{}", term.0, first_index.0)
                }
                None => "stale term".to_string(),
            },
            response.round
        ),
        MessageBody::TimeoutNow => "timeout now".to_string(),
        MessageBody::InstallSnapshot(metadata) => {
            format!("snapshot up to i{}/t{}", metadata.index.0, metadata.term.0)
        }
        MessageBody::InstallSnapshotResponse(response) => format!(
            "snapshot {} (log ends at i{})",
            if response.accepted {
                "installed"
            } else {
                "not needed"
            },
            response.last_log_index.0
        ),
    };
    format!("[t{}] {body}", message.term.0)
}

fn describe_entries(entries: &[Entry]) -> String {
    match (entries.first(), entries.last()) {
        (Some(first), Some(last)) if first.term == last.term => {
            format!("[i{}..=i{} t{}]", first.index.0, last.index.0, last.term.0)
        }
        (Some(first), Some(last)) => format!(
            "[i{}..=i{} t{}..t{}]",
            first.index.0, last.index.0, first.term.0, last.term.0
        ),
        _ => "[]".to_string(),
    }
}
