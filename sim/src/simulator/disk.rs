//! A node's simulated durable storage, and the disk faults it models.
//!
//! The hard state is written synchronously (the driver contract requires it
//! durable before anything else happens); log appends are written in the
//! background and become durable only when flushed, in order.
//!
//! # What a crash keeps
//!
//! The real write-ahead log (`raft::storage::wal`) appends one record per
//! entry, and replays "an entry at or below the last index replaces that
//! suffix". A crash can cut the writes in flight short: recovery truncates a
//! torn final record, so what survives of them is a prefix of their records.
//! [`Disk::crash`] keeps the first `keep` entries in flight, across batches
//! in order, and loses the rest. For an append that replaces a conflicting
//! suffix, the log after recovery is therefore the old log up to the
//! replaced index followed by the kept new entries, or, when none of the new
//! entries landed, the old log with its old suffix. The kept entries were
//! never reported persisted to the core; Raft must stay safe anyway, since
//! the same log results from a shorter append that did complete.
//!
//! A hard-state write is never in flight at a crash here: the simulator
//! carries out a step's outputs between events and crashes only between
//! them. A hard-state record torn by a real crash fails its checksum and is
//! dropped, which is the state of crashing before that step.
//!
//! # Corruption
//!
//! [`Disk::flip_bit`] damages the record of a durable entry that is not the
//! last one. The real log refuses to start on such damage rather than drop
//! entries that may be committed, and so does [`Disk::recover`]: the node
//! stays down. The records still hold the entries (a repair could read them
//! back), so the durability checks go on counting them. A bad *last* record
//! is not modelled: the real log reads it as a torn write and truncates it,
//! which would silently lose an entry that may have been acknowledged. That
//! is a limit of checksums alone, not a fault Raft is meant to survive.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;

use raft::{Entries, HardState, LogIndex, SnapshotMetadata, Term};

use crate::simulator::kv::KvStore;
use crate::simulator::log_view::LogView;

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

/// A durable record that fails its checksum and is not the log's last: the
/// disk's content is damaged, not cut short by a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptRecord {
    /// The entry whose record was damaged.
    pub entry: LogIndex,
    /// The log's last index when it was damaged.
    pub last_index: LogIndex,
}

impl fmt::Display for CorruptRecord {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "the record of entry {} fails its checksum and the log goes on to {}",
            self.entry, self.last_index
        )
    }
}

/// What a crash kept of the writes in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Entries that reached the disk.
    pub entries_kept: usize,
    /// Writes replacing a durable suffix of which not every entry reached
    /// the disk (the old suffix stays when none did).
    pub replacements_cut_short: usize,
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
    pending: VecDeque<(u64, Entries)>,
    next_sequence: u64,
    /// A damaged record, found when the node next starts.
    corruption: Option<CorruptRecord>,
}

impl Disk {
    /// Starts writing `entries` (replacing any suffix from the first one's
    /// index). Returns the write's sequence number, for [`Disk::flush`].
    pub fn write(&mut self, entries: Entries) -> u64 {
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

    /// How many entries the writes in flight hold.
    pub fn entries_in_flight(&self) -> usize {
        self.pending.iter().map(|(_, entries)| entries.len()).sum()
    }

    /// A crash: of the entries in flight, the first `keep` reach the disk
    /// (a torn write when that is some but not all of them) and the rest are
    /// lost.
    pub fn crash(&mut self, keep: usize) -> CrashReport {
        let mut report = CrashReport::default();
        for (_, entries) in std::mem::take(&mut self.pending) {
            let landed = entries.len().min(keep - report.entries_kept);
            if landed < entries.len() && entries[0].index <= self.log.last_index() {
                report.replacements_cut_short += 1;
            }
            if landed == 0 {
                break;
            }
            // Replaying the landed records replaces the suffix from the
            // first one, exactly as a whole write would.
            self.log.append(&entries[..landed]);
            report.entries_kept += landed;
        }
        report
    }

    /// Installs a snapshot: it replaces the state machine and the whole log,
    /// atomically and durably. Writes still in flight were for the replaced
    /// log and are dropped.
    pub fn install(&mut self, snapshot: StoredSnapshot) {
        self.pending.clear();
        self.log = LogView::from_snapshot(snapshot.terms.clone(), snapshot.chains.clone());
        self.snapshot = Some(snapshot);
    }

    /// The indexes of the durable entries whose records a bit flip may
    /// damage: every one in the log but the last. Empty when the log holds
    /// fewer than two entries.
    pub fn entries_before_tail(&self) -> Range<u64> {
        let last = self.log.last_index().0;
        let first = last - self.log.entries().len() as u64 + 1;
        first..last.max(first)
    }

    /// Flips a bit in the record of durable entry `entry`, which must not be
    /// the last; the node must be down with nothing in flight.
    pub fn flip_bit(&mut self, entry: LogIndex) {
        assert!(
            self.entries_before_tail().contains(&entry.0),
            "{entry} is not a durable entry before the log's tail"
        );
        assert!(
            self.pending.is_empty(),
            "a disk is damaged only while its node is down"
        );
        self.corruption.get_or_insert(CorruptRecord {
            entry,
            last_index: self.log.last_index(),
        });
    }

    /// What recovery finds at start: the damaged record, if any, on which
    /// the node refuses to start.
    pub fn recover(&self) -> Result<(), CorruptRecord> {
        match self.corruption {
            Some(corruption) => Err(corruption),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::log_view::tests::entry;

    fn entries(indexes: Range<u64>, term: u64) -> Entries {
        indexes.map(|index| entry(index, term)).collect()
    }

    /// A disk holding entries 1..=5 of term 1, durably.
    fn disk_with_five_entries() -> Disk {
        let mut disk = Disk::default();
        let sequence = disk.write(entries(1..6, 1));
        disk.flush(sequence);
        disk
    }

    #[test]
    fn a_crash_keeps_a_prefix_of_the_entries_in_flight_across_batches() {
        let mut disk = disk_with_five_entries();
        disk.write(entries(6..9, 1));
        disk.write(entries(9..11, 2));
        assert_eq!(disk.entries_in_flight(), 5);
        assert_eq!(disk.crash(4).entries_kept, 4);
        assert_eq!(disk.log.terms(), &[1, 1, 1, 1, 1, 1, 1, 1, 2].map(Term));
        assert_eq!(disk.entries_in_flight(), 0);
        // Flushes of the lost writes find nothing.
        assert_eq!(disk.flush(u64::MAX), None);
    }

    #[test]
    fn a_crash_may_keep_all_or_none_of_the_entries_in_flight() {
        let mut none = disk_with_five_entries();
        none.write(entries(6..8, 1));
        assert_eq!(none.crash(0).entries_kept, 0);
        assert_eq!(none.log.last_index(), LogIndex(5));

        let mut all = disk_with_five_entries();
        all.write(entries(6..8, 1));
        assert_eq!(all.crash(usize::MAX).entries_kept, 2);
        assert_eq!(all.log.last_index(), LogIndex(7));
    }

    #[test]
    fn a_torn_replacement_keeps_the_old_prefix_and_some_new_entries() {
        // An append of term 3 replaces the suffix from index 3.
        let mut disk = disk_with_five_entries();
        disk.write(entries(3..7, 3));
        assert_eq!(
            disk.crash(2),
            CrashReport {
                entries_kept: 2,
                replacements_cut_short: 1
            }
        );
        assert_eq!(disk.log.terms(), &[1, 1, 3, 3].map(Term));
    }

    #[test]
    fn a_replacement_of_which_nothing_landed_leaves_the_old_suffix() {
        let mut disk = disk_with_five_entries();
        disk.write(entries(3..7, 3));
        assert_eq!(
            disk.crash(0),
            CrashReport {
                entries_kept: 0,
                replacements_cut_short: 1
            }
        );
        assert_eq!(disk.log.terms(), &[1, 1, 1, 1, 1].map(Term));
    }

    #[test]
    fn a_flipped_bit_before_the_tail_makes_recovery_refuse() {
        let mut disk = disk_with_five_entries();
        assert_eq!(disk.entries_before_tail(), 1..5);
        assert_eq!(disk.recover(), Ok(()));
        disk.flip_bit(LogIndex(2));
        assert_eq!(
            disk.recover(),
            Err(CorruptRecord {
                entry: LogIndex(2),
                last_index: LogIndex(5)
            })
        );
        // The records are damaged, not gone: the log still holds them.
        assert_eq!(disk.log.last_index(), LogIndex(5));
    }

    #[test]
    fn only_records_before_the_tail_and_after_compaction_can_be_damaged() {
        let mut disk = disk_with_five_entries();
        disk.log.compact(LogIndex(3));
        assert_eq!(disk.entries_before_tail(), 4..5);
        disk.log.compact(LogIndex(4));
        assert!(disk.entries_before_tail().is_empty());
        assert!(Disk::default().entries_before_tail().is_empty());
    }

    #[test]
    #[should_panic(expected = "not a durable entry before the log's tail")]
    fn the_last_record_is_never_damaged() {
        disk_with_five_entries().flip_bit(LogIndex(5));
    }
}
