//! Receiving a snapshot file in chunks, for InstallSnapshot.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use super::reader::SnapshotReader;
use super::sender::SnapshotChunk;
use super::store::{install, SnapshotFile, SnapshotStore};
use super::writer::remove_abandoned;
use crate::core::snapshot::SnapshotMetadata;
use crate::storage::paced_file::PacedFile;
use crate::storage::private_files::create_private_file;
use crate::storage::StorageError;

/// Writes the chunks of a snapshot sent by a peer to a temporary file in
/// the snapshot directory and, after the last one, checks and syncs the
/// whole file: a [`SnapshotCandidate`], which becomes the store's snapshot
/// only when the driver installs it (once the core has accepted it).
///
/// Chunks must come in order, without gaps: a chunk at offset 0 (re)starts
/// a transfer, dropping whatever an earlier one had received; any other
/// chunk must start where the previous one ended, or it is refused with
/// [`StorageError::SnapshotChunkOutOfOrder`] (the transfer in progress is
/// kept, so a sender may resend the expected chunk or restart). Memory
/// holds no more than the chunk being written. A receiver told the size
/// of the transfer ([`SnapshotReceiver::expecting`]) refuses a byte beyond
/// it, and a last chunk short of it, with
/// [`StorageError::SnapshotSizeMismatch`], before writing anything more.
///
/// Nothing of a transfer is visible under a snapshot name until its
/// candidate is installed. A receiver or candidate dropped before that
/// removes its temporary file; after a crash, [`SnapshotStore::open`] does.
#[derive(Debug)]
pub struct SnapshotReceiver {
    store: SnapshotStore,
    size_bytes: Option<u64>,
    transfer: Option<Transfer>,
}

#[derive(Debug)]
struct Transfer {
    /// Synced every few MiB as chunks arrive, so that a large transfer
    /// does not stall the WAL's syncs when it is synced at the end.
    file: PacedFile,
    temporary: PathBuf,
    next_offset: u64,
}

impl SnapshotReceiver {
    pub(super) fn new(store: SnapshotStore) -> SnapshotReceiver {
        SnapshotReceiver {
            store,
            size_bytes: None,
            transfer: None,
        }
    }

    /// A receiver whose transfers must hold exactly `size_bytes` bytes, as
    /// the sender announced.
    pub fn expecting(mut self, size_bytes: u64) -> SnapshotReceiver {
        self.size_bytes = Some(size_bytes);
        self
    }

    /// Bytes received in the transfer in progress (0 when there is none).
    pub fn bytes_received(&self) -> u64 {
        self.transfer
            .as_ref()
            .map_or(0, |transfer| transfer.next_offset)
    }

    /// Takes one chunk. After the chunk marked `done`, returns the received
    /// snapshot as a candidate: it is intact and durable, and its metadata
    /// is what the file's header says (a driver checks that it is the one
    /// the InstallSnapshot message announced before stepping the message).
    /// A damaged transfer fails with [`StorageError::SnapshotDamaged`] and
    /// is dropped; the sender starts again from offset 0.
    pub fn receive(
        &mut self,
        chunk: &SnapshotChunk,
    ) -> Result<Option<SnapshotCandidate>, StorageError> {
        if chunk.offset == 0 {
            if self.transfer.is_some() {
                tracing::debug!("snapshot transfer restarted from the beginning");
            }
            self.abort();
            let temporary = self.store.temporary_path();
            let file =
                create_private_file(&temporary).map_err(StorageError::io("create", &temporary))?;
            self.transfer = Some(Transfer {
                file: PacedFile::new(file),
                temporary,
                next_offset: 0,
            });
        }
        let expected = self.bytes_received();
        if self.transfer.is_none() || chunk.offset != expected {
            return Err(StorageError::SnapshotChunkOutOfOrder {
                expected,
                found: chunk.offset,
            });
        }
        let received = expected.saturating_add(chunk.data.len() as u64);
        if let Some(announced) = self.size_bytes {
            if received > announced || (chunk.done && received != announced) {
                self.abort();
                return Err(StorageError::SnapshotSizeMismatch {
                    announced,
                    received,
                });
            }
        }
        let transfer = self.transfer.as_mut().expect("a transfer in progress");
        if let Err(source) = transfer.file.write_all(&chunk.data) {
            let error = StorageError::io("write", &transfer.temporary)(source);
            self.abort();
            return Err(error);
        }
        transfer.next_offset = received;
        if !chunk.done {
            return Ok(None);
        }
        let transfer = self.transfer.take().expect("a transfer in progress");
        match check(&transfer) {
            Ok(metadata) => Ok(Some(SnapshotCandidate {
                store: self.store.clone(),
                temporary: Some(transfer.temporary),
                metadata,
            })),
            Err(error) => {
                remove_abandoned(&transfer.temporary);
                Err(error)
            }
        }
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

/// Checks the received file from disk and syncs it; returns what its
/// header says it covers.
fn check(transfer: &Transfer) -> Result<SnapshotMetadata, StorageError> {
    let temporary = &transfer.temporary;
    let file = File::open(temporary).map_err(StorageError::io("open", temporary))?;
    let reader = SnapshotReader::new(file, temporary)?;
    let metadata = reader.metadata().clone();
    reader.finish()?;
    transfer
        .file
        .file()
        .sync_all()
        .map_err(StorageError::io("sync", temporary))?;
    Ok(metadata)
}

/// A snapshot received in full, checked and durable, under a temporary
/// name: not the store's snapshot until [`SnapshotCandidate::install`].
/// Dropped uninstalled (the core refused it), it removes its file; after a
/// crash, [`SnapshotStore::open`] does.
#[derive(Debug)]
pub struct SnapshotCandidate {
    store: SnapshotStore,
    temporary: Option<PathBuf>,
    metadata: SnapshotMetadata,
}

impl SnapshotCandidate {
    /// What the snapshot covers, as its header says.
    pub fn metadata(&self) -> &SnapshotMetadata {
        &self.metadata
    }

    /// Makes the candidate the store's latest snapshot (renamed into
    /// place, durably) and removes the older ones.
    pub fn install(mut self) -> Result<SnapshotFile, StorageError> {
        let temporary = self
            .temporary
            .take()
            .expect("a candidate not yet installed");
        let installed = install(&self.store, &temporary, &self.metadata);
        if installed.is_err() {
            remove_abandoned(&temporary);
        }
        installed
    }
}

impl Drop for SnapshotCandidate {
    fn drop(&mut self) {
        if let Some(temporary) = self.temporary.take() {
            remove_abandoned(&temporary);
        }
    }
}
