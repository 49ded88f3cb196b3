//! The cluster configurations a log holds (dissertation §4.1): a server
//! always uses the latest configuration in its log, whether or not that
//! entry is committed, so a configuration takes effect the moment its
//! entry is appended and is undone if that entry is truncated.

use super::quorum::Membership;
use crate::types::{Entry, EntryPayload, LogIndex};

/// The configurations in effect along a log: one as of its base (from the
/// snapshot, or the initial one), then each configuration entry after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Configurations {
    /// In effect up to the first change listed.
    base: Membership,
    /// Configuration entries after the base, by ascending index.
    changes: Vec<(LogIndex, Membership)>,
}

impl Configurations {
    /// Only `base` in effect.
    pub(crate) fn new(base: Membership) -> Configurations {
        Configurations {
            base,
            changes: Vec::new(),
        }
    }

    /// The configuration in effect: the latest.
    pub(crate) fn latest(&self) -> &Membership {
        self.changes
            .last()
            .map_or(&self.base, |(_, membership)| membership)
    }

    /// The index of the latest configuration entry, if one follows the
    /// base.
    pub(crate) fn latest_change_index(&self) -> Option<LogIndex> {
        self.changes.last().map(|(index, _)| *index)
    }

    /// The configuration in effect at `index` (the latest at or before it).
    pub(crate) fn at(&self, index: LogIndex) -> &Membership {
        self.changes
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .map_or(&self.base, |(_, membership)| membership)
    }

    /// Notes `entry`, appended after every entry noted so far.
    pub(crate) fn record(&mut self, entry: &Entry) {
        if let EntryPayload::Configuration(membership) = &entry.payload {
            debug_assert!(self
                .latest_change_index()
                .is_none_or(|latest| latest < entry.index));
            self.changes
                .push((entry.index, Membership::clone(membership)));
        }
    }

    /// Forgets the configuration entries at or after `index` (truncated).
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        self.changes.retain(|(at, _)| *at < index);
    }

    /// Folds the configuration entries up to `index` (compacted) into the
    /// base.
    pub(crate) fn compact_to(&mut self, index: LogIndex) {
        let folded = self.changes.partition_point(|(at, _)| *at <= index);
        if folded > 0 {
            self.base = self.changes[folded - 1].1.clone();
            self.changes.drain(..folded);
        }
    }

    /// Starts over from a snapshot's configuration.
    pub(crate) fn reset(&mut self, base: Membership) {
        self.base = base;
        self.changes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NodeId, Term};

    fn voters(ids: &[u64]) -> Membership {
        Membership::with_voters(ids.iter().copied().map(NodeId))
    }

    fn change(index: u64, ids: &[u64]) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(1),
            payload: EntryPayload::Configuration(voters(ids).into()),
        }
    }

    #[test]
    fn the_latest_entry_wins_and_truncation_undoes_it() {
        let mut configurations = Configurations::new(voters(&[1, 2, 3]));
        configurations.record(&Entry {
            index: LogIndex(1),
            term: Term(1),
            payload: EntryPayload::Noop,
        });
        assert_eq!(configurations.latest(), &voters(&[1, 2, 3]));
        configurations.record(&change(2, &[1, 2, 3, 4]));
        configurations.record(&change(5, &[1, 2, 4]));
        assert_eq!(configurations.latest(), &voters(&[1, 2, 4]));
        assert_eq!(configurations.latest_change_index(), Some(LogIndex(5)));
        assert_eq!(configurations.at(LogIndex(4)), &voters(&[1, 2, 3, 4]));
        assert_eq!(configurations.at(LogIndex(1)), &voters(&[1, 2, 3]));
        configurations.truncate_from(LogIndex(5));
        assert_eq!(configurations.latest(), &voters(&[1, 2, 3, 4]));
        configurations.truncate_from(LogIndex(2));
        assert_eq!(configurations.latest(), &voters(&[1, 2, 3]));
        assert_eq!(configurations.latest_change_index(), None);
    }

    #[test]
    fn compaction_keeps_the_configuration_in_effect() {
        let mut configurations = Configurations::new(voters(&[1, 2, 3]));
        configurations.record(&change(2, &[1, 2, 3, 4]));
        configurations.record(&change(5, &[1, 2, 4]));
        configurations.compact_to(LogIndex(3));
        assert_eq!(configurations.at(LogIndex(3)), &voters(&[1, 2, 3, 4]));
        assert_eq!(configurations.latest(), &voters(&[1, 2, 4]));
        configurations.compact_to(LogIndex(9));
        assert_eq!(configurations.latest(), &voters(&[1, 2, 4]));
        assert_eq!(configurations.latest_change_index(), None);
        configurations.reset(voters(&[7]));
        assert_eq!(configurations.latest(), &voters(&[7]));
    }
}
