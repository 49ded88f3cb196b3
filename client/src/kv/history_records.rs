//! The history's records in a snapshot (format 3 on): a header record with
//! the compacted revision (`i64`) and the number of changes (`u64`), then
//! one record per change, oldest first: an `mvccpb.Event` in protobuf
//! encoding, as a watcher would receive it (for a deletion, `kv` holds the
//! key with `mod_revision` set to the deletion's revision), with `prev_kv`
//! the key before the change.
//!
//! Reading checks what a correct writer always keeps: revisions from the
//! compacted one on (only puts at it), in order and not past the store's; keys not empty; the
//! entries' own revisions consistent with the change's.

use std::io::{self, Write};

use bytes::Bytes;
use imbl::Vector;
use prost::Message;
use raft_proto::etcd::mvccpb::{event::EventType, Event, KeyValue};

use super::entry::Entry;
use super::error::SnapshotError;
use super::history::{Change, History};
use super::snapshot::{write_record, RecordReader};
use super::stored_key::StoredKey;

const HISTORY_HEADER_BYTES: usize = 16;

/// Writes the history header and one record per change.
pub(super) fn write_history(
    output: &mut impl Write,
    history: &History,
    payload: &mut Vec<u8>,
) -> Result<(), SnapshotError> {
    payload.clear();
    payload.extend_from_slice(&history.compacted().to_le_bytes());
    payload.extend_from_slice(&(history.len() as u64).to_le_bytes());
    write_record(output, payload)?;
    for change in history.iter() {
        payload.clear();
        change
            .to_event(true)
            .encode(payload)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
        write_record(output, payload)?;
    }
    Ok(())
}

/// Reads what [`write_history`] wrote, for a store at `revision`.
pub(super) fn read_history(
    records: &mut RecordReader<'_>,
    revision: i64,
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
    for _ in 0..count {
        let payload = records.next()?;
        let event = Event::decode(payload.as_slice())
            .map_err(|error| records.invalid(format!("not an event: {error}")))?;
        let change = from_event(event).map_err(|reason| records.invalid(reason))?;
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
        changes.push_back(change);
    }
    Ok(History::from_changes(compacted, changes))
}

fn from_event(event: Event) -> Result<Change, String> {
    let kv = event.kv.ok_or("an event without a key-value")?;
    if kv.key.is_empty() {
        return Err("an event of the empty key".to_string());
    }
    let revision = kv.mod_revision;
    let entry = match EventType::try_from(event.r#type) {
        Ok(EventType::Put) => Some(checked_entry(&kv)?),
        Ok(EventType::Delete) => None,
        Err(_) => return Err(format!("unknown event type {}", event.r#type)),
    };
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
        Some(prev) => Some(checked_entry(&prev)?),
        None => None,
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
