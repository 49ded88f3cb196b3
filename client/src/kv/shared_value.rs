//! A put's value kept as a slice of its log entry instead of a copy.
//!
//! The log holds each committed command until a snapshot lets it go, and
//! the store holds each put's value until the key is overwritten, deleted
//! or compacted away: for a store of millions of keys loaded under a
//! growing log, that was every value twice in memory. The node hands each
//! command to the store as the log holds it (one allocation per command:
//! [`raft::StateMachine::apply_shared`]), and the store keeps a
//! [`Bytes::slice`] of the value field, found here.
//!
//! Only a slice that holds exactly what decoding the command gave is used:
//! protobuf lets a field repeat (the last wins) and a repeated message field
//! merge into one, and rather than model those rules, the last value field of
//! the last put field is checked against the decoded value; otherwise the
//! caller copies, as before.

use std::ops::Range;

use bytes::Bytes;

/// The envelope's field for a put ([`crate::kv::Command`]'s log format).
const ENVELOPE_PUT: u64 = 1;
/// `PutRequest.value` (etcd's rpc.proto).
const PUT_VALUE: u64 = 2;

/// Protobuf wire types this scan steps over.
const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LENGTH_DELIMITED: u64 = 2;
const WIRE_FIXED32: u64 = 5;

/// The bytes of `command` (a put's log entry) that hold its value, equal to
/// `value` (what decoding it gave), or `None` when no such field is found.
pub(crate) fn put_value_slice(command: &Bytes, value: &[u8]) -> Option<Bytes> {
    let put = last_field(command, 0..command.len(), ENVELOPE_PUT)?;
    let found = last_field(command, put, PUT_VALUE)?;
    (command.get(found.clone())? == value).then(|| command.slice(found))
}

/// Where, in `bytes`, the body of the last length-delimited field `number`
/// among the fields in `bytes[within]` lies; `None` when there is none or
/// the fields do not parse.
fn last_field(bytes: &[u8], within: Range<usize>, number: u64) -> Option<Range<usize>> {
    let mut position = within.start;
    let end = within.end.min(bytes.len());
    let mut found = None;
    while position < end {
        let key = read_varint(bytes, &mut position, end)?;
        let (field, wire_type) = (key >> 3, key & 7);
        match wire_type {
            WIRE_VARINT => {
                read_varint(bytes, &mut position, end)?;
            }
            WIRE_FIXED64 => position = advance(position, 8, end)?,
            WIRE_FIXED32 => position = advance(position, 4, end)?,
            WIRE_LENGTH_DELIMITED => {
                let length = usize::try_from(read_varint(bytes, &mut position, end)?).ok()?;
                let start = position;
                position = advance(position, length, end)?;
                if field == number {
                    found = Some(start..position);
                }
            }
            // Groups and unknown wire types: none in these messages.
            _ => return None,
        }
    }
    found
}

/// `position + length`, if that is at most `end`.
fn advance(position: usize, length: usize, end: usize) -> Option<usize> {
    position.checked_add(length).filter(|next| *next <= end)
}

/// Reads a base-128 varint of at most ten bytes at `position`, before
/// `end`, and moves past it.
fn read_varint(bytes: &[u8], position: &mut usize, end: usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        if *position >= end {
            return None;
        }
        let byte = *bytes.get(*position)?;
        *position += 1;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Command;
    use raft_proto::etcd::etcdserverpb::{DeleteRangeRequest, PutRequest};

    fn put_bytes(key: &str, value: &[u8]) -> Bytes {
        Bytes::from(
            Command::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.to_vec(),
                lease: 7,
                prev_kv: true,
                ..PutRequest::default()
            })
            .into_bytes(),
        )
    }

    #[test]
    fn a_puts_value_is_found_inside_its_command() {
        for value in [&b"v"[..], &[0xff; 300][..]] {
            let command = put_bytes("key", value);
            let slice = put_value_slice(&command, value).expect("found");
            assert_eq!(&slice[..], value);
            // The same memory, not a copy.
            assert!(command.as_ptr_range().contains(&slice.as_ptr()));
        }
        // An empty value is not encoded at all: nothing to share.
        assert_eq!(put_value_slice(&put_bytes("key", b""), b""), None);
    }

    #[test]
    fn a_value_other_than_the_decoded_one_is_not_used() {
        let command = put_bytes("key", b"value");
        assert_eq!(put_value_slice(&command, b"other"), None);
    }

    #[test]
    fn repeated_fields_give_the_last_value_as_decoding_does() {
        // Two put fields: protobuf merges them, the later value wins.
        let mut bytes = put_bytes("a", b"first").to_vec();
        bytes.extend_from_slice(&put_bytes("b", b"second"));
        let bytes = Bytes::from(bytes);
        let Command::Put(decoded) = Command::from_bytes(&bytes).expect("decodes") else {
            panic!("a put");
        };
        assert_eq!(decoded.value, b"second");
        let slice = put_value_slice(&bytes, &decoded.value).expect("found");
        assert_eq!(&slice[..], b"second");
    }

    #[test]
    fn other_commands_and_broken_bytes_find_nothing() {
        let delete = Bytes::from(
            Command::DeleteRange(DeleteRangeRequest {
                key: b"k".to_vec(),
                ..DeleteRangeRequest::default()
            })
            .into_bytes(),
        );
        assert_eq!(put_value_slice(&delete, b""), None);
        let command = put_bytes("key", b"value");
        for cut in 0..command.len() {
            // A cut command never yields a slice past its end (decoding
            // would have refused it anyway).
            if let Some(slice) = put_value_slice(&command.slice(..cut), b"value") {
                assert_eq!(&slice[..], b"value");
            }
        }
        let overlong = Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(put_value_slice(&overlong, b""), None);
    }
}
