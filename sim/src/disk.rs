//! A node's simulated durable storage. The hard state is written
//! synchronously (the driver contract requires it durable before anything
//! else happens); log appends are written in the background and become
//! durable only when flushed. A crash loses every append not yet flushed.

use std::collections::VecDeque;

use raft::{Entry, HardState, LogIndex, Term};

use crate::log_view::LogView;

/// Storage that survives crashes, plus the writes still in flight.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// The durable term and vote.
    pub hard_state: HardState,
    /// The durable log.
    pub log: LogView,
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
}
