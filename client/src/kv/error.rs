//! Why a request or a snapshot is refused.
//!
//! Where etcd clients recognise an error by its text (Go's `clientv3` maps the
//! gRPC status message back to a typed error), the message is etcd's own, so
//! a client written for etcd reacts to ours the same way. The gRPC layer picks
//! the status code from [`KvError::class`].

use raft::LogIndex;
use thiserror::Error;

/// The gRPC status family an error belongs to; the service layer maps each to
/// the status code of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request itself is wrong; resending it unchanged fails again.
    InvalidArgument,
    /// The request is well-formed but asks for something not built yet.
    Unimplemented,
    /// The request names a revision the store has not reached.
    OutOfRange,
    /// The caller broke the store's contract (a bug, not a user error).
    Internal,
}

/// A request that breaks the API's rules. Nothing was written.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum InvalidRequest {
    /// A key (of a request, an operation or a compare) is empty.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `range_end` sorts before `key` (and is neither empty nor "\0").
    #[error("range_end sorts before key, so the range [key, range_end) would be backwards")]
    RangeEndBeforeKey,
    /// The encoded request exceeds [`crate::kv::Limits::max_request_bytes`].
    #[error("etcdserver: request is too large")]
    RequestTooLarge {
        /// Encoded size of the request.
        size_bytes: usize,
        /// The configured limit.
        limit_bytes: usize,
    },
    /// A transaction has more compares or operations in one list than
    /// [`crate::kv::Limits::max_txn_operations`].
    #[error("etcdserver: too many operations in txn request")]
    TooManyOperations {
        /// Length of the longest list.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A transaction branch writes the same key twice (two puts, or a put
    /// inside a range the branch also deletes).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A put asks to keep the current value but also gives one.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// A put asks to keep the current lease but also gives one.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A range names a sort order or target that does not exist.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// A compare names a result or target that does not exist.
    #[error("invalid compare: {reason}")]
    InvalidCompare {
        /// Which field is wrong.
        reason: String,
    },
    /// A transaction operation carries no request.
    #[error("a transaction operation is empty: set one of its request fields")]
    EmptyOperation,
    /// A member's published attributes break their rules
    /// ([`crate::kv::members::validate_attributes`]).
    #[error("invalid member attributes: {reason}")]
    InvalidMemberAttributes {
        /// Which rule, and the value that broke it.
        reason: String,
    },
}

/// A well-formed request for a feature this store does not have yet.
/// Nothing was written.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Unsupported {
    /// A put that attaches a lease.
    #[error("leases are not supported yet (the put names lease {lease}); put with lease 0")]
    Leases {
        /// The lease id the put named.
        lease: i64,
    },
    /// A put with `ignore_value`.
    #[error("put with ignore_value is not supported yet: send the value")]
    IgnoreValue,
    /// A put with `ignore_lease`.
    #[error("put with ignore_lease is not supported yet")]
    IgnoreLease,
}

/// Why the store refused a read or a command.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum KvError {
    /// The request breaks the API's rules.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The request needs a feature that is not built yet.
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    /// A read at a revision the store has not reached.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The store's revision.
        current: i64,
    },
    /// A read at a revision whose history was compacted away.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The compacted revision.
        compacted: i64,
    },
    /// The command bytes do not decode to a known write request.
    #[error("the log command is not an encoded write request: {reason}")]
    MalformedCommand {
        /// What the decoder found.
        reason: String,
    },
    /// The log index was applied before; applying it again would apply a
    /// write twice.
    #[error(
        "log entry {index} was already applied (the store has applied up to {applied_index}); \
         apply each index once, in increasing order"
    )]
    AlreadyApplied {
        /// The index given.
        index: LogIndex,
        /// The last index the store applied.
        applied_index: LogIndex,
    },
}

impl KvError {
    /// The gRPC status family of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            KvError::Invalid(_) => ErrorClass::InvalidArgument,
            KvError::Unsupported(_) => ErrorClass::Unimplemented,
            KvError::FutureRevision { .. } | KvError::Compacted { .. } => ErrorClass::OutOfRange,
            KvError::MalformedCommand { .. } | KvError::AlreadyApplied { .. } => {
                ErrorClass::Internal
            }
        }
    }
}

/// Why a snapshot could not be written or read.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The underlying reader or writer failed.
    #[error("snapshot I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The stream does not start with the snapshot's magic bytes.
    #[error("not a key-value snapshot (wrong magic bytes)")]
    NotASnapshot,
    /// The snapshot was written by a newer format version.
    #[error(
        "snapshot format version {found} is not supported (this build reads versions 1 to \
         {supported})"
    )]
    UnsupportedVersion {
        /// The version in the stream.
        found: u32,
        /// The newest version this build reads (and the one it writes).
        supported: u32,
    },
    /// The stream ended inside the snapshot.
    #[error("snapshot is truncated: the stream ended before its last record")]
    Truncated,
    /// A record's checksum does not match its bytes.
    #[error("snapshot record {record} is corrupt (checksum mismatch)")]
    ChecksumMismatch {
        /// Position of the record, 0 being the header.
        record: u64,
    },
    /// A record decoded but breaks the store's invariants.
    #[error("snapshot record {record} is invalid: {reason}")]
    InvalidRecord {
        /// Position of the record, 0 being the header.
        record: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The rebuilt store's digest differs from the one the writer recorded.
    #[error(
        "snapshot digest mismatch: recorded {recorded:#010x}, rebuilt store has {rebuilt:#010x}"
    )]
    DigestMismatch {
        /// The digest in the trailer.
        recorded: u32,
        /// The digest of the store read back.
        rebuilt: u32,
    },
}
