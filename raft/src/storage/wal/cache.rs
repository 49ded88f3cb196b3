//! The most recent entries, kept in memory up to a byte budget.
//!
//! The cache always holds a suffix of the log: the entries from some index
//! up to the last one. Followers and the state machine mostly read recent
//! entries, so most reads never touch the disk. Entries not yet durable are
//! never evicted, whatever the budget: they are not readable from disk yet.

use std::collections::VecDeque;

use crate::types::{Entry, LogIndex};

/// Memory an entry costs besides its payload (the struct and the deque
/// slot), so that a cache of empty entries is bounded too.
const ENTRY_OVERHEAD_BYTES: usize = std::mem::size_of::<Entry>() + 16;

#[derive(Debug)]
pub(crate) struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: usize,
    budget_bytes: usize,
}

fn cost(entry: &Entry) -> usize {
    ENTRY_OVERHEAD_BYTES + entry.payload.size_bytes()
}

impl EntryCache {
    pub fn new(budget_bytes: usize) -> EntryCache {
        EntryCache {
            entries: VecDeque::new(),
            bytes: 0,
            budget_bytes,
        }
    }

    /// The first cached index, if any entry is cached.
    pub fn first(&self) -> Option<LogIndex> {
        self.entries.front().map(|entry| entry.index)
    }

    /// Bytes held, by the same measure as the budget.
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// Adds the entry after the last cached one (or starts the cache).
    pub fn push(&mut self, entry: Entry) {
        if self
            .entries
            .back()
            .is_some_and(|last| last.index.next() != entry.index)
        {
            self.clear();
        }
        self.bytes += cost(&entry);
        self.entries.push_back(entry);
    }

    /// Removes every entry at or after `index`.
    pub fn truncate_from(&mut self, index: LogIndex) {
        while self
            .entries
            .back()
            .is_some_and(|entry| entry.index >= index)
        {
            if let Some(entry) = self.entries.pop_back() {
                self.bytes -= cost(&entry);
            }
        }
    }

    /// Removes every entry at or before `index`.
    pub fn purge_to(&mut self, index: LogIndex) {
        while self
            .entries
            .front()
            .is_some_and(|entry| entry.index <= index)
        {
            self.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Evicts the oldest entries while over budget, but never one at or
    /// after `keep_from` (entries not yet durable).
    pub fn evict(&mut self, keep_from: LogIndex) {
        while self.bytes > self.budget_bytes
            && self
                .entries
                .front()
                .is_some_and(|entry| entry.index < keep_from)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.bytes -= cost(&entry);
        }
    }

    /// Clones the cached entries in `[low, high)` into `out`; the caller
    /// makes sure they are all cached.
    pub fn copy_range(&self, low: LogIndex, high: LogIndex, out: &mut Vec<Entry>) {
        let Some(first) = self.first() else {
            return;
        };
        let from = low.0.saturating_sub(first.0) as usize;
        let to = (high.0.saturating_sub(first.0) as usize).min(self.entries.len());
        if from < to {
            out.extend(self.entries.range(from..to).cloned());
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::types::{EntryPayload, Term};

    fn entry(index: u64, size: usize) -> Entry {
        Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: EntryPayload::Command(Bytes::from(vec![0; size])),
        }
    }

    #[test]
    fn evicts_oldest_durable_entries_down_to_the_budget() {
        let mut cache = EntryCache::new(3 * (ENTRY_OVERHEAD_BYTES + 100));
        for index in 1..=5 {
            cache.push(entry(index, 100));
        }
        cache.evict(LogIndex(2));
        assert_eq!(cache.first(), Some(LogIndex(2)), "index 2 is not durable");
        cache.evict(LogIndex(6));
        assert_eq!(cache.first(), Some(LogIndex(3)));
        let mut out = Vec::new();
        cache.copy_range(LogIndex(4), LogIndex(6), &mut out);
        assert_eq!(out, vec![entry(4, 100), entry(5, 100)]);
        cache.truncate_from(LogIndex(4));
        cache.purge_to(LogIndex(3));
        assert_eq!(cache.first(), None);
        assert_eq!(cache.size_bytes(), 0);
    }
}
