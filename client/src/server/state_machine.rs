//! The key-value store as the state machine Raft replicates.

use std::io;

use bytes::Bytes;

use raft::{LogIndex, SnapshotMetadata, StateMachine, StateMachineSnapshot};

use crate::kv::{CommandResponse, ErrorClass, KvError, KvStore};

/// [`KvStore`] behind [`raft::StateMachine`]: each committed entry is an
/// encoded write command.
///
/// A command the store refuses (a transaction that names a key twice, a
/// feature not built) is still a deterministic outcome, the same on every
/// node: it is the proposal's answer, not a failure. Only a broken log
/// (a command that does not decode, an index applied twice) stops the node.
#[derive(Debug, Default)]
pub struct KvStateMachine {
    /// The store.
    pub store: KvStore,
}

/// A copy of the store, written out on another thread.
#[derive(Debug)]
pub struct KvSnapshot {
    store: KvStore,
}

/// An internal error stops the node; any other outcome, a refusal
/// included, is the client's answer.
fn node_failure_or_answer(
    outcome: Result<CommandResponse, KvError>,
) -> Result<Result<CommandResponse, KvError>, KvError> {
    match outcome {
        Err(error) if error.class() == ErrorClass::Internal => Err(error),
        answer => Ok(answer),
    }
}

impl StateMachine for KvStateMachine {
    type Response = Result<CommandResponse, KvError>;
    type Error = KvError;
    type Snapshot = KvSnapshot;

    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Result<Self::Response, KvError> {
        node_failure_or_answer(self.store.apply(index, command))
    }

    fn apply_shared(
        &mut self,
        index: LogIndex,
        command: &Bytes,
    ) -> Result<Self::Response, KvError> {
        node_failure_or_answer(self.store.apply_shared(index, command))
    }

    fn applied_index(&self) -> LogIndex {
        self.store.applied_index()
    }

    fn snapshot(&self) -> Result<KvSnapshot, KvError> {
        // A copy: simple, and the write goes on while it is written out. A
        // store larger than memory would capture a copy-on-write view.
        Ok(KvSnapshot {
            store: self.store.clone(),
        })
    }

    fn restore(
        &mut self,
        reader: &mut dyn io::Read,
        metadata: &SnapshotMetadata,
    ) -> io::Result<()> {
        let store = KvStore::read_snapshot(reader).map_err(io::Error::other)?;
        if store.applied_index() != metadata.index {
            return Err(io::Error::other(format!(
                "the snapshot's store has applied up to {}, its metadata says {}",
                store.applied_index(),
                metadata.index
            )));
        }
        self.store = store;
        Ok(())
    }
}

impl StateMachineSnapshot for KvSnapshot {
    fn applied_index(&self) -> LogIndex {
        self.store.applied_index()
    }

    fn write_to(&mut self, writer: &mut dyn io::Write) -> io::Result<()> {
        self.store.write_snapshot(writer).map_err(io::Error::other)
    }
}
