//! The store against a naive model: random puts, deletes, ranges (at the
//! latest revision and at earlier ones) and simple transactions over a
//! small key space, where the model keeps an unsorted list of live keys,
//! a copy of it at every revision, and answers every question by scanning.

use proptest::collection::vec;
use proptest::prelude::*;
use raft_proto::etcd::etcdserverpb::compare::CompareResult;
use raft_proto::etcd::etcdserverpb::{
    request_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use raft_proto::etcd::mvccpb::KeyValue;

use super::support::{compare_version, Replica};
use crate::kv::{prefix_end, Command, CommandResponse, InvalidRequest, KvError, KvStore};

#[derive(Clone, Debug)]
enum Operation {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
    Range {
        key: Vec<u8>,
        range_end: Vec<u8>,
        limit: i64,
        count_only: bool,
        /// How many revisions back to read (0: the latest, by revision 0).
        back: i64,
    },
    /// Compacts the history at `back` revisions before the latest.
    Compact {
        back: i64,
    },
    /// If `guard_key` is at `version`, put `key`, else delete `key`.
    PutOrDelete {
        guard_key: Vec<u8>,
        version: i64,
        key: Vec<u8>,
        value: Vec<u8>,
    },
}

/// Short keys over a, b and 0xff, so that ranges, prefixes and the 0xff
/// carry in prefix ends all get exercised.
fn key() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0xff)], 1..=3)
}

/// A key with a range end of each kind.
fn with_range_end(start: Vec<u8>) -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let prefix = prefix_end(&start);
    (
        Just(start),
        prop_oneof![
            Just(Vec::new()),
            Just(vec![0]),
            Just(prefix),
            // Any key, possibly before the start: then both must refuse.
            key(),
        ],
    )
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        3 => (key(), vec(any::<u8>(), 0..3)).prop_map(|(key, value)| Operation::Put { key, value }),
        1 => key().prop_flat_map(with_range_end).prop_map(|(key, range_end)| Operation::Delete { key, range_end }),
        2 => (key().prop_flat_map(with_range_end), 0..4i64, any::<bool>(), 0..6i64).prop_map(
            |((key, range_end), limit, count_only, back)| Operation::Range { key, range_end, limit, count_only, back }
        ),
        1 => (0..4i64).prop_map(|back| Operation::Compact { back }),
        1 => (key(), 0..3i64, key(), vec(any::<u8>(), 0..3)).prop_map(
            |(guard_key, version, key, value)| Operation::PutOrDelete { guard_key, version, key, value }
        ),
    ]
}

#[derive(Clone, Debug, Default)]
struct Model {
    /// Live keys in no particular order.
    entries: Vec<KeyValue>,
    revision: i64,
    /// The live keys at each revision, from revision 1 (empty) on.
    at_revision: Vec<Vec<KeyValue>>,
    /// Reads before this revision are refused (0: none).
    compacted: i64,
}

impl Model {
    fn new() -> Model {
        Model {
            entries: Vec::new(),
            revision: 1,
            at_revision: vec![Vec::new(), Vec::new()],
            compacted: 0,
        }
    }

    /// A write command ended: the live keys at the current revision are
    /// what they are now.
    fn seal(&mut self) {
        self.at_revision.truncate(self.revision as usize);
        self.at_revision.push(self.entries.clone());
    }

    /// Everything in range at `revision`, sorted by key.
    fn range_at(&self, start: &[u8], end: &[u8], revision: i64) -> Vec<KeyValue> {
        Model::sorted_in_range(&self.at_revision[revision as usize], start, end)
    }

    fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
        match end {
            [] => key == start,
            [0] => key >= start,
            _ => start <= key && key < end,
        }
    }

    fn valid(start: &[u8], end: &[u8]) -> bool {
        end.is_empty() || end == [0] || end >= start
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.revision += 1;
        let revision = self.revision;
        match self.entries.iter_mut().find(|entry| entry.key == key) {
            Some(entry) => {
                entry.value = value.to_vec();
                entry.mod_revision = revision;
                entry.version += 1;
            }
            None => self.entries.push(KeyValue {
                key: key.to_vec(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                value: value.to_vec(),
                lease: 0,
            }),
        }
    }

    fn delete(&mut self, start: &[u8], end: &[u8]) -> i64 {
        let before = self.entries.len();
        self.entries
            .retain(|entry| !Model::in_range(&entry.key, start, end));
        let deleted = (before - self.entries.len()) as i64;
        if deleted > 0 {
            self.revision += 1;
        }
        deleted
    }

    fn version(&self, key: &[u8]) -> i64 {
        self.entries
            .iter()
            .find(|entry| entry.key == key)
            .map_or(0, |entry| entry.version)
    }

    /// Everything in range, sorted by key.
    fn range(&self, start: &[u8], end: &[u8]) -> Vec<KeyValue> {
        Model::sorted_in_range(&self.entries, start, end)
    }

    fn sorted_in_range(entries: &[KeyValue], start: &[u8], end: &[u8]) -> Vec<KeyValue> {
        let mut found: Vec<KeyValue> = entries
            .iter()
            .filter(|entry| Model::in_range(&entry.key, start, end))
            .cloned()
            .collect();
        found.sort_by(|left, right| left.key.cmp(&right.key));
        found
    }
}

fn apply_to_both(
    replica: &mut Replica,
    model: &mut Model,
    operation: &Operation,
) -> Result<(), TestCaseError> {
    match operation.clone() {
        Operation::Put { key, value } => {
            model.put(&key, &value);
            model.seal();
            let response = replica.apply(Command::Put(PutRequest {
                key,
                value,
                ..PutRequest::default()
            }));
            prop_assert_eq!(
                response.map(|response| response.revision()),
                Ok(model.revision)
            );
        }
        Operation::Delete { key, range_end } => {
            let response = replica.apply(Command::DeleteRange(DeleteRangeRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                prev_kv: false,
            }));
            if !Model::valid(&key, &range_end) {
                prop_assert_eq!(
                    response,
                    Err(KvError::Invalid(InvalidRequest::RangeEndBeforeKey))
                );
                return Ok(());
            }
            let deleted = model.delete(&key, &range_end);
            model.seal();
            let Ok(CommandResponse::DeleteRange(response)) = response else {
                return Err(TestCaseError::fail(format!("delete failed: {response:?}")));
            };
            prop_assert_eq!(response.deleted, deleted);
            prop_assert_eq!(
                response.header.map(|header| header.revision),
                Some(model.revision)
            );
        }
        Operation::Range {
            key,
            range_end,
            limit,
            count_only,
            back,
        } => {
            // Revision 0 reads the latest; so does the current revision.
            let revision = if back == 0 {
                0
            } else {
                (model.revision - back).max(1)
            };
            let response = replica.store.range(&RangeRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                limit,
                count_only,
                revision,
                ..RangeRequest::default()
            });
            if !Model::valid(&key, &range_end) {
                prop_assert_eq!(
                    response,
                    Err(KvError::Invalid(InvalidRequest::RangeEndBeforeKey))
                );
                return Ok(());
            }
            if revision > 0 && revision < model.compacted {
                prop_assert_eq!(
                    response,
                    Err(KvError::Compacted {
                        requested: revision,
                        compacted: model.compacted
                    })
                );
                return Ok(());
            }
            let response = response.map_err(|error| TestCaseError::fail(error.to_string()))?;
            let mut expected = match revision {
                0 => model.range(&key, &range_end),
                revision => model.range_at(&key, &range_end, revision),
            };
            prop_assert_eq!(response.count, expected.len() as i64);
            let mut more = false;
            if count_only {
                expected.clear();
            } else if limit > 0 && expected.len() > limit as usize {
                expected.truncate(limit as usize);
                more = true;
            }
            prop_assert_eq!(response.kvs, expected);
            prop_assert_eq!(response.more, more);
            prop_assert_eq!(
                response.header.map(|header| header.revision),
                Some(model.revision)
            );
        }
        Operation::Compact { back } => {
            let revision = model.revision - back;
            let response = replica.apply(Command::Compact(CompactionRequest {
                revision,
                physical: false,
            }));
            if revision <= model.compacted {
                prop_assert_eq!(
                    response,
                    Err(KvError::Compacted {
                        requested: revision,
                        compacted: model.compacted
                    })
                );
            } else {
                model.compacted = revision;
                prop_assert_eq!(
                    response.map(|response| response.revision()),
                    Ok(model.revision)
                );
            }
        }
        Operation::PutOrDelete {
            guard_key,
            version,
            key,
            value,
        } => {
            let put = RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    ..PutRequest::default()
                })),
            };
            let delete = RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest {
                        key: key.clone(),
                        ..DeleteRangeRequest::default()
                    },
                )),
            };
            let response = replica.apply(Command::Txn(TxnRequest {
                compare: vec![Compare {
                    key: guard_key.clone(),
                    ..compare_version("placeholder", CompareResult::Equal, version)
                }],
                success: vec![put],
                failure: vec![delete],
            }));
            let succeeded = model.version(&guard_key) == version;
            if succeeded {
                model.put(&key, &value);
            } else {
                model.delete(&key, &[]);
            }
            model.seal();
            let Ok(CommandResponse::Txn(response)) = response else {
                return Err(TestCaseError::fail(format!("txn failed: {response:?}")));
            };
            prop_assert_eq!(response.succeeded, succeeded);
            prop_assert_eq!(
                response.header.map(|header| header.revision),
                Some(model.revision)
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Deterministic: the same cases on every run and machine.
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6574_6364),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_store_agrees_with_a_naive_model(operations in vec(operation(), 1..60)) {
        let mut replica = Replica::new();
        let mut model = Model::new();
        for operation in &operations {
            apply_to_both(&mut replica, &mut model, operation)?;
            prop_assert_eq!(replica.store.revision(), model.revision);
            prop_assert_eq!(replica.range(RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..RangeRequest::default()
            }).kvs, model.range(&[0], &[0]));
        }
        // Every revision not compacted reads as the model had it.
        for revision in model.compacted.max(1)..=model.revision {
            prop_assert_eq!(replica.range(RangeRequest {
                key: vec![0],
                range_end: vec![0],
                revision,
                ..RangeRequest::default()
            }).kvs, model.range_at(&[0], &[0], revision), "at revision {}", revision);
        }
    }

    #[test]
    fn snapshots_round_trip_any_store(operations in vec(operation(), 0..40)) {
        let mut replica = Replica::new();
        let mut model = Model::new();
        for operation in &operations {
            apply_to_both(&mut replica, &mut model, operation)?;
        }
        let mut bytes = Vec::new();
        replica.store.write_snapshot(&mut bytes).unwrap();
        let restored = KvStore::read_snapshot(&mut bytes.as_slice()).unwrap();
        prop_assert_eq!(restored.digest(), replica.store.digest());
        prop_assert_eq!(restored, replica.store);
    }
}
