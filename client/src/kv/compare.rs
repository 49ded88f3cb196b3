//! The guards of a transaction.

use std::cmp::Ordering;

use raft_proto::etcd::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raft_proto::etcd::etcdserverpb::Compare;

use super::entry::Entry;
use super::key_range::KeyRange;
use super::store::KvStore;

impl KvStore {
    /// Whether a (validated) compare holds: for every key in its range, the
    /// target field compared with the operand gives the wanted result.
    ///
    /// Missing keys follow etcd: when the range holds no key, a version,
    /// create, mod or lease compare sees 0 (so "version == 0" tests that a key
    /// does not exist), and a value compare is false whatever its result,
    /// since a missing value cannot be told from an empty one.
    pub(super) fn compare_holds(&self, comparison: &Compare) -> bool {
        let range = KeyRange::new(&comparison.key, &comparison.range_end);
        let mut any_key = false;
        for (_, entry) in self.entries_in(&range) {
            any_key = true;
            if !compare_entry(comparison, Some(entry)) {
                return false;
            }
        }
        any_key || compare_entry(comparison, None)
    }
}

fn compare_entry(comparison: &Compare, entry: Option<&Entry>) -> bool {
    let number = |field: fn(&Entry) -> i64| entry.map_or(0, field);
    let ordering = match comparison.target() {
        CompareTarget::Value => match entry {
            Some(entry) => entry.value.as_ref().cmp(value_operand(comparison)),
            None => return false,
        },
        CompareTarget::Version => number(|entry| entry.version).cmp(&number_operand(comparison)),
        CompareTarget::Create => {
            number(|entry| entry.create_revision).cmp(&number_operand(comparison))
        }
        CompareTarget::Mod => number(|entry| entry.mod_revision).cmp(&number_operand(comparison)),
        CompareTarget::Lease => number(|entry| entry.lease).cmp(&number_operand(comparison)),
    };
    match comparison.result() {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// The numeric operand for the compare's target; 0 when the operand set is
/// of another kind (as etcd reads it).
fn number_operand(comparison: &Compare) -> i64 {
    match (comparison.target(), &comparison.target_union) {
        (CompareTarget::Version, Some(TargetUnion::Version(number)))
        | (CompareTarget::Create, Some(TargetUnion::CreateRevision(number)))
        | (CompareTarget::Mod, Some(TargetUnion::ModRevision(number)))
        | (CompareTarget::Lease, Some(TargetUnion::Lease(number))) => *number,
        _ => 0,
    }
}

/// The value operand; empty when unset or of another kind.
fn value_operand(comparison: &Compare) -> &[u8] {
    match &comparison.target_union {
        Some(TargetUnion::Value(value)) => value,
        _ => &[],
    }
}
