//! A compact view of a log for the safety checks: each entry's term and a
//! chained hash that identifies the entry together with everything before
//! it. Two logs with the same chained hash at an index hold the same prefix.

use raft::{Entry, EntryPayload, LogIndex, Term};

/// The terms and chained hashes of a log, with the entries themselves.
#[derive(Clone, Debug, Default)]
pub struct LogView {
    entries: Vec<Entry>,
    chains: Vec<u64>,
}

impl LogView {
    /// Applies an append: drops every entry from `entries[0].index` on, then
    /// adds `entries`.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let keep = (first.index.0 - 1) as usize;
        assert!(
            keep <= self.entries.len(),
            "append at {} leaves a gap after {}",
            first.index,
            self.entries.len()
        );
        self.entries.truncate(keep);
        self.chains.truncate(keep);
        for entry in entries {
            let previous = self.chains.last().copied().unwrap_or(0);
            self.chains.push(chain_hash(previous, entry));
            self.entries.push(entry.clone());
        }
    }

    /// The last index.
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
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
        self.entries
            .get(index.0 as usize - 1)
            .map(|entry| entry.term)
    }

    /// Every entry, in order.
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
    }
    // A final avalanche so that near-equal inputs spread out.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
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
}
