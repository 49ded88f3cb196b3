//! Errors of the core: bad configuration, inconsistent restored state, and the
//! reasons a request is refused.

use thiserror::Error;

use crate::core::membership_change::MembershipRefusal;
use crate::types::{LogIndex, NodeId, Term};

/// A [`crate::Config`] or [`crate::SnapshotPolicy`] that cannot work.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Node id zero is reserved for "no node".
    #[error("node id must not be zero")]
    ZeroNodeId,
    /// A tick count that must be positive is zero.
    #[error("{field} must be at least 1 tick")]
    ZeroTicks {
        /// The offending field.
        field: &'static str,
    },
    /// The election timeout range `[min, max)` is empty.
    #[error("election_ticks_min ({min}) must be below election_ticks_max ({max})")]
    EmptyElectionRange {
        /// The configured minimum.
        min: u32,
        /// The configured maximum.
        max: u32,
    },
    /// Followers would time out between two heartbeats.
    #[error(
        "heartbeat_ticks ({heartbeat}) must be below election_ticks_min ({election_min}), \
         or followers start elections while the leader is healthy"
    )]
    HeartbeatNotBelowElection {
        /// The configured heartbeat interval.
        heartbeat: u32,
        /// The configured minimum election timeout.
        election_min: u32,
    },
    /// A size or count limit is zero.
    #[error("{field} must be at least 1")]
    ZeroLimit {
        /// The offending field.
        field: &'static str,
    },
    /// A size or count limit is too large.
    #[error("{field} is {value}; it must be at most {max}")]
    TooLarge {
        /// The offending field.
        field: &'static str,
        /// The configured value.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
}

/// Why a [`crate::RaftCore`] could not be built.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CoreError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The membership has no voters, so no quorum can ever form.
    #[error("the cluster configuration has no voters")]
    NoVoters,
    /// Node id zero appears in the membership.
    #[error("the cluster configuration contains node id 0, which is reserved")]
    ZeroMember,
    /// The restored log is not a contiguous run of entries.
    #[error("restored log is not contiguous: expected index {expected}, found {found}")]
    LogNotContiguous {
        /// The index that should come next.
        expected: LogIndex,
        /// The index found instead.
        found: LogIndex,
    },
    /// The restored log has a term that decreases.
    #[error("restored log has decreasing terms at index {index}: {term} after {previous}")]
    LogTermDecreases {
        /// Where the decrease is.
        index: LogIndex,
        /// The entry's term.
        term: Term,
        /// The previous entry's term.
        previous: Term,
    },
    /// The restored log has an entry of a term later than the hard state's.
    #[error("restored log has an entry of {found} but the hard state's term is only {term}")]
    LogAheadOfTerm {
        /// The largest term in the log.
        found: Term,
        /// The hard state's term.
        term: Term,
    },
    /// The state machine is older than the snapshot the log was compacted to.
    #[error(
        "the state machine has applied only up to {applied} but the log was compacted to a \
         snapshot at {snapshot}; restore the state machine from that snapshot"
    )]
    AppliedBeforeSnapshot {
        /// The restored applied index.
        applied: LogIndex,
        /// The snapshot's index.
        snapshot: LogIndex,
    },
    /// A trailing log kept behind a snapshot does not hold the snapshot's
    /// last entry.
    #[error("the log kept behind the snapshot at {index} does not hold its entry of {term}")]
    SnapshotNotInLog {
        /// The snapshot's index.
        index: LogIndex,
        /// The snapshot's term.
        term: Term,
    },
    /// The state machine claims to have applied entries the log does not have.
    #[error("applied index {applied} is past the last log index {last}")]
    AppliedPastLog {
        /// The restored applied index.
        applied: LogIndex,
        /// The last index in the restored log.
        last: LogIndex,
    },
}

/// Why a proposal or a read was refused or could not complete.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    /// This node is not the leader. The request had no effect; retry at the
    /// hinted leader, if any.
    #[error("not the leader{}", match leader_hint {
        Some(leader) => format!("; the leader is probably {leader}"),
        None => "; no leader is known".to_string(),
    })]
    NotLeader {
        /// The node this node believes is the leader.
        leader_hint: Option<NodeId>,
    },
    /// The leader is handing leadership to `target` and accepts no
    /// proposals meanwhile. The request had no effect; retry shortly (at
    /// `target` once it leads).
    #[error("leadership is being transferred to {target}; retry shortly")]
    TransferringLeadership {
        /// The voter that is to lead.
        target: NodeId,
    },
    /// The configuration change cannot be made now; it had no effect.
    #[error("configuration change refused: {0}")]
    MembershipChangeRefused(MembershipRefusal),
    /// The node lost leadership after it accepted the proposal. The entry may
    /// or may not be committed later: the outcome is unknown.
    #[error("leadership was lost after the proposal was accepted; its outcome is unknown")]
    LeadershipLost {
        /// The node this node believes is the new leader.
        leader_hint: Option<NodeId>,
    },
}
