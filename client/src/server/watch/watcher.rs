//! One watcher: what it watches, how far it has been told, and the events
//! it is owed from a view of the store's history.

use raft_proto::etcd::etcdserverpb::watch_create_request::FilterType;
use raft_proto::etcd::etcdserverpb::WatchCreateRequest;
use raft_proto::etcd::mvccpb::Event;

use crate::kv::history::History;
use crate::kv::KeyRange;

/// At most this many revisions' events go in one response, so that a
/// watcher far behind catches up in bounded steps (etcd's limit too). The
/// events of one revision are never split over responses.
pub const REVISIONS_PER_RESPONSE: usize = 1000;

/// Why a create request makes no watcher: etcd's texts, sent back as the
/// cancel reason of a created-and-cancelled response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CreateRefusal {
    /// `range_end` sorts at or before `key`.
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
    /// The client chose an id a watcher of the stream has.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
    /// The stream holds as many watchers, or as many bytes of their keys,
    /// as one stream may.
    #[error("rustyraft: too many watchers on one stream ({0})")]
    TooMany(String),
}

/// The store as a watcher sees it at one moment: its revision and the
/// history (a copy that stays as it was).
pub(crate) struct StoreView {
    /// The store's revision.
    pub(crate) revision: i64,
    /// The history since the compacted revision.
    pub(crate) history: History,
}

impl StoreView {
    /// No store: what the hub holds while nobody watches.
    pub(crate) fn empty() -> StoreView {
        StoreView {
            revision: 0,
            history: History::default(),
        }
    }
}

/// What a watcher is owed from one view.
#[derive(Debug, PartialEq)]
pub enum Owed {
    /// Nothing yet: the watcher has seen every revision of the view.
    Nothing,
    /// The events of every revision up to `revision` (possibly none that
    /// match), in revision order.
    Events {
        /// The last revision these events cover.
        revision: i64,
        /// The events.
        events: Vec<Event>,
    },
    /// The history the watcher needs next was compacted away at this
    /// revision: the watcher is cancelled.
    Compacted(i64),
}

/// One watcher of a stream.
#[derive(Debug)]
pub struct Watcher {
    /// Its id in the stream.
    pub id: i64,
    range: KeyRange,
    /// The revision whose events it needs next.
    next_revision: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    /// Split large responses ([`super::response::fragments`]).
    pub fragment: bool,
    /// Send a progress notification when idle for a notify interval.
    pub progress_notify: bool,
    /// Whether events went out since the last progress tick.
    pub sent_since_tick: bool,
    /// Bytes of its keys, counted against the stream's bound.
    pub key_bytes: usize,
}

impl Watcher {
    /// The watcher `request` asks for, with id `id`, starting at
    /// `current_revision + 1` when the request names no start. An empty
    /// key watches from `\0`, as in etcd.
    pub fn new(
        id: i64,
        request: &WatchCreateRequest,
        current_revision: i64,
    ) -> Result<Watcher, CreateRefusal> {
        let key: &[u8] = if request.key.is_empty() {
            &[0]
        } else {
            &request.key
        };
        let end = &request.range_end;
        if !end.is_empty() && end.as_slice() != [0] && end.as_slice() <= key {
            return Err(CreateRefusal::EmptyRange);
        }
        let filters = |filter: FilterType| request.filters.contains(&(filter as i32));
        Ok(Watcher {
            id,
            range: KeyRange::new(key, end),
            next_revision: if request.start_revision > 0 {
                request.start_revision
            } else {
                current_revision.saturating_add(1)
            },
            no_put: filters(FilterType::Noput),
            no_delete: filters(FilterType::Nodelete),
            prev_kv: request.prev_kv,
            fragment: request.fragment,
            progress_notify: request.progress_notify,
            sent_since_tick: false,
            key_bytes: request.key.len().saturating_add(request.range_end.len()),
        })
    }

    /// The keys it watches.
    pub fn range(&self) -> &KeyRange {
        &self.range
    }

    /// Whether the watcher has been told everything up to `revision`.
    pub fn has_seen(&self, revision: i64) -> bool {
        self.next_revision > revision
    }

    /// The events owed from `view`, at most [`REVISIONS_PER_RESPONSE`]
    /// revisions of them, and the watcher now counts them told. Called
    /// again until [`Owed::Nothing`] to catch up completely.
    pub(crate) fn take_owed(&mut self, view: &StoreView) -> Owed {
        if self.next_revision > view.revision {
            return Owed::Nothing;
        }
        let compacted = view.history.compacted();
        if self.next_revision < compacted {
            return Owed::Compacted(compacted);
        }
        let mut events = Vec::new();
        let mut covered = view.revision;
        let mut revisions = 0;
        let mut last = 0;
        for change in view.history.after(self.next_revision - 1) {
            if change.revision > view.revision {
                break;
            }
            if change.revision != last {
                if revisions == REVISIONS_PER_RESPONSE {
                    covered = last;
                    break;
                }
                revisions += 1;
                last = change.revision;
            }
            let is_put = change.entry.is_some();
            if (is_put && self.no_put) || (!is_put && self.no_delete) {
                continue;
            }
            if self.range.contains(&change.key) {
                // The key before a change at the compacted revision is
                // history that is gone (etcd cannot read it either).
                let with_prev = self.prev_kv && change.revision > compacted;
                events.push(change.to_event(with_prev));
            }
        }
        self.next_revision = covered.saturating_add(1);
        Owed::Events {
            revision: covered,
            events,
        }
    }
}

#[cfg(test)]
#[path = "watcher_tests.rs"]
mod tests;
