//! A 50 MB snapshot goes through the store and a transfer in pieces: its
//! state is generated while it is written and checked while it is read, so
//! neither the test nor the API ever holds it whole.

use std::io::{self, Read, Write};

use raft::storage::snapshot::{SnapshotSender, SnapshotStore, DEFAULT_CHUNK_SIZE_BYTES};
use raft::{
    LogIndex, Membership, NodeId, SnapshotMetadata, StateMachine, StateMachineSnapshot, Term,
};

const SIZE_BYTES: u64 = 50 << 20;
const PIECE_BYTES: usize = 64 << 10;

/// A state that exists only as a seed and a size: its data is a
/// pseudo-random stream the seed determines.
#[derive(Debug, Default)]
struct GeneratedState {
    seed: u64,
    size_bytes: u64,
    applied: LogIndex,
}

/// xorshift64*: fills `piece` with the next bytes of the stream.
fn generate(state: &mut u64, piece: &mut [u8]) {
    for word in piece.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let value = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        word.copy_from_slice(&value[..word.len()]);
    }
}

impl StateMachine for GeneratedState {
    type Response = ();
    type Error = io::Error;
    type Snapshot = GeneratedSnapshot;

    fn apply(&mut self, index: LogIndex, command: &[u8]) -> io::Result<()> {
        self.seed = self.seed.rotate_left(7) ^ command.len() as u64 ^ index.0;
        self.applied = index;
        Ok(())
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn snapshot(&self) -> io::Result<GeneratedSnapshot> {
        Ok(GeneratedSnapshot {
            seed: self.seed,
            size_bytes: self.size_bytes,
            applied: self.applied,
        })
    }

    /// Checks every byte against the stream the seed at the start gives.
    fn restore(&mut self, reader: &mut dyn Read, metadata: &SnapshotMetadata) -> io::Result<()> {
        let mut prefix = [0; 16];
        reader.read_exact(&mut prefix)?;
        let seed = u64::from_le_bytes(prefix[..8].try_into().expect("eight bytes"));
        let mut generator = seed | 1;
        let mut expected = vec![0; PIECE_BYTES];
        let mut read = vec![0; PIECE_BYTES];
        let mut size_bytes = 0;
        loop {
            let count = reader.read(&mut read)?;
            if count == 0 {
                break;
            }
            // Reads may end anywhere; compare the bytes in stream order.
            let mut compared = 0;
            while compared < count {
                let in_piece = (size_bytes % PIECE_BYTES as u64) as usize;
                if in_piece == 0 {
                    generate(&mut generator, &mut expected);
                }
                let length = (count - compared).min(PIECE_BYTES - in_piece);
                if read[compared..compared + length] != expected[in_piece..in_piece + length] {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong data"));
                }
                compared += length;
                size_bytes += length as u64;
            }
        }
        if size_bytes != u64::from_le_bytes(prefix[8..].try_into().expect("eight bytes")) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong size"));
        }
        *self = GeneratedState {
            seed,
            size_bytes,
            applied: metadata.index,
        };
        Ok(())
    }
}

struct GeneratedSnapshot {
    seed: u64,
    size_bytes: u64,
    applied: LogIndex,
}

impl StateMachineSnapshot for GeneratedSnapshot {
    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn write_to(&mut self, writer: &mut dyn Write) -> io::Result<()> {
        writer.write_all(&self.seed.to_le_bytes())?;
        writer.write_all(&self.size_bytes.to_le_bytes())?;
        let mut generator = self.seed | 1;
        let mut piece = vec![0; PIECE_BYTES];
        let mut remaining = self.size_bytes;
        while remaining > 0 {
            generate(&mut generator, &mut piece);
            let length = remaining.min(PIECE_BYTES as u64) as usize;
            writer.write_all(&piece[..length])?;
            remaining -= length as u64;
        }
        Ok(())
    }
}

#[test]
fn a_fifty_megabyte_snapshot_streams_through_store_and_transfer() {
    let mut state = GeneratedState {
        size_bytes: SIZE_BYTES,
        ..GeneratedState::default()
    };
    for index in 1..=5 {
        state.apply(LogIndex(index), b"command").expect("apply");
    }
    let source_directory = tempfile::tempdir().expect("temporary directory");
    let source = SnapshotStore::open(source_directory.path()).expect("open");
    let saved = source
        .save(
            &mut state.snapshot().expect("capture"),
            Term(2),
            Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
        )
        .expect("save");
    assert!(saved.size_bytes() > SIZE_BYTES);

    let mut restored = GeneratedState::default();
    saved.restore_into(&mut restored).expect("restore");
    assert_eq!(
        (restored.seed, restored.size_bytes, restored.applied),
        (state.seed, SIZE_BYTES, LogIndex(5))
    );

    let destination_directory = tempfile::tempdir().expect("temporary directory");
    let destination = SnapshotStore::open(destination_directory.path()).expect("open");
    let mut sender = SnapshotSender::new(&saved, DEFAULT_CHUNK_SIZE_BYTES).expect("sender");
    let mut receiver = destination.receiver();
    let mut chunks = 0;
    let mut installed = None;
    while let Some(chunk) = sender.next_chunk().expect("read chunk") {
        chunks += 1;
        installed = receiver.receive(&chunk).expect("receive");
    }
    assert_eq!(
        chunks,
        saved.size_bytes().div_ceil(DEFAULT_CHUNK_SIZE_BYTES as u64)
    );
    let installed = installed
        .expect("complete after the last chunk")
        .install()
        .expect("install");
    assert_eq!(installed.metadata(), saved.metadata());
    let mut received = GeneratedState::default();
    installed.restore_into(&mut received).expect("restore");
    assert_eq!(received.seed, state.seed);
}
