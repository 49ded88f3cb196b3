//! A deliberately naive log (a `Vec` and a purge point) and random
//! operations on it, to compare a store against operation by operation.

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::storage::LogStore;
use crate::types::{Entry, EntryPayload, HardState, LogIndex, NodeId, Term};

/// The reference: what any store must return after the same operations.
#[derive(Clone, Debug, Default)]
pub(crate) struct Model {
    pub hard_state: HardState,
    pub purged: (LogIndex, Term),
    /// Entries after the purge point.
    pub entries: Vec<Entry>,
}

impl Model {
    pub fn first_index(&self) -> LogIndex {
        self.purged.0.next()
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.purged.0 .0 + self.entries.len() as u64)
    }

    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.purged.0 {
            return Some(self.purged.1);
        }
        let position = index.0.checked_sub(self.first_index().0)? as usize;
        self.entries.get(position).map(|entry| entry.term)
    }

    fn append(&mut self, entries: &[Entry]) {
        let keep = (entries[0].index.0 - self.first_index().0) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    fn purge(&mut self, index: LogIndex, term: Term) {
        if index <= self.purged.0 {
            return;
        }
        if self.term(index) == Some(term) {
            let drop = (index.0 - self.purged.0 .0) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.purged = (index, term);
    }

    fn max_term(&self) -> Term {
        let last = self
            .entries
            .last()
            .map_or(self.purged.1, |entry| entry.term);
        last.max(self.purged.1).max(self.hard_state.term)
    }
}

/// An entry whose payload names its index and term, with `size` bytes.
pub(crate) fn entry_of_size(index: u64, term: u64, size: usize) -> Entry {
    let mut payload = format!("{index}/{term}:").into_bytes();
    payload.resize(size.max(payload.len()), b'a' + (index % 26) as u8);
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Command(Bytes::from(payload)),
    }
}

/// Runs random valid (and some invalid) operations on `store` and on a
/// model, comparing them as it goes. `reopen` is called every
/// `reopen_every` operations (never, if zero) and must give back the store
/// as after a restart.
pub(crate) fn random_operations<S: LogStore>(
    mut store: S,
    seed: u64,
    operations: usize,
    reopen_every: usize,
    reopen: &mut dyn FnMut(S) -> S,
) -> S {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut below = |bound: u64| rng.next_u64() % bound.max(1);
    let mut model = Model::default();
    for step in 0..operations {
        let context = format!("seed {seed}, step {step}");
        match below(100) {
            0..=54 => {
                let (first, last) = (model.first_index().0, model.last_index().0);
                let start = if below(4) == 0 {
                    first + below(last + 2 - first)
                } else {
                    last + 1
                };
                // Never below the entry before (nor any term seen), as in
                // Raft; a conflicting append comes from a newer leader.
                let term = if start <= last {
                    model.max_term().0 + 1
                } else {
                    model.max_term().0.max(1) + u64::from(below(8) == 0)
                };
                let count = 1 + below(8);
                let entries: Vec<Entry> = (start..start + count)
                    .map(|index| {
                        let size = if below(10) == 0 {
                            1500 + below(3000)
                        } else {
                            below(200)
                        };
                        entry_of_size(index, term, size as usize)
                    })
                    .collect();
                store
                    .append(entries.clone().into())
                    .unwrap_or_else(|error| panic!("{context}: append: {error}"));
                model.append(&entries);
            }
            55..=59 => {
                // A gap: refused, nothing changes.
                let entry = entry_of_size(model.last_index().0 + 2, model.max_term().0, 10);
                assert!(
                    store.append(vec![entry].into()).is_err(),
                    "{context}: a gap was accepted"
                );
            }
            60..=71 => {
                let hard_state = HardState {
                    term: Term(model.hard_state.term.0 + below(2)),
                    voted_for: (below(3) > 0).then(|| NodeId(1 + below(5))),
                };
                store
                    .save_hard_state(hard_state)
                    .unwrap_or_else(|error| panic!("{context}: save_hard_state: {error}"));
                model.hard_state = hard_state;
            }
            72..=79 => {
                let (first, last) = (model.first_index().0, model.last_index().0);
                let index = LogIndex(first - 1 + below(last + 4 - first));
                let term = match model.term(index) {
                    Some(term) if below(5) > 0 => term,
                    _ => Term(model.max_term().0 + 1),
                };
                store.purge_to(index, term).unwrap_or_else(|error| {
                    panic!("{context}: purge_to({index}, {term}): {error}")
                });
                model.purge(index, term);
            }
            _ => {
                let (first, last) = (model.first_index().0, model.last_index().0);
                let low = first + below(last + 2 - first);
                let high = low + below(last + 2 - low);
                let read = store
                    .entries(LogIndex(low), LogIndex(high))
                    .unwrap_or_else(|error| panic!("{context}: entries({low}, {high}): {error}"));
                let from = (low - first) as usize;
                assert_eq!(
                    read,
                    model.entries[from..from + (high - low) as usize],
                    "{context}: entries({low}, {high})"
                );
            }
        }
        if reopen_every > 0 && step % reopen_every == reopen_every - 1 {
            store = reopen(store);
        }
        check_matches(&store, &model, &context, step % 16 == 0);
    }
    check_matches(&store, &model, &format!("seed {seed}, end"), true);
    store
}

/// Compares bounds, hard state and terms; with `everything`, every entry.
pub(crate) fn check_matches<S: LogStore>(
    store: &S,
    model: &Model,
    context: &str,
    everything: bool,
) {
    assert_eq!(
        store.first_index(),
        model.first_index(),
        "{context}: first index"
    );
    assert_eq!(
        store.last_index(),
        model.last_index(),
        "{context}: last index"
    );
    assert_eq!(
        store.hard_state(),
        model.hard_state,
        "{context}: hard state"
    );
    assert_eq!(
        store.term(model.purged.0).ok(),
        Some(model.purged.1),
        "{context}: term of the purge point"
    );
    assert_eq!(
        store.last_term().ok(),
        model.term(model.last_index()),
        "{context}: last term"
    );
    if everything {
        for index in model.first_index().0..=model.last_index().0 {
            assert_eq!(
                store.term(LogIndex(index)).ok(),
                model.term(LogIndex(index)),
                "{context}: term of {index}"
            );
        }
        let all = store
            .entries(model.first_index(), model.last_index().next())
            .unwrap_or_else(|error| panic!("{context}: reading the whole log: {error}"));
        assert_eq!(all, model.entries, "{context}: the whole log");
    }
}
