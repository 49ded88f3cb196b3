//! The conformance suite of [`LogStore`]: named cases, each on a fresh
//! store, plus model-based random runs.

use std::panic::{self, AssertUnwindSafe};

use crate::storage::{LogStore, StorageError};
use crate::testing::log_store_model::{check_matches, entry_of_size, random_operations, Model};
use crate::types::{Entry, EntryPayload, HardState, LogIndex, NodeId, Term};

/// A named case of the suite, run on a fresh store.
type Case<S> = (&'static str, fn(&mut S));

/// A named case of the reopen suite: it fills a store and returns the model
/// of what a reopened store must hold.
type ReopenCase<S> = (&'static str, fn(&mut S) -> Model);

/// Runs every case of the suite, each on a store from `make` (which must
/// return an empty store each time). Panics naming the failed case.
///
/// ```
/// raft::testing::run_log_store_suite(raft::storage::MemoryLogStore::new);
/// ```
pub fn run_log_store_suite<S: LogStore>(mut make: impl FnMut() -> S) {
    let cases: Vec<Case<S>> = vec![
        ("a_new_store_is_empty", a_new_store_is_empty),
        ("appended_entries_read_back", appended_entries_read_back),
        ("reads_outside_the_log_fail", reads_outside_the_log_fail),
        (
            "append_replaces_a_conflicting_suffix",
            append_replaces_a_conflicting_suffix,
        ),
        (
            "appending_existing_entries_again_is_harmless",
            appending_existing_entries_again_is_harmless,
        ),
        (
            "invalid_appends_change_nothing",
            invalid_appends_change_nothing,
        ),
        (
            "hard_state_is_saved_and_never_goes_back",
            hard_state_is_saved_and_never_goes_back,
        ),
        (
            "purge_keeps_the_suffix_when_terms_match",
            purge_keeps_the_suffix_when_terms_match,
        ),
        (
            "purge_of_another_term_replaces_the_log",
            purge_of_another_term_replaces_the_log,
        ),
        (
            "purge_past_the_end_replaces_the_log",
            purge_past_the_end_replaces_the_log,
        ),
        (
            "purge_at_or_before_the_purge_point_does_nothing",
            purge_at_or_before_the_purge_point_does_nothing,
        ),
        (
            "truncation_back_to_the_first_index_after_a_purge",
            truncation_back_to_the_first_index_after_a_purge,
        ),
        ("many_entries_of_mixed_sizes", many_entries_of_mixed_sizes),
    ];
    for (name, case) in cases {
        let mut store = make();
        run_case(name, || case(&mut store));
    }
    for seed in 0..4 {
        let store = make();
        run_case("random_operations_match_a_model", || {
            random_operations(store, seed, 400, 0, &mut |store| store);
        });
    }
}

/// Checks that a durable store keeps everything across a restart: `make`
/// returns an empty store on new data each time, and `reopen` closes a store
/// and opens the same data again. Panics naming the failed case.
pub fn run_log_store_reopen_suite<S: LogStore>(
    mut make: impl FnMut() -> S,
    mut reopen: impl FnMut(S) -> S,
) {
    let cases: Vec<ReopenCase<S>> = vec![
        (
            "entries_hard_state_and_purge_survive",
            entries_hard_state_and_purge_survive,
        ),
        (
            "a_truncated_suffix_stays_truncated",
            a_truncated_suffix_stays_truncated,
        ),
        (
            "a_purge_past_the_end_survives",
            a_purge_past_the_end_survives,
        ),
    ];
    for (name, case) in cases {
        let mut store = make();
        let model = run_case(name, || case(&mut store));
        let store = reopen(store);
        run_case(name, || check_matches(&store, &model, name, true));
    }
    for seed in 0..3 {
        let store = make();
        run_case("random_operations_with_restarts_match_a_model", || {
            random_operations(store, 100 + seed, 300, 25, &mut reopen);
        });
    }
}

fn run_case<T>(name: &str, case: impl FnOnce() -> T) -> T {
    match panic::catch_unwind(AssertUnwindSafe(case)) {
        Ok(value) => value,
        Err(panic) => {
            eprintln!("log store conformance case `{name}` failed");
            panic::resume_unwind(panic)
        }
    }
}

fn entry(index: u64, term: u64) -> Entry {
    entry_of_size(index, term, 0)
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|index| entry(index, term)).collect()
}

fn append(store: &mut impl LogStore, entries: Vec<Entry>) {
    if let Err(error) = store.append(entries.into()) {
        panic!("append failed: {error}");
    }
}

fn read(store: &impl LogStore, low: u64, high: u64) -> Vec<Entry> {
    store
        .entries(LogIndex(low), LogIndex(high))
        .unwrap_or_else(|error| panic!("entries({low}, {high}) failed: {error}"))
}

fn term(store: &impl LogStore, index: u64) -> Term {
    store
        .term(LogIndex(index))
        .unwrap_or_else(|error| panic!("term({index}) failed: {error}"))
}

fn a_new_store_is_empty<S: LogStore>(store: &mut S) {
    assert_eq!(store.first_index(), LogIndex(1));
    assert_eq!(store.last_index(), LogIndex(0));
    assert_eq!(term(store, 0), Term(0));
    assert_eq!(store.hard_state(), HardState::default());
    assert_eq!(read(store, 1, 1), vec![]);
    assert!(matches!(
        store.term(LogIndex(1)),
        Err(StorageError::Unavailable { .. })
    ));
}

fn appended_entries_read_back<S: LogStore>(store: &mut S) {
    append(store, entries(1..=3, 1));
    append(store, vec![entry(4, 2)]);
    append(
        store,
        vec![Entry {
            term: Term(2),
            index: LogIndex(5),
            payload: EntryPayload::Noop,
        }],
    );
    assert_eq!(store.last_index(), LogIndex(5));
    assert_eq!(term(store, 3), Term(1));
    assert_eq!(term(store, 4), Term(2));
    assert_eq!(store.last_term().ok(), Some(Term(2)));
    assert_eq!(read(store, 2, 4), entries(2..=3, 1));
    assert_eq!(read(store, 5, 6)[0].payload, EntryPayload::Noop);
    assert_eq!(read(store, 1, 6).len(), 5);
    assert_eq!(read(store, 3, 3), vec![]);
}

fn reads_outside_the_log_fail<S: LogStore>(store: &mut S) {
    append(store, entries(1..=3, 1));
    store.purge_to(LogIndex(1), Term(1)).expect("purge");
    assert!(matches!(
        store.entries(LogIndex(1), LogIndex(3)),
        Err(StorageError::Compacted {
            first_index: LogIndex(2),
            ..
        })
    ));
    assert!(matches!(
        store.entries(LogIndex(2), LogIndex(5)),
        Err(StorageError::Unavailable {
            last_index: LogIndex(3),
            ..
        })
    ));
    assert!(matches!(
        store.entries(LogIndex(3), LogIndex(2)),
        Err(StorageError::InvalidRange { .. })
    ));
    assert!(matches!(
        store.term(LogIndex(0)),
        Err(StorageError::Compacted { .. })
    ));
    assert!(matches!(
        store.term(LogIndex(4)),
        Err(StorageError::Unavailable { .. })
    ));
}

fn append_replaces_a_conflicting_suffix<S: LogStore>(store: &mut S) {
    append(store, entries(1..=5, 1));
    append(store, entries(3..=4, 2));
    assert_eq!(store.last_index(), LogIndex(4));
    let mut expected = entries(1..=2, 1);
    expected.extend(entries(3..=4, 2));
    assert_eq!(read(store, 1, 5), expected);
    // Replacing from the very first entry.
    append(store, vec![entry(1, 3)]);
    assert_eq!(read(store, 1, 2), vec![entry(1, 3)]);
    assert_eq!(store.last_index(), LogIndex(1));
}

fn appending_existing_entries_again_is_harmless<S: LogStore>(store: &mut S) {
    append(store, entries(1..=4, 1));
    append(store, entries(2..=3, 1));
    assert_eq!(read(store, 1, 4), entries(1..=3, 1));
    assert_eq!(
        store.last_index(),
        LogIndex(3),
        "the suffix after the append is removed"
    );
}

fn invalid_appends_change_nothing<S: LogStore>(store: &mut S) {
    append(store, entries(1..=3, 2));
    let invalid: Vec<Vec<Entry>> = vec![
        vec![],
        vec![entry(5, 2)],              // a gap
        vec![entry(4, 2), entry(6, 2)], // not consecutive
        vec![entry(4, 3), entry(5, 2)], // decreasing terms
        vec![entry(4, 1)],              // below the previous entry's term
        vec![entry(0, 2)],              // index 0 is no entry
    ];
    for attempt in invalid {
        let description = format!("{attempt:?}");
        assert!(
            matches!(
                store.append(attempt.into()),
                Err(StorageError::InvalidAppend { .. })
            ),
            "accepted {description}"
        );
        assert_eq!(read(store, 1, 4), entries(1..=3, 2), "after {description}");
    }
    store.purge_to(LogIndex(2), Term(2)).expect("purge");
    assert!(matches!(
        store.append(vec![entry(2, 2)].into()),
        Err(StorageError::InvalidAppend { .. })
    ));
    assert_eq!(read(store, 3, 4), vec![entry(3, 2)]);
}

fn hard_state_is_saved_and_never_goes_back<S: LogStore>(store: &mut S) {
    let voted = HardState {
        term: Term(3),
        voted_for: Some(NodeId(2)),
    };
    store.save_hard_state(voted).expect("save");
    assert_eq!(store.hard_state(), voted);
    let newer = HardState {
        term: Term(4),
        voted_for: None,
    };
    store.save_hard_state(newer).expect("save");
    assert!(matches!(
        store.save_hard_state(voted),
        Err(StorageError::InvalidHardState { .. })
    ));
    assert_eq!(store.hard_state(), newer);
}

fn purge_keeps_the_suffix_when_terms_match<S: LogStore>(store: &mut S) {
    append(store, entries(1..=3, 1));
    append(store, entries(4..=6, 2));
    store.purge_to(LogIndex(4), Term(2)).expect("purge");
    assert_eq!(store.first_index(), LogIndex(5));
    assert_eq!(store.last_index(), LogIndex(6));
    assert_eq!(term(store, 4), Term(2));
    assert_eq!(read(store, 5, 7), entries(5..=6, 2));
    append(store, vec![entry(7, 2)]);
    assert_eq!(read(store, 5, 8).len(), 3);
}

fn purge_of_another_term_replaces_the_log<S: LogStore>(store: &mut S) {
    append(store, entries(1..=5, 1));
    store.purge_to(LogIndex(3), Term(4)).expect("purge");
    assert_eq!(store.first_index(), LogIndex(4));
    assert_eq!(store.last_index(), LogIndex(3));
    assert_eq!(term(store, 3), Term(4));
    assert_eq!(read(store, 4, 4), vec![]);
    append(store, vec![entry(4, 4)]);
    assert_eq!(read(store, 4, 5), vec![entry(4, 4)]);
}

fn purge_past_the_end_replaces_the_log<S: LogStore>(store: &mut S) {
    append(store, entries(1..=2, 1));
    store.purge_to(LogIndex(10), Term(3)).expect("purge");
    assert_eq!(store.first_index(), LogIndex(11));
    assert_eq!(store.last_index(), LogIndex(10));
    assert_eq!(store.last_term().ok(), Some(Term(3)));
    assert!(
        store.append(vec![entry(12, 3)].into()).is_err(),
        "a gap after the snapshot"
    );
    append(store, vec![entry(11, 3)]);
    assert_eq!(read(store, 11, 12), vec![entry(11, 3)]);
}

fn purge_at_or_before_the_purge_point_does_nothing<S: LogStore>(store: &mut S) {
    append(store, entries(1..=4, 1));
    store.purge_to(LogIndex(2), Term(1)).expect("purge");
    store
        .purge_to(LogIndex(2), Term(1))
        .expect("same purge again");
    store.purge_to(LogIndex(1), Term(1)).expect("older purge");
    assert_eq!(store.first_index(), LogIndex(3));
    assert_eq!(read(store, 3, 5), entries(3..=4, 1));
}

fn truncation_back_to_the_first_index_after_a_purge<S: LogStore>(store: &mut S) {
    append(store, entries(1..=6, 1));
    store.purge_to(LogIndex(3), Term(1)).expect("purge");
    append(store, entries(4..=5, 2));
    assert_eq!(store.first_index(), LogIndex(4));
    assert_eq!(store.last_index(), LogIndex(5));
    assert_eq!(read(store, 4, 6), entries(4..=5, 2));
}

fn many_entries_of_mixed_sizes<S: LogStore>(store: &mut S) {
    let all: Vec<Entry> = (1..=1500)
        .map(|index| entry_of_size(index, 1 + index / 500, ((index * 37) % 1000) as usize))
        .collect();
    for chunk in all.chunks(7) {
        append(store, chunk.to_vec());
    }
    assert_eq!(read(store, 1, 1501), all);
    for (low, high) in [(1, 2), (700, 900), (1499, 1501), (333, 334)] {
        assert_eq!(
            read(store, low, high),
            all[low as usize - 1..high as usize - 1]
        );
    }
    assert_eq!(term(store, 1000), Term(3));
}

fn entries_hard_state_and_purge_survive<S: LogStore>(store: &mut S) -> Model {
    append(store, entries(1..=20, 1));
    append(store, entries(21..=30, 2));
    let hard_state = HardState {
        term: Term(2),
        voted_for: Some(NodeId(3)),
    };
    store.save_hard_state(hard_state).expect("save");
    store.purge_to(LogIndex(5), Term(1)).expect("purge");
    let mut all = entries(6..=20, 1);
    all.extend(entries(21..=30, 2));
    Model {
        hard_state,
        purged: (LogIndex(5), Term(1)),
        entries: all,
    }
}

fn a_truncated_suffix_stays_truncated<S: LogStore>(store: &mut S) -> Model {
    append(store, entries(1..=30, 1));
    append(store, entries(10..=12, 2));
    let mut all = entries(1..=9, 1);
    all.extend(entries(10..=12, 2));
    Model {
        entries: all,
        ..Model::default()
    }
}

fn a_purge_past_the_end_survives<S: LogStore>(store: &mut S) -> Model {
    append(store, entries(1..=5, 1));
    store.purge_to(LogIndex(9), Term(2)).expect("purge");
    append(store, entries(10..=11, 2));
    Model {
        purged: (LogIndex(9), Term(2)),
        entries: entries(10..=11, 2),
        ..Model::default()
    }
}
