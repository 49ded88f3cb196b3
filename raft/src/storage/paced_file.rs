//! A large file written beside the WAL, synced every few MiB as it goes.
//!
//! A snapshot of a large store is hundreds of MiB. Written whole and synced
//! once at the end, it sits in the page cache as dirty pages until the
//! kernel flushes it all at once, and the WAL's fdatasync then waits behind
//! that flush (the file system commits its journal in order): measured with
//! 2M keys, a follower's log writes stalled for 300 ms as its snapshot was
//! synced, it stopped answering, and the leader stepped down. Syncing every
//! [`SYNC_EVERY_BYTES`] keeps little dirty at any time, so the WAL's syncs
//! stay short; the writer, a background thread or a network transfer, goes
//! at the disk's pace instead.

use std::fs::File;
use std::io::{self, Write};

/// Written bytes after which the file's data is synced.
pub(crate) const SYNC_EVERY_BYTES: u64 = 4 << 20;

/// A [`File`] that syncs its data every [`SYNC_EVERY_BYTES`] written.
#[derive(Debug)]
pub(crate) struct PacedFile {
    file: File,
    unsynced_bytes: u64,
}

impl PacedFile {
    pub(crate) fn new(file: File) -> PacedFile {
        PacedFile {
            file,
            unsynced_bytes: 0,
        }
    }

    /// The file, for its last sync.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn into_inner(self) -> File {
        self.file
    }
}

impl Write for PacedFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.file.write(bytes)?;
        self.unsynced_bytes = self.unsynced_bytes.saturating_add(written as u64);
        if self.unsynced_bytes >= SYNC_EVERY_BYTES {
            self.file.sync_data()?;
            self.unsynced_bytes = 0;
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek};

    use super::*;

    #[test]
    fn writes_pass_through_and_the_count_restarts_at_each_sync() {
        let mut file = PacedFile::new(tempfile::tempfile().expect("a file"));
        let chunk = vec![7u8; (SYNC_EVERY_BYTES / 2 + 1) as usize];
        file.write_all(&chunk).expect("write");
        assert_eq!(file.unsynced_bytes, chunk.len() as u64);
        file.write_all(&chunk).expect("write");
        assert_eq!(file.unsynced_bytes, 0, "synced past the threshold");
        file.write_all(b"tail").expect("write");
        assert_eq!(file.unsynced_bytes, 4);
        let mut inner = file.into_inner();
        inner.rewind().expect("rewind");
        let mut read = Vec::new();
        inner.read_to_end(&mut read).expect("read");
        assert_eq!(read.len(), 2 * chunk.len() + 4);
        assert!(read.ends_with(b"tail"));
    }
}
