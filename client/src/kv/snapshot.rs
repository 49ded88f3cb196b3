//! Streaming the store to and from a snapshot.
//!
//! Layout: the magic bytes `RRKVSNAP`, a little-endian `u32` format version,
//! then records. A record is a little-endian `u32` payload length, the
//! payload, and the CRC32C of the payload. The records are:
//!
//! 1. the header: applied index (`u64`), revision (`i64`), key count (`u64`);
//! 2. (from format version 2) what the members published about themselves:
//!    a `PublishedMembers` message ([`crate::kv::members`]) in protobuf
//!    encoding, by increasing member id;
//! 3. one record per live key, in key order: an `mvccpb.KeyValue` in protobuf
//!    encoding;
//! 4. (from format version 3) the history since the compacted revision
//!    (`history_records.rs`; from version 4 without the previous values
//!    the history itself gives, from version 5 without the entries that
//!    record 3 holds);
//! 5. the trailer: the store's [`KvStore::digest`] (`u32`), checked against
//!    the store read back.
//!
//! Versions 1 (written before members published anything), 2 (before
//! the store kept history), 3 and 4 are read too: version 4 is version 5
//! with each live key's latest put written out again in the history,
//! version 3 is version 4 with every previous value in the history written
//! out, version 2 is version 3
//! without record 4, and a store read from it starts its history there; version 1
//! also lacks record 2.
//!
//! Writing and reading hold one record at a time, never the whole store's
//! encoding. Reading stops right after the trailer, so a snapshot may be
//! followed by other data in the same stream.

use bytes::Bytes;
use imbl::OrdMap;
use std::collections::BTreeMap;
use std::io::{self, BufWriter, Read, Write};

use prost::Message;
use raft::{LogIndex, NodeId};
use raft_proto::etcd::mvccpb::KeyValue;

use super::digest::digest_entry;
use super::entry::{Entry, SharedEntry};
use super::error::SnapshotError;
use super::history::History;
use super::history_records::{read_history, write_history};
use super::members::{validate_attributes, MemberAttributes, PublishedMembers};
use super::store::{KvStore, INITIAL_REVISION};
use super::stored_key::StoredKey;

const MAGIC: &[u8; 8] = b"RRKVSNAP";
const FORMAT_VERSION: u32 = 5;
/// The first version, which has no record of published members.
const FIRST_FORMAT_VERSION: u32 = 1;
/// The first version with the history.
const HISTORY_FORMAT_VERSION: u32 = 3;
const HEADER_BYTES: usize = 24;
const TRAILER_BYTES: usize = 4;

impl KvStore {
    /// Writes the whole store to `output` (buffered internally, flushed at
    /// the end).
    pub fn write_snapshot(&self, output: &mut dyn Write) -> Result<(), SnapshotError> {
        let mut output = BufWriter::new(output);
        output.write_all(MAGIC)?;
        output.write_all(&FORMAT_VERSION.to_le_bytes())?;
        let mut payload = Vec::with_capacity(HEADER_BYTES);
        payload.extend_from_slice(&self.applied_index.get().to_le_bytes());
        payload.extend_from_slice(&self.revision.to_le_bytes());
        payload.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        write_record(&mut output, &payload)?;
        let published = PublishedMembers {
            members: self
                .published
                .iter()
                .map(|(member, client_urls)| MemberAttributes {
                    member_id: member.0,
                    client_urls: client_urls.clone(),
                })
                .collect(),
        };
        write_record(&mut output, &published.encode_to_vec())?;
        // The digest is computed along the way: one pass over the store.
        let mut digest = self.digest_start();
        for (key, entry) in &self.entries {
            digest = digest_entry(digest, key, entry);
            payload.clear();
            entry
                .to_key_value(key, true)
                .encode(&mut payload)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
            write_record(&mut output, &payload)?;
        }
        write_history(&mut output, &self.history, &self.entries, &mut payload)?;
        write_record(&mut output, &digest.to_le_bytes())?;
        output.flush()?;
        Ok(())
    }

    /// Reads a store written by [`KvStore::write_snapshot`], checking every
    /// record's checksum, the store's invariants, and the digest. Reads in
    /// small pieces: pass a buffered reader.
    pub fn read_snapshot(input: &mut dyn Read) -> Result<KvStore, SnapshotError> {
        let mut magic = [0; MAGIC.len()];
        read_exact(input, &mut magic)?;
        if &magic != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let mut version = [0; 4];
        read_exact(input, &mut version)?;
        let version = u32::from_le_bytes(version);
        if !(FIRST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }

        let mut records = RecordReader { input, record: 0 };
        let header = records.next_fixed::<HEADER_BYTES>()?;
        let number = |offset: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&header[offset..offset + 8]);
            bytes
        };
        let applied_index = LogIndex(u64::from_le_bytes(number(0)));
        let revision = i64::from_le_bytes(number(8));
        let key_count = u64::from_le_bytes(number(16));
        if revision < INITIAL_REVISION {
            return Err(records.invalid(format!(
                "revision {revision} is below the initial revision {INITIAL_REVISION}"
            )));
        }

        let published = match version {
            FIRST_FORMAT_VERSION => BTreeMap::new(),
            _ => read_published(&mut records)?,
        };

        let mut entries = OrdMap::new();
        let mut previous_key: Option<StoredKey> = None;
        for _ in 0..key_count {
            let payload = records.next()?;
            let key_value = KeyValue::decode(payload.as_slice())
                .map_err(|error| records.invalid(format!("not a key-value: {error}")))?;
            check_key_value(&key_value, revision, previous_key.as_deref())
                .map_err(|reason| records.invalid(reason))?;
            let key = StoredKey::from_vec(key_value.key);
            previous_key = Some(key.clone());
            entries.insert(
                key,
                SharedEntry::new(Entry {
                    value: Bytes::from(key_value.value),
                    create_revision: key_value.create_revision,
                    mod_revision: key_value.mod_revision,
                    version: key_value.version,
                    lease: key_value.lease,
                }),
            );
        }

        let history = if version >= HISTORY_FORMAT_VERSION {
            read_history(&mut records, revision, &entries, version)?
        } else {
            History::default()
        };

        let recorded = u32::from_le_bytes(records.next_fixed::<TRAILER_BYTES>()?);
        let store = KvStore {
            entries,
            history,
            revision,
            applied_index,
            published,
        };
        let rebuilt = store.digest();
        if rebuilt != recorded {
            return Err(SnapshotError::DigestMismatch { recorded, rebuilt });
        }
        Ok(store)
    }
}

/// The published-members record: valid attributes, one per member, by
/// increasing member id.
fn read_published(
    records: &mut RecordReader<'_>,
) -> Result<BTreeMap<NodeId, Vec<String>>, SnapshotError> {
    let payload = records.next()?;
    let decoded = PublishedMembers::decode(payload.as_slice())
        .map_err(|error| records.invalid(format!("not a list of members: {error}")))?;
    let mut published = BTreeMap::new();
    for attributes in decoded.members {
        validate_attributes(&attributes).map_err(|error| records.invalid(error.to_string()))?;
        let member = NodeId(attributes.member_id);
        if published
            .last_key_value()
            .is_some_and(|(last, _)| *last >= member)
        {
            return Err(
                records.invalid("published members are not in increasing id order".to_string())
            );
        }
        published.insert(member, attributes.client_urls);
    }
    Ok(published)
}

/// The invariants of a live key in a store at `revision`, given the key
/// read before it (which must sort before it).
fn check_key_value(
    key_value: &KeyValue,
    revision: i64,
    previous_key: Option<&[u8]>,
) -> Result<(), String> {
    if key_value.key.is_empty() {
        return Err("empty key".to_string());
    }
    if previous_key.is_some_and(|previous| key_value.key.as_slice() <= previous) {
        return Err("keys are not in increasing order".to_string());
    }
    if key_value.version < 1 {
        return Err(format!("version {} of a live key", key_value.version));
    }
    let revisions_in_order = INITIAL_REVISION < key_value.create_revision
        && key_value.create_revision <= key_value.mod_revision
        && key_value.mod_revision <= revision;
    if !revisions_in_order {
        return Err(format!(
            "revisions out of order: create {} and mod {} in a store at revision {revision}",
            key_value.create_revision, key_value.mod_revision
        ));
    }
    Ok(())
}

pub(super) fn write_record(output: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let length = u32::try_from(payload.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a snapshot record of {} bytes exceeds 4 GiB", payload.len()),
        )
    })?;
    output.write_all(&length.to_le_bytes())?;
    output.write_all(payload)?;
    output.write_all(&crc32c::crc32c(payload).to_le_bytes())
}

/// Reads `buffer.len()` bytes; the stream ending first is a truncation.
fn read_exact(input: &mut dyn Read, buffer: &mut [u8]) -> Result<(), SnapshotError> {
    input
        .read_exact(buffer)
        .map_err(|error| match error.kind() {
            io::ErrorKind::UnexpectedEof => SnapshotError::Truncated,
            _ => SnapshotError::Io(error),
        })
}

/// Reads records one at a time, counting them for error messages.
pub(super) struct RecordReader<'input> {
    input: &'input mut dyn Read,
    record: u64,
}

impl RecordReader<'_> {
    /// The next record's verified payload.
    pub(super) fn next(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let mut length = [0; 4];
        read_exact(self.input, &mut length)?;
        let length = u32::from_le_bytes(length);
        // `take` grows the buffer only as bytes arrive, so a corrupt length
        // cannot make us allocate gigabytes up front.
        let mut payload = Vec::new();
        (&mut *self.input)
            .take(u64::from(length))
            .read_to_end(&mut payload)?;
        if payload.len() != length as usize {
            return Err(SnapshotError::Truncated);
        }
        let mut checksum = [0; 4];
        read_exact(self.input, &mut checksum)?;
        if u32::from_le_bytes(checksum) != crc32c::crc32c(&payload) {
            return Err(SnapshotError::ChecksumMismatch {
                record: self.record,
            });
        }
        self.record += 1;
        Ok(payload)
    }

    /// The next record, which must be exactly `LENGTH` bytes long.
    pub(super) fn next_fixed<const LENGTH: usize>(
        &mut self,
    ) -> Result<[u8; LENGTH], SnapshotError> {
        let payload = self.next()?;
        payload
            .as_slice()
            .try_into()
            .map_err(|_| SnapshotError::InvalidRecord {
                record: self.record - 1,
                reason: format!("{} bytes where {LENGTH} were expected", payload.len()),
            })
    }

    /// An invalid-record error about the record read last.
    pub(super) fn invalid(&self, reason: String) -> SnapshotError {
        SnapshotError::InvalidRecord {
            record: self.record.saturating_sub(1),
            reason,
        }
    }
}
