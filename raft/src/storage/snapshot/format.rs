//! The snapshot file format: a header with the metadata, the state
//! machine's data, and a trailer with the data's length and a checksum.
//!
//! ```text
//! offset    size  field
//!      0       8  magic "RRAFTSNP"
//!      8       4  format version (1)
//!     12       4  metadata length m
//!     16       m  metadata (below)
//!   16+m       4  CRC32C of bytes 0..16+m: the header alone
//!   20+m       n  the state machine's data, as it wrote it
//! 20+m+n       8  n, the data length
//! 28+m+n       4  CRC32C of every byte before this field
//! 32+m+n       4  end magic "RSNE"
//! ```
//!
//! Integers are little endian. The metadata is: last included index `u64`,
//! its term `u64`, the voter count `u32` then each voter's id `u64`, the
//! learner count `u32` then each learner's id `u64`; ids strictly increase
//! and are never zero. Every version keeps the first 16 bytes and the
//! header checksum where they are, so that a reader can tell damage (the
//! header checksum fails) from a newer format (it holds, the version
//! differs).
//!
//! The header has its own checksum so that the metadata can be trusted
//! without reading the data (a node needs it to start). The trailer sits at
//! the end because the state machine streams its data without knowing its
//! length first; a reader therefore holds back the last 16 bytes it has
//! read until it meets the end of the file. Its length field catches
//! truncation and appended bytes that happen to end like a trailer.

use std::path::Path;

use crate::core::quorum::Membership;
use crate::core::snapshot::SnapshotMetadata;
use crate::storage::StorageError;
use crate::types::{LogIndex, NodeId, Term};

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// The largest metadata a reader accepts: a damaged length must not make it
/// allocate gigabytes. Room for about 130,000 members.
pub const MAX_METADATA_BYTES: usize = 1 << 20;

/// Bytes before the metadata: magic, version and metadata length.
pub(crate) const PREFIX_BYTES: usize = 16;

/// Bytes after the data: its length, the checksum and the end magic.
pub(crate) const TRAILER_BYTES: usize = 16;

/// The header checksum after the metadata.
pub(crate) const HEADER_CHECKSUM_BYTES: usize = 4;

const MAGIC: &[u8; 8] = b"RRAFTSNP";
const END_MAGIC: &[u8; 4] = b"RSNE";

/// The encoded header of a snapshot with `metadata`.
pub(crate) fn encode_header(metadata: &SnapshotMetadata) -> Vec<u8> {
    let membership = &metadata.membership;
    let metadata_bytes = 24
        + 8 * (membership.voters.len() + membership.learners.len())
        + crate::storage::addresses::extras_len(membership);
    let mut header = Vec::with_capacity(PREFIX_BYTES + metadata_bytes + HEADER_CHECKSUM_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&(metadata_bytes as u32).to_le_bytes());
    header.extend_from_slice(&metadata.index.0.to_le_bytes());
    header.extend_from_slice(&metadata.term.0.to_le_bytes());
    for members in [&membership.voters, &membership.learners] {
        header.extend_from_slice(&(members.len() as u32).to_le_bytes());
        for member in members {
            header.extend_from_slice(&member.0.to_le_bytes());
        }
    }
    crate::storage::addresses::encode_extras(membership, &mut header);
    let checksum = crc32c::crc32c(&header);
    header.extend_from_slice(&checksum.to_le_bytes());
    header
}

/// Checks the first [`PREFIX_BYTES`] of a file and returns how many bytes
/// of metadata and header checksum follow them.
pub(crate) fn decode_prefix(
    path: &Path,
    prefix: &[u8; PREFIX_BYTES],
) -> Result<usize, StorageError> {
    if &prefix[0..8] != MAGIC {
        return Err(damaged(path, 0, "not a RustyRaft snapshot (bad magic)"));
    }
    let metadata_bytes = read_u32(&prefix[12..16]) as usize;
    if metadata_bytes > MAX_METADATA_BYTES {
        return Err(damaged(
            path,
            12,
            &format!("metadata length {metadata_bytes} is over the limit of {MAX_METADATA_BYTES}"),
        ));
    }
    Ok(metadata_bytes + HEADER_CHECKSUM_BYTES)
}

/// Checks the header whose first bytes are `prefix` and whose metadata and
/// checksum are `rest`, and returns the metadata.
pub(crate) fn decode_header(
    path: &Path,
    prefix: &[u8; PREFIX_BYTES],
    rest: &[u8],
) -> Result<SnapshotMetadata, StorageError> {
    let (metadata, stored) = rest.split_at(rest.len() - HEADER_CHECKSUM_BYTES);
    let computed = crc32c::crc32c_append(crc32c::crc32c(prefix), metadata);
    if read_u32(stored) != computed {
        return Err(damaged(
            path,
            (PREFIX_BYTES + metadata.len()) as u64,
            "header checksum mismatch",
        ));
    }
    let version = read_u32(&prefix[8..12]);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: SNAPSHOT_FORMAT_VERSION,
        });
    }
    decode_metadata(metadata)
        .map_err(|(offset, reason)| damaged(path, (PREFIX_BYTES + offset) as u64, &reason))
}

/// Parses the metadata block; on failure, the offset in it and the reason.
fn decode_metadata(bytes: &[u8]) -> Result<SnapshotMetadata, (usize, String)> {
    let mut cursor = MetadataCursor { bytes, offset: 0 };
    let index = LogIndex(cursor.u64()?);
    let term = Term(cursor.u64()?);
    let voters = cursor.members("voters")?;
    let learners = cursor.members("learners")?;
    // Member addresses, if any, fill the rest (`storage/addresses.rs`).
    let (addresses, removed) = crate::storage::addresses::decode_extras(&bytes[cursor.offset..])
        .map_err(|(offset, reason)| (cursor.offset + offset, reason))?;
    Ok(SnapshotMetadata {
        index,
        term,
        membership: Membership {
            voters: voters.into_iter().collect(),
            learners: learners.into_iter().collect(),
            addresses,
            removed,
        }
        .into(),
    })
}

struct MetadataCursor<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl MetadataCursor<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], (usize, String)> {
        let end = self
            .offset
            .checked_add(count)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err((self.offset, "the metadata ends early".to_string()));
        };
        let taken = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(taken)
    }

    fn u64(&mut self) -> Result<u64, (usize, String)> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("eight bytes")))
    }

    /// A count-prefixed list of node ids, strictly increasing and non-zero.
    fn members(&mut self, what: &str) -> Result<Vec<NodeId>, (usize, String)> {
        let count = read_u32(self.take(4)?) as usize;
        let start = self.offset;
        // Bounded by the bytes present before anything is allocated.
        self.take(count.saturating_mul(8))?;
        self.offset = start;
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let offset = self.offset;
            let member = NodeId(self.u64()?);
            if member == NodeId(0) || members.last().is_some_and(|&last| last >= member) {
                return Err((
                    offset,
                    format!("the {what} are not distinct, increasing, non-zero node ids"),
                ));
            }
            members.push(member);
        }
        Ok(members)
    }
}

/// The trailer after `data_bytes` bytes of data; `checksum` is the CRC32C
/// of the header and the data.
pub(crate) fn encode_trailer(data_bytes: u64, checksum: u32) -> [u8; TRAILER_BYTES] {
    let mut trailer = [0; TRAILER_BYTES];
    trailer[0..8].copy_from_slice(&data_bytes.to_le_bytes());
    let checksum = crc32c::crc32c_append(checksum, &trailer[0..8]);
    trailer[8..12].copy_from_slice(&checksum.to_le_bytes());
    trailer[12..16].copy_from_slice(END_MAGIC);
    trailer
}

/// Checks the trailer found at `offset`, after `data_bytes` bytes of data
/// whose header and data have the CRC32C `checksum`.
pub(crate) fn check_trailer(
    path: &Path,
    trailer: &[u8; TRAILER_BYTES],
    offset: u64,
    data_bytes: u64,
    checksum: u32,
) -> Result<(), StorageError> {
    check_trailer_shape(path, trailer, offset, data_bytes)?;
    let computed = crc32c::crc32c_append(checksum, &trailer[0..8]);
    let stored = read_u32(&trailer[8..12]);
    if stored != computed {
        return Err(damaged(
            path,
            offset + 8,
            &format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        ));
    }
    Ok(())
}

/// Checks the end magic and the data length of the trailer found at
/// `offset` after `data_bytes` bytes of data, but not the checksum.
pub(crate) fn check_trailer_shape(
    path: &Path,
    trailer: &[u8; TRAILER_BYTES],
    offset: u64,
    data_bytes: u64,
) -> Result<(), StorageError> {
    if &trailer[12..16] != END_MAGIC {
        return Err(damaged(
            path,
            offset,
            "no trailer at the end of the file (bad end magic): it is truncated, has bytes \
             appended, or was never completely written",
        ));
    }
    let recorded = u64::from_le_bytes(trailer[0..8].try_into().expect("eight bytes"));
    if recorded != data_bytes {
        return Err(damaged(
            path,
            offset,
            &format!(
                "the trailer records {recorded} bytes of data but {data_bytes} precede it: the \
                 file is truncated or has bytes appended"
            ),
        ));
    }
    Ok(())
}

/// The error for damage at `offset` of the snapshot at `path`.
pub(crate) fn damaged(path: &Path, offset: u64, reason: &str) -> StorageError {
    StorageError::SnapshotDamaged {
        path: path.to_path_buf(),
        offset,
        reason: reason.to_string(),
    }
}

fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().expect("four bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> SnapshotMetadata {
        SnapshotMetadata {
            index: LogIndex(1234),
            term: Term(7),
            membership: Membership {
                voters: [1, 2, 3].map(NodeId).into(),
                learners: [9].map(NodeId).into(),
                addresses: [(NodeId(2), "node-two:2380".to_string())].into(),
                removed: [NodeId(5)].into(),
            }
            .into(),
        }
    }

    fn split(header: &[u8]) -> ([u8; PREFIX_BYTES], &[u8]) {
        let prefix: [u8; PREFIX_BYTES] = header[..PREFIX_BYTES].try_into().expect("prefix");
        (prefix, &header[PREFIX_BYTES..])
    }

    #[test]
    fn header_round_trips() {
        let header = encode_header(&metadata());
        let (prefix, rest) = split(&header);
        let path = Path::new("snapshot");
        assert_eq!(decode_prefix(path, &prefix).expect("prefix"), rest.len());
        assert_eq!(
            decode_header(path, &prefix, rest).expect("header"),
            metadata()
        );
    }

    #[test]
    fn a_newer_version_with_a_valid_checksum_is_unsupported_not_damaged() {
        let mut header = encode_header(&metadata());
        header[8] = 2;
        let end = header.len() - HEADER_CHECKSUM_BYTES;
        let checksum = crc32c::crc32c(&header[..end]);
        header[end..].copy_from_slice(&checksum.to_le_bytes());
        let (prefix, rest) = split(&header);
        assert!(matches!(
            decode_header(Path::new("snapshot"), &prefix, rest),
            Err(StorageError::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            })
        ));
    }

    #[test]
    fn unsorted_or_zero_members_are_refused_even_with_a_valid_checksum() {
        for voters in [vec![2u64, 1], vec![0], vec![3, 3]] {
            let mut header = Vec::new();
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
            header.extend_from_slice(&((24 + 8 * voters.len()) as u32).to_le_bytes());
            header.extend_from_slice(&[0; 16]);
            header.extend_from_slice(&(voters.len() as u32).to_le_bytes());
            for voter in &voters {
                header.extend_from_slice(&voter.to_le_bytes());
            }
            header.extend_from_slice(&0u32.to_le_bytes());
            let checksum = crc32c::crc32c(&header);
            header.extend_from_slice(&checksum.to_le_bytes());
            let (prefix, rest) = split(&header);
            let error = decode_header(Path::new("snapshot"), &prefix, rest).expect_err("refused");
            assert!(
                error.to_string().contains("voters are not distinct"),
                "{error}"
            );
        }
    }

    #[test]
    fn trailer_checks_length_and_checksum() {
        let path = Path::new("snapshot");
        let trailer = encode_trailer(10, 0xabcd);
        assert!(check_trailer(path, &trailer, 50, 10, 0xabcd).is_ok());
        assert!(check_trailer(path, &trailer, 50, 11, 0xabcd).is_err());
        assert!(check_trailer(path, &trailer, 50, 10, 0xabce).is_err());
    }
}
