//! A compact view of a log for the safety checks: each entry's term and a
//! chained hash that identifies the entry together with everything before
//! it. Two logs with the same chained hash at an index hold the same prefix.

use raft::{Entry, EntryPayload, LogIndex, Term};

/// The terms and chained hashes of a whole log, and the entries after the
/// point it was compacted to (a snapshot's index).
#[derive(Clone, Debug, Default)]
pub struct LogView {
    /// Entries after `base`.
    entries: Vec<Entry>,
    /// The last index covered by a snapshot (0 when none).
    base: LogIndex,
    /// Term of every index from 1, including compacted ones.
    terms: Vec<Term>,
    /// Chained hash of every index from 1, including compacted ones.
    chains: Vec<u64>,
}

impl LogView {
    /// Why `entries` cannot be appended to this log, if they cannot: an
    /// append starts right after an entry the log holds (or at its first
    /// index) and numbers its entries one after another. A correct core
    /// never asks for anything else.
    pub fn append_shape_error(&self, entries: &[Entry]) -> Option<String> {
        let first = entries.first()?;
        if first.index.0 == 0 || first.index.0 - 1 > self.chains.len() as u64 {
            return Some(format!(
                "append at {} leaves a gap after {}",
                first.index,
                self.chains.len()
            ));
        }
        if first.index <= self.base {
            return Some(format!(
                "append at {} rewrites entries compacted up to {}",
                first.index, self.base
            ));
        }
        entries.windows(2).find_map(|pair| {
            (pair[1].index != pair[0].index.next())
                .then(|| format!("append numbers {} after {}", pair[1].index, pair[0].index))
        })
    }

    /// Applies an append: drops every entry from `entries[0].index` on, then
    /// adds `entries`.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let keep = (first.index.0 - 1) as usize;
        assert!(
            keep <= self.chains.len(),
            "append at {} leaves a gap after {}",
            first.index,
            self.chains.len()
        );
        assert!(
            first.index > self.base,
            "append at {} rewrites entries compacted up to {}",
            first.index,
            self.base
        );
        self.entries.truncate(keep - self.base.0 as usize);
        self.chains.truncate(keep);
        self.terms.truncate(keep);
        for entry in entries {
            let previous = self.chains.last().copied().unwrap_or(0);
            self.chains.push(chain_hash(previous, entry));
            self.terms.push(entry.term);
            self.entries.push(entry.clone());
        }
    }

    /// Drops the entries up to `index` (a snapshot covers them); their terms
    /// and hashes stay for the checks.
    pub fn compact(&mut self, index: LogIndex) {
        if index <= self.base {
            return;
        }
        self.entries.drain(..(index.0 - self.base.0) as usize);
        self.base = index;
    }

    /// The view of a log replaced by a snapshot whose prefix has these
    /// terms and hashes.
    pub fn from_snapshot(terms: Vec<Term>, chains: Vec<u64>) -> LogView {
        LogView {
            entries: Vec::new(),
            base: LogIndex(chains.len() as u64),
            terms,
            chains,
        }
    }

    /// The terms and hashes up to `index`, for a snapshot taken there.
    pub fn prefix(&self, index: LogIndex) -> (Vec<Term>, Vec<u64>) {
        let end = index.0 as usize;
        (self.terms[..end].to_vec(), self.chains[..end].to_vec())
    }

    /// The last index.
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.chains.len() as u64)
    }

    /// The chained hash at `index`; 0 for index 0 or past the end.
    pub fn chain_at(&self, index: LogIndex) -> u64 {
        if index.0 == 0 {
            return 0;
        }
        self.chains.get(index.0 as usize - 1).copied().unwrap_or(0)
    }

    /// The term at `index`.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index.0 == 0 {
            return Some(Term(0));
        }
        self.terms.get(index.0 as usize - 1).copied()
    }

    /// The entry at `index`, unless compacted or absent.
    pub fn entry_at(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.base {
            return None;
        }
        self.entries.get((index.0 - self.base.0 - 1) as usize)
    }

    /// The term of every index from 1, compacted ones included.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// The entries after the compaction point, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// Hashes an entry onto the hash of everything before it (FNV-1a over the
/// fields, then a final mix), deterministic across platforms and runs.
pub fn chain_hash(previous: u64, entry: &Entry) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ previous;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    feed(&previous.to_le_bytes());
    feed(&entry.index.0.to_le_bytes());
    feed(&entry.term.0.to_le_bytes());
    match &entry.payload {
        EntryPayload::Noop => feed(&[0]),
        EntryPayload::Command(command) => {
            feed(&[1]);
            feed(command);
        }
        EntryPayload::Configuration(membership) => {
            feed(&[2]);
            for voter in &membership.voters {
                feed(&voter.0.to_le_bytes());
            }
            feed(&[3]);
            for learner in &membership.learners {
                feed(&learner.0.to_le_bytes());
            }
        }
    }
    // A final avalanche so that near-equal inputs spread out.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A no-op entry, for tests that need only indexes and terms.
    pub(crate) fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            payload: EntryPayload::Noop,
        }
    }

    #[test]
    fn equal_prefixes_have_equal_chains_and_different_ones_differ() {
        let mut a = LogView::default();
        let mut b = LogView::default();
        a.append(&[entry(1, 1), entry(2, 1), entry(3, 2)]);
        b.append(&[entry(1, 1), entry(2, 1), entry(3, 3)]);
        assert_eq!(a.chain_at(LogIndex(2)), b.chain_at(LogIndex(2)));
        assert_ne!(a.chain_at(LogIndex(3)), b.chain_at(LogIndex(3)));
        b.append(&[entry(3, 2)]);
        assert_eq!(a.chain_at(LogIndex(3)), b.chain_at(LogIndex(3)));
        assert_eq!(b.last_index(), LogIndex(3));
    }

    #[test]
    fn compaction_keeps_hashes_and_terms_but_not_entries() {
        let mut log = LogView::default();
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 2)]);
        let chain = log.chain_at(LogIndex(2));
        log.compact(LogIndex(2));
        assert_eq!(log.chain_at(LogIndex(2)), chain);
        assert_eq!(log.term_at(LogIndex(1)), Some(Term(1)));
        assert_eq!(log.entry_at(LogIndex(2)), None);
        assert_eq!(log.entries(), &[entry(3, 2)]);
        log.append(&[entry(3, 3), entry(4, 3)]);
        assert_eq!(log.last_index(), LogIndex(4));
        let (terms, chains) = log.prefix(LogIndex(3));
        let restored = LogView::from_snapshot(terms, chains);
        assert_eq!(restored.chain_at(LogIndex(3)), log.chain_at(LogIndex(3)));
        assert_eq!(restored.last_index(), LogIndex(3));
    }
}
