//! The member's watch hub: one task that follows what the member applies,
//! publishes each new view of the store, and wakes only the streams with a
//! watcher on a key that changed.
//!
//! Without it every stream would wake, and read the store under its lock,
//! on every batch the member applies: a thousand idle watchers on keys
//! nobody writes would cost the writes most of their throughput. With it a
//! batch costs one view (one read of the store's lock), one pass over its
//! changes against the distinct key ranges watched, and a wake-up for each
//! stream that has something to send.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Notify};

use super::watcher::StoreView;
use crate::kv::KeyRange;
use crate::server::context::Context;

/// A stream's number in the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamId(u64);

/// Who watches which range.
#[derive(Default)]
struct Registry {
    /// Each distinct range watched, and the streams watching it (with how
    /// many of their watchers do).
    ranges: HashMap<KeyRange, HashMap<StreamId, usize>>,
    /// How to wake each stream.
    streams: HashMap<StreamId, Arc<Notify>>,
    next_stream: u64,
}

/// Follows the member's applied state for its watch streams.
pub struct WatchHub {
    /// The node followed (none in unit tests).
    context: Option<Arc<Context>>,
    latest: watch::Sender<Arc<StoreView>>,
    registry: Mutex<Registry>,
}

impl WatchHub {
    /// A hub for `context`'s node, following it on a task of its own until
    /// the node stops.
    pub fn start(context: Arc<Context>) -> Arc<WatchHub> {
        let (latest, _) = watch::channel(Arc::new(StoreView::empty()));
        let hub = Arc::new(WatchHub {
            context: Some(context.clone()),
            latest,
            registry: Mutex::new(Registry::default()),
        });
        tokio::spawn(follow(context, hub.clone()));
        hub
    }

    /// The latest view of the store published.
    pub(crate) fn view(&self) -> Arc<StoreView> {
        self.latest.borrow().clone()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a stream, woken through the returned [`Notify`] when a key
    /// one of its ranges covers changes. The first stream brings the view
    /// up to date: with no stream the hub publishes none.
    pub fn add_stream(&self) -> (StreamId, Arc<Notify>) {
        let mut registry = self.registry();
        let id = StreamId(registry.next_stream);
        registry.next_stream += 1;
        let notify = Arc::new(Notify::new());
        registry.streams.insert(id, notify.clone());
        let first = registry.streams.len() == 1;
        drop(registry);
        if let (true, Some(context)) = (first, &self.context) {
            self.latest.send_replace(Arc::new(view_of(context)));
        }
        (id, notify)
    }

    /// Whether any stream is registered.
    fn has_streams(&self) -> bool {
        !self.registry().streams.is_empty()
    }

    /// Forgets a stream and its ranges. After the last, the hub lets go of
    /// its view, so that history compacted later is freed.
    pub fn remove_stream(&self, stream: StreamId) {
        let mut registry = self.registry();
        registry.streams.remove(&stream);
        registry.ranges.retain(|_, streams| {
            streams.remove(&stream);
            !streams.is_empty()
        });
        if registry.streams.is_empty() {
            self.latest.send_replace(Arc::new(StoreView::empty()));
        }
    }

    /// `stream` has one more watcher on `range`.
    pub fn watch(&self, stream: StreamId, range: &KeyRange) {
        let mut registry = self.registry();
        let streams = registry.ranges.entry(range.clone()).or_default();
        *streams.entry(stream).or_default() += 1;
    }

    /// `stream` has one watcher fewer on `range`.
    pub fn unwatch(&self, stream: StreamId, range: &KeyRange) {
        let mut registry = self.registry();
        if let Some(streams) = registry.ranges.get_mut(range) {
            if let Some(count) = streams.get_mut(&stream) {
                *count -= 1;
                if *count == 0 {
                    streams.remove(&stream);
                }
            }
            if streams.is_empty() {
                registry.ranges.remove(range);
            }
        }
    }

    /// Publishes `view` (which follows `previous`), then wakes the streams
    /// it concerns: those watching a key changed since `previous`, or all
    /// when history they may need was compacted meanwhile (a snapshot
    /// installed).
    fn publish(&self, previous: &StoreView, view: StoreView) {
        let view = Arc::new(view);
        self.latest.send_replace(view.clone());
        let registry = self.registry();
        // The empty view (nobody watched) says nothing of what changed.
        if previous.revision == 0 || view.history.compacted() > previous.revision {
            registry
                .streams
                .values()
                .for_each(|notify| notify.notify_one());
            return;
        }
        let mut woken: HashSet<StreamId> = HashSet::new();
        for change in view.history.after(previous.revision) {
            for (range, streams) in &registry.ranges {
                if range.contains(&change.key) {
                    woken.extend(streams.keys());
                }
            }
            if woken.len() == registry.streams.len() {
                break;
            }
        }
        for stream in woken {
            if let Some(notify) = registry.streams.get(&stream) {
                notify.notify_one();
            }
        }
    }
}

/// The store of `context`'s node now.
fn view_of(context: &Context) -> StoreView {
    context.node.read_local(|state| StoreView {
        revision: state.store.revision(),
        history: state.store.history().clone(),
    })
}

/// Publishes a view after every batch the node applies.
async fn follow(context: Arc<Context>, hub: Arc<WatchHub>) {
    let mut applied = context.node.watch_applied();
    loop {
        applied.borrow_and_update();
        if !hub.has_streams() {
            // Nobody watches: no view to make (a view held here would also
            // make the next write copy the end of the history).
            if applied.changed().await.is_err() {
                return;
            }
            continue;
        }
        let previous = hub.view();
        let view = view_of(&context);
        if view.revision != previous.revision
            || view.history.compacted() != previous.history.compacted()
        {
            hub.publish(&previous, view);
        }
        if applied.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;
    use crate::kv::history::{created_at, History};

    fn hub() -> WatchHub {
        let empty = StoreView {
            revision: 1,
            history: History::default(),
        };
        WatchHub {
            context: None,
            latest: watch::channel(Arc::new(empty)).0,
            registry: Mutex::new(Registry::default()),
        }
    }

    fn put(history: &mut History, revision: i64, key: &str) {
        history.record(created_at(revision, key));
    }

    fn woken(notify: &Notify) -> bool {
        notify.notified().now_or_never().is_some()
    }

    #[test]
    fn only_the_streams_watching_a_changed_key_are_woken() {
        let hub = hub();
        let (busy, busy_notify) = hub.add_stream();
        let (idle, idle_notify) = hub.add_stream();
        hub.watch(busy, &KeyRange::prefix(b"hot/"));
        hub.watch(idle, &KeyRange::prefix(b"cold/"));
        hub.watch(idle, &KeyRange::new(b"hot/x", b""));
        let mut history = History::default();
        put(&mut history, 2, "hot/a");
        let previous = hub.view();
        hub.publish(
            &previous,
            StoreView {
                revision: 2,
                history: history.clone(),
            },
        );
        assert_eq!(hub.view().revision, 2);
        assert!(woken(&busy_notify));
        assert!(!woken(&idle_notify));

        // The single key it watches wakes the other stream; once it no
        // longer watches it, nothing does.
        put(&mut history, 3, "hot/x");
        let previous = hub.view();
        hub.publish(
            &previous,
            StoreView {
                revision: 3,
                history: history.clone(),
            },
        );
        assert!(woken(&busy_notify) && woken(&idle_notify));
        hub.unwatch(idle, &KeyRange::new(b"hot/x", b""));
        put(&mut history, 4, "hot/x");
        let previous = hub.view();
        hub.publish(
            &previous,
            StoreView {
                revision: 4,
                history: history.clone(),
            },
        );
        assert!(woken(&busy_notify) && !woken(&idle_notify));

        // A history compacted past what the streams saw wakes them all.
        history.compact(4);
        hub.remove_stream(busy);
        let previous = StoreView {
            revision: 1,
            history: History::default(),
        };
        hub.publish(
            &previous,
            StoreView {
                revision: 4,
                history,
            },
        );
        assert!(woken(&idle_notify) && !woken(&busy_notify));
    }
}
