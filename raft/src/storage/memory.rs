//! A [`LogStore`] in memory: for unit tests and the simulator, and the
//! reference the on-disk WAL is compared with.

use std::collections::VecDeque;

use crate::entries::Entries;
use crate::storage::{check_append, check_range, term_error, LogStore, StorageError};
use crate::types::{Entry, HardState, LogIndex, Term};

/// A log kept in memory. "Durable" means "stored in this value": it obeys
/// every rule of [`LogStore`] except surviving the process.
#[derive(Clone, Debug, Default)]
pub struct MemoryLogStore {
    hard_state: HardState,
    /// The last purged index and its term.
    purged: (LogIndex, Term),
    /// Entries from `purged.0 + 1` on.
    entries: VecDeque<Entry>,
}

impl MemoryLogStore {
    /// An empty log with the default hard state.
    pub fn new() -> MemoryLogStore {
        MemoryLogStore::default()
    }

    fn position(&self, index: LogIndex) -> usize {
        (index.0 - self.purged.0 .0 - 1) as usize
    }

    fn term_of(&self, index: LogIndex) -> Option<Term> {
        if index == self.purged.0 {
            return Some(self.purged.1);
        }
        if index < self.first_index() || index > self.last_index() {
            return None;
        }
        Some(self.entries[self.position(index)].term)
    }
}

impl LogStore for MemoryLogStore {
    fn hard_state(&self) -> HardState {
        self.hard_state
    }

    fn save_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        if hard_state.term < self.hard_state.term {
            return Err(StorageError::InvalidHardState {
                saved: self.hard_state.term,
                new: hard_state.term,
            });
        }
        self.hard_state = hard_state;
        Ok(())
    }

    fn append(&mut self, entries: Entries) -> Result<(), StorageError> {
        check_append(
            self.first_index(),
            self.last_index(),
            |index| self.term_of(index),
            &entries,
        )?;
        let keep = self.position(entries[0].index);
        self.entries.truncate(keep);
        self.entries.extend(entries.iter().cloned());
        Ok(())
    }

    fn entries(&self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>, StorageError> {
        check_range(low, high, self.first_index(), self.last_index())?;
        Ok(self
            .entries
            .range(self.position(low)..self.position(high))
            .cloned()
            .collect())
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        self.term_of(index)
            .ok_or_else(|| term_error(index, self.first_index(), self.last_index()))
    }

    fn first_index(&self) -> LogIndex {
        self.purged.0.next()
    }

    fn last_index(&self) -> LogIndex {
        LogIndex(self.purged.0 .0 + self.entries.len() as u64)
    }

    fn purge_to(&mut self, index: LogIndex, term: Term) -> Result<(), StorageError> {
        if index <= self.purged.0 {
            return Ok(());
        }
        if self.term_of(index) == Some(term) {
            let purged = self.position(index) + 1;
            self.entries.drain(..purged);
        } else {
            self.entries.clear();
        }
        self.purged = (index, term);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_log_store_suite() {
        crate::testing::run_log_store_suite(MemoryLogStore::new);
    }
}
