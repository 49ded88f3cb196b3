//! Helpers shared by the snapshot tests.

use std::path::Path;

use bytes::Bytes;
use raft::storage::snapshot::{SnapshotFile, SnapshotStore};
use raft::testing::{MapCommand, OrderedMapStateMachine};
use raft::{LogIndex, Membership, NodeId, SnapshotMetadata, StateMachine, Term};

/// A store in a new, empty data directory (removed when it is dropped).
pub fn empty_store() -> (tempfile::TempDir, SnapshotStore) {
    let data_directory = tempfile::tempdir().expect("temporary directory");
    let store = SnapshotStore::open(data_directory.path()).expect("open");
    (data_directory, store)
}

/// Saves a snapshot of [`map_with`]`(entries)` taken in `term`, in a
/// three-node cluster.
pub fn save_map(store: &SnapshotStore, entries: u64, term: u64) -> SnapshotFile {
    store
        .save(
            &mut map_with(entries).snapshot().expect("capture"),
            Term(term),
            Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
        )
        .expect("save")
}

/// The encoded command that sets `key` to `value`.
pub fn put(key: &str, value: &str) -> Bytes {
    MapCommand::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
    .encode()
}

/// A map that applied `entries` commands, at indexes 1 to `entries`.
pub fn map_with(entries: u64) -> OrderedMapStateMachine {
    let mut machine = OrderedMapStateMachine::new();
    for index in 1..=entries {
        machine
            .apply(
                LogIndex(index),
                &put(&format!("key {index}"), &format!("value {index}")),
            )
            .expect("apply");
    }
    machine
}

pub fn metadata(index: u64, term: u64, membership: Membership) -> SnapshotMetadata {
    SnapshotMetadata {
        index: LogIndex(index),
        term: Term(term),
        membership: membership.into(),
    }
}

/// The names of the files in `directory`, sorted.
pub fn files_in(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .expect("list directory")
        .map(|item| {
            item.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
