//! The history's records in a snapshot (format 3 on): a header record with
//! the compacted revision (`i64`) and the number of changes (`u64`), then
//! one record per change, oldest first: an `mvccpb.Event` in protobuf
//! encoding, as a watcher would receive it (for a deletion, `kv` holds the
//! key with `mod_revision` set to the deletion's revision), with `prev_kv`
//! the key before the change. From format 4, `prev_kv` is left out where
//! the history itself gives it: when the key's entry before the change was
//! written by a change of the history (the entry after the key's change
//! before), or the key did not exist. That halves a history's records of
//! overwritten keys; format 3 wrote every `prev_kv`. From format 5, a put
//! that is its key's live entry (the key's latest change, not deleted
//! since) is written as `kv` with the key and `mod_revision` alone (version
//! 0, which no real put has): the reader takes the live entry, which the
//! snapshot holds already. A store loaded with distinct keys, each once,
//! had every value written twice before.
//!
//! Reading checks what a correct writer always keeps: revisions from the
//! compacted one on (only puts at it), in order and not past the store's; keys not empty; the
//! entries' own revisions consistent with the change's.

use std::collections::HashMap;
use std::io::Write;

use bytes::Bytes;
use imbl::{OrdMap, Vector};
use prost::encoding::{self, WireType};
use prost::Message;
use raft_proto::etcd::mvccpb::{event::EventType, Event, KeyValue};

use super::entry::{Entry, SharedEntry};
use super::error::SnapshotError;
use super::history::{Change, History};
use super::snapshot::{write_record, RecordReader};
use super::stored_key::StoredKey;

const HISTORY_HEADER_BYTES: usize = 16;
/// The first snapshot format whose puts may stand for the live entry.
const LIVE_PUT_FORMAT_VERSION: u32 = 5;

/// Writes the history header and one record per change, `live` being the
/// store's live keys.
pub(super) fn write_history(
    output: &mut impl Write,
    history: &History,
    live: &OrdMap<StoredKey, SharedEntry>,
    payload: &mut Vec<u8>,
) -> Result<(), SnapshotError> {
    payload.clear();
    payload.extend_from_slice(&history.compacted().to_le_bytes());
    payload.extend_from_slice(&(history.len() as u64).to_le_bytes());
    write_record(output, payload)?;
    for change in history.iter() {
        payload.clear();
        // The key before the change is written only where the history
        // cannot give it: a value last written at or before the compacted
        // revision. Otherwise it is the entry of the key's change before.
        let prev = change
            .prev
            .as_deref()
            .filter(|prev| prev.mod_revision <= history.compacted());
        let is_live = |entry: &SharedEntry| {
            live.get(&change.key)
                .is_some_and(|live| live.mod_revision == entry.mod_revision)
        };
        let live_put = change.entry.as_ref().is_some_and(is_live);
        encode_event(change, prev, live_put, payload);
        write_record(output, payload)?;
    }
    Ok(())
}

/// Reads what [`write_history`] wrote (in snapshot format `version`), for a
/// store at `revision` whose live keys are `live`.
pub(super) fn read_history(
    records: &mut RecordReader<'_>,
    revision: i64,
    live: &OrdMap<StoredKey, SharedEntry>,
    version: u32,
) -> Result<History, SnapshotError> {
    let header = records.next_fixed::<HISTORY_HEADER_BYTES>()?;
    let compacted = i64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
    let count = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
    if !(0..=revision).contains(&compacted) {
        return Err(records.invalid(format!(
            "compacted revision {compacted} outside 0..={revision}"
        )));
    }
    let mut changes = Vector::new();
    let mut last = compacted;
    // Each key's entry after its latest change read so far.
    let mut latest: HashMap<StoredKey, Option<SharedEntry>> = HashMap::new();
    let live_puts = (version >= LIVE_PUT_FORMAT_VERSION).then_some(live);
    for _ in 0..count {
        let payload = records.next()?;
        let event = Event::decode(payload.as_slice())
            .map_err(|error| records.invalid(format!("not an event: {error}")))?;
        let mut change =
            from_event(event, &latest, live_puts).map_err(|reason| records.invalid(reason))?;
        // A key's latest put is also its live entry: one allocation for
        // both, as in the store that wrote the snapshot (format 5 says so
        // itself; before, the entry is found by its revision).
        if live_puts.is_none() {
            if let (Some(entry), Some(live)) = (&change.entry, live.get(&change.key)) {
                if live.mod_revision == entry.mod_revision && entry == live {
                    change.entry = Some(SharedEntry::clone(live));
                }
            }
        }
        // A compacted history keeps the puts at its compacted revision.
        let before_history =
            change.revision < compacted || (change.revision == compacted && change.entry.is_none());
        if before_history || change.revision < last || change.revision > revision {
            return Err(records.invalid(format!(
                "change at revision {} out of order (after {last}, compacted {compacted}, store \
                 at {revision})",
                change.revision
            )));
        }
        last = change.revision;
        latest.insert(change.key.clone(), change.entry.clone());
        changes.push_back(change);
    }
    Ok(History::from_changes(compacted, changes))
}

/// The change an event describes; a missing `prev_kv` is the key's entry
/// after its change before (`latest`), or nothing if it had none. With
/// `live` (format 5 on), a put of version 0 is the key's live entry.
fn from_event(
    event: Event,
    latest: &HashMap<StoredKey, Option<SharedEntry>>,
    live: Option<&OrdMap<StoredKey, SharedEntry>>,
) -> Result<Change, String> {
    let kv = event.kv.ok_or("an event without a key-value")?;
    if kv.key.is_empty() {
        return Err("an event of the empty key".to_string());
    }
    let revision = kv.mod_revision;
    let entry = match EventType::try_from(event.r#type) {
        Ok(EventType::Put) => match live {
            Some(live) if kv.version == 0 => Some(live_entry(&kv, live)?),
            _ => Some(SharedEntry::new(checked_entry(&kv)?)),
        },
        Ok(EventType::Delete) => None,
        Err(_) => return Err(format!("unknown event type {}", event.r#type)),
    };
    let derived = latest.get(kv.key.as_slice());
    let prev = match event.prev_kv {
        Some(prev) if prev.key != kv.key => {
            return Err("an event whose previous key-value is of another key".to_string())
        }
        Some(prev) if prev.mod_revision >= revision => {
            return Err(format!(
                "a previous key-value at revision {} for a change at {revision}",
                prev.mod_revision
            ))
        }
        Some(prev) => {
            let prev = checked_entry(&prev)?;
            if derived.is_some_and(|derived| derived.as_deref() != Some(&prev)) {
                return Err(format!(
                    "the previous key-value of a change at {revision} is not the key's entry \
                     after its change before"
                ));
            }
            Some(SharedEntry::new(prev))
        }
        None => derived.cloned().flatten(),
    };
    if entry.is_none() && prev.is_none() {
        return Err("a deletion of a key that did not exist".to_string());
    }
    Ok(Change {
        revision,
        key: StoredKey::from_vec(kv.key),
        entry,
        prev,
    })
}

/// The live entry a put of version 0 stands for: the key's, which its latest
/// put (this one) wrote, with nothing else set in the record.
fn live_entry(kv: &KeyValue, live: &OrdMap<StoredKey, SharedEntry>) -> Result<SharedEntry, String> {
    let entry = live
        .get(kv.key.as_slice())
        .filter(|entry| entry.mod_revision == kv.mod_revision);
    match entry {
        Some(entry) if kv.value.is_empty() && kv.create_revision == 0 && kv.lease == 0 => {
            Ok(SharedEntry::clone(entry))
        }
        Some(_) => Err("a put standing for a live entry carries other fields".to_string()),
        None => Err(format!(
            "a put at revision {} stands for a live entry the key does not have",
            kv.mod_revision
        )),
    }
}

/// Appends `change` as an `mvccpb.Event` with `prev` as its `prev_kv`: the
/// bytes prost would encode for it, without building the messages (whose
/// keys and values would be copies). A deletion's `kv`, and a put's that
/// is its key's live entry (`live`: the reader takes the entry from the
/// live keys), hold the key and the revision alone (version 0, which no
/// real put has).
fn encode_event(change: &Change, prev: Option<&Entry>, live: bool, output: &mut Vec<u8>) {
    let revision_only = Entry {
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: change.revision,
        version: 0,
        lease: 0,
    };
    let (kind, kv) = match &change.entry {
        Some(_) if live => (EventType::Put, &revision_only),
        Some(entry) => (EventType::Put, &**entry),
        None => (EventType::Delete, &revision_only),
    };
    if kind != EventType::Put {
        encoding::int32::encode(1, &(kind as i32), output);
    }
    encode_key_value(2, &change.key, kv, output);
    if let Some(prev) = prev {
        encode_key_value(3, &change.key, prev, output);
    }
}

/// Appends field `tag`: a `mvccpb.KeyValue` of `key` and `entry`.
fn encode_key_value(tag: u32, key: &[u8], entry: &Entry, output: &mut Vec<u8>) {
    let bytes_length = |tag, bytes: &[u8]| match bytes.len() {
        0 => 0,
        length => encoding::key_len(tag) + encoding::encoded_len_varint(length as u64) + length,
    };
    let number_length = |tag, number: &i64| match number {
        0 => 0,
        _ => encoding::int64::encoded_len(tag, number),
    };
    let length = bytes_length(1, key)
        + number_length(2, &entry.create_revision)
        + number_length(3, &entry.mod_revision)
        + number_length(4, &entry.version)
        + bytes_length(5, &entry.value)
        + number_length(6, &entry.lease);
    encoding::encode_key(tag, WireType::LengthDelimited, output);
    encoding::encode_varint(length as u64, output);
    let bytes = |tag, bytes: &[u8], output: &mut Vec<u8>| {
        if !bytes.is_empty() {
            encoding::encode_key(tag, WireType::LengthDelimited, output);
            encoding::encode_varint(bytes.len() as u64, output);
            output.extend_from_slice(bytes);
        }
    };
    let number = |tag, number: &i64, output: &mut Vec<u8>| {
        if *number != 0 {
            encoding::int64::encode(tag, number, output);
        }
    };
    bytes(1, key, output);
    number(2, &entry.create_revision, output);
    number(3, &entry.mod_revision, output);
    number(4, &entry.version, output);
    bytes(5, &entry.value, output);
    number(6, &entry.lease, output);
}

/// The entry a key-value of a live key describes, if its numbers are
/// consistent.
fn checked_entry(kv: &KeyValue) -> Result<Entry, String> {
    if kv.version < 1 || kv.create_revision < 1 || kv.create_revision > kv.mod_revision {
        return Err(format!(
            "a key-value with version {}, create revision {} and mod revision {}",
            kv.version, kv.create_revision, kv.mod_revision
        ));
    }
    Ok(Entry {
        value: Bytes::from(kv.value.clone()),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &[u8], create: i64, modified: i64, version: i64, lease: i64) -> Entry {
        Entry {
            value: Bytes::copy_from_slice(value),
            create_revision: create,
            mod_revision: modified,
            version,
            lease,
        }
    }

    #[test]
    fn events_encode_as_prost_encodes_them_with_or_without_the_previous_value() {
        let long_key = vec![b'k'; 300];
        let changes = [
            Change {
                revision: 5,
                key: StoredKey::from_slice(b"a"),
                entry: Some(SharedEntry::new(entry(b"value", 3, 5, 2, 0))),
                prev: Some(SharedEntry::new(entry(b"old", 3, 3, 1, 0))),
            },
            Change {
                revision: 9,
                key: StoredKey::from_slice(&long_key),
                entry: None,
                prev: Some(SharedEntry::new(entry(&[7; 200], 8, 8, 1, 77))),
            },
            Change {
                revision: 1 << 40,
                key: StoredKey::from_slice(b"z"),
                entry: Some(SharedEntry::new(entry(b"", 1 << 40, 1 << 40, 1, 0))),
                prev: None,
            },
        ];
        for change in &changes {
            for with_prev in [false, true] {
                let mut encoded = Vec::new();
                let prev = change.prev.as_ref().filter(|_| with_prev);
                encode_event(change, prev.map(|prev| &**prev), false, &mut encoded);
                let expected = change.to_event(with_prev).encode_to_vec();
                assert_eq!(encoded, expected, "{change:?} with_prev={with_prev}");
            }
        }
    }
}
