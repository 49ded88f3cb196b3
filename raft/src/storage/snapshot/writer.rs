//! Writing a new snapshot: under a temporary name, checksummed as it is
//! streamed, then made durable and renamed into place.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::format::{encode_header, encode_trailer};
use super::store::{install, SnapshotFile, SnapshotStore};
use crate::core::snapshot::SnapshotMetadata;
use crate::storage::paced_file::PacedFile;
use crate::storage::private_files::create_private_file;
use crate::storage::StorageError;

/// Bytes buffered before they are written to the file.
const BUFFER_BYTES: usize = 256 << 10;

/// A snapshot being written: the state machine streams its data into it
/// through [`Write`], then [`SnapshotWriter::finish`] makes it durable and
/// the store's latest. Until then it is invisible under its final name;
/// dropped unfinished, its temporary file is removed.
///
/// Made by [`SnapshotStore::create`]. It is [`Send`], so the data can be
/// streamed on another thread than the one that created it.
#[derive(Debug)]
pub struct SnapshotWriter {
    store: SnapshotStore,
    metadata: SnapshotMetadata,
    temporary: PathBuf,
    /// `None` once finished or abandoned.
    file: Option<BufWriter<PacedFile>>,
    /// CRC32C of the header and of the data accepted so far.
    checksum: u32,
    data_bytes: u64,
    /// The first write error, kept for [`SnapshotWriter::finish`] to report
    /// with its path (a [`Write`] caller sees only an `io::Error`).
    failure: Option<StorageError>,
}

impl SnapshotWriter {
    pub(super) fn create(
        store: SnapshotStore,
        metadata: SnapshotMetadata,
        temporary: PathBuf,
    ) -> Result<SnapshotWriter, StorageError> {
        let header = encode_header(&metadata);
        let file =
            create_private_file(&temporary).map_err(StorageError::io("create", &temporary))?;
        let mut file = BufWriter::with_capacity(BUFFER_BYTES, PacedFile::new(file));
        file.write_all(&header)
            .map_err(StorageError::io("write", &temporary))?;
        Ok(SnapshotWriter {
            store,
            metadata,
            temporary,
            file: Some(file),
            checksum: crc32c::crc32c(&header),
            data_bytes: 0,
            failure: None,
        })
    }

    /// What the snapshot covers.
    pub fn metadata(&self) -> &SnapshotMetadata {
        &self.metadata
    }

    /// Bytes of data written so far.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// The error behind a failed write, if one failed; the writer is then
    /// abandoned.
    pub(super) fn take_failure(&mut self) -> Option<StorageError> {
        self.failure.take()
    }

    /// Writes the trailer, syncs the file, renames it to its final name,
    /// syncs the directory, and removes the snapshots older than this one.
    /// When this returns, the snapshot survives a crash.
    pub fn finish(mut self) -> Result<SnapshotFile, StorageError> {
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        let file = self.file.take().expect("a writer finishes once");
        let trailer = encode_trailer(self.data_bytes, self.checksum);
        if let Err(error) = complete(file, &trailer, &self.temporary) {
            remove_abandoned(&self.temporary);
            return Err(error);
        }
        install(&self.store, &self.temporary, &self.metadata)
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if let Some(failure) = &self.failure {
            return Err(io::Error::other(failure.to_string()));
        }
        let file = self.file.as_mut().expect("unfinished writer");
        match file.write(bytes) {
            Ok(count) => {
                self.checksum = crc32c::crc32c_append(self.checksum, &bytes[..count]);
                self.data_bytes += count as u64;
                Ok(count)
            }
            Err(source) => {
                let reported = io::Error::new(source.kind(), source.to_string());
                self.failure = Some(StorageError::io("write", &self.temporary)(source));
                Err(reported)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // Data reaches the disk durably in `finish` (and is synced every
        // few MiB on the way, see PacedFile); flushing earlier would only
        // make smaller writes.
        Ok(())
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            remove_abandoned(&self.temporary);
        }
    }
}

/// Ends the file with `trailer` and syncs it.
fn complete(
    mut file: BufWriter<PacedFile>,
    trailer: &[u8],
    temporary: &Path,
) -> Result<(), StorageError> {
    file.write_all(trailer)
        .map_err(StorageError::io("write", temporary))?;
    let file: File = file
        .into_inner()
        .map_err(|error| StorageError::io("write", temporary)(error.into_error()))?
        .into_inner();
    file.sync_all().map_err(StorageError::io("sync", temporary))
}

/// Removes a temporary file that will never be finished (already gone if
/// it was renamed before a later step failed). A failure to remove it only
/// leaves it for the next start to remove.
pub(super) fn remove_abandoned(temporary: &Path) {
    match std::fs::remove_file(temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(file = %temporary.display(), %error,
            "cannot remove an abandoned snapshot file; it is removed at the next start"),
    }
}
