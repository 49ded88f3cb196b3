//! Moving a state machine's state into a snapshot file and back.

use std::io;

use super::store::{SnapshotFile, SnapshotStore};
use crate::core::quorum::Membership;
use crate::core::snapshot::SnapshotMetadata;
use crate::state_machine::{StateMachine, StateMachineSnapshot};
use crate::storage::StorageError;
use crate::types::{LogIndex, Term};

impl SnapshotStore {
    /// Writes the captured `snapshot` as the store's latest snapshot, at
    /// its applied index; `term` is the term of the log entry at that index
    /// and `membership` the cluster's as of it. Streams: memory stays
    /// bounded whatever the state's size. Meant for a blocking thread.
    pub fn save(
        &self,
        snapshot: &mut dyn StateMachineSnapshot,
        term: Term,
        membership: Membership,
    ) -> Result<SnapshotFile, StorageError> {
        let index = snapshot.applied_index();
        let mut writer = self.create(SnapshotMetadata {
            index,
            term,
            membership: membership.into(),
        })?;
        if let Err(source) = snapshot.write_to(&mut writer) {
            return Err(writer
                .take_failure()
                .unwrap_or_else(|| state_machine_failed("write", index, source)));
        }
        writer.finish()
    }
}

impl SnapshotFile {
    /// Replaces the state of `machine` with this snapshot's, in two passes:
    /// the first reads the whole file and checks it, so that a damaged
    /// snapshot never reaches the state machine; the second streams the
    /// data into [`StateMachine::restore`], verifying it again (the file
    /// could have been damaged in between; the state machine then sees an
    /// error before the end of its data). Reading twice costs a sequential
    /// read; in exchange, a state machine may replace its state as it reads
    /// when that is all it can afford.
    ///
    /// Fails if the state machine fails, leaves data unread, or does not
    /// end at the snapshot's index.
    pub fn restore_into<M: StateMachine>(&self, machine: &mut M) -> Result<(), StorageError> {
        self.verify()?;
        let mut reader = self.reader()?;
        let metadata = self.metadata().clone();
        let index = metadata.index;
        if let Err(source) = machine.restore(&mut reader, &metadata) {
            if reader.has_failed() {
                return reader.finish().map(|_| ());
            }
            return Err(state_machine_failed("restore", index, source));
        }
        let unread = reader.finish()?;
        if unread > 0 {
            return Err(state_machine_failed(
                "restore",
                index,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("it left the last {unread} bytes of the data unread"),
                ),
            ));
        }
        let applied = machine.applied_index();
        if applied != index {
            return Err(state_machine_failed(
                "restore",
                index,
                io::Error::other(format!(
                    "its applied index is {applied} afterwards, not the snapshot's"
                )),
            ));
        }
        tracing::info!(file = %self.path().display(), %index, "state machine restored from snapshot");
        Ok(())
    }
}

fn state_machine_failed(action: &'static str, index: LogIndex, source: io::Error) -> StorageError {
    StorageError::StateMachineSnapshot {
        action,
        index,
        source,
    }
}
