//! Freeing, on a thread of its own, what a latency-sensitive thread lets go
//! of in bulk.
//!
//! Freeing a log compacted by millions of entries, or a cache purged of a
//! whole budget of them, takes hundreds of milliseconds: on a node's event
//! loop that is a leader whose heartbeats go out late and followers that
//! start elections. [`elsewhere`] hands such a value to a short-lived
//! thread that drops it. Used by the node's event loop and the WAL, which
//! release in bulk only when a snapshot lets the log be compacted, and by
//! state machines that drop much at once (the key-value store's history
//! compaction), so a thread per release costs nothing worth counting.

/// Drops `value` on a new thread; on this one if no thread can start.
pub fn elsewhere<T: Send + 'static>(value: T) {
    let spawned = std::thread::Builder::new()
        .name("raft-release".to_owned())
        .spawn(move || drop(value));
    if let Err(error) = spawned {
        // The closure, and the value with it, was dropped here.
        tracing::debug!(%error, "freed on this thread: no thread could start");
    }
}
