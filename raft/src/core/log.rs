//! The core's view of the replicated log: its entries, how far they are
//! durable, committed and handed to the state machine.
//!
//! Entries are held as the shared runs they were appended in ([`Entries`]):
//! a follower keeps each message's run as it came, a leader seals the
//! entries it appended in one step into one run when they are first sent
//! or taken. Sending, storing and applying entries then shares those runs
//! instead of copying entries, except when what is asked for spans runs.

use std::collections::VecDeque;

use super::configuration::Configurations;
use super::quorum::Membership;
use crate::entries::Entries;
use crate::types::{Entry, LogIndex, Term};

/// The log held by the core. Indexes are contiguous from `first_index()` to
/// `last_index()`. Three positions move forward through it:
/// `applied_up_to <= committed` and `persisted <= last_index()`.
#[derive(Clone, Debug)]
pub(crate) struct RaftLog {
    /// The held entries after `base_index`, in order, as the runs they
    /// were appended in; none is empty.
    runs: VecDeque<Run>,
    /// Entries this node appended as leader since it last sealed: they
    /// follow `runs` and nothing shares them yet. Its allocation is kept
    /// from one batch to the next.
    unsealed: Vec<Entry>,
    /// Where each term's entries begin among the held entries: (first
    /// index, term), both ascending. The first starts right after
    /// `base_index` whenever an entry is held.
    term_starts: VecDeque<(LogIndex, Term)>,
    /// The index of the last held entry (`base_index` when none is).
    last_index: LogIndex,
    /// The index just before the first held entry (0, or later the last
    /// index included in a snapshot).
    base_index: LogIndex,
    /// The term of the entry at `base_index`.
    base_term: Term,
    /// Highest index known to be committed.
    committed: LogIndex,
    /// Highest index known durable in local storage.
    persisted: LogIndex,
    /// Highest index handed to the driver for applying.
    applied_up_to: LogIndex,
    /// The configurations along the log; the latest is in effect.
    configurations: Configurations,
    /// The runs compactions and snapshot resets removed, for the driver to
    /// free off its own thread ([`RaftLog::take_released`]): those removed
    /// since outputs were last taken, and those removed before that, which
    /// are freed when outputs are taken next unless taken before.
    released: (Vec<Entries>, Vec<Entries>),
}

impl RaftLog {
    /// A log restored from storage: every restored entry is durable. The
    /// entries follow `base` (index and term), where the log starts or a
    /// snapshot ends. `membership` is the configuration as of
    /// `membership_index` (the snapshot's, or the initial one at 0); the
    /// configuration entries after that index override it.
    pub(crate) fn restored(
        base: (LogIndex, Term),
        entries: Vec<Entry>,
        applied: LogIndex,
        membership: (LogIndex, Membership),
    ) -> RaftLog {
        let (base_index, base_term) = base;
        let (membership_index, membership) = membership;
        let mut log = RaftLog {
            runs: VecDeque::new(),
            unsealed: Vec::new(),
            term_starts: VecDeque::new(),
            last_index: base_index,
            base_index,
            base_term,
            committed: applied,
            persisted: base_index,
            applied_up_to: applied,
            configurations: Configurations::new(membership),
            released: (Vec::new(), Vec::new()),
        };
        let entries = Entries::from(entries);
        for entry in &entries {
            // The base membership already includes the configuration
            // entries up to its index.
            if entry.index > membership_index {
                log.configurations.record(entry);
            }
            log.note_position(entry);
        }
        log.persisted = log.last_index;
        if !entries.is_empty() {
            log.push_run(entries);
        }
        log
    }

    /// The configuration in effect: the latest in the log.
    pub(crate) fn membership(&self) -> &Membership {
        self.configurations.latest()
    }

    /// The configuration in effect at `index`.
    pub(crate) fn membership_at(&self, index: LogIndex) -> &Membership {
        self.configurations.at(index)
    }

    /// The index of the latest configuration entry still in the log, if
    /// any.
    pub(crate) fn latest_configuration_index(&self) -> Option<LogIndex> {
        self.configurations.latest_change_index()
    }

    /// The index before the first held entry: entries up to it were
    /// compacted into a snapshot (0 when nothing was).
    pub(crate) fn base_index(&self) -> LogIndex {
        self.base_index
    }

    /// Drops the entries up to `index`, which a snapshot covers. Returns
    /// whether anything was dropped.
    pub(crate) fn compact_to(&mut self, index: LogIndex) -> bool {
        let index = index.min(self.applied_up_to).min(self.persisted);
        if index <= self.base_index {
            return false;
        }
        let term = self.term_at(index).expect("index is within the log");
        // Durable entries are sealed, so whole runs hold them.
        while let Some(run) = self.runs.front_mut() {
            if run.last() <= index {
                self.released
                    .0
                    .extend(self.runs.pop_front().map(|run| run.entries));
            } else {
                if run.first <= index {
                    run.entries.advance((index.0 - run.first.0) as usize + 1);
                    run.first = index.next();
                }
                break;
            }
        }
        let next = index.next();
        while self
            .term_starts
            .get(1)
            .is_some_and(|(first, _)| *first <= next)
        {
            self.term_starts.pop_front();
        }
        if index == self.last_index {
            self.term_starts.clear();
        } else if let Some(start) = self.term_starts.front_mut() {
            start.0 = start.0.max(next);
        }
        self.configurations.compact_to(index);
        self.base_index = index;
        self.base_term = term;
        true
    }

    /// Replaces the whole log with the state of a snapshot ending at
    /// (`index`, `term`): everything up to it is committed, durable and
    /// applied.
    pub(crate) fn reset_to_snapshot(
        &mut self,
        index: LogIndex,
        term: Term,
        membership: Membership,
    ) {
        assert!(
            self.unsealed.is_empty(),
            "a leader seals its appends before it takes a snapshot as a follower"
        );
        self.released
            .0
            .extend(self.runs.drain(..).map(|run| run.entries));
        self.term_starts.clear();
        self.configurations.reset(membership);
        self.last_index = index;
        self.base_index = index;
        self.base_term = term;
        self.committed = index;
        self.persisted = index;
        self.applied_up_to = index;
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.last_index
    }

    /// The runs removed and not yet freed, for the caller to free.
    pub(crate) fn take_released(&mut self) -> Vec<Entries> {
        let (mut recent, earlier) = std::mem::take(&mut self.released);
        recent.extend(earlier);
        recent
    }

    /// Called as outputs are taken: frees the runs removed before outputs
    /// were last taken, which the driver did not take, so that they never
    /// pile up in a driver that does not take them.
    pub(crate) fn age_released(&mut self) {
        let (recent, earlier) = &mut self.released;
        if !earlier.is_empty() || !recent.is_empty() {
            *earlier = std::mem::take(recent);
        }
    }

    pub(crate) fn last_term(&self) -> Term {
        self.term_starts
            .back()
            .map_or(self.base_term, |(_, term)| *term)
    }

    pub(crate) fn committed(&self) -> LogIndex {
        self.committed
    }

    pub(crate) fn persisted(&self) -> LogIndex {
        self.persisted
    }

    pub(crate) fn applied_up_to(&self) -> LogIndex {
        self.applied_up_to
    }

    /// The term of the entry at `index`, or `None` when the log does not
    /// hold it.
    #[inline]
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        if index < self.base_index || index > self.last_index {
            return None;
        }
        // Most lookups are in the latest term.
        if let Some(&(first, term)) = self.term_starts.back() {
            if first <= index {
                return Some(term);
            }
        }
        let position = self
            .term_starts
            .partition_point(|(first, _)| *first <= index);
        Some(self.term_starts[position - 1].1)
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as up
    /// to date as this one (Raft paper §5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// Up to `max_count` entries from `from`, stopping before the total
    /// payload passes `max_bytes` (at least one entry when any is
    /// available). Only sealed entries are available: see [`RaftLog::seal`].
    pub(crate) fn entries_from(
        &self,
        from: LogIndex,
        max_count: usize,
        max_bytes: usize,
    ) -> Entries {
        if from <= self.base_index || from > self.sealed_last_index() {
            return Entries::new();
        }
        let position = self.run_holding(from);
        let offset = (from.0 - self.runs[position].first.0) as usize;
        let available = self
            .runs
            .range(position..)
            .flat_map(|run| run.entries.iter())
            .skip(offset);
        let mut count: u64 = 0;
        let mut total_bytes = 0;
        for entry in available.take(max_count) {
            total_bytes += entry.size_bytes();
            if count > 0 && total_bytes > max_bytes {
                break;
            }
            count += 1;
        }
        if count == 0 {
            return Entries::new();
        }
        self.shared_range(from, LogIndex(from.0 + count - 1))
    }

    /// The sealed entries from `low` to `high`, inclusive, both held:
    /// shared when one run holds them all, copied into a run of their own
    /// when they span several.
    fn shared_range(&self, low: LogIndex, high: LogIndex) -> Entries {
        debug_assert!(low <= high && high <= self.sealed_last_index());
        let position = self.run_holding(low);
        let run = &self.runs[position].entries;
        let offset = (low.0 - self.runs[position].first.0) as usize;
        let count = (high.0 - low.0) as usize + 1;
        if offset + count <= run.len() {
            return run.slice(offset..offset + count);
        }
        self.runs
            .range(position..)
            .flat_map(|run| run.entries.iter())
            .skip(offset)
            .take(count)
            .cloned()
            .collect()
    }

    /// The position in `runs` of the run holding `index`, a sealed index
    /// after the base.
    #[inline]
    fn run_holding(&self, index: LogIndex) -> usize {
        // Nearly every lookup is for one of the last few runs: a follower
        // applies the run before the one that told it the commit index.
        for (from_end, run) in self.runs.iter().rev().take(4).enumerate() {
            if run.first <= index {
                return self.runs.len() - 1 - from_end;
            }
        }
        self.runs.partition_point(|run| run.first <= index) - 1
    }

    /// The last index of the sealed entries.
    fn sealed_last_index(&self) -> LogIndex {
        LogIndex(self.last_index.0 - self.unsealed.len() as u64)
    }

    /// The first index of the run of entries of `term` that ends at `index`.
    pub(crate) fn first_index_of_term_run(&self, index: LogIndex) -> LogIndex {
        if index <= self.base_index || index > self.last_index {
            return index;
        }
        let position = self
            .term_starts
            .partition_point(|(first, _)| *first <= index);
        self.term_starts[position - 1].0
    }

    /// The last index holding an entry of `term`, if any. Terms never
    /// decrease along the log, so a binary search finds it.
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let position = self
            .term_starts
            .partition_point(|(_, start)| *start <= term);
        if position == 0 {
            return (self.base_term == term && self.base_index > LogIndex(0))
                .then_some(self.base_index);
        }
        if self.term_starts[position - 1].1 != term {
            return None;
        }
        Some(
            self.term_starts
                .get(position)
                .map_or(self.last_index, |(next, _)| next.previous()),
        )
    }

    /// Appends one entry created by this node as leader. It stays unsealed
    /// (see [`RaftLog::seal`]) so that the entries appended in one step form
    /// one run.
    pub(crate) fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index().next());
        self.note_appended(&entry);
        self.unsealed.push(entry);
    }

    /// Makes the entries pushed since the last call one shared run, and
    /// returns it (none when nothing was pushed): what the leader must
    /// write to its own storage.
    pub(crate) fn seal(&mut self) -> Option<Entries> {
        if self.unsealed.is_empty() {
            return None;
        }
        let run = Entries::take_from(&mut self.unsealed);
        self.push_run(run.clone());
        Some(run)
    }

    /// Holds `run` after every held run.
    fn push_run(&mut self, run: Entries) {
        self.runs.push_back(Run::new(run));
    }

    /// Records what a newly appended entry changes: the configurations,
    /// the term runs and the last index.
    fn note_appended(&mut self, entry: &Entry) {
        self.configurations.record(entry);
        self.note_position(entry);
    }

    /// Records a newly held entry's term and index.
    fn note_position(&mut self, entry: &Entry) {
        if self.term_starts.back().map(|(_, term)| *term) != Some(entry.term) {
            self.term_starts.push_back((entry.index, entry.term));
        }
        self.last_index = entry.index;
    }

    /// Merges entries received from a leader, where the entry before
    /// `entries[0]` is already known to match. Entries already present with
    /// the same term are kept; at the first conflict the local suffix is
    /// dropped. Returns the entries that must be written to storage (a
    /// suffix of `entries`, sharing it), or an empty run when nothing
    /// changed.
    ///
    /// # Panics
    /// If a committed entry would be overwritten: the leader's log always
    /// contains every committed entry (Raft paper §5.4), so this means a
    /// broken invariant.
    pub(crate) fn merge(&mut self, mut entries: Entries) -> Entries {
        assert!(
            self.unsealed.is_empty(),
            "a leader seals its appends before it merges another leader's"
        );
        let mut skip = 0;
        for entry in &entries {
            match self.term_at(entry.index) {
                Some(term) if term == entry.term => skip += 1,
                Some(_) => {
                    assert!(
                        entry.index > self.committed,
                        "leader sent an entry conflicting with committed index {} (entry {:?})",
                        self.committed,
                        entry
                    );
                    self.truncate_from(entry.index);
                    break;
                }
                None => break,
            }
        }
        entries.advance(skip);
        if let Some(first) = entries.first() {
            debug_assert_eq!(first.index, self.last_index().next());
            for entry in &entries {
                self.note_appended(entry);
            }
            self.push_run(entries.clone());
        }
        entries
    }

    /// Drops every entry at or after `index`, a sealed index after the
    /// base.
    fn truncate_from(&mut self, index: LogIndex) {
        while let Some(run) = self.runs.back_mut() {
            if run.first >= index {
                self.runs.pop_back();
            } else {
                run.entries.truncate((index.0 - run.first.0) as usize);
                break;
            }
        }
        while self
            .term_starts
            .back()
            .is_some_and(|(first, _)| *first >= index)
        {
            self.term_starts.pop_back();
        }
        self.last_index = index.previous();
        self.configurations.truncate_from(index);
        self.persisted = self.persisted.min(index.previous());
    }

    /// Records that storage holds the log up to `index`, if the entry there
    /// still has `term`. Returns whether the durable index moved.
    pub(crate) fn persisted_up_to(&mut self, index: LogIndex, term: Term) -> bool {
        if index <= self.persisted || index > self.last_index {
            return false;
        }
        if self.term_at(index) != Some(term) {
            return false;
        }
        self.persisted = index;
        true
    }

    /// Raises the commit index to `index` (never lowers it). Returns whether
    /// it moved.
    pub(crate) fn commit_to(&mut self, index: LogIndex) -> bool {
        let index = index.min(self.last_index());
        if index > self.committed {
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Whether some entry ready to apply is not sealed yet (its durability
    /// was reported before the driver took it: possible, if odd).
    pub(crate) fn must_seal_to_apply(&self) -> bool {
        self.committed.min(self.persisted) > self.sealed_last_index()
    }

    /// Committed and locally durable entries not yet handed out for applying;
    /// marks them handed out. They must be sealed (see
    /// [`RaftLog::must_seal_to_apply`]).
    pub(crate) fn take_entries_to_apply(&mut self) -> Entries {
        let up_to = self.committed.min(self.persisted);
        if up_to <= self.applied_up_to {
            return Entries::new();
        }
        let entries = self.shared_range(self.applied_up_to.next(), up_to);
        self.applied_up_to = up_to;
        entries
    }

    /// Every held entry, in order (sealed or not).
    #[cfg(test)]
    fn held(&self) -> impl Iterator<Item = &Entry> {
        self.runs
            .iter()
            .flat_map(|run| run.entries.iter())
            .chain(self.unsealed.iter())
    }
}

/// A run of held entries and the index of its first (kept beside the run
/// so that a search reads one array).
#[derive(Clone, Debug)]
struct Run {
    first: LogIndex,
    /// Never empty.
    entries: Entries,
}

impl Run {
    fn new(entries: Entries) -> Run {
        Run {
            first: entries[0].index,
            entries,
        }
    }

    fn last(&self) -> LogIndex {
        LogIndex(self.first.0 + self.entries.len() as u64 - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;
    use proptest::prelude::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            payload: EntryPayload::Noop,
        }
    }

    fn log_of_terms(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(position, term)| entry(position as u64 + 1, *term))
            .collect();
        RaftLog::restored(
            (LogIndex(0), Term(0)),
            entries,
            LogIndex(0),
            (LogIndex(0), Membership::default()),
        )
    }

    #[test]
    fn up_to_date_compares_last_term_then_length() {
        // Raft paper §5.4.1: the later term wins; with equal terms the longer log.
        let log = log_of_terms(&[1, 1, 2]);
        assert!(log.is_up_to_date(LogIndex(1), Term(3)));
        assert!(log.is_up_to_date(LogIndex(3), Term(2)));
        assert!(!log.is_up_to_date(LogIndex(2), Term(2)));
        assert!(!log.is_up_to_date(LogIndex(9), Term(1)));
    }

    #[test]
    fn merge_keeps_matching_entries_and_truncates_at_conflict() {
        let mut log = log_of_terms(&[1, 1, 2, 2]);
        let written = log.merge(vec![entry(2, 1), entry(3, 3), entry(4, 3)].into());
        assert_eq!(written, vec![entry(3, 3), entry(4, 3)]);
        assert_eq!(log.last_index(), LogIndex(4));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(3)));
        // Everything at or after the conflict is no longer durable.
        assert_eq!(log.persisted(), LogIndex(2));
    }

    #[test]
    fn merge_of_present_entries_writes_nothing() {
        let mut log = log_of_terms(&[1, 1, 2]);
        assert!(log.merge(vec![entry(1, 1), entry(2, 1)].into()).is_empty());
        assert_eq!(log.last_index(), LogIndex(3));
    }

    #[test]
    fn stale_persist_report_is_ignored() {
        let mut log = log_of_terms(&[1]);
        log.persisted = LogIndex(0);
        assert!(!log.persisted_up_to(LogIndex(1), Term(2)));
        assert!(log.persisted_up_to(LogIndex(1), Term(1)));
    }

    #[test]
    fn term_searches() {
        let log = log_of_terms(&[1, 1, 3, 3, 3, 5]);
        assert_eq!(log.first_index_of_term_run(LogIndex(5)), LogIndex(3));
        assert_eq!(log.first_index_of_term_run(LogIndex(2)), LogIndex(1));
        assert_eq!(log.last_index_of_term(Term(3)), Some(LogIndex(5)));
        assert_eq!(log.last_index_of_term(Term(2)), None);
        assert_eq!(log.last_index_of_term(Term(5)), Some(LogIndex(6)));
    }

    #[test]
    fn apply_stops_at_durable_and_committed() {
        let mut log = log_of_terms(&[1, 1, 1]);
        log.persisted = LogIndex(2);
        log.commit_to(LogIndex(3));
        assert_eq!(log.take_entries_to_apply(), vec![entry(1, 1), entry(2, 1)]);
        assert!(log.take_entries_to_apply().is_empty());
        log.persisted_up_to(LogIndex(3), Term(1));
        assert_eq!(log.take_entries_to_apply(), vec![entry(3, 1)]);
    }

    proptest! {
        /// After merging any batch that follows a matching prefix, the log is
        /// contiguous, holds the batch at its indexes, and keeps the prefix.
        #[test]
        fn merge_preserves_log_invariants(
            existing in proptest::collection::vec(1u64..4, 0..20),
            prefix_len in 0usize..20,
            new_terms in proptest::collection::vec(0u64..3, 0..20),
        ) {
            let mut terms = existing.clone();
            terms.sort_unstable();
            let mut log = log_of_terms(&terms);
            let prefix_len = prefix_len.min(terms.len());
            // The leader's batch: terms never below the prefix's last term.
            let floor = terms.get(prefix_len.wrapping_sub(1)).copied().unwrap_or(1).max(1);
            let mut batch_terms: Vec<u64> = new_terms.iter().map(|extra| floor + extra).collect();
            batch_terms.sort_unstable();
            let batch: Vec<Entry> = batch_terms
                .iter()
                .enumerate()
                .map(|(offset, term)| entry((prefix_len + offset) as u64 + 1, *term))
                .collect();
            let before_last = log.last_index();
            let written = log.merge(batch.clone().into());
            // Contiguous indexes.
            for (position, held) in log.held().enumerate() {
                prop_assert_eq!(held.index, LogIndex(position as u64 + 1));
            }
            // The batch is present.
            for sent in &batch {
                prop_assert_eq!(log.term_at(sent.index), Some(sent.term));
            }
            // The prefix is untouched.
            for (position, term) in terms.iter().take(prefix_len).enumerate() {
                prop_assert_eq!(log.term_at(LogIndex(position as u64 + 1)), Some(Term(*term)));
            }
            // What must be written is exactly the changed suffix.
            if let Some(first) = written.first() {
                prop_assert_eq!(log.last_index(), written.last().unwrap().index);
                prop_assert!(first.index.0 as usize > prefix_len);
            } else {
                prop_assert_eq!(log.last_index(), before_last);
            }
        }

        /// However the runs fall, and after a truncation and a compaction,
        /// the log answers like a plain vector of its entries: terms,
        /// term runs and the entries handed out.
        #[test]
        fn runs_answer_like_a_plain_log(
            run_lengths in proptest::collection::vec(1usize..6, 1..12),
            term_steps in proptest::collection::vec(0u64..2, 1..12),
            conflict_at in 0usize..60,
            compact_at in 0usize..60,
            from in 1u64..60,
            max_count in 1usize..20,
        ) {
            let mut log = log_of_terms(&[]);
            let mut model: Vec<Entry> = Vec::new();
            let mut term = 1;
            for (position, length) in run_lengths.iter().enumerate() {
                term += term_steps.get(position).copied().unwrap_or(0);
                let first = model.len() as u64 + 1;
                let run: Vec<Entry> = (0..*length as u64).map(|offset| entry(first + offset, term)).collect();
                log.merge(run.clone().into());
                model.extend(run);
            }
            // A newer leader's entry replaces the suffix from some index on.
            let conflict = conflict_at % model.len() + 1;
            log.merge(vec![entry(conflict as u64, term + 1)].into());
            model.truncate(conflict - 1);
            model.push(entry(conflict as u64, term + 1));
            // Everything is durable, committed and applied; compact a prefix.
            let last = *model.last().map(|entry| &entry.index).unwrap();
            log.persisted_up_to(last, Term(term + 1));
            log.commit_to(last);
            let applied = log.take_entries_to_apply();
            prop_assert_eq!(applied.len(), model.len());
            let compact = (compact_at % model.len()) as u64;
            log.compact_to(LogIndex(compact));
            let held = &model[compact as usize..];
            let term_of = |index: u64| -> Option<Term> {
                if index == 0 { return Some(Term(0)); }
                model.get(index as usize - 1).map(|entry| entry.term)
            };
            for index in compact..=last.0 + 1 {
                prop_assert_eq!(log.term_at(LogIndex(index)), term_of(index), "term at {}", index);
            }
            for held_entry in held {
                let run_start = held.iter().find(|other| other.term == held_entry.term).unwrap().index;
                prop_assert_eq!(log.first_index_of_term_run(held_entry.index), run_start);
                let last_of_term = held.iter().rev().find(|other| other.term == held_entry.term).unwrap().index;
                prop_assert_eq!(log.last_index_of_term(held_entry.term), Some(last_of_term));
            }
            let wanted: Vec<Entry> = held
                .iter()
                .filter(|entry| entry.index.0 >= from)
                .take(max_count)
                .cloned()
                .collect();
            let sent = log.entries_from(LogIndex(from), max_count, usize::MAX);
            if from <= compact {
                prop_assert!(sent.is_empty());
            } else {
                prop_assert_eq!(sent.to_vec(), wanted);
            }
        }
    }
}
