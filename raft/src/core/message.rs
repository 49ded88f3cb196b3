//! Messages exchanged between Raft nodes, as the core sees them. The
//! transport maps these to and from the wire types in `proto/raft.proto`.

use crate::core::snapshot::SnapshotMetadata;
use crate::entries::Entries;
use crate::types::{LogIndex, NodeId, Term};

/// A message from one node to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign
    /// in; for a granted pre-vote response: the term of the request).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

// Every message is moved through the core's inputs and outputs and the
// driver's queues: keep large parts behind a pointer (as entries and
// snapshot metadata are).
const _: () = assert!(
    std::mem::size_of::<Message>() <= 88,
    "Message grew: keep large fields behind an Arc or Box"
);

/// The kinds of messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// A candidate asks for a vote (Raft paper §5.2), or for a pre-vote.
    RequestVote(RequestVote),
    /// The answer to [`MessageBody::RequestVote`].
    RequestVoteResponse(RequestVoteResponse),
    /// A leader replicates entries or sends a heartbeat (Raft paper §5.3).
    AppendEntries(AppendEntries),
    /// The answer to [`MessageBody::AppendEntries`].
    AppendEntriesResponse(AppendEntriesResponse),
    /// The leader tells the receiver to start an election at once
    /// (leadership transfer, dissertation §3.10).
    TimeoutNow,
    /// The leader sends its latest snapshot, described by this metadata, to
    /// a follower that needs entries the leader has compacted (Raft paper
    /// §7). The data itself travels beside the message: the sending driver
    /// streams the snapshot file, the receiving driver stores it durably and
    /// only then steps this message.
    InstallSnapshot(SnapshotMetadata),
    /// The answer to [`MessageBody::InstallSnapshot`].
    InstallSnapshotResponse(InstallSnapshotResponse),
}

/// The answer to a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstallSnapshotResponse {
    /// The follower installed the snapshot: its state now matches the
    /// leader's up to the snapshot's index, durably.
    pub accepted: bool,
    /// The follower's last log index afterwards.
    pub last_log_index: LogIndex,
}

/// A vote or pre-vote request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestVote {
    /// A pre-vote changes no state at the receiver (dissertation §9.6).
    pub pre_vote: bool,
    /// Index of the candidate's last log entry.
    pub last_log_index: LogIndex,
    /// Term of the candidate's last log entry.
    pub last_log_term: Term,
    /// The election was forced by a leadership transfer, so a voter must not
    /// ignore it for having heard from the leader recently.
    pub leadership_transfer: bool,
}

/// A vote or pre-vote answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestVoteResponse {
    /// Answers a pre-vote request.
    pub pre_vote: bool,
    /// Whether the vote was granted.
    pub granted: bool,
}

/// A batch of entries, or a heartbeat when `entries` is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntries {
    /// Index of the entry just before `entries`.
    pub prev_log_index: LogIndex,
    /// Term of the entry at `prev_log_index`.
    pub prev_log_term: Term,
    /// Consecutive entries starting at `prev_log_index + 1`, shared with
    /// the sender's log.
    pub entries: Entries,
    /// The leader's commit index.
    pub leader_commit: LogIndex,
    /// The leader's heartbeat round, echoed back so that ReadIndex can
    /// confirm the leader was still leader after a read arrived.
    pub round: u64,
}

/// The answer to an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendEntriesResponse {
    /// Whether the follower's log matched at `prev_log_index`.
    pub success: bool,
    /// On success: the last index known to match the leader's log, durable
    /// on the follower.
    pub match_index: LogIndex,
    /// The `prev_log_index` of the request this answers.
    pub rejected_index: LogIndex,
    /// On rejection: where to try next.
    pub conflict: Option<ConflictHint>,
    /// The follower's last log index.
    pub last_log_index: LogIndex,
    /// The round of the request this answers.
    pub round: u64,
}

/// Why a follower rejected an append, so that the leader can skip a whole
/// conflicting term per round trip instead of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictHint {
    /// The follower's log ends before the rejected index.
    LogTooShort {
        /// The follower's last index.
        last_index: LogIndex,
    },
    /// The follower has an entry of another term at the rejected index.
    TermMismatch {
        /// The term of the follower's entry at the rejected index.
        term: Term,
        /// The first index of that term in the follower's log.
        first_index: LogIndex,
    },
}
