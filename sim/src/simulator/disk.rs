//! A node's simulated durable storage, and the disk faults it models.
//!
//! Hard states and log appends are written in the background, into one
//! ordered stream as in the real write-ahead log, and become durable only
//! when flushed, in order. The driver contract wants a hard state durable
//! before any later output is carried out: the simulator keeps that rule
//! with the node's own [`raft::OutputGate`], so a crash before the flush
//! loses the hard state together with everything it held back.
//!
//! # What a crash keeps
//!
//! The real write-ahead log (`raft::storage::wal`) appends one record per
//! entry or hard state, and replays "an entry at or below the last index
//! replaces that suffix". A crash can cut the writes in flight short:
//! recovery truncates a torn final record, so what survives of them is a
//! prefix of their records. [`Disk::crash`] keeps the first `keep` records
//! in flight, across writes in order, and loses the rest. For an append that replaces a conflicting
//! suffix, the log after recovery is therefore the old log up to the
//! replaced index followed by the kept new entries, or, when none of the new
//! entries landed, the old log with its old suffix. The kept entries were
//! never reported persisted to the core; Raft must stay safe anyway, since
//! the same log results from a shorter append that did complete.
//!
//! A hard-state record torn by a real crash fails its checksum and is
//! dropped, which is the state of a crash that kept no record from it on.
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
    /// Hard states that reached the disk.
    pub hard_states_kept: usize,
    /// Hard states that were lost.
    pub hard_states_lost: usize,
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
    /// Snapshots received from a leader, durable, not yet installed (the
    /// core may take one while an earlier decision still waits behind a
    /// hard state, so there may be several).
    incoming_snapshots: Vec<StoredSnapshot>,
    /// Writes not yet durable, oldest first, with their sequence numbers.
    pending: VecDeque<(u64, Write)>,
    next_sequence: u64,
    /// A damaged record, found when the node next starts.
    corruption: Option<CorruptRecord>,
}

/// One write in flight.
#[derive(Clone, Debug)]
enum Write {
    /// Entries, replacing any suffix from the first one's index.
    Entries(Entries),
    /// The term and vote.
    HardState(HardState),
}

impl Write {
    /// How many records the write adds to the log file.
    fn records(&self) -> usize {
        match self {
            Write::Entries(entries) => entries.len(),
            Write::HardState(_) => 1,
        }
    }
}

impl Disk {
    /// Starts writing `entries` (replacing any suffix from the first one's
    /// index). Returns the write's sequence number, for [`Disk::flush`].
    pub fn write(&mut self, entries: Entries) -> u64 {
        self.submit(Write::Entries(entries))
    }

    /// Starts writing the term and vote. Returns the write's sequence
    /// number, for [`Disk::flush`].
    pub fn write_hard_state(&mut self, hard_state: HardState) -> u64 {
        self.submit(Write::HardState(hard_state))
    }

    fn submit(&mut self, write: Write) -> u64 {
        self.next_sequence += 1;
        self.pending.push_back((self.next_sequence, write));
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
            match self.pending.pop_front().expect("front exists").1 {
                Write::Entries(entries) => {
                    let last = entries.last().expect("appends are never empty");
                    last_written = Some((last.index, last.term));
                    self.log.append(&entries);
                }
                Write::HardState(hard_state) => self.hard_state = hard_state,
            }
        }
        last_written
    }

    /// How many entries the writes in flight hold.
    pub fn entries_in_flight(&self) -> usize {
        self.pending
            .iter()
            .map(|(_, write)| match write {
                Write::Entries(entries) => entries.len(),
                Write::HardState(_) => 0,
            })
            .sum()
    }

    /// How many records the writes in flight hold (entries and hard
    /// states).
    pub fn records_in_flight(&self) -> usize {
        self.pending.iter().map(|(_, write)| write.records()).sum()
    }

    /// A crash: of the records in flight, the first `keep` reach the disk
    /// (a torn write when that is some but not all of them) and the rest are
    /// lost.
    pub fn crash(&mut self, keep: usize) -> CrashReport {
        let mut report = CrashReport::default();
        let mut room = keep;
        let mut cut = false;
        for (_, write) in std::mem::take(&mut self.pending) {
            if cut {
                // Nothing after the first record lost reaches the disk.
                if let Write::HardState(_) = write {
                    report.hard_states_lost += 1;
                }
                continue;
            }
            let landed = write.records().min(room);
            room -= landed;
            cut = landed < write.records();
            match write {
                Write::HardState(hard_state) if landed == 1 => {
                    self.hard_state = hard_state;
                    report.hard_states_kept += 1;
                }
                Write::HardState(_) => report.hard_states_lost += 1,
                Write::Entries(entries) => {
                    if landed < entries.len() && entries[0].index <= self.log.last_index() {
                        report.replacements_cut_short += 1;
                    }
                    // Replaying the landed records replaces the suffix from
                    // the first one, exactly as a whole write would.
                    if landed > 0 {
                        self.log.append(&entries[..landed]);
                        report.entries_kept += landed;
                    }
                }
            }
        }
        report
    }

    /// Stores a snapshot streamed from a leader, as a candidate.
    pub fn receive_snapshot(&mut self, snapshot: StoredSnapshot) {
        self.incoming_snapshots.push(snapshot);
    }

    /// The received snapshot `metadata` names, if it was stored.
    pub fn incoming_snapshot(&self, metadata: &SnapshotMetadata) -> Option<&StoredSnapshot> {
        self.incoming_snapshots
            .iter()
            .find(|snapshot| snapshot.metadata == *metadata)
    }

    /// Takes the received snapshot `metadata` names, to install it; the
    /// candidates it supersedes (none newer) are dropped with it.
    pub fn take_incoming_snapshot(
        &mut self,
        metadata: &SnapshotMetadata,
    ) -> Option<StoredSnapshot> {
        let position = self
            .incoming_snapshots
            .iter()
            .position(|snapshot| snapshot.metadata == *metadata)?;
        let snapshot = self.incoming_snapshots.remove(position);
        self.incoming_snapshots
            .retain(|other| other.metadata.index > metadata.index);
        Some(snapshot)
    }

    /// Drops every received snapshot not installed (at a restart: the core
    /// that might have taken them is gone).
    pub fn drop_incoming_snapshots(&mut self) {
        self.incoming_snapshots.clear();
    }

    /// Installs a snapshot: it replaces the state machine and the whole log,
    /// atomically and durably. Appends still in flight were for the
    /// replaced log and are dropped; hard states in flight stay in flight.
    pub fn install(&mut self, snapshot: StoredSnapshot) {
        self.pending
            .retain(|(_, write)| matches!(write, Write::HardState(_)));
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
                replacements_cut_short: 1,
                ..CrashReport::default()
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
                replacements_cut_short: 1,
                ..CrashReport::default()
            }
        );
        assert_eq!(disk.log.terms(), &[1, 1, 1, 1, 1].map(Term));
    }

    fn vote(term: u64, node: u64) -> HardState {
        HardState {
            term: Term(term),
            voted_for: Some(raft::NodeId(node)),
        }
    }

    #[test]
    fn a_hard_state_becomes_durable_only_when_flushed_in_order() {
        let mut disk = disk_with_five_entries();
        let append = disk.write(entries(6..7, 1));
        let save = disk.write_hard_state(vote(2, 3));
        assert_eq!(disk.hard_state, HardState::default());
        assert_eq!(disk.flush(append), Some((LogIndex(6), Term(1))));
        assert_eq!(disk.hard_state, HardState::default());
        assert_eq!(disk.flush(save), None);
        assert_eq!(disk.hard_state, vote(2, 3));
    }

    #[test]
    fn a_crash_keeps_a_prefix_of_records_hard_states_included() {
        let in_flight = |disk: &mut Disk| {
            disk.write(entries(6..8, 1));
            disk.write_hard_state(vote(2, 3));
            disk.write(entries(8..9, 2));
        };
        let mut before = disk_with_five_entries();
        in_flight(&mut before);
        assert_eq!(before.records_in_flight(), 4);
        let report = before.crash(2);
        assert_eq!((report.hard_states_kept, report.hard_states_lost), (0, 1));
        assert_eq!(before.hard_state, HardState::default());
        assert_eq!(before.log.last_index(), LogIndex(7));

        let mut after = disk_with_five_entries();
        in_flight(&mut after);
        let report = after.crash(3);
        assert_eq!((report.hard_states_kept, report.entries_kept), (1, 2));
        assert_eq!(after.hard_state, vote(2, 3));
        assert_eq!(after.log.last_index(), LogIndex(7));
    }

    #[test]
    fn a_snapshot_drops_appends_in_flight_but_not_hard_states() {
        let mut disk = disk_with_five_entries();
        disk.write(entries(6..8, 1));
        let save = disk.write_hard_state(vote(2, 3));
        disk.install(StoredSnapshot {
            metadata: SnapshotMetadata::default(),
            kv: KvStore::default(),
            terms: vec![Term(1); 9],
            chains: vec![0; 9],
        });
        assert_eq!(disk.records_in_flight(), 1);
        assert_eq!(disk.flush(save), None);
        assert_eq!(disk.hard_state, vote(2, 3));
        assert_eq!(disk.log.last_index(), LogIndex(9));
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
