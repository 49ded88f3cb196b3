//! Framing of the records a WAL segment holds.
//!
//! Every record is a 12-byte header followed by its payload:
//!
//! ```text
//! offset  size  field
//!      0     4  payload length in bytes (little endian)
//!      4     1  record type (1 = entry, 2 = hard state, 3 = purge)
//!      5     3  reserved, always zero
//!      8     4  CRC32C of the type byte followed by the payload (little endian)
//!     12     n  payload
//! ```
//!
//! The length is not under the checksum itself, but a wrong length makes the
//! checksum run over the wrong bytes, so it fails. The reserved bytes and the
//! type let a reader reject most garbage before computing any checksum, which
//! recovery relies on when it searches for valid records after a bad one.
//!
//! Payloads (all integers little endian):
//!
//! - entry: index `u64`, term `u64`, kind `u8`, then the kind's body. Kind 0
//!   is a no-op (no body), kind 1 a command (the rest of the payload). New
//!   kinds (membership changes) get new numbers; a reader meeting a kind it
//!   does not know reports it instead of guessing.
//! - hard state: term `u64`, vote `u64` (0 for no vote; node id 0 is
//!   reserved).
//! - purge: index `u64`, term `u64`, flags `u8`: every entry up to `index`
//!   is in a snapshot whose last entry had `term`. Flag bit 0 says whether
//!   the entries after `index` were kept (the log held `index` with `term`)
//!   or the snapshot replaced the whole log; replay follows that decision
//!   rather than re-deriving it, since the entries it depended on may be in
//!   segments removed since. Other bits are zero.
//!
//! [`decode_record`] never panics, whatever the input: it returns a
//! [`DecodeError`].

use bytes::Bytes;
use thiserror::Error;

use crate::types::{Entry, EntryPayload, HardState, LogIndex, NodeId, Term};

/// Size of the fixed header in front of every record's payload.
pub const RECORD_HEADER_BYTES: usize = 12;

/// The largest payload a record may carry. Bigger lengths are garbage: this
/// keeps a corrupt length from making a reader allocate gigabytes.
pub const MAX_RECORD_PAYLOAD_BYTES: usize = 256 << 20;

const TYPE_ENTRY: u8 = 1;
const TYPE_HARD_STATE: u8 = 2;
const TYPE_PURGE: u8 = 3;

const ENTRY_KIND_NOOP: u8 = 0;
const ENTRY_KIND_COMMAND: u8 = 1;
/// A configuration: voter count (u32), learner count (u32), then the
/// voters' and the learners' ids (u64 each), little-endian, ascending, then
/// the members' addresses if any (`storage/addresses.rs`).
const ENTRY_KIND_CONFIGURATION: u8 = 2;

/// Size of an entry record's payload before the command bytes.
const ENTRY_FIXED_BYTES: usize = 17;

/// One record of the write-ahead log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A log entry. An entry whose index is at or below the last one replaces
    /// that suffix of the log (a conflicting suffix is truncated).
    Entry(Entry),
    /// The term and vote; the latest one in the log is the current one.
    HardState(HardState),
    /// Every entry up to `index` is in a snapshot and removed from the log.
    Purge {
        /// The last index the snapshot covers.
        index: LogIndex,
        /// The term of the entry at `index`.
        term: Term,
        /// Whether the entries after `index` were kept; if not, the
        /// snapshot replaced the whole log.
        keeps_suffix: bool,
    },
}

/// Why bytes could not be decoded as a record.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record runs past the end of the available bytes (typically a
    /// write cut short by a crash).
    #[error("record needs {needed} bytes but only {available} remain")]
    Truncated {
        /// Bytes the record claims to need, header included.
        needed: usize,
        /// Bytes that were available.
        available: usize,
    },
    /// The length field is beyond [`MAX_RECORD_PAYLOAD_BYTES`].
    #[error("record length {0} exceeds the maximum of {MAX_RECORD_PAYLOAD_BYTES} bytes")]
    TooLong(usize),
    /// The checksum does not match the bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The reserved header bytes are not zero.
    #[error("reserved header bytes are not zero")]
    ReservedNotZero,
    /// The checksum is valid but the record type is unknown: the file was
    /// probably written by a newer version.
    #[error("unknown record type {0} (written by a newer version of RustyRaft?)")]
    UnknownRecordType(u8),
    /// The checksum is valid but the entry kind is unknown: the file was
    /// probably written by a newer version.
    #[error("unknown entry kind {0} (written by a newer version of RustyRaft?)")]
    UnknownEntryKind(u8),
    /// The checksum is valid but a purge record has flags this build does
    /// not know.
    #[error("unknown purge flags {0:#04x} (written by a newer version of RustyRaft?)")]
    UnknownPurgeFlags(u8),
    /// The payload has the wrong size for its type.
    #[error("{what} payload has {found} bytes, expected {expected}")]
    BadPayloadLength {
        /// The record type or entry kind.
        what: &'static str,
        /// The expected size (the minimum, for commands).
        expected: usize,
        /// The size found.
        found: usize,
    },
    /// A configuration entry's member addresses cannot be read.
    #[error("configuration entry: at byte {offset} of its payload: {reason}")]
    BadConfiguration {
        /// Where in the payload.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The encoded size of `record`, header included.
pub fn encoded_len(record: &Record) -> usize {
    RECORD_HEADER_BYTES
        + match record {
            Record::Entry(entry) => entry_payload_len(entry),
            Record::HardState(_) => 16,
            Record::Purge { .. } => 17,
        }
}

fn entry_payload_len(entry: &Entry) -> usize {
    ENTRY_FIXED_BYTES
        + match &entry.payload {
            EntryPayload::Noop => 0,
            EntryPayload::Command(command) => command.len(),
            EntryPayload::Configuration(membership) => {
                8 + 8 * (membership.voters.len() + membership.learners.len())
                    + crate::storage::addresses::extras_len(membership)
            }
        }
}

/// Appends the framed encoding of `record` to `out`.
///
/// # Panics
///
/// If an entry's command is larger than [`MAX_RECORD_PAYLOAD_BYTES`]; the
/// WAL checks this before it encodes.
pub fn encode_record(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Entry(entry) => encode_entry(entry, out),
        Record::HardState(hard_state) => encode_frame(TYPE_HARD_STATE, 16, out, |out| {
            out.extend_from_slice(&hard_state.term.0.to_le_bytes());
            let vote = hard_state.voted_for.map_or(0, |node| node.0);
            out.extend_from_slice(&vote.to_le_bytes());
        }),
        Record::Purge {
            index,
            term,
            keeps_suffix,
        } => encode_frame(TYPE_PURGE, 17, out, |out| {
            out.extend_from_slice(&index.0.to_le_bytes());
            out.extend_from_slice(&term.0.to_le_bytes());
            out.push(u8::from(*keeps_suffix));
        }),
    }
}

/// Appends the framed encoding of an entry record to `out`, as
/// [`encode_record`] does for [`Record::Entry`], without cloning the entry.
///
/// # Panics
///
/// As [`encode_record`].
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    encode_frame(TYPE_ENTRY, entry_payload_len(entry), out, |out| {
        out.extend_from_slice(&entry.index.0.to_le_bytes());
        out.extend_from_slice(&entry.term.0.to_le_bytes());
        match &entry.payload {
            EntryPayload::Noop => out.push(ENTRY_KIND_NOOP),
            EntryPayload::Command(command) => {
                out.push(ENTRY_KIND_COMMAND);
                out.extend_from_slice(command);
            }
            EntryPayload::Configuration(membership) => {
                out.push(ENTRY_KIND_CONFIGURATION);
                let count = |set: &std::collections::BTreeSet<crate::NodeId>| {
                    u32::try_from(set.len()).expect("a configuration has fewer than 2^32 members")
                };
                out.extend_from_slice(&count(&membership.voters).to_le_bytes());
                out.extend_from_slice(&count(&membership.learners).to_le_bytes());
                for node in membership.voters.iter().chain(&membership.learners) {
                    out.extend_from_slice(&node.0.to_le_bytes());
                }
                crate::storage::addresses::encode_extras(membership, out);
            }
        }
    });
}

fn encode_frame(
    record_type: u8,
    payload_len: usize,
    out: &mut Vec<u8>,
    write_payload: impl FnOnce(&mut Vec<u8>),
) {
    assert!(
        payload_len <= MAX_RECORD_PAYLOAD_BYTES,
        "record payload of {payload_len} bytes exceeds MAX_RECORD_PAYLOAD_BYTES"
    );
    let start = out.len();
    out.reserve(RECORD_HEADER_BYTES + payload_len);
    // The conversion cannot truncate: the assertion above bounds the length.
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[record_type, 0, 0, 0]);
    out.extend_from_slice(&[0; 4]); // the checksum, filled in below
    write_payload(out);
    debug_assert_eq!(out.len() - start, RECORD_HEADER_BYTES + payload_len);
    let checksum = crc32c::crc32c_append(
        crc32c::crc32c(&[record_type]),
        &out[start + RECORD_HEADER_BYTES..],
    );
    out[start + 8..start + 12].copy_from_slice(&checksum.to_le_bytes());
}

/// The header fields of a record, read without looking at its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub payload_len: usize,
    pub record_type: u8,
    pub checksum: u32,
}

impl FrameHeader {
    /// The whole record's size, header included.
    pub fn record_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload_len
    }
}

/// Reads the header at the start of `bytes`, checking only what needs no
/// payload: length bound and reserved bytes.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<FrameHeader, DecodeError> {
    let Some(header) = bytes.get(..RECORD_HEADER_BYTES) else {
        return Err(DecodeError::Truncated {
            needed: RECORD_HEADER_BYTES,
            available: bytes.len(),
        });
    };
    let payload_len = read_u32(header, 0) as usize;
    if payload_len > MAX_RECORD_PAYLOAD_BYTES {
        return Err(DecodeError::TooLong(payload_len));
    }
    if header[5..8] != [0, 0, 0] {
        return Err(DecodeError::ReservedNotZero);
    }
    Ok(FrameHeader {
        payload_len,
        record_type: header[4],
        checksum: read_u32(header, 8),
    })
}

/// Whether `bytes` starts with something that could be a record header of a
/// known type. Cheap: used to skip garbage quickly while searching.
pub(crate) fn plausible_record_start(bytes: &[u8]) -> bool {
    match decode_header(bytes) {
        Ok(header) => {
            matches!(
                header.record_type,
                TYPE_ENTRY | TYPE_HARD_STATE | TYPE_PURGE
            ) && header.record_len() <= bytes.len()
        }
        Err(_) => false,
    }
}

/// Decodes the record at the start of `bytes`, returning it and its encoded
/// size. Never panics.
pub fn decode_record(bytes: &[u8]) -> Result<(Record, usize), DecodeError> {
    let header = decode_header(bytes)?;
    let record_len = header.record_len();
    let Some(payload) = bytes.get(RECORD_HEADER_BYTES..record_len) else {
        return Err(DecodeError::Truncated {
            needed: record_len,
            available: bytes.len(),
        });
    };
    let computed = crc32c::crc32c_append(crc32c::crc32c(&[header.record_type]), payload);
    if computed != header.checksum {
        return Err(DecodeError::ChecksumMismatch {
            stored: header.checksum,
            computed,
        });
    }
    let record = match header.record_type {
        TYPE_ENTRY => Record::Entry(decode_entry(payload)?),
        TYPE_HARD_STATE => {
            expect_len("hard state", payload, 16)?;
            let vote = read_u64(payload, 8);
            Record::HardState(HardState {
                term: Term(read_u64(payload, 0)),
                voted_for: (vote != 0).then_some(NodeId(vote)),
            })
        }
        TYPE_PURGE => {
            expect_len("purge", payload, 17)?;
            let keeps_suffix = match payload[16] {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::UnknownPurgeFlags(payload[16])),
            };
            Record::Purge {
                index: LogIndex(read_u64(payload, 0)),
                term: Term(read_u64(payload, 8)),
                keeps_suffix,
            }
        }
        other => return Err(DecodeError::UnknownRecordType(other)),
    };
    Ok((record, record_len))
}

fn decode_configuration(body: &[u8]) -> Result<crate::Membership, DecodeError> {
    let bad_length = |expected| DecodeError::BadPayloadLength {
        what: "configuration entry",
        expected,
        found: body.len() + ENTRY_FIXED_BYTES,
    };
    if body.len() < 8 {
        return Err(bad_length(ENTRY_FIXED_BYTES + 8));
    }
    let voters = u32::from_le_bytes(body[0..4].try_into().expect("4 bytes")) as usize;
    let learners = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes")) as usize;
    let expected = 8 + 8 * (voters + learners);
    if body.len() < expected {
        return Err(bad_length(ENTRY_FIXED_BYTES + expected));
    }
    let (addresses, removed) = crate::storage::addresses::decode_extras(&body[expected..])
        .map_err(|(offset, reason)| DecodeError::BadConfiguration {
            offset: ENTRY_FIXED_BYTES + expected + offset,
            reason,
        })?;
    let ids: Vec<crate::NodeId> = (0..voters + learners)
        .map(|position| crate::NodeId(read_u64(body, 8 + 8 * position)))
        .collect();
    Ok(crate::Membership {
        voters: ids[..voters].iter().copied().collect(),
        learners: ids[voters..].iter().copied().collect(),
        addresses,
        removed,
    })
}

fn decode_entry(payload: &[u8]) -> Result<Entry, DecodeError> {
    if payload.len() < ENTRY_FIXED_BYTES {
        return Err(DecodeError::BadPayloadLength {
            what: "entry",
            expected: ENTRY_FIXED_BYTES,
            found: payload.len(),
        });
    }
    let index = LogIndex(read_u64(payload, 0));
    let term = Term(read_u64(payload, 8));
    let body = &payload[ENTRY_FIXED_BYTES..];
    let payload = match payload[16] {
        ENTRY_KIND_NOOP => {
            expect_len("no-op entry", body, 0)?;
            EntryPayload::Noop
        }
        ENTRY_KIND_COMMAND => EntryPayload::Command(Bytes::copy_from_slice(body)),
        ENTRY_KIND_CONFIGURATION => EntryPayload::Configuration(decode_configuration(body)?.into()),
        other => return Err(DecodeError::UnknownEntryKind(other)),
    };
    Ok(Entry {
        term,
        index,
        payload,
    })
}

fn expect_len(what: &'static str, payload: &[u8], expected: usize) -> Result<(), DecodeError> {
    if payload.len() == expected {
        Ok(())
    } else {
        Err(DecodeError::BadPayloadLength {
            what,
            expected,
            found: payload.len(),
        })
    }
}

/// Callers check the length first; out-of-range reads yield zero rather
/// than panic, as a second line of defence.
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|slice| slice.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|slice| slice.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encode(record: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(record, &mut out);
        out
    }

    fn arbitrary_record() -> impl Strategy<Value = Record> {
        let payload = prop_oneof![
            Just(EntryPayload::Noop),
            proptest::collection::vec(any::<u8>(), 0..300)
                .prop_map(|bytes| EntryPayload::Command(Bytes::from(bytes))),
            (
                proptest::collection::btree_set(1..u64::MAX, 0..8),
                proptest::collection::btree_set(1..u64::MAX, 0..4),
                proptest::collection::btree_map(1..u64::MAX, "[a-z0-9.:-]{0,24}", 0..4),
                proptest::collection::btree_set(1..u64::MAX, 0..3),
            )
                .prop_map(|(voters, learners, addresses, removed)| {
                    EntryPayload::Configuration(
                        crate::Membership {
                            voters: voters.into_iter().map(crate::NodeId).collect(),
                            learners: learners.into_iter().map(crate::NodeId).collect(),
                            addresses: addresses
                                .into_iter()
                                .map(|(node, address)| (crate::NodeId(node), address))
                                .collect(),
                            removed: removed.into_iter().map(crate::NodeId).collect(),
                        }
                        .into(),
                    )
                }),
        ];
        prop_oneof![
            (any::<u64>(), any::<u64>(), payload).prop_map(|(index, term, payload)| {
                Record::Entry(Entry {
                    term: Term(term),
                    index: LogIndex(index),
                    payload,
                })
            }),
            (any::<u64>(), proptest::option::of(1..u64::MAX)).prop_map(|(term, vote)| {
                Record::HardState(HardState {
                    term: Term(term),
                    voted_for: vote.map(NodeId),
                })
            }),
            (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(index, term, keeps_suffix)| {
                Record::Purge {
                    index: LogIndex(index),
                    term: Term(term),
                    keeps_suffix,
                }
            }),
        ]
    }

    #[test]
    fn layout_of_a_command_entry_is_as_documented() {
        let record = Record::Entry(Entry {
            term: Term(2),
            index: LogIndex(7),
            payload: EntryPayload::Command(Bytes::from_static(b"xy")),
        });
        let bytes = encode(&record);
        assert_eq!(bytes.len(), RECORD_HEADER_BYTES + 17 + 2);
        assert_eq!(&bytes[0..4], &19u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &[TYPE_ENTRY, 0, 0, 0]);
        assert_eq!(&bytes[12..20], &7u64.to_le_bytes());
        assert_eq!(&bytes[20..28], &2u64.to_le_bytes());
        assert_eq!(bytes[28], ENTRY_KIND_COMMAND);
        assert_eq!(&bytes[29..], b"xy");
        let checksum = crc32c::crc32c_append(crc32c::crc32c(&[TYPE_ENTRY]), &bytes[12..]);
        assert_eq!(&bytes[8..12], &checksum.to_le_bytes());
    }

    #[test]
    fn a_valid_record_of_an_unknown_entry_kind_is_reported_not_guessed() {
        let mut bytes = encode(&Record::Entry(Entry {
            term: Term(1),
            index: LogIndex(1),
            payload: EntryPayload::Noop,
        }));
        bytes[28] = 9; // a kind from the future, with a matching checksum
        let checksum = crc32c::crc32c_append(crc32c::crc32c(&[TYPE_ENTRY]), &bytes[12..]);
        bytes[8..12].copy_from_slice(&checksum.to_le_bytes());
        assert_eq!(decode_record(&bytes), Err(DecodeError::UnknownEntryKind(9)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn every_record_round_trips(record in arbitrary_record()) {
            let bytes = encode(&record);
            prop_assert_eq!(bytes.len(), encoded_len(&record));
            prop_assert_eq!(decode_record(&bytes), Ok((record, bytes.len())));
        }

        #[test]
        fn a_record_followed_by_more_bytes_decodes_alone(
            record in arbitrary_record(),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = encode(&record);
            let len = bytes.len();
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(decode_record(&bytes), Ok((record, len)));
        }

        #[test]
        fn every_strict_prefix_is_truncated(record in arbitrary_record(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&record);
            let cut = cut.index(bytes.len());
            let is_truncated = matches!(
                decode_record(&bytes[..cut]),
                Err(DecodeError::Truncated { .. })
            );
            prop_assert!(is_truncated);
        }

        /// The decoder as a fuzz target: arbitrary bytes never panic, and
        /// whatever decodes re-encodes to the same bytes.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok((record, len)) = decode_record(&bytes) {
                prop_assert_eq!(encode(&record), bytes[..len].to_vec());
            }
        }

        /// Bit flips in a valid record: never a panic, and never a different
        /// record accepted silently.
        #[test]
        fn a_flipped_bit_is_detected(record in arbitrary_record(), bit in any::<prop::sample::Index>()) {
            let mut bytes = encode(&record);
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            match decode_record(&bytes) {
                Err(_) => {}
                Ok((decoded, _)) => prop_assert_eq!(decoded, record),
            }
        }
    }
}
