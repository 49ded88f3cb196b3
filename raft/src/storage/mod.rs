//! Durable storage of the Raft log and hard state.
//!
//! [`LogStore`] is what a driver persists [`crate::Output::SaveHardState`]
//! and [`crate::Output::AppendLog`] through, and what it reads entries and
//! terms back from. Two implementations run the same conformance suite
//! ([`crate::testing::run_log_store_suite`]):
//!
//! - [`MemoryLogStore`], for unit tests and the simulator;
//! - [`Wal`], the on-disk write-ahead log under `<data-dir>/wal/`, with
//!   group commit and a bounded entry cache. Besides the synchronous trait,
//!   it offers a non-blocking path ([`Wal::submit_append`] and a durability
//!   listener) so that a driver never waits for the disk in its event loop.
//!
//! Everything a node writes under its data directory is its user's alone
//! ([`private_files`]: directories 0700, files 0600).
//!
//! ```
//! use raft::storage::{LogStore, MemoryLogStore};
//! use raft::{Entry, EntryPayload, LogIndex, Term};
//!
//! let mut store = MemoryLogStore::new();
//! let entry = |index, term| Entry { index: LogIndex(index), term: Term(term), payload: EntryPayload::Noop };
//! store.append(vec![entry(1, 1), entry(2, 1), entry(3, 1)].into()).unwrap();
//! // A new leader's entry at index 2 replaces the conflicting suffix.
//! store.append(vec![entry(2, 2)].into()).unwrap();
//! assert_eq!(store.last_index(), LogIndex(2));
//! assert_eq!(store.term(LogIndex(2)).unwrap(), Term(2));
//! ```

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::entries::Entries;
use crate::types::{Entry, HardState, LogIndex, NodeId, Term};

pub(crate) mod addresses;
pub use crate::storage::addresses::MAX_ADDRESS_BYTES;
pub mod memory;
pub(crate) mod paced_file;
pub mod private_files;
pub mod snapshot;
pub mod wal;

pub use crate::storage::memory::MemoryLogStore;
pub use crate::storage::snapshot::{SnapshotFile, SnapshotStore};
pub use crate::storage::wal::{Durable, Ticket, Wal, WalOptions, WalStats};

/// Kept here too: storage was its first home.
pub use crate::types::ClusterId;

/// The persistent Raft log and hard state of one node.
///
/// # What an implementation guarantees
///
/// - **Durability.** When [`LogStore::append`], [`LogStore::save_hard_state`]
///   or [`LogStore::purge_to`] returns `Ok`, its effect survives a crash of
///   the process or the machine: a store reopened on the same data returns
///   it (or the effect of a later call).
/// - **Crash atomicity of an interrupted call.** After a crash during an
///   append that had not returned, the log is either as before the call, or
///   truncated at the first new entry's index and followed by a prefix of
///   the new entries. A hard state or purge is either applied or not.
/// - **Order.** Calls take effect in the order they are made; reads see
///   every call that returned.
/// - **Shape.** The log is a contiguous run of entries from
///   [`LogStore::first_index`] to [`LogStore::last_index`], with terms that
///   never decrease. Entries before the first index were purged into a
///   snapshot; the term of the last purged one is still known, so that
///   `term(first_index - 1)` always answers (it is `Term(0)` at index 0).
/// - **Errors, not panics.** Calls that would break the shape (a gap, an
///   overwrite of a purged entry, a decreasing term) fail with
///   [`StorageError::InvalidAppend`] or [`StorageError::InvalidHardState`]
///   and change nothing.
pub trait LogStore {
    /// The term and vote last saved ([`HardState::default`] at first).
    fn hard_state(&self) -> HardState;

    /// Durably saves the term and vote before returning. The term must not
    /// go backwards.
    fn save_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError>;

    /// Appends `entries` as [`crate::Output::AppendLog`] describes: first
    /// every entry at or after `entries[0].index` is removed (a conflicting
    /// suffix), then `entries` are added, durably before returning.
    ///
    /// `entries` must be non-empty with consecutive indexes and
    /// non-decreasing terms; `entries[0].index` must be between
    /// [`LogStore::first_index`] and [`LogStore::last_index`]` + 1`, and its
    /// term at least that of the entry before it.
    fn append(&mut self, entries: Entries) -> Result<(), StorageError>;

    /// The entries with indexes in `[low, high)`, in order. Fails with
    /// [`StorageError::Compacted`] when `low` is before the first index and
    /// [`StorageError::Unavailable`] when `high` is past the last index
    /// plus one.
    fn entries(&self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>, StorageError>;

    /// The term of the entry at `index`, for `index` from
    /// `first_index - 1` (the last purged entry) to `last_index`.
    fn term(&self, index: LogIndex) -> Result<Term, StorageError>;

    /// The index of the first entry in the log: one past the last purged
    /// index (1 when nothing was purged). Greater than
    /// [`LogStore::last_index`] when the log is empty.
    fn first_index(&self) -> LogIndex;

    /// The index of the last entry in the log; when the log is empty, the
    /// last purged index (0 at first).
    fn last_index(&self) -> LogIndex;

    /// The term of the last entry (or of the last purged one).
    fn last_term(&self) -> Result<Term, StorageError> {
        self.term(self.last_index())
    }

    /// Removes every entry up to and including `index`, which a snapshot
    /// now covers, and remembers that its term was `term`. If the log holds
    /// an entry at `index` of `term`, the entries after it are kept;
    /// otherwise (another term, or `index` past the end) the snapshot
    /// replaces the whole log (Raft paper §7). A purge at or before the
    /// current first index minus one does nothing. Durable on return.
    fn purge_to(&mut self, index: LogIndex, term: Term) -> Result<(), StorageError>;
}

/// Why a storage operation failed. Each message says what is wrong and
/// what to do about it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An operating system call failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The data directory cannot be created or written.
    #[error(
        "data directory {} is not usable ({source}); make it writable by this user or \
         choose another data directory",
        path.display()
    )]
    DataDirectoryUnusable {
        /// The data directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another process has the data directory open.
    #[error(
        "data directory {} is in use by another process; stop that process first \
         (two writers would corrupt the log)",
        path.display()
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The data directory belongs to another cluster.
    #[error(
        "data directory {} belongs to cluster {found}, not {expected}; give this node its \
         own data directory",
        path.display()
    )]
    WrongCluster {
        /// The data directory.
        path: PathBuf,
        /// The cluster this node is configured for.
        expected: ClusterId,
        /// The cluster recorded in the directory.
        found: ClusterId,
    },
    /// The data directory belongs to another node.
    #[error(
        "data directory {} belongs to node {found}, not {expected}; each node needs its own \
         data directory (a node that reuses another's log can break Raft's safety)",
        path.display()
    )]
    WrongNode {
        /// The data directory.
        path: PathBuf,
        /// This node's id.
        expected: NodeId,
        /// The node recorded in the directory.
        found: NodeId,
    },
    /// A log directory without the metadata saying whose it is.
    #[error(
        "data directory {} holds WAL segments but no metadata file, so it cannot be told \
         which cluster and node they belong to; restore the metadata file or start this \
         node on an empty data directory",
        path.display()
    )]
    MissingMetadata {
        /// The data directory.
        path: PathBuf,
    },
    /// Stored data is damaged: refusing to start rather than silently drop
    /// entries that may have been committed.
    #[error(
        "corrupt WAL data in {} at byte offset {offset}: {reason}; refusing to start, since \
         entries there may have been committed. Restore this node's data directory from a \
         backup, or replace the node with a new member that has an empty data directory",
        path.display()
    )]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Where in it the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file written in a format this build does not read.
    #[error(
        "{} is in format version {found}, but this build reads only version {supported}; \
         run a RustyRaft release that supports it",
        path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The entry was purged into a snapshot.
    #[error("entry {index} is in a snapshot; the log now starts at {first_index}")]
    Compacted {
        /// The index asked for.
        index: LogIndex,
        /// The first index still in the log.
        first_index: LogIndex,
    },
    /// The entry is past the end of the log.
    #[error("entry {index} is past the end of the log (last index {last_index})")]
    Unavailable {
        /// The index asked for.
        index: LogIndex,
        /// The last index in the log.
        last_index: LogIndex,
    },
    /// A range whose start is after its end.
    #[error("invalid range: {low} is after {high}")]
    InvalidRange {
        /// The start.
        low: LogIndex,
        /// The end.
        high: LogIndex,
    },
    /// The entries cannot be appended; the log is unchanged. This is a bug
    /// in the caller.
    #[error("invalid append: {reason}")]
    InvalidAppend {
        /// What is wrong.
        reason: String,
    },
    /// The hard state's term goes backwards; nothing was saved. This is a
    /// bug in the caller.
    #[error("invalid hard state: term {new} is below the saved term {saved}")]
    InvalidHardState {
        /// The saved term.
        saved: Term,
        /// The term passed.
        new: Term,
    },
    /// A snapshot file is damaged or is not a snapshot: it is refused,
    /// never loaded.
    #[error(
        "snapshot {} is damaged at byte offset {offset}: {reason}; it is refused. A snapshot \
         being received is fetched again from the start; a snapshot this node keeps cannot \
         be trusted: restore the data directory from a backup, or replace the node with a \
         new member that has an empty data directory (the leader sends it a snapshot)",
        path.display()
    )]
    SnapshotDamaged {
        /// The damaged file.
        path: PathBuf,
        /// Where in it the damage was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A snapshot chunk does not continue the transfer in progress; the
    /// sender restarts the transfer from offset 0.
    #[error(
        "snapshot chunk at byte offset {found} does not continue the transfer, which expects \
         offset {expected}; restart the transfer from offset 0"
    )]
    SnapshotChunkOutOfOrder {
        /// The offset the next chunk must have.
        expected: u64,
        /// The offset the chunk had.
        found: u64,
    },
    /// A snapshot transfer sent more bytes than it announced, or ended
    /// before all of them; it is dropped and the sender starts again.
    #[error(
        "the snapshot transfer announced {announced} bytes but {received} arrived; it is \
         refused and the sender starts again"
    )]
    SnapshotSizeMismatch {
        /// The size the transfer announced.
        announced: u64,
        /// The bytes received (at least, when they were too many).
        received: u64,
    },
    /// The core restores a snapshot no transfer delivered. This is a bug
    /// in the driver.
    #[error(
        "the core restores the snapshot at {index} of term {term}, which this node never received"
    )]
    SnapshotNotReceived {
        /// Its last included index.
        index: LogIndex,
        /// Its last included term.
        term: Term,
    },
    /// The state machine failed while writing or restoring a snapshot.
    #[error("the state machine could not {action} the snapshot at {index}: {source}")]
    StateMachineSnapshot {
        /// What it was doing: "write" or "restore".
        action: &'static str,
        /// The snapshot's last included index.
        index: LogIndex,
        /// Its error.
        #[source]
        source: io::Error,
    },
    /// Options that cannot work.
    #[error("invalid storage options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
    /// An earlier write failed. After a failed fdatasync the state of the
    /// file is unknown, so the WAL accepts nothing more; what is on disk is
    /// recovered at the next start.
    #[error(
        "the WAL stopped after a write failure ({0}); restart the node to recover from what \
         is on disk"
    )]
    Stopped(#[source] Arc<StorageError>),
}

/// Checks `entries` against a log whose purge point, last index and terms
/// are given; shared by every implementation so they refuse the same things.
pub(crate) fn check_append(
    first_index: LogIndex,
    last_index: LogIndex,
    term_of: impl Fn(LogIndex) -> Option<Term>,
    entries: &[Entry],
) -> Result<(), StorageError> {
    let invalid = |reason: String| Err(StorageError::InvalidAppend { reason });
    let Some(first) = entries.first() else {
        return invalid("no entries".to_string());
    };
    for pair in entries.windows(2) {
        if pair[1].index != pair[0].index.next() {
            return invalid(format!(
                "indexes are not consecutive: {} after {}",
                pair[1].index, pair[0].index
            ));
        }
        if pair[1].term < pair[0].term {
            return invalid(format!(
                "terms decrease: entry {} has {} after {}",
                pair[1].index, pair[1].term, pair[0].term
            ));
        }
    }
    if first.index < first_index {
        return invalid(format!(
            "entry {} is in a snapshot (the log starts at {first_index})",
            first.index
        ));
    }
    if first.index > last_index.next() {
        return invalid(format!(
            "entry {} would leave a gap after the last index {last_index}",
            first.index
        ));
    }
    if let Some(previous) = term_of(first.index.previous()) {
        if first.term < previous {
            return invalid(format!(
                "terms decrease: entry {} has {} but the entry before it has {previous}",
                first.index, first.term
            ));
        }
    }
    Ok(())
}

/// Checks a read range against a log from `first_index` to `last_index`.
pub(crate) fn check_range(
    low: LogIndex,
    high: LogIndex,
    first_index: LogIndex,
    last_index: LogIndex,
) -> Result<(), StorageError> {
    if low > high {
        return Err(StorageError::InvalidRange { low, high });
    }
    if low < first_index {
        return Err(StorageError::Compacted {
            index: low,
            first_index,
        });
    }
    if high > last_index.next() {
        return Err(StorageError::Unavailable {
            index: high.previous(),
            last_index,
        });
    }
    Ok(())
}

/// The error for a term asked outside `[first_index - 1, last_index]`.
pub(crate) fn term_error(
    index: LogIndex,
    first_index: LogIndex,
    last_index: LogIndex,
) -> StorageError {
    if index < first_index {
        StorageError::Compacted { index, first_index }
    } else {
        StorageError::Unavailable { index, last_index }
    }
}

impl StorageError {
    /// Makes a `map_err` adapter that wraps an operating system error with
    /// what was being done and to which path.
    pub(crate) fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.to_path_buf();
        move |source| StorageError::Io {
            action,
            path,
            source,
        }
    }
}
