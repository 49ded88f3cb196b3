//! Recovery from arbitrary segment bytes: the WAL must open or refuse with
//! an error, never panic. Shared by the property test of the storage tests
//! and the `wal_recovery` fuzz target (see `fuzz/README.md`).

use std::path::Path;

use crate::storage::wal::segment::SegmentId;
use crate::storage::wal::WAL_DIRECTORY;
use crate::storage::{StorageError, Wal, WalOptions};
use crate::types::ClusterId;
use crate::types::{LogIndex, NodeId};

/// Creates a WAL in `data_directory` (which must not hold one yet), closes
/// it, replaces everything after the header of its only segment with
/// `records`, and opens it again. Returns what that second open returned.
///
/// ```
/// let directory = tempfile::tempdir().unwrap();
/// let wal = raft::testing::open_wal_with_records(directory.path(), &[]).unwrap();
/// raft::testing::check_recovered_log(&wal);
/// assert_eq!(wal.last_index(), raft::LogIndex(0));
/// ```
pub fn open_wal_with_records(data_directory: &Path, records: &[u8]) -> Result<Wal, StorageError> {
    let options = WalOptions::new(ClusterId(1), NodeId(1));
    Wal::open(data_directory, options.clone())?.close()?;
    let id = SegmentId {
        sequence: 1,
        first_index: LogIndex(1),
    };
    let path = data_directory.join(WAL_DIRECTORY).join(id.file_name());
    let mut bytes = id.encode_header().to_vec();
    bytes.extend_from_slice(records);
    std::fs::write(&path, bytes)
        .map_err(StorageError::io("write the segment under test", &path))?;
    Wal::open(data_directory, options)
}

/// Checks that a WAL that opened is consistent: its first index is at most
/// one past its last, and every entry in between reads back with its index
/// and the term [`Wal::term`] reports. Panics otherwise.
pub fn check_recovered_log(wal: &Wal) {
    let first = wal.first_index();
    let last = wal.last_index();
    assert!(
        first.0 <= last.0.saturating_add(1),
        "the log starts at {first} but ends at {last}"
    );
    if first > last {
        return;
    }
    let entries = wal
        .entries(first, last.next())
        .unwrap_or_else(|error| panic!("reading entries {first}..={last}: {error}"));
    assert_eq!(entries.len() as u64, last.0 - first.0 + 1, "entries read");
    for (expected, entry) in (first.0..).zip(&entries) {
        assert_eq!(entry.index, LogIndex(expected), "index of the entry read");
        let term = wal
            .term(entry.index)
            .unwrap_or_else(|error| panic!("term of entry {}: {error}", entry.index));
        assert_eq!(term, entry.term, "term of entry {}", entry.index);
    }
}
