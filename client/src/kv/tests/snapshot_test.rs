//! Snapshots round-trip the store exactly, and damage is detected.

use prost::Message;
use raft::{LogIndex, NodeId};
use raft_proto::etcd::mvccpb::{Event, KeyValue};

use super::support::{delete_request, Replica};
use crate::kv::history::History;
use crate::kv::members::{MemberAttributes, PublishedMembers};
use crate::kv::{Command, KvStore, SnapshotError};

fn sample_replica() -> Replica {
    let mut replica = Replica::new();
    replica.put("a", "1");
    replica.put("b", "");
    replica.put("a", "2");
    replica.put("c/\u{0}binary", "\u{ff}");
    replica.put("d", "4");
    replica.publish(3, &["http://127.0.0.1:2379"]).unwrap();
    replica.delete(delete_request("d", ""));
    replica.publish(1, &["https://a:1", "https://b:2"]).unwrap();
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
    assert_eq!(restored.applied_index(), LogIndex(8));
    assert_eq!(restored.len(), 3);
    assert_eq!(
        restored.client_urls(NodeId(1)),
        Some(&["https://a:1".to_string(), "https://b:2".to_string()][..])
    );
    assert_eq!(
        restored.client_urls(NodeId(3)),
        Some(&["http://127.0.0.1:2379".to_string()][..])
    );
}

#[test]
fn a_restored_store_shares_entries_as_the_one_that_wrote_it() {
    let store = sample_store();
    let restored = KvStore::read_snapshot(&mut snapshot_bytes(&store).as_slice()).unwrap();
    let mut shared = 0;
    for change in restored.history.iter() {
        // A key's latest put is its live entry, one allocation for both.
        if let (Some(entry), Some(live)) = (&change.entry, restored.entries.get(&change.key)) {
            assert_eq!(
                std::sync::Arc::ptr_eq(entry, live),
                entry.mod_revision == live.mod_revision
            );
            shared += usize::from(std::sync::Arc::ptr_eq(entry, live));
        }
    }
    assert_eq!(shared, 3, "a, b and c");
}

/// The records of a snapshot `bytes`, after the magic bytes and version.
fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut records = Vec::new();
    let mut position = 12;
    while position < bytes.len() {
        let length = u32::from_le_bytes(bytes[position..position + 4].try_into().unwrap());
        let end = position + 4 + length as usize + 4;
        records.push(&bytes[position..end]);
        position = end;
    }
    records
}

/// `bytes` (a version 4 snapshot of a store with `changes` changes in its
/// history) as an older `version` wrote it: version 2 without the history
/// records, version 1 without the published-members record either.
fn as_older_version(bytes: &[u8], changes: usize, version: u32) -> Vec<u8> {
    let records = records(bytes);
    let history_start = records.len() - 1 - (1 + changes);
    let mut older = bytes[..8].to_vec();
    older.extend_from_slice(&version.to_le_bytes());
    older.extend_from_slice(records[0]);
    let first_key = if version == 1 { 2 } else { 1 };
    for record in &records[first_key..history_start] {
        older.extend_from_slice(record);
    }
    older.extend_from_slice(records[records.len() - 1]);
    older
}

/// `bytes` without its published-members record, the version unchanged.
fn without_members(bytes: &[u8]) -> Vec<u8> {
    let records = records(bytes);
    let mut without = bytes[..12].to_vec();
    without.extend_from_slice(records[0]);
    for record in &records[2..] {
        without.extend_from_slice(record);
    }
    without
}

#[test]
fn older_snapshots_read_with_what_their_version_lacks() {
    let mut replica = Replica::new();
    replica.put("a", "1");
    replica.put("b", "2");
    let store = replica.store;
    let changes = store.history_len();
    let mut expected = store.clone();
    expected.history = History::default();
    for version in [1, 2] {
        let older = as_older_version(&snapshot_bytes(&store), changes, version);
        let restored = KvStore::read_snapshot(&mut older.as_slice()).unwrap();
        assert_eq!(restored, expected, "version {version}");
        assert_eq!(restored.client_urls(NodeId(1)), None);
    }
}

/// `store`'s snapshot with its history records replaced by `events` (one
/// per change), as version `version`.
fn with_history_events(store: &KvStore, version: u32, events: &[Vec<u8>]) -> Vec<u8> {
    let bytes = snapshot_bytes(store);
    let records = records(&bytes);
    let changes = store.history_len();
    let history_start = records.len() - 1 - changes;
    let mut rewritten = bytes[..8].to_vec();
    rewritten.extend_from_slice(&version.to_le_bytes());
    for record in &records[..history_start] {
        rewritten.extend_from_slice(record);
    }
    for payload in events {
        rewritten.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rewritten.extend_from_slice(payload);
        rewritten.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    }
    rewritten.extend_from_slice(records[records.len() - 1]);
    rewritten
}

#[test]
fn a_version_3_history_with_every_previous_value_reads_the_same() {
    let store = sample_store();
    let every_prev: Vec<Vec<u8>> = store
        .history
        .iter()
        .map(|change| change.to_event(true).encode_to_vec())
        .collect();
    let version_3 = with_history_events(&store, 3, &every_prev);
    assert!(
        version_3.len() > snapshot_bytes(&store).len(),
        "version 4 is smaller"
    );
    let restored = KvStore::read_snapshot(&mut version_3.as_slice()).unwrap();
    assert_eq!(restored, store);
}

#[test]
fn a_version_4_history_with_live_puts_written_out_reads_the_same() {
    let store = sample_store();
    let written_out: Vec<Vec<u8>> = store
        .history
        .iter()
        .map(|change| change.to_event(false).encode_to_vec())
        .collect();
    let version_4 = with_history_events(&store, 4, &written_out);
    let version_5 = snapshot_bytes(&store);
    // "a", "b" and "c" have their latest puts in the history.
    assert!(version_4.len() > version_5.len(), "version 5 is smaller");
    let restored = KvStore::read_snapshot(&mut version_4.as_slice()).unwrap();
    assert_eq!(restored, store);
}

/// A put of `key` at `revision` standing for the live entry (format 5).
fn live_put(key: &str, revision: i64) -> Vec<u8> {
    Event {
        kv: Some(KeyValue {
            key: key.as_bytes().to_vec(),
            mod_revision: revision,
            ..KeyValue::default()
        }),
        ..Event::default()
    }
    .encode_to_vec()
}

#[test]
fn a_put_standing_for_a_live_entry_must_match_one() {
    let store = sample_store();
    let events = |latest: Vec<u8>| {
        let mut events: Vec<Vec<u8>> = store
            .history
            .iter()
            .map(|change| change.to_event(false).encode_to_vec())
            .collect();
        // The last put of "c/\0binary" (revision 5) is the fourth change.
        events[3] = latest;
        events
    };
    let accepted = with_history_events(&store, 5, &events(live_put("c/\u{0}binary", 5)));
    assert_eq!(
        KvStore::read_snapshot(&mut accepted.as_slice()).unwrap(),
        store
    );
    for (version, event, reason) in [
        (
            5,
            live_put("c/\u{0}binary", 4),
            "a live entry the key does not have",
        ),
        (5, live_put("zz", 5), "a live entry the key does not have"),
        (
            4,
            live_put("c/\u{0}binary", 5),
            "a key-value with version 0",
        ),
    ] {
        let damaged = with_history_events(&store, version, &events(event));
        let error = KvStore::read_snapshot(&mut damaged.as_slice()).unwrap_err();
        assert!(error.to_string().contains(reason), "{error}");
    }
}

#[test]
fn a_previous_value_the_history_contradicts_is_refused() {
    let store = sample_store();
    let mut events: Vec<Vec<u8>> = Vec::new();
    for change in store.history.iter() {
        let mut event = change.to_event(true);
        // The second put of "a" claims a value "a" never had.
        if let Some(prev) = event.prev_kv.as_mut() {
            prev.value = b"never".to_vec();
        }
        events.push(event.encode_to_vec());
    }
    let damaged = with_history_events(&store, 4, &events);
    let error = KvStore::read_snapshot(&mut damaged.as_slice()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("is not the key's entry after its change before"),
        "{error}"
    );
}

#[test]
fn published_members_out_of_order_or_invalid_are_refused() {
    let header_end = 8 + 4 + (4 + 24 + 4);
    let with_members = |members: Vec<MemberAttributes>| {
        let bytes = snapshot_bytes(&KvStore::new());
        let first = without_members(&bytes);
        let mut damaged = bytes[..header_end].to_vec();
        let payload = PublishedMembers { members }.encode_to_vec();
        damaged.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        damaged.extend_from_slice(&payload);
        damaged.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        damaged.extend_from_slice(&first[header_end..]);
        damaged
    };
    let member = |id: u64, url: &str| MemberAttributes {
        member_id: id,
        client_urls: vec![url.to_string()],
    };
    let accepted = with_members(vec![member(1, "http://a:1"), member(2, "http://b:1")]);
    KvStore::read_snapshot(&mut accepted.as_slice()).unwrap();
    for (members, reason) in [
        (
            vec![member(2, "http://b:1"), member(1, "http://a:1")],
            "increasing id order",
        ),
        (
            vec![member(1, "http://a:1"), member(1, "http://a:2")],
            "increasing id order",
        ),
        (vec![member(0, "http://a:1")], "member id 0"),
        (vec![member(1, "gopher://a:1")], "scheme"),
    ] {
        let bytes = with_members(members);
        match KvStore::read_snapshot(&mut bytes.as_slice()) {
            Err(SnapshotError::InvalidRecord {
                record: 1,
                reason: found,
            }) => {
                assert!(found.contains(reason), "{found:?} lacks {reason:?}")
            }
            other => panic!("expected record 1 refused for {reason:?}, got {other:?}"),
        }
    }
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
    original.apply(LogIndex(9), &command).unwrap();
    restored.apply(LogIndex(9), &command).unwrap();
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

    for version in [0, 6] {
        let mut other = snapshot_bytes(&KvStore::new());
        other[8] = version;
        let result = KvStore::read_snapshot(&mut other.as_slice());
        assert!(
            matches!(
                result,
                Err(SnapshotError::UnsupportedVersion {
                    found,
                    supported: 5
                }) if found == u32::from(version)
            ),
            "{result:?}"
        );
    }
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
