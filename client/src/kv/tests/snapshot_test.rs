//! Snapshots round-trip the store exactly, and damage is detected.

use raft::LogIndex;

use super::support::{delete_request, Replica};
use crate::kv::{Command, KvStore, SnapshotError};

fn sample_replica() -> Replica {
    let mut replica = Replica::new();
    replica.put("a", "1");
    replica.put("b", "");
    replica.put("a", "2");
    replica.put("c/\u{0}binary", "\u{ff}");
    replica.put("d", "4");
    replica.delete(delete_request("d", ""));
    replica
}

fn sample_store() -> KvStore {
    sample_replica().store
}

fn snapshot_bytes(store: &KvStore) -> Vec<u8> {
    let mut bytes = Vec::new();
    store.write_snapshot(&mut bytes).unwrap();
    bytes
}

#[test]
fn a_snapshot_restores_the_same_store() {
    let store = sample_store();
    let bytes = snapshot_bytes(&store);
    let restored = KvStore::read_snapshot(&mut bytes.as_slice()).unwrap();
    assert_eq!(restored, store);
    assert_eq!(restored.digest(), store.digest());
    assert_eq!(restored.revision(), 7);
    assert_eq!(restored.applied_index(), LogIndex(6));
    assert_eq!(restored.len(), 3);
}

#[test]
fn an_empty_store_round_trips() {
    let store = KvStore::new();
    let restored = KvStore::read_snapshot(&mut snapshot_bytes(&store).as_slice()).unwrap();
    assert_eq!(restored, store);
}

#[test]
fn a_restored_store_carries_on_like_the_original() {
    let mut original = sample_store();
    let mut restored = KvStore::read_snapshot(&mut snapshot_bytes(&original).as_slice()).unwrap();
    let command = Command::Put(super::support::put_request("a", "3")).into_bytes();
    original.apply(LogIndex(7), &command).unwrap();
    restored.apply(LogIndex(7), &command).unwrap();
    assert_eq!(restored, original);
}

#[test]
fn reading_stops_at_the_end_of_the_snapshot() {
    let store = sample_store();
    let mut bytes = snapshot_bytes(&store);
    let snapshot_length = bytes.len();
    bytes.extend_from_slice(b"whatever follows");
    let mut input = bytes.as_slice();
    KvStore::read_snapshot(&mut input).unwrap();
    assert_eq!(input, b"whatever follows");
    assert_eq!(bytes.len() - input.len(), snapshot_length);
}

#[test]
fn every_truncation_is_detected() {
    let bytes = snapshot_bytes(&sample_store());
    for length in 0..bytes.len() {
        let result = KvStore::read_snapshot(&mut &bytes[..length]);
        assert!(
            matches!(result, Err(SnapshotError::Truncated)),
            "cut at {length} of {}: {result:?}",
            bytes.len()
        );
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    let bytes = snapshot_bytes(&sample_store());
    for position in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[position] ^= 0x40;
        let result = KvStore::read_snapshot(&mut damaged.as_slice());
        assert!(result.is_err(), "flip at {position} went unnoticed");
    }
}

#[test]
fn foreign_data_is_not_a_snapshot() {
    let result = KvStore::read_snapshot(&mut b"not a snapshot at all".as_slice());
    assert!(
        matches!(result, Err(SnapshotError::NotASnapshot)),
        "{result:?}"
    );

    let mut newer = snapshot_bytes(&KvStore::new());
    newer[8] = 2;
    let result = KvStore::read_snapshot(&mut newer.as_slice());
    assert!(
        matches!(
            result,
            Err(SnapshotError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        ),
        "{result:?}"
    );
}

#[test]
fn the_digest_tells_different_stores_apart() {
    let store = sample_store();
    // Another replica of the same history.
    assert_eq!(sample_replica().store.digest(), store.digest());

    // Same keys and values, other history: the revisions differ.
    let mut other_history = Replica::new();
    other_history.put("a", "2");
    other_history.put("b", "");
    other_history.put("c/\u{0}binary", "\u{ff}");
    assert_ne!(other_history.store.digest(), store.digest());

    // A value moved between key and value must not collide.
    let mut left = Replica::new();
    left.put("ab", "c");
    let mut right = Replica::new();
    right.put("a", "bc");
    assert_ne!(left.store.digest(), right.store.digest());

    assert_ne!(KvStore::new().digest(), store.digest());
}
