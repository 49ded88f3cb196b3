//! Reads: a key range with etcd's limit, count, filter and sort options.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use raft_proto::etcd::etcdserverpb::{range_request, RangeRequest, RangeResponse};

use super::entry::Entry;
use super::error::KvError;
use super::key_range::KeyRange;
use super::store::{header, KvStore};
use super::stored_key::StoredKey;
use super::validation::validate_range;

impl KvStore {
    /// Reads the keys in the request's range at the request's revision (0
    /// for the latest).
    ///
    /// `count` is the number of keys in the range, whatever the limit and
    /// filters; `count_only` returns just that. `limit` (0 for none) cuts the
    /// answer and sets `more`. The mod/create revision bounds filter the
    /// key-values (0 for no bound). Sorting by a target other than the key
    /// without an order sorts ascending, as etcd does; ties stay in key order.
    ///
    /// A `revision` above the store's is [`KvError::FutureRevision`]; one
    /// below the compacted revision is [`KvError::Compacted`]. The header
    /// carries the store's revision, as etcd's does, whatever revision was
    /// read.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        validate_range(request)?;
        self.check_read_revision(request.revision)?;
        Ok(self.read_at(request, self.revision))
    }

    /// Whether a read at `revision` (0: the latest) can be answered: not a
    /// future revision, nor one compacted away.
    pub(super) fn check_read_revision(&self, revision: i64) -> Result<(), KvError> {
        if revision > self.revision {
            return Err(KvError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        if revision > 0 && revision < self.history.compacted() {
            return Err(KvError::Compacted {
                requested: revision,
                compacted: self.history.compacted(),
            });
        }
        Ok(())
    }

    /// A range whose revision was checked already, answering with
    /// `revision` in the header: at a fixed revision that something changed
    /// after, it reads as of then (inside a transaction, undoing its own
    /// writes so far too: they are in the history already); otherwise it
    /// reads the live keys.
    pub(super) fn read_at(&self, request: &RangeRequest, revision: i64) -> RangeResponse {
        if request.revision > 0 && self.history.last_revision() > request.revision {
            let range = KeyRange::new(&request.key, &request.range_end);
            let then = self.entries_at(&range, request.revision);
            let entries = || then.iter().map(|(key, entry)| (key, entry));
            return answer(request, revision, entries);
        }
        self.read(request, revision)
    }

    /// Serves a validated range request, answering with `revision` in the
    /// header (inside a transaction, the revision its writes so far give).
    pub(super) fn read(&self, request: &RangeRequest, revision: i64) -> RangeResponse {
        let range = KeyRange::new(&request.key, &request.range_end);
        answer(request, revision, || self.entries_in(&range))
    }

    /// The keys in `range` as they were at `revision` (after the compacted
    /// revision), in key order: the live keys, with every key changed since
    /// then taken back to its state before its first change after it.
    fn entries_at(&self, range: &KeyRange, revision: i64) -> Vec<(StoredKey, Entry)> {
        let mut changed: BTreeMap<&StoredKey, Option<&Entry>> = BTreeMap::new();
        for change in self.history.after(revision) {
            if range.contains(&change.key) {
                changed.entry(&change.key).or_insert(change.prev.as_deref());
            }
        }
        let mut then: Vec<(StoredKey, Entry)> = self
            .entries_in(range)
            .filter(|(key, _)| !changed.contains_key(key))
            .map(|(key, entry)| (key.clone(), entry.clone()))
            .collect();
        then.extend(
            changed
                .into_iter()
                .filter_map(|(key, entry)| Some((key.clone(), entry?.clone()))),
        );
        then.sort_by(|(left, _), (right, _)| left.cmp(right));
        then
    }
}

/// Answers `request` from `entries`, the keys of its range in key order
/// (called twice: to count them, and to select).
fn answer<'store, I>(
    request: &RangeRequest,
    revision: i64,
    entries: impl Fn() -> I,
) -> RangeResponse
where
    I: Iterator<Item = (&'store StoredKey, &'store Entry)>,
{
    let mut response = RangeResponse {
        header: header(revision),
        kvs: Vec::new(),
        more: false,
        count: entries().count() as i64,
    };
    if request.count_only {
        return response;
    }
    let limit = usize::try_from(request.limit)
        .ok()
        .filter(|&limit| limit > 0);
    let matching = entries().filter(|(_, entry)| within_revision_bounds(request, entry));
    let target = request.sort_target();
    let mut selected: Vec<(&StoredKey, &Entry)> = match (request.sort_order(), target) {
        // Key order is the source's own: stop one past the limit, which is
        // enough to know whether there is more.
        (
            range_request::SortOrder::None | range_request::SortOrder::Ascend,
            range_request::SortTarget::Key,
        ) => matching
            .take(limit.map_or(usize::MAX, |limit| limit + 1))
            .collect(),
        (range_request::SortOrder::Descend, range_request::SortTarget::Key) => {
            let mut all: Vec<_> = matching.collect();
            all.reverse();
            all
        }
        (order, target) => {
            let mut all: Vec<_> = matching.collect();
            all.sort_by(|(_, left), (_, right)| {
                let ordering = compare_by(target, left, right);
                if order == range_request::SortOrder::Descend {
                    ordering.reverse()
                } else {
                    ordering
                }
            });
            all
        }
    };
    if let Some(limit) = limit.filter(|&limit| selected.len() > limit) {
        selected.truncate(limit);
        response.more = true;
    }
    response.kvs = selected
        .into_iter()
        .map(|(key, entry)| entry.to_key_value(key, !request.keys_only))
        .collect();
    response
}

fn within_revision_bounds(request: &RangeRequest, entry: &Entry) -> bool {
    let at_least = |bound: i64, value: i64| bound == 0 || value >= bound;
    let at_most = |bound: i64, value: i64| bound == 0 || value <= bound;
    at_least(request.min_mod_revision, entry.mod_revision)
        && at_most(request.max_mod_revision, entry.mod_revision)
        && at_least(request.min_create_revision, entry.create_revision)
        && at_most(request.max_create_revision, entry.create_revision)
}

/// Orders two entries by a sort target other than the key.
fn compare_by(target: range_request::SortTarget, left: &Entry, right: &Entry) -> Ordering {
    match target {
        range_request::SortTarget::Key => Ordering::Equal,
        range_request::SortTarget::Version => left.version.cmp(&right.version),
        range_request::SortTarget::Create => left.create_revision.cmp(&right.create_revision),
        range_request::SortTarget::Mod => left.mod_revision.cmp(&right.mod_revision),
        range_request::SortTarget::Value => left.value.cmp(&right.value),
    }
}
