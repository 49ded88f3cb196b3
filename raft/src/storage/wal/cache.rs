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

    /// Removes every entry at or before `index`, and returns them for the
    /// caller to free where that costs nothing (a purge can release a whole
    /// budget of entries at once).
    pub fn purge_to(&mut self, index: LogIndex) -> VecDeque<Entry> {
        let Some(first) = self.first() else {
            return VecDeque::new();
        };
        let count = index.0.saturating_add(1).saturating_sub(first.0);
        let count = usize::try_from(count)
            .map_or(self.entries.len(), |count| count.min(self.entries.len()));
        if count == 0 {
            return VecDeque::new();
        }
        let kept = self.entries.split_off(count);
        let released = std::mem::replace(&mut self.entries, kept);
        // Whichever side is smaller is walked for the byte count.
        if released.len() <= self.entries.len() {
            self.bytes -= released.iter().map(cost).sum::<usize>();
        } else {
            self.bytes = self.entries.iter().map(cost).sum();
        }
        released
    }

    /// Removes every entry, and returns them for the caller to free.
    pub fn take_all(&mut self) -> VecDeque<Entry> {
        self.bytes = 0;
        std::mem::take(&mut self.entries)
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

    #[test]
    fn a_purge_returns_what_it_removes_and_keeps_the_byte_count() {
        let mut cache = EntryCache::new(usize::MAX);
        for index in 3..=10 {
            cache.push(entry(index, index as usize));
        }
        let size = |indexes: std::ops::RangeInclusive<u64>| -> usize {
            indexes
                .map(|index| ENTRY_OVERHEAD_BYTES + index as usize)
                .sum()
        };
        assert!(cache.purge_to(LogIndex(2)).is_empty(), "before the cache");
        assert_eq!(cache.size_bytes(), size(3..=10));
        // Fewer removed than kept, then more removed than kept: the byte
        // count is right either way.
        let removed = cache.purge_to(LogIndex(4));
        assert_eq!(removed, vec![entry(3, 3), entry(4, 4)]);
        assert_eq!(cache.size_bytes(), size(5..=10));
        let removed = cache.purge_to(LogIndex(8));
        assert_eq!(removed.len(), 4);
        assert_eq!(
            (cache.first(), cache.size_bytes()),
            (Some(LogIndex(9)), size(9..=10))
        );
        assert_eq!(cache.purge_to(LogIndex(99)).len(), 2);
        assert_eq!((cache.first(), cache.size_bytes()), (None, 0));
        cache.push(entry(100, 1));
        assert_eq!(cache.take_all(), vec![entry(100, 1)]);
        assert_eq!((cache.first(), cache.size_bytes()), (None, 0));
    }
}
