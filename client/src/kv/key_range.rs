//! The etcd convention for naming a set of keys with `key` and `range_end`.

use std::ops::Bound;

use super::error::InvalidRequest;

/// The keys a request addresses, decoded from its `key` and `range_end`.
///
/// etcd's convention: an empty `range_end` names the single key `key`;
/// `range_end == "\0"` names every key `>= key`; any other `range_end` names
/// the half-open interval `[key, range_end)`. Prefix queries are intervals
/// whose end is [`prefix_end`] of the prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyRange {
    /// Exactly one key.
    Single(Vec<u8>),
    /// Every key greater than or equal to this one.
    From(Vec<u8>),
    /// Keys in `[start, end)`; empty when `end <= start`.
    Interval {
        /// First key included.
        start: Vec<u8>,
        /// First key excluded.
        end: Vec<u8>,
    },
}

impl KeyRange {
    /// Decodes `key` and `range_end`. Total: validation of the pair is
    /// [`KeyRange::check`]'s job, and a backwards interval is simply empty.
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::From(key.to_vec()),
            _ => KeyRange::Interval {
                start: key.to_vec(),
                end: range_end.to_vec(),
            },
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> KeyRange {
        KeyRange::new(prefix, &prefix_end(prefix))
    }

    /// The rules every key range of a request must follow: the key is not
    /// empty, and an explicit end does not sort before the key.
    pub fn check(key: &[u8], range_end: &[u8]) -> Result<(), InvalidRequest> {
        if key.is_empty() {
            return Err(InvalidRequest::EmptyKey);
        }
        if !range_end.is_empty() && range_end != [0] && range_end < key {
            return Err(InvalidRequest::RangeEndBeforeKey);
        }
        Ok(())
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(single) => key == single.as_slice(),
            KeyRange::From(start) => key >= start.as_slice(),
            KeyRange::Interval { start, end } => start.as_slice() <= key && key < end.as_slice(),
        }
    }

    /// Bounds for `BTreeMap::range`. A backwards interval maps to the empty
    /// `[start, start)`, because `BTreeMap::range` panics on `start > end`.
    pub(crate) fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        match self {
            KeyRange::Single(key) => (Bound::Included(key), Bound::Included(key)),
            KeyRange::From(start) => (Bound::Included(start), Bound::Unbounded),
            KeyRange::Interval { start, end } if end > start => {
                (Bound::Included(start), Bound::Excluded(end))
            }
            KeyRange::Interval { start, .. } => (Bound::Included(start), Bound::Excluded(start)),
        }
    }
}

/// The `range_end` that selects every key starting with `prefix`: the prefix
/// with trailing `0xff` bytes dropped and its last byte incremented. A prefix
/// of only `0xff` bytes (or an empty one) has no such end, and gets "\0",
/// which means "every key from here on".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&byte| byte != 0xff) {
        Some(last) => {
            let mut end = prefix[..=last].to_vec();
            end[last] += 1;
            end
        }
        None => vec![0],
    }
}
