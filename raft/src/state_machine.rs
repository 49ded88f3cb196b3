//! The application's replicated state: what committed commands are applied
//! to, and what snapshots capture.

use std::io::{self, Read, Write};

use bytes::Bytes;

use crate::core::snapshot::SnapshotMetadata;
use crate::types::LogIndex;

/// A deterministic state machine that Raft replicates: every node applies
/// the same committed commands in the same order and must reach the same
/// state.
///
/// # Applying
///
/// The driver calls [`StateMachine::apply`] for each committed entry that
/// carries a command, in log order, with indexes above
/// [`StateMachine::applied_index`]. Entries without a command (a new
/// leader's no-op) are not passed, so the applied index may stay below the
/// last applied entry; after a restart the driver replays the log from
/// `applied_index() + 1`, which is therefore correct as long as the applied
/// index is exactly as durable as the state (an in-memory state machine
/// starts from its latest snapshot, whose index it takes).
///
/// `apply` must be deterministic: a command that the application rejects
/// (a failed compare-and-swap, a malformed request) is answered through
/// [`StateMachine::Response`], identically on every node. An `Err` means
/// the state machine itself is broken (its disk failed): the node stops.
///
/// # Snapshots
///
/// Taking a snapshot has two steps so that a large state is written
/// without stopping the node:
///
/// 1. on the driver's thread, [`StateMachine::snapshot`] captures the state
///    as it is now, at [`StateMachine::applied_index`], and returns a
///    [`StateMachineSnapshot`]: something cheap (a copy-on-write
///    reference, a storage engine's read snapshot);
/// 2. on another thread (for a tokio driver, `spawn_blocking`), the
///    captured snapshot streams the state into a [`Write`]
///    ([`crate::storage::snapshot::SnapshotStore::save`]), while the driver
///    goes on applying entries.
///
/// The data must reflect **exactly** the state after applying every
/// command up to [`StateMachineSnapshot::applied_index`] and none after:
/// the log is compacted behind it, and a follower that installs it
/// continues from that index.
///
/// [`StateMachine::restore`] replaces the whole state with a snapshot's,
/// streamed from a [`Read`]. The reader verifies the data as it delivers it
/// and reports the end only once the checksum matched: build the new state
/// aside, read to the end (until `Ok(0)`), and only then replace the
/// current state. (The store also verifies the file in a pass of its own
/// first, see [`crate::storage::snapshot`]: a state machine that follows
/// this rule is never left with damaged data.)
///
/// # Threads
///
/// The trait requires [`Send`] and `'static` of the state machine, its
/// responses and its snapshots, so that a tokio driver can own the state
/// machine in its task, move a snapshot to a blocking thread, and move the
/// state machine to one for a restore. Nothing needs [`Sync`].
///
/// # Example
///
/// A state machine whose commands are numbers to add up:
///
/// ```
/// use std::io::{self, Read, Write};
/// use raft::{LogIndex, SnapshotMetadata, StateMachine, StateMachineSnapshot};
///
/// #[derive(Default)]
/// struct Sum { total: u64, applied: LogIndex }
///
/// /// The captured state: a copy, since it is 16 bytes.
/// struct SumSnapshot { total: u64, applied: LogIndex }
///
/// impl StateMachine for Sum {
///     type Response = u64;
///     type Error = io::Error;
///     type Snapshot = SumSnapshot;
///
///     fn apply(&mut self, index: LogIndex, command: &[u8]) -> io::Result<u64> {
///         let number = std::str::from_utf8(command).ok().and_then(|text| text.parse().ok());
///         self.total = self.total.wrapping_add(number.unwrap_or(0));
///         self.applied = index;
///         Ok(self.total)
///     }
///
///     fn applied_index(&self) -> LogIndex {
///         self.applied
///     }
///
///     fn snapshot(&self) -> io::Result<SumSnapshot> {
///         Ok(SumSnapshot { total: self.total, applied: self.applied })
///     }
///
///     fn restore(&mut self, reader: &mut dyn Read, metadata: &SnapshotMetadata) -> io::Result<()> {
///         let mut bytes = Vec::new();
///         reader.read_to_end(&mut bytes)?; // to the end: the data is verified
///         let total = bytes.try_into().map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
///         *self = Sum { total: u64::from_le_bytes(total), applied: metadata.index };
///         Ok(())
///     }
/// }
///
/// impl StateMachineSnapshot for SumSnapshot {
///     fn applied_index(&self) -> LogIndex {
///         self.applied
///     }
///
///     fn write_to(&mut self, writer: &mut dyn Write) -> io::Result<()> {
///         writer.write_all(&self.total.to_le_bytes())
///     }
/// }
///
/// let mut sum = Sum::default();
/// sum.apply(LogIndex(1), b"40").unwrap();
/// let mut captured = sum.snapshot().unwrap();
/// sum.apply(LogIndex(2), b"2").unwrap(); // not in the captured snapshot
/// let mut data = Vec::new();
/// captured.write_to(&mut data).unwrap();
///
/// let mut restored = Sum::default();
/// let metadata = SnapshotMetadata { index: captured.applied_index(), ..Default::default() };
/// restored.restore(&mut &data[..], &metadata).unwrap();
/// assert_eq!((restored.total, restored.applied_index()), (40, LogIndex(1)));
/// ```
///
/// `Sync`, because a node serves reads from the state machine (under a
/// read lock) on other threads while the applier is idle.
pub trait StateMachine: Send + Sync + 'static {
    /// What applying a command answers to the client that proposed it.
    type Response: Send + 'static;
    /// A failure of the state machine itself, after which the node stops.
    type Error: std::error::Error + Send + Sync + 'static;
    /// A captured state, written out on another thread.
    type Snapshot: StateMachineSnapshot;

    /// Applies the committed `command` at `index`, which is above
    /// [`StateMachine::applied_index`]; afterwards the applied index is
    /// `index`.
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Result<Self::Response, Self::Error>;

    /// [`StateMachine::apply`], given the command as the log holds it: a
    /// state machine that keeps part of a command (a value, say) can keep a
    /// [`Bytes::slice`] of it instead of a copy, so that the log and the
    /// state share those bytes while both hold them. Each command the node
    /// hands over is an allocation of its own (never a slice of a larger
    /// message or file buffer), so a slice kept pins only that command.
    /// The driver calls this one; by default it calls `apply`.
    fn apply_shared(
        &mut self,
        index: LogIndex,
        command: &Bytes,
    ) -> Result<Self::Response, Self::Error> {
        self.apply(index, command)
    }

    /// The index of the last command applied, or of the snapshot restored
    /// since (0 for a new state machine).
    fn applied_index(&self) -> LogIndex;

    /// Captures the current state, at [`StateMachine::applied_index`], for
    /// writing out later. Later calls to `apply` must not change what the
    /// captured snapshot writes.
    fn snapshot(&self) -> Result<Self::Snapshot, Self::Error>;

    /// Replaces the whole state with the snapshot data `reader` streams;
    /// afterwards the applied index is `metadata.index`. Read to the end
    /// before replacing anything: the end (`Ok(0)`) is where the data is
    /// known to be intact. On `Err` the state may be anything, and the
    /// driver restores again or stops.
    fn restore(&mut self, reader: &mut dyn Read, metadata: &SnapshotMetadata) -> io::Result<()>;
}

/// A state captured by [`StateMachine::snapshot`], ready to be written out.
///
/// It is [`Send`] and `'static` so that it can move to a blocking thread,
/// independent of the state machine, which goes on applying.
pub trait StateMachineSnapshot: Send + 'static {
    /// The index of the last command whose effect the captured state
    /// includes; it includes no later one.
    fn applied_index(&self) -> LogIndex;

    /// Streams the captured state to `writer`, in a form
    /// [`StateMachine::restore`] reads back. Memory may stay bounded: the
    /// writer takes the data in pieces.
    fn write_to(&mut self, writer: &mut dyn Write) -> io::Result<()>;
}
