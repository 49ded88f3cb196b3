//! The small value types shared by every layer: identifiers, terms, indexes
//! and log entries.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::core::quorum::Membership;

macro_rules! newtype_u64 {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }
    };
}

newtype_u64!(
    /// Identifies a member of the cluster. Zero is never a valid node id.
    NodeId,
    "n"
);
newtype_u64!(
    /// A Raft term: a logical clock that increases with every election.
    Term,
    "t"
);
newtype_u64!(
    /// The position of an entry in the replicated log; the first entry has
    /// index 1 and index 0 stands for "before the first entry".
    LogIndex,
    "i"
);
newtype_u64!(
    /// A caller-chosen identifier that ties a proposal or read to its answer.
    RequestId,
    "r"
);

/// Identifies a cluster: every peer message and every data directory
/// carries it, so that a node never takes another cluster's messages or
/// starts on another cluster's data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub u64);

impl fmt::Display for ClusterId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "c{}", self.0)
    }
}

impl Term {
    /// The next term.
    pub const fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    /// The index after this one.
    pub const fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index before this one (saturating at zero).
    pub const fn previous(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryPayload {
    /// The empty entry a new leader appends so that it can commit entries of
    /// earlier terms (Raft paper §5.4.2, dissertation §6.4).
    Noop,
    /// An opaque command for the application's state machine.
    Command(Bytes),
    /// A new cluster configuration, in effect from the moment the entry is
    /// appended (dissertation §4.1). Appended by the leader for a
    /// [`crate::MembershipChange`]; differs from the one before it by one
    /// server. Shared, so that an entry stays small (see [`Entry`]) and
    /// copies of it never copy the configuration.
    Configuration(Arc<Membership>),
}

impl EntryPayload {
    /// The size of the payload in bytes, used to bound message sizes.
    pub fn size_bytes(&self) -> usize {
        match self {
            EntryPayload::Noop => 0,
            EntryPayload::Command(command) => command.len(),
            EntryPayload::Configuration(membership) => {
                8 + 8 * (membership.voters.len() + membership.learners.len())
                    + membership
                        .addresses
                        .values()
                        .map(|address| 12 + address.len())
                        .sum::<usize>()
            }
        }
    }
}

/// One entry of the replicated log.
///
/// Entries are created once and then shared: the log, the messages that
/// carry them to followers and the hand-offs to storage and the state
/// machine hold the same entries (see [`crate::Entries`]). Cloning one never
/// copies its payload, and its size is pinned at [`Entry::SIZE_BYTES`]: a
/// bigger entry costs every copy of every slot of every batch (a
/// configuration held inline once made each entry 2.3 times as large and the
/// core 35% slower).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// What the entry carries.
    pub payload: EntryPayload,
}

impl Entry {
    /// The size of an [`Entry`] in memory: a term, an index, a [`Bytes`]
    /// and the payload's kind (a `Bytes` has room for one kind besides a
    /// command, and there are two). Checked at compile time.
    pub const SIZE_BYTES: usize = 56;

    /// An approximate encoded size, used to bound message sizes.
    pub fn size_bytes(&self) -> usize {
        // Index, term and framing, plus the payload.
        24 + self.payload.size_bytes()
    }
}

const _: () = assert!(
    std::mem::size_of::<Entry>() <= Entry::SIZE_BYTES,
    "Entry grew: keep large payloads behind an Arc (see Entry's documentation)"
);

/// The state every node must persist before it answers any request that
/// depends on it (Raft paper, Figure 2 "Persistent state on all servers").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub voted_for: Option<NodeId>,
}
