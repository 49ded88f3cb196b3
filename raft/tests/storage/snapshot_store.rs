//! The snapshot store: round trips through a state machine, keeping only
//! the newest, cleaning up after interruptions, and refusing damage at
//! every byte.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use bytes::Bytes;
use raft::storage::snapshot::{snapshot_file_name, SnapshotStore};
use raft::storage::StorageError;
use raft::testing::{MapCommand, OrderedMapStateMachine};
use raft::{LogIndex, Membership, NodeId, SnapshotMetadata, StateMachine, Term};

use super::snapshot_support::{empty_store, files_in, map_with, metadata, put, save_map};

#[test]
fn a_saved_snapshot_restores_the_state_it_captured() {
    let (data_directory, store) = empty_store();
    let mut machine = map_with(100);
    let mut captured = machine.snapshot().expect("capture");
    // Applied after the capture: must not be in the snapshot.
    machine
        .apply(LogIndex(101), &put("late", "entry"))
        .expect("apply");
    let voters = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    let saved = store
        .save(&mut captured, Term(4), voters.clone())
        .expect("save");
    assert_eq!(saved.metadata(), &metadata(100, 4, voters.clone()));
    assert_eq!(
        saved.path(),
        store
            .directory()
            .join(snapshot_file_name(LogIndex(100), Term(4)))
    );

    let reopened = SnapshotStore::open(data_directory.path()).expect("reopen");
    let latest = reopened.latest().expect("latest").expect("a snapshot");
    assert_eq!(latest, saved);
    let mut restored = OrderedMapStateMachine::new();
    latest.restore_into(&mut restored).expect("restore");
    assert_eq!(restored.applied_index(), LogIndex(100));
    assert_eq!(restored.map(), map_with(100).map());
    assert!(!restored.map().contains_key(&b"late"[..]));
}

#[test]
fn a_new_store_has_no_snapshot() {
    let data_directory = tempfile::tempdir().expect("temporary directory");
    let store = SnapshotStore::open(data_directory.path().join("new")).expect("open");
    assert_eq!(store.latest().expect("latest"), None);
    assert!(store.directory().is_dir());
}

#[test]
fn only_the_newest_snapshot_is_kept() {
    let (_data_directory, store) = empty_store();
    for (entries, term) in [(10, 1), (20, 1), (30, 2)] {
        let mut captured = map_with(entries).snapshot().expect("capture");
        store
            .save(
                &mut captured,
                Term(term),
                Membership::with_voters([NodeId(1)]),
            )
            .expect("save");
    }
    assert_eq!(
        files_in(store.directory()),
        vec![snapshot_file_name(LogIndex(30), Term(2))]
    );
    let latest = store.latest().expect("latest").expect("a snapshot");
    assert_eq!(latest.metadata().index, LogIndex(30));
}

#[test]
fn an_unfinished_write_leaves_nothing_behind() {
    let (_data_directory, store) = empty_store();
    let mut writer = store
        .create(metadata(5, 1, Membership::with_voters([NodeId(1)])))
        .expect("create");
    writer.write_all(b"half of the state").expect("write");
    assert_eq!(store.latest().expect("latest"), None);
    drop(writer);
    assert_eq!(files_in(store.directory()), Vec::<String>::new());
}

#[test]
fn temporary_files_of_a_crash_are_removed_at_open() {
    let (data_directory, store) = empty_store();
    let mut writer = store
        .create(metadata(5, 1, Membership::with_voters([NodeId(1)])))
        .expect("create");
    writer.write_all(b"state").expect("write");
    // A crash: the writer never finishes nor cleans up.
    std::mem::forget(writer);
    assert_eq!(files_in(store.directory()).len(), 1);
    let reopened = SnapshotStore::open(data_directory.path()).expect("reopen");
    assert_eq!(files_in(reopened.directory()), Vec::<String>::new());
    assert_eq!(reopened.latest().expect("latest"), None);
}

#[test]
fn a_snapshot_under_another_name_is_refused() {
    let (_data_directory, store) = empty_store();
    let saved = save_map(&store, 3, 1);
    let renamed = store
        .directory()
        .join(snapshot_file_name(LogIndex(9), Term(1)));
    fs::rename(saved.path(), &renamed).expect("rename");
    let error = store.latest().expect_err("refused");
    assert!(
        matches!(&error, StorageError::SnapshotDamaged { path, .. } if *path == renamed),
        "{error}"
    );
}

/// A small snapshot's bytes, and the store it lives in.
fn small_snapshot() -> (
    tempfile::TempDir,
    SnapshotStore,
    std::path::PathBuf,
    Vec<u8>,
) {
    let (data_directory, store) = empty_store();
    let saved = save_map(&store, 4, 2);
    let bytes = fs::read(saved.path()).expect("read");
    (data_directory, store, saved.path().to_path_buf(), bytes)
}

/// Loads the latest snapshot into a state machine that already holds some
/// state, and returns the error; checks that the state is untouched.
fn load_error(store: &SnapshotStore) -> StorageError {
    let mut machine = OrderedMapStateMachine::new();
    machine
        .apply(LogIndex(1), &put("before", "restore"))
        .expect("apply");
    let before = machine.map().clone();
    let error = match store.latest() {
        Err(error) => error,
        Ok(None) => panic!("the snapshot vanished"),
        Ok(Some(latest)) => latest
            .restore_into(&mut machine)
            .expect_err("a damaged snapshot is refused"),
    };
    assert_eq!(
        machine.map(),
        &before,
        "a refused snapshot changed the state"
    );
    assert_eq!(machine.applied_index(), LogIndex(1));
    error
}

fn assert_damaged(error: &StorageError, file: &Path, case: &str) {
    match error {
        StorageError::SnapshotDamaged { path, .. } => assert_eq!(path, file, "{case}"),
        other => panic!("{case}: expected damage, got {other}"),
    }
}

#[test]
fn a_flipped_byte_anywhere_is_refused() {
    let (_directory, store, path, bytes) = small_snapshot();
    assert!(
        bytes.len() > 100,
        "the snapshot has a header, data and a trailer"
    );
    for offset in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[offset] ^= 0x01;
        fs::write(&path, &damaged).expect("write");
        let error = load_error(&store);
        assert_damaged(&error, &path, &format!("byte {offset} flipped"));
    }
    fs::write(&path, &bytes).expect("write");
    let mut machine = OrderedMapStateMachine::new();
    let latest = store.latest().expect("latest").expect("a snapshot");
    latest
        .restore_into(&mut machine)
        .expect("the intact file loads");
    assert_eq!(machine.map(), map_with(4).map());
}

#[test]
fn a_truncated_file_is_refused_at_every_length() {
    let (_directory, store, path, bytes) = small_snapshot();
    for length in 0..bytes.len() {
        fs::write(&path, &bytes[..length]).expect("write");
        let error = load_error(&store);
        assert_damaged(&error, &path, &format!("truncated to {length} bytes"));
    }
}

#[test]
fn bytes_appended_are_refused() {
    let (_directory, store, path, bytes) = small_snapshot();
    let trailer = bytes[bytes.len() - 16..].to_vec();
    for appended in [vec![0], b"garbage".to_vec(), vec![0; 4096], trailer] {
        let mut damaged = bytes.clone();
        damaged.extend_from_slice(&appended);
        fs::write(&path, &damaged).expect("write");
        let error = load_error(&store);
        assert_damaged(&error, &path, &format!("{} bytes appended", appended.len()));
    }
}

#[test]
fn damage_names_the_offset_of_what_is_wrong() {
    let (_directory, store, path, bytes) = small_snapshot();
    let metadata_bytes = u32::from_le_bytes(bytes[12..16].try_into().expect("length")) as usize;
    let header_checksum = 16 + metadata_bytes;
    let trailer = bytes.len() - 16;
    let cases = [
        ("the magic", 0, 0),
        ("the metadata", 20, header_checksum),
        ("the data", header_checksum + 4, trailer + 8),
        ("the end magic", bytes.len() - 1, trailer),
    ];
    for (what, flipped, expected) in cases {
        let mut damaged = bytes.clone();
        damaged[flipped] ^= 0x80;
        fs::write(&path, &damaged).expect("write");
        match load_error(&store) {
            StorageError::SnapshotDamaged { offset, .. } => {
                assert_eq!(offset, expected as u64, "{what} damaged")
            }
            other => panic!("{what} damaged: expected damage, got {other}"),
        }
    }
}

#[test]
fn a_state_machine_that_stops_reading_early_is_caught() {
    struct ReadsNothing(LogIndex);
    impl StateMachine for ReadsNothing {
        type Response = ();
        type Error = std::convert::Infallible;
        type Snapshot = raft::testing::OrderedMapSnapshot;
        fn apply(&mut self, _: LogIndex, _: &[u8]) -> Result<(), Self::Error> {
            Ok(())
        }
        fn applied_index(&self) -> LogIndex {
            self.0
        }
        fn snapshot(&self) -> Result<Self::Snapshot, Self::Error> {
            OrderedMapStateMachine::new().snapshot()
        }
        fn restore(
            &mut self,
            reader: &mut dyn Read,
            metadata: &SnapshotMetadata,
        ) -> std::io::Result<()> {
            reader.read_exact(&mut [0; 3])?;
            self.0 = metadata.index;
            Ok(())
        }
    }
    let (_directory, store, _path, _bytes) = small_snapshot();
    let latest = store.latest().expect("latest").expect("a snapshot");
    let error = latest
        .restore_into(&mut ReadsNothing(LogIndex(0)))
        .expect_err("data left unread");
    assert!(
        matches!(
            &error,
            StorageError::StateMachineSnapshot {
                action: "restore",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("unread"), "{error}");
}

#[test]
fn commands_survive_in_the_snapshot_byte_for_byte() {
    let (_data_directory, store) = empty_store();
    let mut machine = OrderedMapStateMachine::new();
    let awkward = [
        (Bytes::new(), Bytes::from_static(b"empty key")),
        (Bytes::from_static(b"empty value"), Bytes::new()),
        (
            Bytes::from(vec![0xff; 70_000]),
            Bytes::from(vec![0; 70_000]),
        ),
    ];
    for (position, (key, value)) in awkward.iter().enumerate() {
        let command = MapCommand::Put {
            key: key.clone(),
            value: value.clone(),
        };
        machine
            .apply(LogIndex(position as u64 + 1), &command.encode())
            .expect("apply");
    }
    let saved = store
        .save(
            &mut machine.snapshot().expect("capture"),
            Term(1),
            Membership::with_voters([NodeId(1)]),
        )
        .expect("save");
    let mut restored = OrderedMapStateMachine::new();
    saved.restore_into(&mut restored).expect("restore");
    assert_eq!(restored.map(), machine.map());
}
