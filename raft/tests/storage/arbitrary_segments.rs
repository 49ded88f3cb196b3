//! Recovery from arbitrary segment contents, as a property: whatever
//! follows a valid segment header, `Wal::open` either returns a WAL whose
//! log reads back consistently or returns an error; it never panics. The
//! `wal_recovery` fuzz target checks the same with coverage guidance (see
//! `fuzz/README.md`).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use raft::storage::wal::record::{encode_record, Record};
use raft::testing::{check_recovered_log, open_wal_with_records};
use raft::{Entry, EntryPayload, HardState, LogIndex, NodeId, Term};

/// One record of a segment. Most steps write records that a writer could
/// have written (so that many cases replay to a real log, with overwrites
/// and purges); `Wild` writes what a writer never would.
#[derive(Clone, Debug)]
enum Step {
    /// An entry `back` places before the next index (0: the next index;
    /// more: overwriting a suffix), in a new term if `new_term`.
    Entry {
        back: u64,
        new_term: bool,
        payload: EntryPayload,
    },
    /// The current term, with a vote.
    HardState { vote: u64 },
    /// A purge `back` places before the last index, with that entry's term
    /// or another.
    Purge {
        back: u64,
        same_term: bool,
        keeps_suffix: bool,
    },
    /// Any record, with any numbers.
    Wild(Record),
}

fn any_record() -> impl Strategy<Value = Record> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(index, term)| Record::Entry(Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: EntryPayload::Noop,
        })),
        (any::<u64>(), any::<u64>()).prop_map(|(term, vote)| Record::HardState(HardState {
            term: Term(term),
            voted_for: (vote != 0).then_some(NodeId(vote)),
        })),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(index, term, keeps_suffix)| {
            Record::Purge {
                index: LogIndex(index),
                term: Term(term),
                keeps_suffix,
            }
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let payload = prop_oneof![
        Just(EntryPayload::Noop),
        vec(any::<u8>(), 0..24).prop_map(|bytes| EntryPayload::Command(bytes.into())),
    ];
    let back = prop_oneof![6 => Just(0u64), 1 => 1..4u64];
    prop_oneof![
        12 => (back, any::<bool>(), payload).prop_map(|(back, new_term, payload)| Step::Entry {
            back,
            new_term: new_term || back > 0,
            payload,
        }),
        2 => (0..4u64).prop_map(|vote| Step::HardState { vote }),
        2 => (0..6u64, any::<bool>(), any::<bool>()).prop_map(|(back, same_term, keeps_suffix)| {
            Step::Purge { back, same_term, keeps_suffix }
        }),
        1 => any_record().prop_map(Step::Wild),
    ]
}

/// What may follow the records: nothing, garbage, zeros (as a crash can
/// leave them), or a record cut short.
fn tail() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => vec(any::<u8>(), 1..40),
        1 => (1..600usize).prop_map(|len| vec![0; len]),
        1 => (any_record(), any::<Index>()).prop_map(|(record, cut)| {
            let mut bytes = Vec::new();
            encode_record(&record, &mut bytes);
            bytes.truncate(cut.index(bytes.len()));
            bytes
        }),
    ]
}

/// Writes the steps out, tracking the log they build so that plausible
/// records refer to it.
fn encode_steps(steps: &[Step]) -> Vec<u8> {
    let mut bytes = Vec::new();
    // The terms of entries 1..=len, and the current term.
    let mut terms: Vec<u64> = Vec::new();
    let mut term = 1;
    for step in steps {
        let record = match step {
            Step::Entry {
                back,
                new_term,
                payload,
            } => {
                let index = (terms.len() as u64 + 1).saturating_sub(*back).max(1);
                if *new_term {
                    term += 1;
                }
                terms.truncate(index as usize - 1);
                terms.push(term);
                Record::Entry(Entry {
                    term: Term(term),
                    index: LogIndex(index),
                    payload: payload.clone(),
                })
            }
            Step::HardState { vote } => Record::HardState(HardState {
                term: Term(term),
                voted_for: (*vote != 0).then_some(NodeId(*vote)),
            }),
            Step::Purge {
                back,
                same_term,
                keeps_suffix,
            } => {
                let index = (terms.len() as u64).saturating_sub(*back);
                let entry_term = terms.get((index as usize).wrapping_sub(1)).copied();
                let purge_term = match entry_term {
                    Some(entry_term) if *same_term => entry_term,
                    _ => term,
                };
                Record::Purge {
                    index: LogIndex(index),
                    term: Term(purge_term),
                    keeps_suffix: *keeps_suffix,
                }
            }
            Step::Wild(record) => record.clone(),
        };
        encode_record(&record, &mut bytes);
    }
    bytes
}

/// Steps written out and a tail, perhaps with one byte damaged.
fn segment_records() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(step(), 0..32),
        tail(),
        proptest::option::weighted(0.2, (any::<Index>(), 1..=255u8)),
    )
        .prop_map(|(steps, tail, damage)| {
            let mut bytes = encode_steps(&steps);
            bytes.extend_from_slice(&tail);
            if let (Some((at, mask)), false) = (damage, bytes.is_empty()) {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
            bytes
        })
}

proptest! {
    // Each case creates and opens a WAL twice, with fsyncs: keep the count
    // modest. The fuzz target runs far more.
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_segment_contents_open_or_fail_without_panicking(records in segment_records()) {
        let directory = tempfile::tempdir().expect("temporary directory");
        if let Ok(wal) = open_wal_with_records(directory.path(), &records) {
            check_recovered_log(&wal);
            wal.close().expect("close");
        }
    }
}
