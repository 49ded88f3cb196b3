//! A node's simulated durable storage. The hard state is written
//! synchronously (the driver contract requires it durable before anything
//! else happens); log appends are written in the background and become
//! durable only when flushed. A crash loses every append not yet flushed.

use std::collections::VecDeque;

use raft::{Entry, HardState, LogIndex, SnapshotMetadata, Term};

use crate::kv::KvStore;
use crate::log_view::LogView;

/// A snapshot as the simulator stores it: the state machine, plus the terms
/// and hashes of the log prefix it covers (for the safety checks).
#[derive(Clone, Debug)]
pub struct StoredSnapshot {
    /// What it covers.
    pub metadata: SnapshotMetadata,
    /// The state machine at `metadata.index`.
    pub kv: KvStore,
    /// Terms of indexes 1..=`metadata.index`.
    pub terms: Vec<Term>,
    /// Chained hashes of indexes 1..=`metadata.index`.
    pub chains: Vec<u64>,
}

/// Storage that survives crashes, plus the writes still in flight.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// The durable term and vote.
    pub hard_state: HardState,
    /// The durable log.
    pub log: LogView,
    /// The latest durable snapshot of this node's state machine.
    pub snapshot: Option<StoredSnapshot>,
    /// A snapshot received from a leader, durable, not yet installed.
    pub incoming_snapshot: Option<StoredSnapshot>,
    /// Appends written but not yet durable, oldest first, with their
    /// sequence numbers.
    pending: VecDeque<(u64, Vec<Entry>)>,
    next_sequence: u64,
}

impl Disk {
    /// Starts writing `entries` (replacing any suffix from the first one's
    /// index). Returns the write's sequence number, for [`Disk::flush`].
    pub fn write(&mut self, entries: Vec<Entry>) -> u64 {
        self.next_sequence += 1;
        self.pending.push_back((self.next_sequence, entries));
        self.next_sequence
    }

    /// Makes every write up to `sequence` durable, in order. Returns the
    /// (index, term) of the last entry written, to report to the core.
    pub fn flush(&mut self, sequence: u64) -> Option<(LogIndex, Term)> {
        let mut last_written = None;
        while self
            .pending
            .front()
            .is_some_and(|(pending, _)| *pending <= sequence)
        {
            let (_, entries) = self.pending.pop_front().expect("front exists");
            let last = entries.last().expect("appends are never empty");
            last_written = Some((last.index, last.term));
            self.log.append(&entries);
        }
        last_written
    }

    /// A crash: writes in flight never reach the disk.
    pub fn crash(&mut self) {
        self.pending.clear();
    }

    /// Installs a snapshot: it replaces the state machine and the whole log,
    /// atomically and durably. Writes still in flight were for the replaced
    /// log and are dropped.
    pub fn install(&mut self, snapshot: StoredSnapshot) {
        self.pending.clear();
        self.log = LogView::from_snapshot(snapshot.terms.clone(), snapshot.chains.clone());
        self.snapshot = Some(snapshot);
    }
}
