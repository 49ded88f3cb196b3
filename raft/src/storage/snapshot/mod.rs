//! Snapshots on disk, under `<data-dir>/snapshots/`, and their transfer in
//! chunks.
//!
//! # Files
//!
//! A [`SnapshotStore`] keeps one snapshot per node: the newest. Each is an
//! immutable file (format in [`mod@format`]) with a checksummed header holding
//! the [`crate::SnapshotMetadata`], the state machine's data, and a trailer
//! with the data's length and a CRC32C of the whole file. It is written
//! under a temporary name, synced, renamed into place and the directory
//! synced; only then are older snapshots removed. A crash at any point
//! leaves either the old snapshot or the new one, plus perhaps a temporary
//! file that the next [`SnapshotStore::open`] removes.
//!
//! # Damage
//!
//! Nothing damaged is ever loaded. [`SnapshotStore::latest`] checks the
//! header and that the trailer is where it must be; [`SnapshotReader`]
//! checks everything while it streams the data, and reports the end of the
//! data only once the checksum matched. Damage is a
//! [`crate::storage::StorageError::SnapshotDamaged`] naming the file and
//! the offset where it was found (for a bad checksum, the checksum's).
//!
//! # Restoring: verify, then restore
//!
//! Since the checksum can only be checked at the end of the stream, a
//! restore is staged. [`SnapshotFile::restore_into`] reads the file twice:
//! once to verify it, then once into [`crate::StateMachine::restore`],
//! which is asked to build the new state aside and swap it in only after
//! the end of the data. A received snapshot is verified before it becomes
//! a candidate ([`SnapshotReceiver`]), so its first pass has already been
//! done, but `restore_into` does not rely on it.
//!
//! # Transfer
//!
//! InstallSnapshot sends the file itself, byte for byte: a
//! [`SnapshotSender`] reads it in chunks ([`SnapshotChunk`]: offset, bytes,
//! `done`) and a [`SnapshotReceiver`] writes them to a temporary file,
//! then checks and syncs it: a [`SnapshotCandidate`], which the driver
//! installs as the node's snapshot only once the core has accepted it. This layer knows nothing of the
//! transport; a gRPC transport maps chunks to `InstallSnapshotChunk`,
//! sending the sender's metadata and size with the first one.
//!
//! # Memory
//!
//! Writing, reading, verifying, sending and receiving all stream: memory
//! holds at most one buffer or chunk, whatever the snapshot's size.
//!
//! ```
//! use raft::storage::snapshot::SnapshotStore;
//! use raft::{LogIndex, Membership, NodeId, SnapshotMetadata, Term};
//! use std::io::{Read, Write};
//!
//! let data_directory = tempfile::tempdir().unwrap();
//! let store = SnapshotStore::open(data_directory.path()).unwrap();
//! let metadata = SnapshotMetadata {
//!     index: LogIndex(10),
//!     term: Term(2),
//!     membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]).into(),
//! };
//! let mut writer = store.create(metadata.clone()).unwrap();
//! writer.write_all(b"the state machine's data").unwrap();
//! writer.finish().unwrap();
//!
//! let latest = store.latest().unwrap().expect("a snapshot");
//! assert_eq!(latest.metadata(), &metadata);
//! let mut data = String::new();
//! latest.reader().unwrap().read_to_string(&mut data).unwrap();
//! assert_eq!(data, "the state machine's data");
//! ```

pub mod format;
mod reader;
mod receiver;
mod sender;
mod state_machine_io;
mod store;
mod writer;

pub use self::format::{MAX_METADATA_BYTES, SNAPSHOT_FORMAT_VERSION};
pub use self::reader::SnapshotReader;
pub use self::receiver::{SnapshotCandidate, SnapshotReceiver};
pub use self::sender::{SnapshotChunk, SnapshotSender, DEFAULT_CHUNK_SIZE_BYTES};
pub use self::store::{snapshot_file_name, SnapshotFile, SnapshotStore};
pub use self::writer::SnapshotWriter;

#[cfg(test)]
mod tests {
    use super::*;

    fn can_move_between_threads<T: Send + 'static>() {}
    fn can_be_shared_between_threads<T: Send + Sync + 'static>() {}

    #[test]
    fn every_piece_can_move_to_a_blocking_thread() {
        can_be_shared_between_threads::<SnapshotStore>();
        can_be_shared_between_threads::<SnapshotFile>();
        can_move_between_threads::<SnapshotWriter>();
        can_move_between_threads::<SnapshotReader<std::fs::File>>();
        can_move_between_threads::<SnapshotSender>();
        can_move_between_threads::<SnapshotReceiver>();
        can_move_between_threads::<SnapshotCandidate>();
    }
}
