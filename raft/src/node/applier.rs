//! The applier: a thread of its own that applies committed entries to the
//! state machine, so that a slow state machine never delays the event loop
//! (heartbeats, votes, replication). It also takes snapshots by the
//! [`SnapshotPolicy`] (the state is captured here, written out on another
//! thread while applying goes on) and restores snapshots sent by a leader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::sync::{mpsc as tokio_mpsc, watch};

use crate::core::quorum::Membership;
use crate::core::snapshot::SnapshotMetadata;
use crate::entries::Entries;
use crate::fault::{self, FaultPoint};
use crate::node::event_loop::Event;
use crate::node::metrics::NodeMetrics;
use crate::node::requests::Requests;
use crate::node::stalls::StallReporter;
use crate::snapshot_policy::SnapshotPolicy;
use crate::state_machine::StateMachine;
use crate::storage::snapshot::SnapshotStore;
use crate::types::{EntryPayload, LogIndex, Term};

/// How far the applier has applied, shared with the event loop without a
/// wake-up per batch: the applier reports [`Event::Applied`] only when the
/// event loop waits for an index (a read, or a backlog to shrink); otherwise
/// the loop reads the index here whenever it runs.
#[derive(Debug)]
pub(crate) struct AppliedProgress {
    applied: AtomicU64,
    /// The event loop wants to hear once this index is applied
    /// (`u64::MAX`: it waits for nothing).
    awaited: AtomicU64,
}

impl AppliedProgress {
    pub(crate) fn new(applied: LogIndex) -> AppliedProgress {
        AppliedProgress {
            applied: AtomicU64::new(applied.0),
            awaited: AtomicU64::new(u64::MAX),
        }
    }

    /// The applier's side: records `index` as applied, and says whether the
    /// event loop is waiting for it. (Sequentially consistent, like
    /// [`AppliedProgress::await_index`]: of an index published and a wait
    /// set at the same time, one side sees the other.)
    fn publish(&self, index: LogIndex) -> bool {
        self.applied.store(index.0, Ordering::SeqCst);
        self.awaited.load(Ordering::SeqCst) <= index.0
    }

    /// The event loop's side: asks to be told when `index` is applied (or
    /// nothing, with `None`), then returns the index applied now.
    pub(crate) fn await_index(&self, index: Option<LogIndex>) -> LogIndex {
        let awaited = index.map_or(u64::MAX, |index| index.0);
        self.awaited.store(awaited, Ordering::SeqCst);
        LogIndex(self.applied.load(Ordering::SeqCst))
    }

    /// The index applied now.
    pub(crate) fn applied(&self) -> LogIndex {
        LogIndex(self.applied.load(Ordering::SeqCst))
    }
}

/// Work for the applier, in log order.
pub(crate) enum Work {
    /// Committed entries to apply, in order, and when the event loop
    /// handed them over.
    Apply(Entries, Instant),
    /// Replace the state with the store's snapshot at this point.
    Restore(SnapshotMetadata),
    /// Stop after the work queued before.
    Stop,
}

/// What a node's start wires its applier to.
pub(crate) struct ApplierWiring<M: StateMachine> {
    pub(crate) state_machine: Arc<RwLock<M>>,
    pub(crate) requests: Arc<Requests<M::Response>>,
    pub(crate) events: tokio_mpsc::UnboundedSender<Event>,
    pub(crate) applied: watch::Sender<LogIndex>,
    pub(crate) progress: Arc<AppliedProgress>,
    pub(crate) snapshots: SnapshotStore,
    /// The latest snapshot, the state machine's starting point, if any.
    pub(crate) snapshot: Option<(SnapshotMetadata, u64)>,
    /// The configuration as of the log's base.
    pub(crate) membership: Membership,
    pub(crate) metrics: Arc<NodeMetrics>,
    pub(crate) stalls: Arc<StallReporter>,
}

/// The applier's state.
pub(crate) struct Applier<M: StateMachine> {
    state_machine: Arc<RwLock<M>>,
    requests: Arc<Requests<M::Response>>,
    events: tokio_mpsc::UnboundedSender<Event>,
    applied: watch::Sender<LogIndex>,
    progress: Arc<AppliedProgress>,
    /// Every entry up to here is applied (commands by the state machine,
    /// no-ops by skipping them).
    applied_index: LogIndex,
    /// The last command the state machine applied, and its term: where a
    /// snapshot taken now stands.
    last_command: (LogIndex, Term),
    snapshots: SnapshotStore,
    policy: SnapshotPolicy,
    membership: Membership,
    /// The index of the latest snapshot taken or restored.
    latest_snapshot: LogIndex,
    /// The size of the latest snapshot file (set by the thread that writes
    /// it), and the bytes of commands applied since it was captured: the
    /// policy's [`SnapshotPolicy::log_growth_ratio`] compares them.
    latest_snapshot_bytes: Arc<std::sync::atomic::AtomicU64>,
    applied_bytes: u64,
    /// A snapshot is being written on another thread.
    snapshot_in_progress: Arc<std::sync::atomic::AtomicBool>,
    metrics: Arc<NodeMetrics>,
    /// Warns when applying a batch takes long.
    stalls: Arc<StallReporter>,
}

impl<M: StateMachine> Applier<M> {
    /// An applier over `wiring`, taking snapshots as `policy` says.
    pub(crate) fn new(wiring: ApplierWiring<M>, policy: SnapshotPolicy) -> Applier<M> {
        let (applied, last_command, size_bytes) = match &wiring.snapshot {
            Some((metadata, size_bytes)) => {
                (metadata.index, (metadata.index, metadata.term), *size_bytes)
            }
            None => (LogIndex(0), (LogIndex(0), Term(0)), 0),
        };
        Applier {
            state_machine: wiring.state_machine,
            requests: wiring.requests,
            events: wiring.events,
            applied: wiring.applied,
            progress: wiring.progress,
            applied_index: applied,
            last_command,
            snapshots: wiring.snapshots,
            policy,
            membership: wiring.membership,
            latest_snapshot: applied,
            latest_snapshot_bytes: Arc::new(std::sync::atomic::AtomicU64::new(size_bytes)),
            applied_bytes: 0,
            snapshot_in_progress: Arc::default(),
            metrics: wiring.metrics,
            stalls: wiring.stalls,
        }
    }
}

impl<M: StateMachine> Applier<M> {
    /// Runs as [`Applier::run`] does; a panic stops the node (the event loop
    /// is told, and stops with it) before it goes on unwinding.
    pub(crate) fn run_guarded(self, work: mpsc::Receiver<Work>) {
        let events = self.events.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(work)));
        if let Err(panic) = outcome {
            let _ = events.send(Event::Fatal("the applier panicked".to_string()));
            std::panic::resume_unwind(panic);
        }
    }

    /// Runs until [`Work::Stop`], a state machine failure, or until the
    /// event loop is gone.
    pub(crate) fn run(mut self, work: mpsc::Receiver<Work>) {
        // Runs of entries, in order.
        let mut batch: Vec<Entries> = Vec::new();
        // When the oldest entry of `batch` was handed over.
        let mut handed: Option<Instant> = None;
        while let Ok(first) = work.recv() {
            // Take everything queued, to apply it under one lock.
            let mut next = Some(first);
            while let Some(item) = next.take().or_else(|| work.try_recv().ok()) {
                match item {
                    Work::Apply(entries, at) => {
                        batch.push(entries);
                        handed.get_or_insert(at);
                    }
                    Work::Restore(metadata) => {
                        if !self.apply(&mut batch, handed.take()) || !self.restore(metadata) {
                            return;
                        }
                    }
                    Work::Stop => {
                        self.apply(&mut batch, handed.take());
                        return;
                    }
                }
            }
            if !self.apply(&mut batch, handed.take()) {
                return;
            }
            self.maybe_snapshot();
        }
    }

    /// Applies `batch`, whose oldest entry was handed over at `handed`;
    /// false when the state machine failed (the node stops).
    fn apply(&mut self, batch: &mut Vec<Entries>, handed: Option<Instant>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let mut responses = Vec::with_capacity(batch.iter().map(|run| run.len()).sum());
        let mut failure = None;
        let started = Instant::now();
        {
            let mut state_machine = self
                .state_machine
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for entry in batch.iter().flat_map(|run| run.iter()) {
                if entry.index <= self.applied_index {
                    continue;
                }
                let response = match &entry.payload {
                    EntryPayload::Command(command) => {
                        fault::panic_if_injected(FaultPoint::Applier);
                        match state_machine.apply_shared(entry.index, command) {
                            Ok(response) => {
                                self.last_command = (entry.index, entry.term);
                                self.applied_bytes += command.len() as u64;
                                Some(response)
                            }
                            Err(error) => {
                                failure = Some(format!(
                                    "the state machine failed to apply entry {}: {error}",
                                    entry.index
                                ));
                                break;
                            }
                        }
                    }
                    EntryPayload::Noop => None,
                    // Snapshots record the configuration as of their index.
                    EntryPayload::Configuration(membership) => {
                        self.membership = Membership::clone(membership);
                        None
                    }
                };
                self.applied_index = entry.index;
                responses.push((entry.index, entry.term, response));
            }
        }
        batch.clear();
        let now = Instant::now();
        let took = now.saturating_duration_since(started);
        self.stalls.applied(responses.len(), took, now);
        if let Some(handed) = handed {
            let seconds = handed.elapsed().as_secs_f64();
            self.metrics.apply_latency_seconds.observe(seconds);
        }
        self.metrics.entries_applied.inc_by(responses.len() as u64);
        self.metrics.applied_index.set(self.applied_index.0 as i64);
        self.requests.applied(responses);
        self.applied.send_replace(self.applied_index);
        if self.progress.publish(self.applied_index) {
            let _ = self.events.send(Event::Applied(self.applied_index));
        }
        if let Some(reason) = failure {
            tracing::error!(%reason, "stopping the node");
            let _ = self.events.send(Event::Fatal(reason));
            return false;
        }
        true
    }

    /// Replaces the state with the store's latest snapshot, which must be
    /// the one at `metadata`; false when that fails (the node stops).
    fn restore(&mut self, metadata: SnapshotMetadata) -> bool {
        let mut file_bytes = 0;
        let outcome: Result<SnapshotMetadata, String> = match self.snapshots.latest() {
            Ok(Some(file)) => {
                let mut state_machine = self
                    .state_machine
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                file_bytes = file.size_bytes();
                file.restore_into(&mut *state_machine)
                    .map(|()| file.metadata().clone())
                    .map_err(|error| error.to_string())
            }
            Ok(None) => Err("the snapshot directory holds no snapshot".to_string()),
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok(restored) if restored.index >= metadata.index => {
                tracing::info!(index = %restored.index, "restored the state machine from a snapshot");
                self.applied_index = restored.index;
                self.membership = Membership::clone(&restored.membership);
                self.last_command = (restored.index, restored.term);
                self.latest_snapshot = restored.index;
                self.latest_snapshot_bytes
                    .store(file_bytes, std::sync::atomic::Ordering::Release);
                self.applied_bytes = 0;
                self.requests.skipped_to(restored.index);
                self.metrics.snapshots_installed.inc();
                self.applied.send_replace(self.applied_index);
                self.progress.publish(self.applied_index);
                let _ = self.events.send(Event::Applied(self.applied_index));
                true
            }
            Ok(other) => {
                let reason = format!(
                    "the core installed the snapshot at {} but the newest on disk is at {}",
                    metadata.index, other.index
                );
                let _ = self.events.send(Event::Fatal(reason));
                false
            }
            Err(reason) => {
                let _ = self.events.send(Event::Fatal(format!(
                    "cannot restore the snapshot at {}: {reason}",
                    metadata.index
                )));
                false
            }
        }
    }

    /// Takes a snapshot when the policy says so: the state is captured now,
    /// under the lock, and written out on another thread.
    fn maybe_snapshot(&mut self) {
        use std::sync::atomic::Ordering;
        let (index, term) = self.last_command;
        if self.snapshot_in_progress.load(Ordering::Acquire)
            || !self.policy.should_snapshot(
                index,
                self.latest_snapshot,
                self.applied_bytes,
                self.latest_snapshot_bytes.load(Ordering::Acquire),
            )
        {
            return;
        }
        let captured = {
            let state_machine = self
                .state_machine
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state_machine.snapshot()
        };
        let mut captured = match captured {
            Ok(captured) => captured,
            Err(error) => {
                tracing::error!(%error, "cannot capture a snapshot of the state machine");
                return;
            }
        };
        self.latest_snapshot = index;
        self.applied_bytes = 0;
        self.snapshot_in_progress.store(true, Ordering::Release);
        let size = self.latest_snapshot_bytes.clone();
        let store = self.snapshots.clone();
        let membership = self.membership.clone();
        let events = self.events.clone();
        let in_progress = self.snapshot_in_progress.clone();
        let metrics = self.metrics.clone();
        let spawned = std::thread::Builder::new()
            .name("raft-snapshot".to_string())
            .spawn(move || {
                super::background::lower_this_thread_priority();
                fault::panic_if_injected(FaultPoint::SnapshotWriter);
                match store.save(&mut captured, term, membership) {
                    Ok(file) => {
                        size.store(file.size_bytes(), Ordering::Release);
                        metrics.snapshots_taken.inc();
                        let _ = events.send(Event::SnapshotTaken(file.metadata().clone()));
                    }
                    Err(error) => tracing::error!(%error, "cannot save a snapshot"),
                }
                in_progress.store(false, Ordering::Release);
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the snapshot writer");
            self.snapshot_in_progress.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_reported_only_when_awaited() {
        let progress = AppliedProgress::new(LogIndex(3));
        assert_eq!(progress.await_index(None), LogIndex(3));
        assert!(!progress.publish(LogIndex(4)), "nothing awaited");
        assert_eq!(progress.applied(), LogIndex(4));
        assert_eq!(progress.await_index(Some(LogIndex(6))), LogIndex(4));
        assert!(!progress.publish(LogIndex(5)), "below the awaited index");
        assert!(progress.publish(LogIndex(6)), "the awaited index");
        assert!(progress.publish(LogIndex(7)), "past the awaited index");
        assert_eq!(progress.await_index(None), LogIndex(7));
        assert!(!progress.publish(LogIndex(8)));
    }
}
