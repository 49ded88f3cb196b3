//! Sending a snapshot file in chunks, for InstallSnapshot.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;

use super::store::SnapshotFile;
use crate::core::snapshot::SnapshotMetadata;
use crate::storage::StorageError;

/// The chunk size a [`crate::SnapshotPolicy`] uses unless told otherwise.
pub const DEFAULT_CHUNK_SIZE_BYTES: usize = 1 << 20;

/// One piece of a snapshot file in transfer: the bytes at `offset` of the
/// file. The transport carries these as they are (in the peer protocol's
/// `InstallSnapshotChunk`, with the metadata on the first chunk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// Where `data` starts in the file.
    pub offset: u64,
    /// The bytes.
    pub data: Bytes,
    /// Whether this is the last chunk.
    pub done: bool,
}

/// Reads a snapshot file in chunks of a fixed size, from the start to the
/// end, one chunk in memory at a time.
///
/// The file stays readable while the sender holds it, even if the store
/// replaces it with a newer snapshot meanwhile. The sender does not check
/// the data: the receiver does, and a damaged chunk makes the transfer
/// fail there.
#[derive(Debug)]
pub struct SnapshotSender {
    file: File,
    path: PathBuf,
    metadata: SnapshotMetadata,
    size_bytes: u64,
    chunk_size_bytes: usize,
    next_offset: u64,
    sent_last: bool,
}

impl SnapshotSender {
    /// Opens `snapshot` to send it in chunks of `chunk_size_bytes` (the
    /// last one may be shorter).
    pub fn new(
        snapshot: &SnapshotFile,
        chunk_size_bytes: usize,
    ) -> Result<SnapshotSender, StorageError> {
        if chunk_size_bytes == 0 {
            return Err(StorageError::InvalidOptions {
                reason: "a snapshot chunk must hold at least one byte".to_string(),
            });
        }
        let path = snapshot.path().to_path_buf();
        let file = File::open(&path).map_err(StorageError::io("open snapshot", &path))?;
        Ok(SnapshotSender {
            file,
            path,
            metadata: snapshot.metadata().clone(),
            size_bytes: snapshot.size_bytes(),
            chunk_size_bytes,
            next_offset: 0,
            sent_last: false,
        })
    }

    /// What the snapshot covers (the first chunk's message carries it).
    pub fn metadata(&self) -> &SnapshotMetadata {
        &self.metadata
    }

    /// The size of the whole transfer in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The offset of the next chunk.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The next chunk, or `None` once the chunk marked `done` was sent.
    pub fn next_chunk(&mut self) -> Result<Option<SnapshotChunk>, StorageError> {
        if self.sent_last {
            return Ok(None);
        }
        let remaining = self.size_bytes - self.next_offset;
        let length = remaining.min(self.chunk_size_bytes as u64) as usize;
        let mut data = vec![0; length];
        self.file
            .read_exact_at(&mut data, self.next_offset)
            .map_err(StorageError::io("read snapshot", &self.path))?;
        let chunk = SnapshotChunk {
            offset: self.next_offset,
            data: data.into(),
            done: length as u64 == remaining,
        };
        self.next_offset += length as u64;
        self.sent_last = chunk.done;
        Ok(Some(chunk))
    }

    /// Starts again from the first chunk: what the sender does when the
    /// receiver reports a chunk out of order or the transfer was cut.
    pub fn restart(&mut self) {
        self.next_offset = 0;
        self.sent_last = false;
    }
}
