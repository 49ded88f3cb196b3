//! Segment files: their names, their header, their creation, and reading
//! entries back from them.
//!
//! A segment is named `<sequence>-<first index>.wal`, both as 20 decimal
//! digits, so that names sort in the order the segments were written (which
//! is also the order of their first indexes once stale segments are
//! removed). It starts with a 40-byte header:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "RRAFTWAL"
//!      8     4  format version (1)
//!     12     4  reserved, zero
//!     16     8  sequence number (as in the name)
//!     24     8  first index: no entry in the segment has a lower index
//!     32     4  CRC32C of bytes 0..32
//!     36     4  reserved, zero
//! ```
//!
//! followed by records (see [`super::record`]). A segment is created under a
//! temporary name, synced, renamed and the directory synced, so a segment
//! with its final name always has a whole header.
//!
//! A segment may be created at its full size (fallocate), so that appending
//! never grows the file and an fdatasync has no file size to write; its
//! unused end reads as zeros. When the next segment starts, the full one is
//! cut to the end of its last record ([`SegmentFile::seal`]), so only the
//! newest segment ever ends in unused space.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::storage::private_files::private_open_options;
use crate::storage::StorageError;
use crate::types::{Entry, LogIndex};

use super::record::{decode_header, decode_record, Record, RECORD_HEADER_BYTES};

/// Size of the header at the start of every segment.
pub const SEGMENT_HEADER_BYTES: usize = 40;

/// The segment format this build writes and reads.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;

const MAGIC: &[u8; 8] = b"RRAFTWAL";
const SUFFIX: &str = ".wal";
const TEMPORARY_SUFFIX: &str = ".wal.tmp";

/// The identity of a segment, as in its name and header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentId {
    /// Increases by one with every segment created; replay follows it.
    pub sequence: u64,
    /// No entry in the segment has a lower index.
    pub first_index: LogIndex,
}

impl SegmentId {
    /// The segment's file name.
    pub fn file_name(self) -> String {
        format!("{:020}-{:020}{SUFFIX}", self.sequence, self.first_index.0)
    }

    /// The name the segment has while it is being created.
    pub fn temporary_file_name(self) -> String {
        format!(
            "{:020}-{:020}{TEMPORARY_SUFFIX}",
            self.sequence, self.first_index.0
        )
    }

    /// Parses a segment file name; `None` for any other name.
    pub fn parse_file_name(name: &str) -> Option<SegmentId> {
        let stem = name.strip_suffix(SUFFIX)?;
        let (sequence, first_index) = stem.split_once('-')?;
        if sequence.len() != 20 || first_index.len() != 20 {
            return None;
        }
        if !(sequence.bytes().chain(first_index.bytes())).all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        Some(SegmentId {
            sequence: sequence.parse().ok()?,
            first_index: LogIndex(first_index.parse().ok()?),
        })
    }

    /// Whether `name` is a segment left half-created by a crash.
    pub fn is_temporary_file_name(name: &str) -> bool {
        name.ends_with(TEMPORARY_SUFFIX)
    }

    /// The encoded header of a segment with this identity.
    pub fn encode_header(self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut header = [0; SEGMENT_HEADER_BYTES];
        header[0..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        header[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        header[24..32].copy_from_slice(&self.first_index.0.to_le_bytes());
        let checksum = crc32c::crc32c(&header[0..32]);
        header[32..36].copy_from_slice(&checksum.to_le_bytes());
        header
    }

    /// Checks that `bytes` start with this segment's header.
    pub fn check_header(self, path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
        let corrupt = |reason: &str| StorageError::Corruption {
            path: path.to_path_buf(),
            offset: 0,
            reason: format!("segment header: {reason}"),
        };
        let Some(header) = bytes.get(..SEGMENT_HEADER_BYTES) else {
            return Err(corrupt("the file is shorter than a header"));
        };
        if &header[0..8] != MAGIC {
            return Err(corrupt("not a RustyRaft WAL segment (bad magic)"));
        }
        let stored = u32::from_le_bytes([header[32], header[33], header[34], header[35]]);
        if stored != crc32c::crc32c(&header[0..32]) {
            return Err(corrupt("checksum mismatch"));
        }
        let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if version != SEGMENT_FORMAT_VERSION {
            return Err(StorageError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: SEGMENT_FORMAT_VERSION,
            });
        }
        if header != self.encode_header() {
            return Err(corrupt(
                "sequence or first index disagrees with the file name",
            ));
        }
        Ok(())
    }
}

/// A segment file shared by the writer (which creates and appends to it)
/// and readers (which read entries that have left the cache).
#[derive(Debug)]
pub(crate) struct SegmentFile {
    pub id: SegmentId,
    pub path: PathBuf,
    /// Set once the file exists; until then every entry of the segment is
    /// in the cache, so no reader needs it.
    file: OnceLock<File>,
}

impl SegmentFile {
    /// A segment that the writer has yet to create.
    pub fn planned(directory: &Path, id: SegmentId) -> SegmentFile {
        SegmentFile {
            id,
            path: directory.join(id.file_name()),
            file: OnceLock::new(),
        }
    }

    /// A segment that exists, opened by recovery.
    pub fn existing(id: SegmentId, path: PathBuf, file: File) -> SegmentFile {
        SegmentFile {
            id,
            path,
            file: OnceLock::from(file),
        }
    }

    pub fn file(&self) -> Result<&File, StorageError> {
        self.file.get().ok_or_else(|| StorageError::Io {
            action: "read segment",
            path: self.path.clone(),
            source: io::Error::new(io::ErrorKind::NotFound, "the segment is not created yet"),
        })
    }

    /// Creates the file: `initial` (the header and the records every
    /// segment starts with) is written under a temporary name, the file is
    /// given `size_bytes` on disk if it is larger (see
    /// [`SegmentFile::reserve`]) and synced, then renamed into place and the
    /// directory synced.
    pub fn create(&self, initial: &[u8], size_bytes: u64) -> Result<(), StorageError> {
        let directory = self.path.parent().unwrap_or(Path::new("."));
        let temporary = directory.join(self.id.temporary_file_name());
        let mut file = private_open_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)
            .map_err(StorageError::io("create segment", &temporary))?;
        file.write_all(initial)
            .map_err(StorageError::io("write segment header", &temporary))?;
        reserve(&file, &temporary, size_bytes)?;
        file.sync_data()
            .map_err(StorageError::io("sync new segment", &temporary))?;
        fs::rename(&temporary, &self.path)
            .map_err(StorageError::io("rename new segment", &self.path))?;
        sync_directory(directory)?;
        // The writer is the only one to create a segment, and does so once.
        let _ = self.file.set(file);
        Ok(())
    }

    /// Gives the file `size_bytes` on disk if it is shorter (its new end
    /// reads as zeros); nothing on a file system without fallocate.
    pub fn reserve(&self, size_bytes: u64) -> Result<(), StorageError> {
        reserve(self.file()?, &self.path, size_bytes)
    }

    /// Cuts the file at `len`, the end of its last record: the segment is
    /// full and the next one starts. (Synced with the segment's writes.)
    pub fn seal(&self, len: u64) -> Result<(), StorageError> {
        self.file()?
            .set_len(len)
            .map_err(StorageError::io("cut the unused end of", &self.path))
    }

    /// Writes `bytes` at `offset`.
    pub fn write_at(&self, bytes: &[u8], offset: u64) -> Result<(), StorageError> {
        self.file()?
            .write_all_at(bytes, offset)
            .map_err(|source| StorageError::Io {
                action: "write to segment",
                path: self.path.clone(),
                source,
            })
    }

    /// fdatasync: makes everything written so far durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        self.file()?.sync_data().map_err(|source| StorageError::Io {
            action: "sync segment",
            path: self.path.clone(),
            source,
        })
    }

    /// Reads the entries at `offsets`, which must be those of consecutive
    /// indexes from `first_index`, in increasing offset order.
    pub fn read_entries(
        &self,
        first_index: LogIndex,
        offsets: &[u32],
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        let (Some(&start), Some(&last)) = (offsets.first(), offsets.last()) else {
            return Ok(());
        };
        let file = self.file()?;
        // One read for everything up to the last record, whose length is
        // learnt from its header.
        let mut header = [0; RECORD_HEADER_BYTES];
        self.read_exact_at(file, &mut header, u64::from(last))?;
        let last_len = decode_header(&header)
            .map_err(|error| self.corrupt(u64::from(last), error.to_string()))?
            .record_len();
        let end = u64::from(last) + last_len as u64;
        let mut buffer = vec![0; (end - u64::from(start)) as usize];
        self.read_exact_at(file, &mut buffer, u64::from(start))?;
        for (position, &offset) in offsets.iter().enumerate() {
            let expected = LogIndex(first_index.0 + position as u64);
            let at = offset.checked_sub(start).map(|at| at as usize);
            let bytes = at.and_then(|at| buffer.get(at..)).unwrap_or(&[]);
            match decode_record(bytes) {
                Ok((Record::Entry(entry), _)) if entry.index == expected => out.push(entry),
                Ok((record, _)) => {
                    return Err(self.corrupt(
                        u64::from(offset),
                        format!("expected entry {expected}, found {record:?}"),
                    ))
                }
                Err(error) => return Err(self.corrupt(u64::from(offset), error.to_string())),
            }
        }
        Ok(())
    }

    fn read_exact_at(
        &self,
        file: &File,
        buffer: &mut [u8],
        offset: u64,
    ) -> Result<(), StorageError> {
        file.read_exact_at(buffer, offset)
            .map_err(|source| StorageError::Io {
                action: "read segment",
                path: self.path.clone(),
                source,
            })
    }

    fn corrupt(&self, offset: u64, reason: String) -> StorageError {
        StorageError::Corruption {
            path: self.path.clone(),
            offset,
            reason,
        }
    }
}

/// Allocates `file` up to `size_bytes` (growing its size) if it is shorter.
fn reserve(file: &File, path: &Path, size_bytes: u64) -> Result<(), StorageError> {
    let len = file
        .metadata()
        .map_err(StorageError::io("read the size of", path))?
        .len();
    if len >= size_bytes {
        return Ok(());
    }
    match rustix::fs::fallocate(
        file,
        rustix::fs::FallocateFlags::empty(),
        len,
        size_bytes - len,
    ) {
        Ok(()) => Ok(()),
        // Not every file system can: the file grows with each append then.
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => Ok(()),
        Err(error) => Err(StorageError::Io {
            action: "reserve space for",
            path: path.to_path_buf(),
            source: error.into(),
        }),
    }
}

/// fsyncs a directory, so that files created, renamed or removed in it stay
/// so after a crash.
pub(crate) fn sync_directory(directory: &Path) -> Result<(), StorageError> {
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| StorageError::Io {
            action: "sync directory",
            path: directory.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_sequence_and_parse_back() {
        let early = SegmentId {
            sequence: 9,
            first_index: LogIndex(500),
        };
        let late = SegmentId {
            sequence: 10,
            first_index: LogIndex(1),
        };
        assert!(early.file_name() < late.file_name());
        assert_eq!(SegmentId::parse_file_name(&early.file_name()), Some(early));
        assert_eq!(
            early.file_name(),
            "00000000000000000009-00000000000000000500.wal"
        );
        assert!(SegmentId::is_temporary_file_name(
            &early.temporary_file_name()
        ));
        for name in [
            "metadata",
            "1-2.wal",
            "0000000000000000000x-00000000000000000500.wal",
        ] {
            assert_eq!(SegmentId::parse_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let id = SegmentId {
            sequence: 3,
            first_index: LogIndex(77),
        };
        let path = Path::new("segment");
        let header = id.encode_header();
        assert!(id.check_header(path, &header).is_ok());
        assert!(id.check_header(path, &header[..39]).is_err());
        let other = SegmentId {
            sequence: 4,
            first_index: LogIndex(77),
        };
        assert!(other.check_header(path, &header).is_err());
        let mut damaged = header;
        damaged[20] ^= 1;
        assert!(id.check_header(path, &damaged).is_err());
        let mut future = header;
        future[8] = 2;
        let checksum = crc32c::crc32c(&future[0..32]);
        future[32..36].copy_from_slice(&checksum.to_le_bytes());
        assert!(matches!(
            id.check_header(path, &future),
            Err(StorageError::UnsupportedVersion { found: 2, .. })
        ));
    }
}
