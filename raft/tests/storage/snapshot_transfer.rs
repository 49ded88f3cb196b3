//! Sending a snapshot in chunks and receiving it: any chunk size, restarts,
//! gaps, damage in transit, and interruptions.

use std::fs;

use raft::storage::snapshot::{
    SnapshotCandidate, SnapshotChunk, SnapshotFile, SnapshotReceiver, SnapshotSender,
    SnapshotStore, DEFAULT_CHUNK_SIZE_BYTES,
};
use raft::storage::StorageError;
use raft::testing::OrderedMapStateMachine;

use super::snapshot_support::{empty_store, files_in, map_with, save_map};

/// A store holding a snapshot of a map of `entries` entries.
fn source(entries: u64) -> (tempfile::TempDir, SnapshotStore, SnapshotFile) {
    let (data_directory, store) = empty_store();
    let saved = save_map(&store, entries, 3);
    (data_directory, store, saved)
}

/// Every chunk the sender gives, from where it is to the end.
fn chunks(sender: &mut SnapshotSender) -> Vec<SnapshotChunk> {
    let mut chunks = Vec::new();
    while let Some(chunk) = sender.next_chunk().expect("read chunk") {
        chunks.push(chunk);
    }
    chunks
}

/// Sends one chunk, which must not be the last.
fn send_one(sender: &mut SnapshotSender, receiver: &mut SnapshotReceiver) {
    let chunk = sender.next_chunk().expect("read").expect("a chunk");
    assert!(receiver.receive(&chunk).expect("receive").is_none());
}

/// Sends the remaining chunks; the last one gives the candidate.
fn receive_rest(sender: &mut SnapshotSender, receiver: &mut SnapshotReceiver) -> SnapshotCandidate {
    let mut candidate = None;
    for chunk in chunks(sender) {
        assert!(candidate.is_none(), "complete before the last chunk");
        candidate = receiver.receive(&chunk).expect("receive");
    }
    candidate.expect("complete after the last chunk")
}

/// Sends the remaining chunks and installs the candidate they make.
fn send_rest(sender: &mut SnapshotSender, receiver: &mut SnapshotReceiver) -> SnapshotFile {
    receive_rest(sender, receiver).install().expect("install")
}

#[test]
fn transfers_in_chunks_of_any_size() {
    let (_source_directory, _source, snapshot) = source(60);
    let size = snapshot.size_bytes() as usize;
    let original = fs::read(snapshot.path()).expect("read");
    for chunk_size in [
        1,
        2,
        7,
        64,
        1000,
        size - 1,
        size,
        size + 1,
        DEFAULT_CHUNK_SIZE_BYTES,
    ] {
        let (_directory, store) = empty_store();
        let mut sender = SnapshotSender::new(&snapshot, chunk_size).expect("sender");
        assert_eq!(sender.size_bytes(), size as u64);
        let chunks = chunks(&mut sender);
        assert_eq!(
            chunks.len(),
            size.div_ceil(chunk_size),
            "chunk size {chunk_size}"
        );
        let mut receiver = store.receiver();
        let mut offset = 0;
        for (position, chunk) in chunks.iter().enumerate() {
            let last = position + 1 == chunks.len();
            assert_eq!(chunk.offset, offset);
            assert_eq!(chunk.done, last);
            assert!(chunk.data.len() == chunk_size || last);
            offset += chunk.data.len() as u64;
            let candidate = receiver.receive(chunk).expect("receive");
            assert_eq!(candidate.is_some(), last, "chunk size {chunk_size}");
            if let Some(candidate) = candidate {
                assert_eq!(store.latest().expect("latest"), None, "not yet installed");
                candidate.install().expect("install");
            }
        }
        let latest = store.latest().expect("latest").expect("installed");
        assert_eq!(latest.metadata(), snapshot.metadata());
        assert_eq!(fs::read(latest.path()).expect("read"), original);
        let mut restored = OrderedMapStateMachine::new();
        latest.restore_into(&mut restored).expect("restore");
        assert_eq!(restored.map(), map_with(60).map());
        assert_eq!(
            files_in(store.directory()).len(),
            1,
            "no temporary file is left"
        );
    }
}

#[test]
fn a_chunk_at_offset_zero_restarts_the_transfer() {
    let (_source_directory, _source, snapshot) = source(60);
    let (_directory, store) = empty_store();
    let mut sender = SnapshotSender::new(&snapshot, 100).expect("sender");
    let mut receiver = store.receiver();
    for _ in 0..5 {
        send_one(&mut sender, &mut receiver);
    }
    assert_eq!(receiver.bytes_received(), 500);
    sender.restart();
    assert_eq!(sender.next_offset(), 0);
    let installed = send_rest(&mut sender, &mut receiver);
    assert_eq!(installed.metadata(), snapshot.metadata());
    assert_eq!(
        files_in(store.directory()),
        vec![installed
            .path()
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned()]
    );
}

#[test]
fn a_gap_is_refused_and_the_sender_restarts() {
    let (_source_directory, _source, snapshot) = source(60);
    let (_directory, store) = empty_store();
    let mut sender = SnapshotSender::new(&snapshot, 100).expect("sender");
    let all = chunks(&mut sender);
    let mut receiver = store.receiver();
    receiver.receive(&all[0]).expect("first chunk");
    match receiver.receive(&all[2]) {
        Err(StorageError::SnapshotChunkOutOfOrder { expected, found }) => {
            assert_eq!((expected, found), (100, 200));
        }
        other => panic!("expected a refused gap, got {other:?}"),
    }
    // A chunk at offset 0 starts the transfer over; one sent twice is
    // refused.
    receiver.receive(&all[0]).expect("restart");
    receiver.receive(&all[1]).expect("in order");
    assert!(matches!(
        receiver.receive(&all[1]),
        Err(StorageError::SnapshotChunkOutOfOrder {
            expected: 200,
            found: 100
        })
    ));
    // The sender restarts from the beginning, as it does on any refusal.
    sender.restart();
    let installed = send_rest(&mut sender, &mut receiver);
    assert_eq!(installed.metadata(), snapshot.metadata());
}

#[test]
fn a_chunk_with_no_transfer_started_is_refused() {
    let (_source_directory, _source, snapshot) = source(10);
    let (_directory, store) = empty_store();
    let mut sender = SnapshotSender::new(&snapshot, 50).expect("sender");
    sender.next_chunk().expect("read");
    let second = sender.next_chunk().expect("read").expect("a chunk");
    let mut receiver = store.receiver();
    assert!(matches!(
        receiver.receive(&second),
        Err(StorageError::SnapshotChunkOutOfOrder {
            expected: 0,
            found: 50
        })
    ));
    assert_eq!(files_in(store.directory()), Vec::<String>::new());
}

#[test]
fn damage_in_transit_is_refused_and_leaves_nothing() {
    let (_source_directory, _source, snapshot) = source(60);
    let (_directory, store) = empty_store();
    let mut sender = SnapshotSender::new(&snapshot, 64).expect("sender");
    let all = chunks(&mut sender);
    let mut receiver = store.receiver();
    for (position, chunk) in all.iter().enumerate() {
        let mut chunk = chunk.clone();
        if position == all.len() / 2 {
            let mut data = chunk.data.to_vec();
            data[10] ^= 0x04;
            chunk.data = data.into();
        }
        let received = receiver.receive(&chunk);
        if chunk.done {
            let error = received.expect_err("the damage is found");
            assert!(
                matches!(error, StorageError::SnapshotDamaged { .. }),
                "{error}"
            );
        } else {
            received.expect("chunk accepted");
        }
    }
    assert_eq!(files_in(store.directory()), Vec::<String>::new());
    assert_eq!(store.latest().expect("latest"), None);
    // The sender tries again and succeeds.
    sender.restart();
    let installed = send_rest(&mut sender, &mut receiver);
    assert_eq!(store.latest().expect("latest"), Some(installed));
}

#[test]
fn an_interrupted_transfer_leaves_no_snapshot_visible() {
    let (_source_directory, _source, snapshot) = source(60);
    let (directory, store) = empty_store();
    let mut sender = SnapshotSender::new(&snapshot, 100).expect("sender");

    // Abandoned: the receiver removes its temporary file.
    let mut receiver = store.receiver();
    send_one(&mut sender, &mut receiver);
    drop(receiver);
    assert_eq!(files_in(store.directory()), Vec::<String>::new());

    // A crash: the temporary file stays, is not a snapshot, and goes at
    // the next start.
    sender.restart();
    let mut receiver = store.receiver();
    for _ in 0..3 {
        send_one(&mut sender, &mut receiver);
    }
    std::mem::forget(receiver);
    assert_eq!(files_in(store.directory()).len(), 1);
    assert_eq!(store.latest().expect("latest"), None);
    let reopened = SnapshotStore::open(directory.path()).expect("reopen");
    assert_eq!(files_in(reopened.directory()), Vec::<String>::new());
}

#[test]
fn a_sender_finishes_even_when_a_newer_snapshot_replaces_its_file() {
    let (_source_directory, source_store, snapshot) = source(20);
    let (_directory, store) = empty_store();
    let mut sender = SnapshotSender::new(&snapshot, 100).expect("sender");
    let mut receiver = store.receiver();
    send_one(&mut sender, &mut receiver);
    save_map(&source_store, 40, 3);
    assert!(!snapshot.path().exists(), "the older file was removed");
    let installed = send_rest(&mut sender, &mut receiver);
    assert_eq!(installed.metadata(), snapshot.metadata());
}

#[test]
fn a_zero_chunk_size_is_refused() {
    let (_source_directory, _source, snapshot) = source(1);
    assert!(matches!(
        SnapshotSender::new(&snapshot, 0),
        Err(StorageError::InvalidOptions { .. })
    ));
}

#[test]
fn a_candidate_is_not_the_snapshot_until_installed_and_goes_when_dropped() {
    let (_source_directory, _source, snapshot) = source(60);
    let (directory, store) = empty_store();
    let mut sender = SnapshotSender::new(&snapshot, 100).expect("sender");
    let mut receiver = store.receiver();

    // Refused by the core: dropped, and its file with it.
    let candidate = receive_rest(&mut sender, &mut receiver);
    assert_eq!(candidate.metadata(), snapshot.metadata());
    assert_eq!(store.latest().expect("latest"), None);
    assert_eq!(files_in(store.directory()).len(), 1);
    drop(candidate);
    assert_eq!(files_in(store.directory()), Vec::<String>::new());

    // Left by a crash: not a snapshot, and gone at the next start.
    sender.restart();
    std::mem::forget(receive_rest(&mut sender, &mut receiver));
    assert_eq!(store.latest().expect("latest"), None);
    let reopened = SnapshotStore::open(directory.path()).expect("reopen");
    assert_eq!(files_in(reopened.directory()), Vec::<String>::new());

    // Accepted: installed, and the newest snapshot.
    sender.restart();
    let installed = send_rest(&mut sender, &mut receiver);
    assert_eq!(store.latest().expect("latest"), Some(installed));
}

#[test]
fn a_transfer_must_hold_exactly_the_bytes_it_announced() {
    let (_source_directory, _source, snapshot) = source(60);
    let size = snapshot.size_bytes();
    let (_directory, store) = empty_store();
    let mut sender = SnapshotSender::new(&snapshot, 100).expect("sender");
    let all = chunks(&mut sender);

    // More than announced: refused before the excess is written.
    let mut receiver = store.receiver().expecting(size - 1);
    let mut refused = None;
    for chunk in &all {
        if let Err(error) = receiver.receive(chunk) {
            refused = Some(error);
            break;
        }
    }
    match refused {
        Some(StorageError::SnapshotSizeMismatch {
            announced,
            received,
        }) => assert_eq!((announced, received), (size - 1, size)),
        other => panic!("expected too many bytes to be refused, got {other:?}"),
    }
    assert_eq!(files_in(store.directory()), Vec::<String>::new());

    // Fewer than announced: the last chunk is refused.
    let mut receiver = store.receiver().expecting(size + 1);
    let (last, rest) = all.split_last().expect("chunks");
    for chunk in rest {
        receiver.receive(chunk).expect("within the announced size");
    }
    assert!(matches!(
        receiver.receive(last),
        Err(StorageError::SnapshotSizeMismatch { announced, received })
            if (announced, received) == (size + 1, size)
    ));
    assert_eq!(files_in(store.directory()), Vec::<String>::new());

    // Exactly as announced: complete.
    let mut receiver = store.receiver().expecting(size);
    sender.restart();
    let installed = send_rest(&mut sender, &mut receiver);
    assert_eq!(installed.metadata(), snapshot.metadata());
}
