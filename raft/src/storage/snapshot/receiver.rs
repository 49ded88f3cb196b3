//! Receiving a snapshot file in chunks, for InstallSnapshot.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use super::reader::SnapshotReader;
use super::sender::SnapshotChunk;
use super::store::{install, SnapshotFile, SnapshotStore};
use super::writer::remove_abandoned;
use crate::storage::private_files::create_private_file;
use crate::storage::StorageError;

/// Writes the chunks of a snapshot sent by a peer to a temporary file in
/// the snapshot directory and, after the last one, checks the whole file
/// and installs it as the store's latest snapshot.
///
/// Chunks must come in order, without gaps: a chunk at offset 0 (re)starts
/// a transfer, dropping whatever an earlier one had received; any other
/// chunk must start where the previous one ended, or it is refused with
/// [`StorageError::SnapshotChunkOutOfOrder`] (the transfer in progress is
/// kept, so a sender may resend the expected chunk or restart). Memory
/// holds no more than the chunk being written.
///
/// Nothing of a transfer is visible under a snapshot name until the last
/// chunk has been checked and synced. A receiver dropped mid-transfer
/// removes its temporary file; after a crash, [`SnapshotStore::open`] does.
#[derive(Debug)]
pub struct SnapshotReceiver {
    store: SnapshotStore,
    transfer: Option<Transfer>,
}

#[derive(Debug)]
struct Transfer {
    file: File,
    temporary: PathBuf,
    next_offset: u64,
}

impl SnapshotReceiver {
    pub(super) fn new(store: SnapshotStore) -> SnapshotReceiver {
        SnapshotReceiver {
            store,
            transfer: None,
        }
    }

    /// Bytes received in the transfer in progress (0 when there is none).
    pub fn bytes_received(&self) -> u64 {
        self.transfer
            .as_ref()
            .map_or(0, |transfer| transfer.next_offset)
    }

    /// Takes one chunk. After the chunk marked `done`, returns the
    /// installed snapshot: it is intact and durable, and its metadata is
    /// what the file's header says (a driver checks that it is the one the
    /// InstallSnapshot message announced before stepping the message). A
    /// damaged transfer fails with [`StorageError::SnapshotDamaged`] and is
    /// dropped; the sender starts again from offset 0.
    pub fn receive(&mut self, chunk: &SnapshotChunk) -> Result<Option<SnapshotFile>, StorageError> {
        if chunk.offset == 0 {
            if self.transfer.is_some() {
                tracing::debug!("snapshot transfer restarted from the beginning");
            }
            self.abort();
            let temporary = self.store.temporary_path();
            let file =
                create_private_file(&temporary).map_err(StorageError::io("create", &temporary))?;
            self.transfer = Some(Transfer {
                file,
                temporary,
                next_offset: 0,
            });
        }
        let expected = self.bytes_received();
        let Some(transfer) = self.transfer.as_mut().filter(|_| chunk.offset == expected) else {
            return Err(StorageError::SnapshotChunkOutOfOrder {
                expected,
                found: chunk.offset,
            });
        };
        if let Err(source) = transfer.file.write_all(&chunk.data) {
            let error = StorageError::io("write", &transfer.temporary)(source);
            self.abort();
            return Err(error);
        }
        transfer.next_offset += chunk.data.len() as u64;
        if !chunk.done {
            return Ok(None);
        }
        let transfer = self.transfer.take().expect("a transfer in progress");
        let installed = complete(&self.store, &transfer);
        if installed.is_err() {
            remove_abandoned(&transfer.temporary);
        }
        installed.map(Some)
    }

    /// Drops the transfer in progress, if any, and its temporary file.
    pub fn abort(&mut self) {
        if let Some(transfer) = self.transfer.take() {
            remove_abandoned(&transfer.temporary);
        }
    }
}

impl Drop for SnapshotReceiver {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Checks the received file from disk, syncs it and installs it.
fn complete(store: &SnapshotStore, transfer: &Transfer) -> Result<SnapshotFile, StorageError> {
    let temporary = &transfer.temporary;
    let file = File::open(temporary).map_err(StorageError::io("open", temporary))?;
    let reader = SnapshotReader::new(file, temporary)?;
    let metadata = reader.metadata().clone();
    reader.finish()?;
    transfer
        .file
        .sync_all()
        .map_err(StorageError::io("sync", temporary))?;
    install(store, temporary, &metadata)
}
