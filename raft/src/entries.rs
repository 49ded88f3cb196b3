//! [`Entries`]: a run of consecutive log entries that many holders share.
//!
//! A leader's entry is held by its log, by the append to its own storage,
//! by the message to each follower and by the hand-off to its state
//! machine; a follower's by the message it arrived in, its log, its storage
//! and its state machine. All of them hold one allocation: cloning or
//! slicing an [`Entries`] counts a reference and never copies an entry.

use std::fmt;
use std::ops::{Bound, Deref, RangeBounds};
use std::sync::Arc;

use crate::types::Entry;

/// Consecutive log entries, shared and immutable. Dereferences to
/// `[Entry]`; [`Entries::slice`] takes a part without copying. An empty run
/// allocates nothing (heartbeats carry one).
#[derive(Clone, Default)]
pub struct Entries {
    /// The allocation the entries live in; `None` for an empty run.
    buffer: Option<Arc<[Entry]>>,
    /// The run is `buffer[start..end]`.
    start: u32,
    end: u32,
}

impl Entries {
    /// An empty run.
    pub const fn new() -> Entries {
        Entries {
            buffer: None,
            start: 0,
            end: 0,
        }
    }

    /// The entries at `range` of this run (positions, not log indexes),
    /// sharing its allocation.
    ///
    /// # Panics
    /// If `range` runs past the end of the run, as slicing does.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Entries {
        let start = match range.start_bound() {
            Bound::Included(&start) => start,
            Bound::Excluded(&start) => start + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&end) => end + 1,
            Bound::Excluded(&end) => end,
            Bound::Unbounded => self.len(),
        };
        assert!(
            start <= end && end <= self.len(),
            "slice {start}..{end} of a run of {} entries",
            self.len()
        );
        if start == end {
            return Entries::new();
        }
        // Within `len()`, which fits in a u32.
        Entries {
            buffer: self.buffer.clone(),
            start: self.start + start as u32,
            end: self.start + end as u32,
        }
    }

    /// Drops the first `count` entries of this run (all of them, when it
    /// holds fewer), without touching the shared allocation's count.
    pub fn advance(&mut self, count: usize) {
        let count = count.min(self.len());
        if count == self.len() {
            *self = Entries::new();
        } else {
            // Below `len()`, which fits in a u32.
            self.start += count as u32;
        }
    }

    /// Keeps only the first `len` entries of this run (all of them, when it
    /// holds fewer).
    pub fn truncate(&mut self, len: usize) {
        if len == 0 {
            *self = Entries::new();
        } else if len < self.len() {
            self.end = self.start + len as u32;
        }
    }

    /// Moves the entries out of `entries` into a new run, leaving it empty
    /// with its capacity, to be filled again: one allocation, the run's.
    pub fn take_from(entries: &mut Vec<Entry>) -> Entries {
        if entries.is_empty() {
            return Entries::new();
        }
        // One bitwise move into the new allocation, sized exactly (a drain
        // knows its length); the vector keeps its buffer for the next batch.
        let buffer: Arc<[Entry]> = entries.drain(..).collect();
        Entries::whole(buffer)
    }

    fn whole(buffer: Arc<[Entry]>) -> Entries {
        let end = u32::try_from(buffer.len()).expect("a run holds fewer than 2^32 entries");
        Entries {
            buffer: Some(buffer),
            start: 0,
            end,
        }
    }

    /// Whether `self` and `other` share one allocation at the same
    /// positions (so neither was copied from the other).
    pub fn shares_with(&self, other: &Entries) -> bool {
        match (&self.buffer, &other.buffer) {
            (Some(mine), Some(theirs)) => {
                Arc::ptr_eq(mine, theirs) && self.start == other.start && self.end == other.end
            }
            (None, None) => true,
            _ => false,
        }
    }
}

impl Deref for Entries {
    type Target = [Entry];

    #[inline]
    fn deref(&self) -> &[Entry] {
        match &self.buffer {
            Some(buffer) => &buffer[self.start as usize..self.end as usize],
            None => &[],
        }
    }
}

impl From<Vec<Entry>> for Entries {
    fn from(mut entries: Vec<Entry>) -> Entries {
        Entries::take_from(&mut entries)
    }
}

impl FromIterator<Entry> for Entries {
    fn from_iter<I: IntoIterator<Item = Entry>>(entries: I) -> Entries {
        let buffer: Arc<[Entry]> = entries.into_iter().collect();
        if buffer.is_empty() {
            return Entries::new();
        }
        Entries::whole(buffer)
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Entries) -> bool {
        **self == **other
    }
}

impl Eq for Entries {}

impl PartialEq<Vec<Entry>> for Entries {
    fn eq(&self, other: &Vec<Entry>) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Entries {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{EntryPayload, LogIndex, Term};

    fn run(indexes: std::ops::RangeInclusive<u64>) -> Entries {
        indexes
            .map(|index| Entry {
                term: Term(1),
                index: LogIndex(index),
                payload: EntryPayload::Command(bytes::Bytes::from(vec![index as u8; 4])),
            })
            .collect()
    }

    fn indexes(entries: &Entries) -> Vec<u64> {
        entries.iter().map(|entry| entry.index.0).collect()
    }

    #[test]
    fn slices_share_the_allocation() {
        let all = run(1..=10);
        let middle = all.slice(2..5);
        assert_eq!(indexes(&middle), vec![3, 4, 5]);
        assert_eq!(indexes(&middle.slice(1..)), vec![4, 5]);
        assert_eq!(indexes(&all.slice(..=0)), vec![1]);
        assert!(middle.shares_with(&all.slice(2..5)));
        assert!(!middle.shares_with(&run(3..=5)));
        assert_eq!(middle, run(3..=5), "equal by content");
    }

    #[test]
    fn a_run_is_shortened_in_place() {
        let all = run(1..=6);
        let mut part = all.clone();
        part.advance(2);
        part.truncate(3);
        assert_eq!(indexes(&part), vec![3, 4, 5]);
        assert!(part.shares_with(&all.slice(2..5)));
        part.truncate(9);
        assert_eq!(part.len(), 3, "no longer than it was");
        part.advance(3);
        assert!(part.shares_with(&Entries::new()), "empty, holding nothing");
        let mut rest = all.clone();
        rest.truncate(0);
        assert!(rest.is_empty());
    }

    #[test]
    fn an_empty_run_holds_no_allocation() {
        let all = run(1..=3);
        let empty = all.slice(3..);
        assert!(empty.is_empty());
        assert!(empty.shares_with(&Entries::new()));
        assert!(Entries::from(Vec::new()).buffer.is_none());
    }

    #[test]
    #[should_panic(expected = "slice 2..4 of a run of 3 entries")]
    fn slicing_past_the_end_panics() {
        run(1..=3).slice(2..4);
    }

    #[test]
    fn a_run_taken_from_a_vector_leaves_its_capacity() {
        let mut batch: Vec<Entry> = run(1..=3).to_vec();
        let capacity = batch.capacity();
        let taken = Entries::take_from(&mut batch);
        assert_eq!(indexes(&taken), vec![1, 2, 3]);
        assert!(batch.is_empty());
        assert_eq!(batch.capacity(), capacity, "kept for the next batch");
        assert!(Entries::take_from(&mut batch).is_empty());
    }
}
