//! Reading a snapshot as a stream, verifying it on the way.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::format::{
    check_trailer, damaged, decode_header, decode_prefix, PREFIX_BYTES, TRAILER_BYTES,
};
use crate::core::snapshot::SnapshotMetadata;
use crate::storage::StorageError;

/// Bytes read from the source at a time.
const BUFFER_BYTES: usize = 64 << 10;

/// Reads the state machine's data out of a snapshot stream, checking the
/// stream's format and checksum as it goes, in memory bounded by a 64 KiB
/// buffer whatever the snapshot's size.
///
/// The header is checked by [`SnapshotReader::new`]. The data is delivered
/// through [`Read`] before the checksum at the end can be checked: the end
/// of the data (`Ok(0)`) is reported only once the trailer matched, and
/// damage is reported as an error of kind [`io::ErrorKind::InvalidData`]
/// (after which every read fails). [`SnapshotReader::finish`] gives the
/// precise [`StorageError`]. A consumer must therefore treat what it read as
/// provisional until it has seen `Ok(0)` or `finish` succeeded.
///
/// Whatever the input, the reader never panics; this is what a fuzz target
/// drives:
///
/// ```
/// use std::io::Read;
/// use raft::storage::snapshot::SnapshotReader;
///
/// fn check(bytes: &[u8]) -> bool {
///     let Ok(mut reader) = SnapshotReader::new(bytes, "input".as_ref()) else { return false };
///     let _ = std::io::copy(&mut reader, &mut std::io::sink());
///     reader.finish().is_ok()
/// }
/// assert!(!check(b"not a snapshot"));
/// ```
#[derive(Debug)]
pub struct SnapshotReader<R> {
    source: R,
    /// Named in errors.
    path: PathBuf,
    metadata: SnapshotMetadata,
    /// CRC32C of the header and of the data delivered so far.
    checksum: u32,
    /// Bytes of header and data consumed: the file offset of `buffer[start]`.
    offset: u64,
    header_bytes: u64,
    /// Read from the source but not yet delivered. The last
    /// [`TRAILER_BYTES`] of it may be the trailer, so they are held back
    /// until more bytes or the end of the source arrive.
    /// Allocated at the first read of data.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    source_ended: bool,
    state: State,
}

#[derive(Debug)]
enum State {
    Reading,
    /// The trailer matched: the data is complete and intact.
    Verified,
    /// Damage or a read error; kept to be reported by every later call.
    Failed(StorageError),
}

impl<R: Read> SnapshotReader<R> {
    /// Reads and checks the header of the snapshot `source` yields; `path`
    /// names it in errors.
    pub fn new(mut source: R, path: &Path) -> Result<SnapshotReader<R>, StorageError> {
        let mut prefix = [0; PREFIX_BYTES];
        read_header_part(&mut source, &mut prefix, path, 0)?;
        let rest_bytes = decode_prefix(path, &prefix)?;
        let mut rest = vec![0; rest_bytes];
        read_header_part(&mut source, &mut rest, path, PREFIX_BYTES as u64)?;
        let metadata = decode_header(path, &prefix, &rest)?;
        let checksum = crc32c::crc32c_append(crc32c::crc32c(&prefix), &rest);
        let header_bytes = (PREFIX_BYTES + rest_bytes) as u64;
        Ok(SnapshotReader {
            source,
            path: path.to_path_buf(),
            metadata,
            checksum,
            offset: header_bytes,
            header_bytes,
            buffer: Vec::new(),
            start: 0,
            end: 0,
            source_ended: false,
            state: State::Reading,
        })
    }

    /// What the header says the snapshot covers.
    pub fn metadata(&self) -> &SnapshotMetadata {
        &self.metadata
    }

    /// The size of the header: the file offset where the data starts.
    pub(crate) fn header_bytes(&self) -> u64 {
        self.header_bytes
    }

    /// Bytes of data delivered so far.
    pub fn data_bytes_read(&self) -> u64 {
        self.offset - self.header_bytes
    }

    /// Reads whatever data is left, checks the trailer, and returns the
    /// number of data bytes that had not been read before. Fails if the
    /// snapshot is damaged anywhere.
    pub fn finish(mut self) -> Result<u64, StorageError> {
        if let State::Failed(error) = self.state {
            return Err(error);
        }
        let mut unread = 0;
        let mut scratch = [0; 8 << 10];
        loop {
            match self.read_data(&mut scratch)? {
                0 => return Ok(unread),
                count => unread += count as u64,
            }
        }
    }

    /// Whether a read failed: the snapshot is damaged or could not be read.
    pub(crate) fn has_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Delivers data into `out`; `Ok(0)` once the trailer matched.
    fn read_data(&mut self, out: &mut [u8]) -> Result<usize, StorageError> {
        loop {
            if matches!(self.state, State::Verified) {
                return Ok(0);
            }
            let deliverable = (self.end - self.start).saturating_sub(TRAILER_BYTES);
            if deliverable > 0 {
                let count = deliverable.min(out.len());
                let data = &self.buffer[self.start..self.start + count];
                out[..count].copy_from_slice(data);
                self.checksum = crc32c::crc32c_append(self.checksum, data);
                self.start += count;
                self.offset += count as u64;
                return Ok(count);
            }
            if self.source_ended {
                self.check_end()?;
                self.state = State::Verified;
                return Ok(0);
            }
            self.fill()?;
        }
    }

    /// Reads more of the source into the buffer, keeping what is there.
    fn fill(&mut self) -> Result<(), StorageError> {
        if self.buffer.is_empty() {
            self.buffer.resize(BUFFER_BYTES, 0);
        }
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.source.read(&mut self.buffer[self.end..]) {
                Ok(0) => {
                    self.source_ended = true;
                    return Ok(());
                }
                Ok(count) => {
                    self.end += count;
                    return Ok(());
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(StorageError::Io {
                        action: "read snapshot",
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// At the end of the source: the last bytes must be the trailer.
    fn check_end(&self) -> Result<(), StorageError> {
        let held = &self.buffer[self.start..self.end];
        let Ok(trailer) = <&[u8; TRAILER_BYTES]>::try_from(held) else {
            return Err(damaged(
                &self.path,
                self.offset + held.len() as u64,
                "the file ends before its trailer: it is truncated",
            ));
        };
        check_trailer(
            &self.path,
            trailer,
            self.offset,
            self.data_bytes_read(),
            self.checksum,
        )
    }
}

impl<R: Read> Read for SnapshotReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let State::Failed(error) = &self.state {
            return Err(failure_as_io(error));
        }
        self.read_data(out).map_err(|error| {
            let reported = failure_as_io(&error);
            self.state = State::Failed(error);
            reported
        })
    }
}

/// Reads exactly `buffer.len()` header bytes at `offset`, calling an early
/// end truncation.
fn read_header_part(
    source: &mut impl Read,
    buffer: &mut [u8],
    path: &Path,
    offset: u64,
) -> Result<(), StorageError> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => {
                return Err(damaged(
                    path,
                    offset + filled as u64,
                    "the file ends inside its header: it is truncated",
                ))
            }
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(StorageError::io("read snapshot", path)(source)),
        }
    }
    Ok(())
}

/// How a recorded failure is reported through [`Read`]: damage as invalid
/// data, an operating system error with its own kind.
fn failure_as_io(error: &StorageError) -> io::Error {
    let kind = match error {
        StorageError::Io { source, .. } => source.kind(),
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, error.to_string())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    use super::*;
    use crate::storage::snapshot::format::{encode_header, encode_trailer};
    use crate::types::{LogIndex, NodeId, Term};
    use crate::Membership;

    fn encode(data: &[u8]) -> Vec<u8> {
        let metadata = SnapshotMetadata {
            index: LogIndex(5),
            term: Term(2),
            membership: Membership::with_voters([NodeId(1), NodeId(2)]).into(),
        };
        let mut bytes = encode_header(&metadata);
        let checksum = crc32c::crc32c(&bytes);
        let checksum = crc32c::crc32c_append(checksum, data);
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(&encode_trailer(data.len() as u64, checksum));
        bytes
    }

    /// Reads everything; the data when the snapshot is intact.
    fn read_all(bytes: &[u8]) -> Result<Vec<u8>, StorageError> {
        let mut reader = SnapshotReader::new(bytes, Path::new("input"))?;
        let mut data = Vec::new();
        match reader.read_to_end(&mut data) {
            Ok(_) => {
                assert_eq!(reader.finish().expect("verified stays verified"), 0);
                Ok(data)
            }
            Err(_) => Err(reader.finish().expect_err("a failure is reported again")),
        }
    }

    /// A source that hands out one byte per read, to exercise refills.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let Some((&first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            if out.is_empty() {
                return Ok(0);
            }
            out[0] = first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn data_reads_back_through_small_reads() {
        let data: Vec<u8> = (0..200_000u32).map(|value| (value % 251) as u8).collect();
        let bytes = encode(&data);
        assert_eq!(read_all(&bytes).expect("intact"), data);
        let mut reader = SnapshotReader::new(Trickle(&bytes), Path::new("input")).expect("header");
        let mut read = Vec::new();
        reader.read_to_end(&mut read).expect("intact");
        assert_eq!(read, data);
    }

    #[test]
    fn finish_counts_unread_data() {
        let bytes = encode(b"0123456789");
        let mut reader = SnapshotReader::new(&bytes[..], Path::new("input")).expect("header");
        let mut first = [0; 4];
        reader.read_exact(&mut first).expect("read");
        assert_eq!(reader.data_bytes_read(), 4);
        assert_eq!(reader.finish().expect("intact"), 6);
    }

    #[test]
    fn damage_is_reported_with_the_offset() {
        let mut bytes = encode(b"some state");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        match read_all(&bytes) {
            Err(StorageError::SnapshotDamaged { offset, path, .. }) => {
                assert_eq!(offset, (bytes.len() - TRAILER_BYTES) as u64);
                assert_eq!(path, Path::new("input"));
            }
            other => panic!("expected damage, got {other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2_000,
            rng_seed: RngSeed::Fixed(0x5eed_0001),
            ..ProptestConfig::default()
        })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = read_all(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_header_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut bytes = encode(b"");
            bytes.truncate(bytes.len() - TRAILER_BYTES);
            bytes.extend_from_slice(&tail);
            let _ = read_all(&bytes);
        }

        #[test]
        fn any_edit_of_a_valid_snapshot_is_refused(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            position in any::<prop::sample::Index>(),
            edit in 0u8..3,
            value in any::<u8>(),
        ) {
            let original = encode(&data);
            let mut edited = original.clone();
            let at = position.index(edited.len());
            match edit {
                0 => edited[at] ^= value.max(1),
                1 => { edited.insert(at, value); }
                _ => { edited.remove(at); }
            }
            prop_assert!(read_all(&edited).is_err());
            prop_assert_eq!(read_all(&original).expect("intact"), data);
        }
    }
}
