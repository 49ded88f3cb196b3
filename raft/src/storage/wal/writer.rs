//! Group commit: whoever performs I/O takes *everything* queued, writes it,
//! fdatasyncs once, and then wakes every submitter of that batch.
//!
//! Submissions encode their records, get their file offsets and join the
//! queue under the state lock, and return a [`Ticket`]. One batch is in
//! flight at a time; what is submitted meanwhile waits in the queue and goes
//! into the next batch, so an fdatasync is shared by every append that
//! arrived while the previous one ran.
//!
//! Two kinds of thread perform batches:
//!
//! - the writer thread, which runs batches whenever the queue is not empty
//!   and no batch is in flight (the path of [`super::Wal::submit_append`],
//!   which never blocks);
//! - a thread that waits for its own ticket ([`super::Wal::wait`], and every
//!   [`crate::storage::LogStore`] call) and finds nothing in flight: it runs
//!   the batch itself, sparing the hand-off to the writer thread. A single
//!   appender thus pays one write and one fdatasync, nothing more.
//!
//! Waiters sleep on one of two condition variables chosen by the parity of
//! their batch, so finishing a batch wakes only that batch's waiters, not
//! those queued for the next.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tracing::error;

use super::segment::{sync_directory, SegmentFile};
use super::State;
use crate::fault::{self, FaultPoint};
use crate::storage::StorageError;
use crate::types::{LogIndex, Term};

/// Identifies a submission, to wait for it to be durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket {
    /// The submission's sequence number: 1 for the first submission since
    /// the WAL was opened, then one more for each.
    pub sequence: u64,
    /// The batch the submission is written in.
    pub(crate) batch: u64,
}

/// How far the log is durable: every submission up to `sequence`, and so
/// the log up to (`last_index`, `last_term`). This is what a driver feeds
/// back to the core as [`crate::Input::LogPersisted`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    /// The last durable submission.
    pub sequence: u64,
    /// The last index of the log once those submissions are applied.
    pub last_index: LogIndex,
    /// The term of the entry at `last_index`.
    pub last_term: Term,
}

/// Counters since the WAL was opened, for metrics and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Batches written (each with one fdatasync of its segment).
    pub batches: u64,
    /// fdatasync calls on segment files.
    pub fdatasyncs: u64,
    /// fsync calls on the WAL directory (after creating, renaming or
    /// removing segments).
    pub directory_syncs: u64,
    /// Bytes written to segments.
    pub bytes_written: u64,
    /// Entries submitted.
    pub entries_submitted: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub batches: AtomicU64,
    pub fdatasyncs: AtomicU64,
    pub directory_syncs: AtomicU64,
    pub bytes_written: AtomicU64,
    pub entries_submitted: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn add_entries(&self, count: u64) {
        Counters::add(&self.entries_submitted, count);
    }

    pub fn snapshot(&self) -> WalStats {
        WalStats {
            batches: self.batches.load(Ordering::Relaxed),
            fdatasyncs: self.fdatasyncs.load(Ordering::Relaxed),
            directory_syncs: self.directory_syncs.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            entries_submitted: self.entries_submitted.load(Ordering::Relaxed),
        }
    }
}

/// One step of I/O, queued in submission order.
#[derive(Debug)]
pub(crate) enum WriteOp {
    /// Create a segment whose first bytes are `initial`. Everything written
    /// before is synced first, so an older segment never has a torn tail,
    /// and removals queued before are carried out first, so a segment never
    /// exists alongside segments that a purge before it made obsolete.
    Create {
        segment: Arc<SegmentFile>,
        initial: Vec<u8>,
        /// The size to reserve on disk (see [`SegmentFile::reserve`]).
        size_bytes: u64,
    },
    /// Cut a full segment's unused end at `len`, the end of its last
    /// record, before the next segment is created (see
    /// [`SegmentFile::seal`]); synced with the segment's writes.
    Seal { segment: Arc<SegmentFile>, len: u64 },
    /// Write `bytes` at `offset`.
    Write {
        segment: Arc<SegmentFile>,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// Remove a segment that no longer holds live entries, once what made
    /// it obsolete is durable: at the next creation or the end of the batch.
    Remove { segment: Arc<SegmentFile> },
}

/// The group-commit bookkeeping inside the WAL's state.
#[derive(Debug)]
pub(crate) struct Commit {
    /// I/O not yet taken by a batch.
    pub queue: Vec<WriteOp>,
    /// The lowest entry index in `queue`: entries from there on are not
    /// durable, so the cache must keep them.
    pub queued_min_index: Option<LogIndex>,
    /// The same for the batch in flight.
    pub in_flight_min_index: Option<LogIndex>,
    /// The sequence number of the last submission.
    pub submitted: u64,
    /// The id the queued operations' batch will have.
    pub next_batch: u64,
    /// The id of the last durable batch.
    pub durable_batch: u64,
    pub durable: Durable,
    /// A batch is in flight.
    pub io_busy: bool,
    /// Set by the first failed write or sync: nothing is accepted after.
    pub failed: Option<Arc<StorageError>>,
    /// The WAL is being dropped: the writer thread drains the queue and ends.
    pub shutdown: bool,
}

impl Commit {
    pub fn new(durable: Durable) -> Commit {
        Commit {
            queue: Vec::new(),
            queued_min_index: None,
            in_flight_min_index: None,
            submitted: 0,
            next_batch: 1,
            durable_batch: 0,
            durable,
            io_busy: false,
            failed: None,
            shutdown: false,
        }
    }

    pub fn check_open(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(error) => Err(StorageError::Stopped(error.clone())),
            None => Ok(()),
        }
    }

    /// Queues a write, merging it with the previous write or segment
    /// creation when it continues it: a batch is then one write call per
    /// segment, and a new segment is created with the records that caused
    /// it, so that its existence proves them durable (recovery relies on
    /// this to recognise segments a truncation made obsolete).
    pub fn queue_write(&mut self, segment: &Arc<SegmentFile>, offset: u64, bytes: &[u8]) {
        // Removals are carried out at the next creation or at the end of
        // the batch, whatever their place, so a write may move past them.
        let last = self
            .queue
            .iter_mut()
            .rev()
            .find(|operation| !matches!(operation, WriteOp::Remove { .. }));
        match last {
            Some(WriteOp::Write {
                segment: last,
                offset: last_offset,
                bytes: last_bytes,
            }) if Arc::ptr_eq(last, segment)
                && *last_offset + last_bytes.len() as u64 == offset =>
            {
                last_bytes.extend_from_slice(bytes);
            }
            Some(WriteOp::Create {
                segment: last,
                initial,
                ..
            }) if Arc::ptr_eq(last, segment) && initial.len() as u64 == offset => {
                initial.extend_from_slice(bytes);
            }
            _ => self.queue.push(WriteOp::Write {
                segment: segment.clone(),
                offset,
                bytes: bytes.to_vec(),
            }),
        }
    }

    /// Records a submission whose lowest entry index is `min_index`, and
    /// returns its ticket.
    pub fn submitted(&mut self, min_index: Option<LogIndex>) -> Ticket {
        if let Some(index) = min_index {
            self.queued_min_index = Some(self.queued_min_index.map_or(index, |min| min.min(index)));
        }
        self.submitted += 1;
        Ticket {
            sequence: self.submitted,
            batch: self.next_batch,
        }
    }

    /// A ticket for "everything submitted so far", for a call that queued
    /// nothing itself.
    pub fn current_ticket(&self) -> Ticket {
        let batch = if !self.queue.is_empty() {
            self.next_batch
        } else {
            self.next_batch - 1 // in flight, or already durable
        };
        Ticket {
            sequence: self.submitted,
            batch,
        }
    }

    /// Entries from this index on are not durable yet.
    pub fn keep_from(&self) -> LogIndex {
        let queued = self.queued_min_index.unwrap_or(LogIndex(u64::MAX));
        let in_flight = self.in_flight_min_index.unwrap_or(LogIndex(u64::MAX));
        queued.min(in_flight)
    }
}

/// A batch taken from the queue.
struct Batch {
    id: u64,
    operations: Vec<WriteOp>,
    /// What becomes durable with it.
    durable: Durable,
}

type Listener = Box<dyn FnMut(Durable) + Send>;
/// Told how long each fdatasync of a segment took, for metrics.
pub(crate) type SyncObserver = Box<dyn Fn(std::time::Duration) + Send + Sync>;
/// Told of the write that made the WAL fail, once.
pub(crate) type FailureObserver = Box<dyn Fn(&StorageError) + Send + Sync>;

/// What the WAL handle, the writer thread and waiting callers share.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Wakes the writer thread: work is queued and nothing is in flight.
    pub writer_wakeup: Condvar,
    /// Wakes the waiters of batch `id` on `batch_done[id % 2]`.
    batch_done: [Condvar; 2],
    /// The driver's callback, and the last sequence it was told about (so
    /// that it never hears of durability going backwards).
    listener: Mutex<(Option<Listener>, u64)>,
    pub counters: Counters,
    sync_observer: std::sync::OnceLock<SyncObserver>,
    failure_observer: std::sync::OnceLock<FailureObserver>,
}

impl Shared {
    pub fn new(state: State) -> Shared {
        Shared {
            state: Mutex::new(state),
            writer_wakeup: Condvar::new(),
            batch_done: [Condvar::new(), Condvar::new()],
            listener: Mutex::new((None, 0)),
            counters: Counters::default(),
            sync_observer: std::sync::OnceLock::new(),
            failure_observer: std::sync::OnceLock::new(),
        }
    }

    /// Sets the fdatasync observer; later calls are ignored.
    pub fn set_sync_observer(&self, observer: SyncObserver) {
        let _ = self.sync_observer.set(observer);
    }

    /// Sets the failure observer; later calls are ignored.
    pub fn set_failure_observer(&self, observer: FailureObserver) {
        let _ = self.failure_observer.set(observer);
    }

    /// fdatasyncs a segment written in a batch, timing it for the observer.
    fn sync_segment(&self, segment: &SegmentFile) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        segment.sync()?;
        Counters::add(&self.counters.fdatasyncs, 1);
        if let Some(observer) = self.sync_observer.get() {
            observer(started.elapsed());
        }
        Ok(())
    }

    /// Locks the state. A panic while it was held cannot leave it torn
    /// (updates are made before any I/O), so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_listener(&self, listener: Listener) {
        self.listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0 = Some(listener);
    }

    /// Blocks until the batch of `ticket` is durable, running batches on
    /// this thread when nothing else is.
    pub fn wait(&self, ticket: Ticket) -> Result<Durable, StorageError> {
        let mut state = self.lock();
        loop {
            if state.commit.durable_batch >= ticket.batch {
                return Ok(state.commit.durable);
            }
            state.commit.check_open()?;
            if !state.commit.io_busy && !state.commit.queue.is_empty() {
                let batch = take_batch(&mut state);
                drop(state);
                self.perform(batch)?;
                state = self.lock();
                continue;
            }
            let condvar = &self.batch_done[(ticket.batch % 2) as usize];
            state = condvar.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The writer thread: runs batches until shut down (after draining the
    /// queue) or until a write fails.
    pub fn run_writer(&self) {
        let mut state = self.lock();
        loop {
            if state.commit.failed.is_some() {
                return;
            }
            if !state.commit.io_busy && !state.commit.queue.is_empty() {
                let batch = take_batch(&mut state);
                drop(state);
                // A failure is recorded in the state and seen above.
                let _ = self.perform(batch);
                state = self.lock();
                continue;
            }
            if state.commit.shutdown && !state.commit.io_busy {
                return;
            }
            state = self
                .writer_wakeup
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Writes and syncs a batch, then publishes its durability.
    fn perform(&self, batch: Batch) -> Result<Durable, StorageError> {
        fault::panic_if_injected(FaultPoint::WalWriter);
        let result = fault::io_error_if_injected(FaultPoint::WalIoError)
            .map_err(StorageError::io(
                "write",
                std::path::Path::new("(an injected fault)"),
            ))
            .and_then(|()| self.execute(&batch.operations))
            .and_then(|removals| {
                // Once the batch is durable. (Not yet published: the next batch
                // waits, which keeps removals ordered before later creations.)
                self.remove_segments(&removals)
            });
        let mut state = self.lock();
        state.commit.io_busy = false;
        match result {
            Ok(()) => {
                state.commit.durable_batch = batch.id;
                state.commit.durable = batch.durable;
                state.commit.in_flight_min_index = None;
                let keep_from = state.commit.keep_from();
                state.cache.evict(keep_from);
                let more = !state.commit.queue.is_empty();
                drop(state);
                self.batch_done[(batch.id % 2) as usize].notify_all();
                if more {
                    self.writer_wakeup.notify_one();
                }
                self.notify_listener(batch.durable);
                Ok(batch.durable)
            }
            Err(failure) => {
                error!(%failure, "WAL write failed; the WAL accepts nothing more");
                if let Some(observer) = self.failure_observer.get() {
                    observer(&failure);
                }
                let failure = Arc::new(failure);
                state.commit.failed = Some(failure.clone());
                drop(state);
                for condvar in &self.batch_done {
                    condvar.notify_all();
                }
                self.writer_wakeup.notify_all();
                Err(StorageError::Stopped(failure))
            }
        }
    }

    /// The I/O of a batch. Returns the segments to remove once the batch is
    /// durable.
    fn execute(&self, operations: &[WriteOp]) -> Result<Vec<Arc<SegmentFile>>, StorageError> {
        let mut dirty: Vec<&Arc<SegmentFile>> = Vec::new();
        let mut removals = Vec::new();
        for operation in operations {
            match operation {
                WriteOp::Seal { segment, len } => {
                    segment.seal(*len)?;
                    mark_dirty(&mut dirty, segment);
                }
                WriteOp::Create {
                    segment,
                    initial,
                    size_bytes,
                } => {
                    for written in dirty.drain(..) {
                        self.sync_segment(written)?;
                    }
                    if !removals.is_empty() {
                        self.remove_segments(&std::mem::take(&mut removals))?;
                    }
                    segment.create(initial, *size_bytes)?;
                    Counters::add(&self.counters.fdatasyncs, 1);
                    Counters::add(&self.counters.directory_syncs, 1);
                    Counters::add(&self.counters.bytes_written, initial.len() as u64);
                }
                WriteOp::Write {
                    segment,
                    offset,
                    bytes,
                } => {
                    segment.write_at(bytes, *offset)?;
                    Counters::add(&self.counters.bytes_written, bytes.len() as u64);
                    mark_dirty(&mut dirty, segment);
                }
                WriteOp::Remove { segment } => removals.push(segment.clone()),
            }
        }
        for written in dirty {
            self.sync_segment(written)?;
        }
        Counters::add(&self.counters.batches, 1);
        Ok(removals)
    }

    /// Removes obsolete segments and syncs the directory.
    fn remove_segments(&self, segments: &[Arc<SegmentFile>]) -> Result<(), StorageError> {
        let Some(first) = segments.first() else {
            return Ok(());
        };
        for segment in segments {
            std::fs::remove_file(&segment.path).map_err(|source| StorageError::Io {
                action: "remove obsolete segment",
                path: segment.path.clone(),
                source,
            })?;
        }
        let directory = first.path.parent().unwrap_or(std::path::Path::new("."));
        sync_directory(directory)?;
        Counters::add(&self.counters.directory_syncs, 1);
        Ok(())
    }

    fn notify_listener(&self, durable: Durable) {
        let mut listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        let (callback, last_sequence) = &mut *listener;
        if durable.sequence > *last_sequence {
            *last_sequence = durable.sequence;
            if let Some(callback) = callback {
                callback(durable);
            }
        }
    }
}

/// Adds `segment` to the segments the batch must sync, once.
fn mark_dirty<'a>(dirty: &mut Vec<&'a Arc<SegmentFile>>, segment: &'a Arc<SegmentFile>) {
    if !dirty.iter().any(|written| Arc::ptr_eq(written, segment)) {
        dirty.push(segment);
    }
}

fn take_batch(state: &mut State) -> Batch {
    let commit = &mut state.commit;
    let operations = std::mem::take(&mut commit.queue);
    commit.in_flight_min_index = commit.queued_min_index.take();
    let id = commit.next_batch;
    commit.next_batch += 1;
    commit.io_busy = true;
    Batch {
        id,
        operations,
        durable: Durable {
            sequence: commit.submitted,
            last_index: state.index.last(),
            last_term: state.index.last_term(),
        },
    }
}
