//! What a driver feeds into the core.

use bytes::Bytes;

use crate::core::membership_change::MembershipChange;
use crate::core::message::Message;
use crate::core::snapshot::SnapshotMetadata;
use crate::types::{LogIndex, NodeId, RequestId, Term};

/// One event for [`crate::RaftCore::step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// One unit of logical time has passed.
    Tick,
    /// A message arrived from a peer.
    Message(Message),
    /// A client asks to replicate `command`. Answered by
    /// [`crate::Output::ProposalAccepted`] or [`crate::Output::RequestFailed`].
    Propose {
        /// Ties the answer to this proposal.
        request_id: RequestId,
        /// The opaque command for the state machine.
        command: Bytes,
    },
    /// A client asks for a linearizable read (ReadIndex, dissertation §6.4).
    /// Answered by [`crate::Output::ReadReady`] once the state machine has
    /// applied everything the read must see, or by
    /// [`crate::Output::RequestFailed`].
    Read {
        /// Ties the answer to this read.
        request_id: RequestId,
    },
    /// A client asks to change the configuration by one server. Answered
    /// like a proposal: [`crate::Output::ProposalAccepted`] (complete when
    /// its entry is applied) or [`crate::Output::RequestFailed`], with
    /// [`crate::RequestError::MembershipChangeRefused`] when the change
    /// cannot be made now.
    ChangeMembership {
        /// Ties the answer to this request.
        request_id: RequestId,
        /// The change.
        change: MembershipChange,
    },
    /// Hand leadership to the voter `target` (dissertation §3.10): the
    /// leader stops accepting proposals, brings `target` up to date and
    /// tells it to campaign at once; after an election timeout without
    /// success it gives up and accepts proposals again. Ignored unless this
    /// node leads and `target` is another voter. Watch
    /// [`crate::Status::leader`] for the outcome.
    TransferLeadership {
        /// The voter that is to lead.
        target: NodeId,
    },
    /// The log is durable up to `index`, whose entry has `term`. A report for
    /// an entry that has since been replaced (same index, other term) is
    /// ignored.
    LogPersisted {
        /// The last durable index.
        index: LogIndex,
        /// The term of the entry at `index` that was written.
        term: Term,
    },
    /// The state machine has applied every entry up to `index`.
    Applied {
        /// The last applied index.
        index: LogIndex,
    },
    /// The driver durably saved a snapshot of the state machine that covers
    /// every entry up to `metadata.index` (which it had applied). The core
    /// compacts its log, keeping `Config::snapshot_trailing_entries`, and
    /// sends this snapshot to followers that need compacted entries.
    SnapshotTaken {
        /// What the snapshot covers.
        metadata: SnapshotMetadata,
    },
}
