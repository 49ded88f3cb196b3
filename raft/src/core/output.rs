//! What the core asks its driver to do, in order.

use crate::core::message::Message;
use crate::core::snapshot::SnapshotMetadata;
use crate::core::validation::Refusal;
use crate::entries::Entries;
use crate::error::RequestError;
use crate::types::{HardState, LogIndex, NodeId, RequestId, Term};

// Outputs are moved into the core's queue and out to the driver, many per
// step: keep large parts behind a pointer.
const _: () = assert!(
    std::mem::size_of::<Output>() <= 88,
    "Output grew: keep large fields behind an Arc or Box"
);

/// One action for the driver. See the crate documentation for the order in
/// which a driver must carry these out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Durably store the hard state before carrying out any later output.
    SaveHardState(HardState),
    /// Append `entries` to the log, first removing every entry at or after
    /// `entries[0].index` (a conflicting suffix) if there is one. Appends may
    /// be written in the background, in order; report completion with
    /// [`crate::Input::LogPersisted`].
    AppendLog {
        /// Consecutive entries; never empty. Shared with the log: keeping
        /// them costs no copy.
        entries: Entries,
    },
    /// Send a message to a peer. Delivery may fail: Raft retries. For
    /// [`crate::MessageBody::InstallSnapshot`], stream the snapshot the
    /// metadata describes along with it.
    Send(Message),
    /// Entries up to `up_to` are covered by a snapshot: storage may delete
    /// them.
    CompactLog {
        /// The last index that may be deleted.
        up_to: LogIndex,
    },
    /// Replace the state machine with the received snapshot `metadata`
    /// describes, and the whole log with an empty one that continues after
    /// `metadata.index`. Must be durable before any later output is carried
    /// out (the acknowledgement that follows promises it).
    RestoreSnapshot {
        /// The snapshot to install.
        metadata: SnapshotMetadata,
    },
    /// Apply these committed entries to the state machine, in order, then
    /// report with [`crate::Input::Applied`].
    Apply {
        /// Consecutive committed entries, each durable on this node; shared
        /// with the log.
        entries: Entries,
    },
    /// The proposal was appended to the leader's log at `index` in `term`.
    /// It completes when the entry at `index` with `term` is applied; an
    /// entry of another term applied at `index` means it was lost.
    ProposalAccepted {
        /// The proposal.
        request_id: RequestId,
        /// Where its entry sits in the log.
        index: LogIndex,
        /// The entry's term.
        term: Term,
    },
    /// The read may be served now from the local state machine: it has
    /// applied at least `read_index`, and this node was the leader when the
    /// read arrived.
    ReadReady {
        /// The read.
        request_id: RequestId,
        /// The commit index the read had to observe.
        read_index: LogIndex,
    },
    /// A message broke a rule every correct peer keeps (see
    /// [`crate::core::validation`]) and was dropped: it changed nothing.
    /// Count it and log it (rate-limited: a flood of them is the point of
    /// some attacks).
    MessageRefused {
        /// Who the message says sent it.
        from: NodeId,
        /// The rule it broke.
        refusal: Refusal,
    },
    /// The request failed; see [`RequestError`] for whether it had an effect.
    RequestFailed {
        /// The request.
        request_id: RequestId,
        /// Why.
        error: RequestError,
    },
}
