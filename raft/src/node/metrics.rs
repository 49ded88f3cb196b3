//! Counters a running node keeps, for monitoring and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters of one node since it started.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// Entries the state machine applied (commands and no-ops).
    pub entries_applied: AtomicU64,
    /// Snapshots of the state machine this node wrote.
    pub snapshots_taken: AtomicU64,
    /// Snapshots received from a leader and restored.
    pub snapshots_installed: AtomicU64,
    /// Times this node became the leader.
    pub elections_won: AtomicU64,
}

impl NodeMetrics {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}
