//! The key space's history: every change since the compacted revision (and
//! the puts at it, which etcd keeps), in
//! revision order, each with the key's entry before and after it.
//!
//! # Why this structure
//!
//! Changes are kept in one persistent vector (`imbl::Vector`, an RRB tree)
//! in the order they were applied, which is revision order:
//! - recording a change is a push at the end, amortised O(1), with no
//!   per-key lookup on the write path (the store's map of live keys already
//!   did that);
//! - the changes after a revision, which a watcher catching up and a read
//!   at an old revision both need, are a contiguous run found by binary
//!   search;
//! - compacting drops a prefix;
//! - cloning the store for a snapshot stays O(1), as for the live keys.
//!
//! A read at revision `R` starts from the live keys and undoes what changed
//! after `R`: for each key changed after `R`, its state at `R` is the `prev`
//! of its first change after `R`. That costs the live keys in the range plus
//! the changes after `R`, so recent revisions, the common case (a watcher
//! or a client reading what it just saw), are cheap. etcd instead indexes
//! each key's revisions and reads every version from its backend by
//! revision; with the whole store in memory, the undo walk needs no second
//! index to keep consistent.

use imbl::Vector;
use raft_proto::etcd::mvccpb::{event::EventType, Event, KeyValue};

use super::entry::SharedEntry;
use super::stored_key::StoredKey;

/// One key changed by one write command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// The revision of the command.
    pub(crate) revision: i64,
    /// The key.
    pub(crate) key: StoredKey,
    /// The key's entry after the change; `None` when it was deleted.
    pub(crate) entry: Option<SharedEntry>,
    /// The key's entry before the change; `None` when it did not exist.
    pub(crate) prev: Option<SharedEntry>,
}

impl Change {
    /// The change as etcd reports it to watchers: a put carries the key's
    /// new entry; a deletion only the key, with `mod_revision` set to the
    /// deletion's revision. `prev_kv` is the entry before, when asked for
    /// and there was one.
    pub(crate) fn to_event(&self, with_prev: bool) -> Event {
        let (kind, kv) = match &self.entry {
            Some(entry) => (EventType::Put, entry.to_key_value(&self.key, true)),
            None => (
                EventType::Delete,
                KeyValue {
                    key: self.key.to_vec(),
                    mod_revision: self.revision,
                    ..KeyValue::default()
                },
            ),
        };
        let prev_kv = match (&self.prev, with_prev) {
            (Some(prev), true) => Some(prev.to_key_value(&self.key, true)),
            _ => None,
        };
        Event {
            r#type: kind as i32,
            kv: Some(kv),
            prev_kv,
        }
    }
}

/// The changes since the compacted revision, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct History {
    changes: Vector<Change>,
    /// History at or below this revision is gone (0: none compacted).
    compacted: i64,
}

impl History {
    /// A history compacted at `compacted`, holding `changes` (in revision
    /// order, none before `compacted` and no deletion at it).
    pub(crate) fn from_changes(compacted: i64, changes: Vector<Change>) -> History {
        History { changes, compacted }
    }

    /// Records a change; its revision is at least the last one's.
    pub(crate) fn record(&mut self, change: Change) {
        debug_assert!(self
            .changes
            .last()
            .is_none_or(|last| last.revision <= change.revision));
        self.changes.push_back(change);
    }

    /// Compacts to `revision`, which becomes the compacted revision: drops
    /// every change before it, and its own deletions. A put at `revision`
    /// itself is kept, as etcd keeps each key's version at the compacted
    /// revision (unless a tombstone): a watcher starting there still sees
    /// it. Returns the dropped changes, for the caller to free where the
    /// cost holds nothing up (millions of changes take hundreds of
    /// milliseconds to free).
    pub(crate) fn compact(&mut self, revision: i64) -> Vector<Change> {
        let first_at = self.first_after(revision.saturating_sub(1));
        let mut kept = self.changes.split_off(first_at);
        let mut dropped = std::mem::take(&mut self.changes);
        let at_revision = kept
            .iter()
            .take_while(|change| change.revision == revision)
            .count();
        if at_revision > 0 {
            let later = kept.split_off(at_revision);
            let mut puts = Vector::new();
            for change in kept {
                if change.entry.is_some() {
                    puts.push_back(change);
                } else {
                    dropped.push_back(change);
                }
            }
            puts.append(later);
            kept = puts;
        }
        self.changes = kept;
        self.compacted = self.compacted.max(revision);
        dropped
    }

    /// The revision at or below which history was dropped (0 for none).
    pub(crate) fn compacted(&self) -> i64 {
        self.compacted
    }

    /// The revision of the latest change kept (0 for none).
    pub(crate) fn last_revision(&self) -> i64 {
        self.changes.last().map_or(0, |change| change.revision)
    }

    /// How many changes are kept.
    pub(crate) fn len(&self) -> usize {
        self.changes.len()
    }

    /// Every change kept, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter()
    }

    /// The changes after `revision`, oldest first: O(log n) to find the
    /// first (an `imbl` iterator's `skip` would step through every change
    /// before it).
    pub(crate) fn after(&self, revision: i64) -> impl Iterator<Item = &Change> {
        let first = self.first_after(revision);
        self.changes.focus().narrow(first..).into_iter()
    }

    /// The position of the first change after `revision`.
    fn first_after(&self, revision: i64) -> usize {
        let (mut low, mut high) = (0, self.changes.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if self.changes[middle].revision <= revision {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }
}

/// A put of `key` at `revision`, creating it with value `v` (for tests).
#[cfg(test)]
pub(crate) fn created_at(revision: i64, key: &str) -> Change {
    Change {
        revision,
        key: StoredKey::from_slice(key.as_bytes()),
        entry: Some(std::sync::Arc::new(super::entry::Entry {
            value: bytes::Bytes::from_static(b"v"),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease: 0,
        })),
        prev: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(revision: i64, key: &str) -> Change {
        created_at(revision, key)
    }

    #[test]
    fn the_changes_after_a_revision_are_found_by_revision() {
        let mut history = History::default();
        for (revision, key) in [(2, "a"), (3, "b"), (3, "c"), (5, "d")] {
            history.record(change(revision, key));
        }
        let after = |revision| {
            history
                .after(revision)
                .map(|change| change.revision)
                .collect::<Vec<_>>()
        };
        assert_eq!(after(0), vec![2, 3, 3, 5]);
        assert_eq!(after(2), vec![3, 3, 5]);
        assert_eq!(after(3), vec![5]);
        assert_eq!(after(4), vec![5]);
        assert_eq!(after(5), Vec::<i64>::new());
        assert_eq!(history.len(), 4);
    }

    fn deletion(revision: i64, key: &str) -> Change {
        Change {
            entry: None,
            ..change(revision, key)
        }
    }

    #[test]
    fn compacting_keeps_the_puts_at_the_compacted_revision_and_drops_the_rest() {
        let mut history = History::default();
        for change in [
            change(2, "a"),
            change(3, "b"),
            deletion(4, "a"),
            change(4, "c"),
            change(5, "d"),
        ] {
            history.record(change);
        }
        let dropped = history.compact(4);
        let revisions_and_keys = |changes: &mut dyn Iterator<Item = &Change>| {
            changes
                .map(|change| (change.revision, change.key.to_vec()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            revisions_and_keys(&mut history.iter()),
            vec![(4, b"c".to_vec()), (5, b"d".to_vec())]
        );
        assert_eq!(
            revisions_and_keys(&mut dropped.iter()),
            vec![(2, b"a".to_vec()), (3, b"b".to_vec()), (4, b"a".to_vec())]
        );
        assert_eq!(history.compacted(), 4);
        // A later compaction drops what an earlier one kept.
        history.compact(5);
        assert_eq!(
            revisions_and_keys(&mut history.iter()),
            vec![(5, b"d".to_vec())]
        );
    }
}
