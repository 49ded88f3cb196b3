//! The write-ahead log: the Raft log and hard state on disk, under
//! `<data-dir>/wal/`.
//!
//! # Layout
//!
//! The log is a series of segment files ([`segment`]) of framed,
//! checksummed records ([`record`]): entries, hard states and purge points.
//! Records are only ever appended; the log is what replaying them in order
//! gives ([`recovery`]):
//!
//! - an entry at or below the last index replaces that suffix, so
//!   truncating a conflicting suffix writes nothing but the new entries, and
//!   never destroys a durable record (no crash window where both the old and
//!   the new suffix are gone);
//! - the latest hard state is the current one; each new segment restates
//!   the hard state and the purge point, so any older segment can be removed
//!   without losing them;
//! - a purge drops a prefix; whole segments below it are then removed.
//!
//! A segment holds entries from its first index on. An append that
//! truncates below the current segment's first index starts a new segment
//! based there, and segments made obsolete are removed once that is durable.
//!
//! # Memory
//!
//! Recent entries are cached up to [`WalOptions::cache_size_bytes`]; older
//! ones are read from disk through an index of about four bytes per entry
//! (`wal/offsets.rs`). Entries not yet durable stay cached whatever the budget.
//!
//! # Group commit, and how a driver uses the WAL
//!
//! [`Wal`] implements [`LogStore`], whose calls return once durable. They
//! may run the I/O on the calling thread; concurrent callers share one
//! fdatasync per batch (`wal/writer.rs`).
//!
//! A tokio driver should not block its event loop on the disk. It uses the
//! non-blocking side instead:
//!
//! 1. at start, [`Wal::set_durable_listener`] with a callback that forwards
//!    each [`Durable`] to the loop (say, through an unbounded channel) as
//!    [`crate::Input::LogPersisted`]`{ index: last_index, term: last_term }`;
//! 2. [`crate::Output::AppendLog`] → [`Wal::submit_append`], which queues
//!    the entries (they are readable at once) and returns without I/O;
//! 3. [`crate::Output::SaveHardState`] → [`Wal::submit_hard_state`], then
//!    carry out no later output until that ticket is durable: either hold
//!    the outputs until the listener reports `sequence >= ticket.sequence`,
//!    or call [`Wal::wait`] on a blocking thread. Hard states and entries
//!    share the queue, so they reach the disk in submission order.
//!
//! ```
//! use std::sync::mpsc;
//! use raft::storage::{Wal, WalOptions};
//! use raft::ClusterId;
//! use raft::{Entry, EntryPayload, HardState, LogIndex, NodeId, Term};
//!
//! let directory = std::env::temp_dir().join(format!("wal-doc-{}", std::process::id()));
//! let wal = Wal::open(&directory, WalOptions::new(ClusterId(7), NodeId(1))).unwrap();
//! let (persisted, durable) = mpsc::channel();
//! wal.set_durable_listener(move |durable| { let _ = persisted.send(durable); });
//!
//! let vote = wal.submit_hard_state(HardState { term: Term(1), voted_for: Some(NodeId(1)) }).unwrap();
//! wal.wait(vote).unwrap(); // the vote is durable before it is sent
//! let entries = vec![Entry { index: LogIndex(1), term: Term(1), payload: EntryPayload::Noop }].into();
//! let ticket = wal.submit_append(entries).unwrap(); // returns at once
//! let report = loop {
//!     let report = durable.recv().unwrap();
//!     if report.sequence >= ticket.sequence { break report; }
//! };
//! assert_eq!((report.last_index, report.last_term), (LogIndex(1), Term(1)));
//! drop(wal);
//! std::fs::remove_dir_all(&directory).unwrap();
//! ```

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::entries::Entries;
use crate::storage::{check_append, check_range, term_error, LogStore, StorageError};
use crate::types::ClusterId;
use crate::types::{Entry, HardState, LogIndex, NodeId, Term};

mod cache;
mod metadata;
mod offsets;
pub mod record;
pub mod recovery;
pub mod segment;
mod writer;

use self::cache::EntryCache;
use self::metadata::{open_data_directory, DataDirectory};
use self::offsets::OffsetIndex;
use self::record::{encode_entry, encode_record, Record, MAX_RECORD_PAYLOAD_BYTES};
use self::segment::{SegmentFile, SegmentId, SEGMENT_HEADER_BYTES};
use self::writer::{Commit, Shared, WriteOp};

pub use self::metadata::METADATA_FORMAT_VERSION;
pub(crate) use self::metadata::WAL_DIRECTORY;
pub use self::recovery::{RecoveryReport, TornTail};
pub use self::writer::{Durable, Ticket, WalStats};

/// Bytes a segment starts with: its header, the restated hard state and
/// the restated purge point (fixed-size records).
const SEGMENT_PREAMBLE_BYTES: u64 = SEGMENT_HEADER_BYTES as u64 + 28 + 29;

/// Settings of a [`Wal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// The cluster the data directory must belong to.
    pub cluster_id: ClusterId,
    /// The node the data directory must belong to.
    pub node_id: NodeId,
    /// A segment is closed and a new one started when the next record
    /// would take it past this size (a single bigger record still fits).
    /// From 4 KiB to 1 GiB; default 64 MiB.
    pub segment_size_bytes: u64,
    /// Memory for recently appended entries; older ones are read from
    /// disk. Default 64 MiB; 0 reads every durable entry from disk.
    pub cache_size_bytes: usize,
    /// Reserve each segment's full size on disk when it is created
    /// (fallocate), so that appending does not grow the file and an
    /// fdatasync has no file size to write: about a fifth less time per
    /// fdatasync on ext4 here. The newest segment's unused end reads as
    /// zeros, which recovery takes for the end of the log; a full segment
    /// is cut to its last record when the next one starts. Default true;
    /// on a file system without fallocate, files grow as before.
    pub preallocate: bool,
}

impl WalOptions {
    /// The defaults for node `node_id` of cluster `cluster_id`.
    pub fn new(cluster_id: ClusterId, node_id: NodeId) -> WalOptions {
        WalOptions {
            cluster_id,
            node_id,
            segment_size_bytes: 64 << 20,
            cache_size_bytes: 64 << 20,
            preallocate: true,
        }
    }

    fn validate(&self) -> Result<(), StorageError> {
        if !(4 << 10..=1 << 30).contains(&self.segment_size_bytes) {
            return Err(StorageError::InvalidOptions {
                reason: format!(
                    "segment_size_bytes is {}; it must be from 4 KiB to 1 GiB",
                    self.segment_size_bytes
                ),
            });
        }
        if self.node_id == NodeId(0) {
            return Err(StorageError::InvalidOptions {
                reason: "node id 0 is reserved".to_string(),
            });
        }
        Ok(())
    }
}

/// The WAL's in-memory state: the log as submitted (what readers see), the
/// segment files, and the group-commit queue.
#[derive(Debug)]
pub(crate) struct State {
    directory: PathBuf,
    segment_size_bytes: u64,
    /// The size a new segment is given on disk (0: none reserved).
    reserve_bytes: u64,
    index: OffsetIndex,
    cache: EntryCache,
    hard_state: HardState,
    /// In sequence order; the last one is appended to.
    segments: VecDeque<Arc<SegmentFile>>,
    /// The size the active segment will have once the queue is written.
    active_len: u64,
    commit: Commit,
}

impl State {
    fn active(&self) -> &Arc<SegmentFile> {
        // There is always an active segment: open creates the first, and
        // only non-active segments are ever removed.
        &self.segments[self.segments.len() - 1]
    }

    /// Queues `bytes` at the end of the active segment, first starting a
    /// new segment (whose entries start at `next_index`) if it is full.
    /// Returns the offset.
    fn place(&mut self, bytes: &[u8], next_index: LogIndex) -> u32 {
        let len = bytes.len() as u64;
        if self.active_len + len > self.segment_size_bytes
            && self.active_len > SEGMENT_PREAMBLE_BYTES
        {
            self.roll(next_index);
        }
        let offset = self.active_len;
        let active = self.active().clone();
        self.commit.queue_write(&active, offset, bytes);
        self.active_len += len;
        // Segments are at most 1 GiB plus one record of at most 256 MiB.
        offset as u32
    }

    /// Starts a new segment whose entries will start at `first_index`.
    fn roll(&mut self, first_index: LogIndex) {
        let id = SegmentId {
            sequence: self.active().id.sequence + 1,
            first_index,
        };
        if self.reserve_bytes > 0 {
            self.commit.queue.push(WriteOp::Seal {
                segment: self.active().clone(),
                len: self.active_len,
            });
        }
        let segment = Arc::new(SegmentFile::planned(&self.directory, id));
        let initial = segment_preamble(id, self.hard_state, self.index.purged());
        self.active_len = initial.len() as u64;
        self.commit.queue.push(WriteOp::Create {
            segment: segment.clone(),
            initial,
            size_bytes: self.reserve_bytes,
        });
        self.segments.push_back(segment);
    }

    /// Queues the removal of older segments that hold no live entry.
    fn remove_unused_segments(&mut self) {
        let active = self.active().id.sequence;
        let index = &self.index;
        let mut removed = Vec::new();
        self.segments.retain(|segment| {
            let keep = segment.id.sequence == active || index.uses_segment(segment.id.sequence);
            if !keep {
                removed.push(segment.clone());
            }
            keep
        });
        for segment in removed {
            self.commit.queue.push(WriteOp::Remove { segment });
        }
    }

    fn segment(&self, sequence: u64) -> Option<&Arc<SegmentFile>> {
        let position = self
            .segments
            .binary_search_by_key(&sequence, |segment| segment.id.sequence)
            .ok()?;
        Some(&self.segments[position])
    }
}

fn segment_preamble(id: SegmentId, hard_state: HardState, purged: (LogIndex, Term)) -> Vec<u8> {
    let mut bytes = id.encode_header().to_vec();
    encode_record(&Record::HardState(hard_state), &mut bytes);
    encode_record(
        &Record::Purge {
            index: purged.0,
            term: purged.1,
            // Restated: replay keeps whatever follows the purge point (an
            // older segment that survives may hold live entries after it;
            // if none survives, the log simply restarts after it).
            keeps_suffix: true,
        },
        &mut bytes,
    );
    bytes
}

/// The on-disk write-ahead log. See the [module documentation](self).
///
/// All methods take `&self`: share it between threads with an `Arc`.
pub struct Wal {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    report: RecoveryReport,
    data_directory_path: PathBuf,
    /// Declared last so that the lock is released after the writer thread
    /// has stopped.
    _data_directory: DataDirectory,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Wal")
            .field("durable", &self.durable())
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens the WAL of `data_directory`, creating and initialising the
    /// directory if it does not exist, and recovers the log: see
    /// [`recovery`] for how torn tails and corruption are told apart.
    ///
    /// Fails if the directory belongs to another cluster or node, is used by
    /// another process, is not writable, or holds corrupt data.
    pub fn open(
        data_directory: impl AsRef<Path>,
        options: WalOptions,
    ) -> Result<Wal, StorageError> {
        options.validate()?;
        let data_directory_path = data_directory.as_ref().to_path_buf();
        let data_directory =
            open_data_directory(&data_directory_path, options.cluster_id, options.node_id)?;
        let directory = data_directory.wal_directory.clone();
        let reserve_bytes = if options.preallocate {
            options.segment_size_bytes
        } else {
            0
        };
        let (state, report) = match recovery::recover(&directory, options.cache_size_bytes)? {
            Some(recovered) => {
                let state = State {
                    directory: directory.clone(),
                    segment_size_bytes: options.segment_size_bytes,
                    reserve_bytes,
                    commit: Commit::new(Durable {
                        sequence: 0,
                        last_index: recovered.index.last(),
                        last_term: recovered.index.last_term(),
                    }),
                    index: recovered.index,
                    cache: recovered.cache,
                    hard_state: recovered.hard_state,
                    segments: recovered.segments.into(),
                    active_len: recovered.active_len,
                };
                // Written before this build, or cut after a torn write.
                state.active().reserve(reserve_bytes)?;
                (state, recovered.report)
            }
            None => {
                let id = SegmentId {
                    sequence: 1,
                    first_index: LogIndex(1),
                };
                let segment = Arc::new(SegmentFile::planned(&directory, id));
                let initial = segment_preamble(id, HardState::default(), (LogIndex(0), Term(0)));
                segment.create(&initial, reserve_bytes)?;
                let state = State {
                    directory: directory.clone(),
                    segment_size_bytes: options.segment_size_bytes,
                    reserve_bytes,
                    index: OffsetIndex::default(),
                    cache: EntryCache::new(options.cache_size_bytes),
                    hard_state: HardState::default(),
                    segments: VecDeque::from([segment]),
                    active_len: initial.len() as u64,
                    commit: Commit::new(Durable::default()),
                };
                (state, RecoveryReport::default())
            }
        };
        let shared = Arc::new(Shared::new(state));
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("wal-writer".to_string())
            .spawn(move || writer_shared.run_writer())
            .map_err(|source| StorageError::Io {
                action: "start the writer thread for",
                path: directory,
                source,
            })?;
        Ok(Wal {
            shared,
            writer: Some(writer),
            report,
            data_directory_path,
            _data_directory: data_directory,
        })
    }

    /// What recovery found at open: the torn tail it cut, the segments it
    /// removed.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The data directory this WAL was opened on.
    pub fn data_directory(&self) -> &Path {
        &self.data_directory_path
    }

    /// Registers the callback told after each batch is durable, on the
    /// thread that wrote it. It must be quick and must not call the WAL
    /// (forward the [`Durable`] to a channel). Reports never go backwards,
    /// but one report may cover several submissions.
    pub fn set_durable_listener(&self, listener: impl FnMut(Durable) + Send + 'static) {
        self.shared.set_listener(Box::new(listener));
    }

    /// Sets a callback told, once, of the failed write or sync after which
    /// the WAL accepts nothing more, on the thread that saw it (so that a
    /// driver with nothing more to write learns of it at once). It must be
    /// quick. Only the first call has an effect.
    pub fn set_failure_observer(&self, observer: impl Fn(&StorageError) + Send + Sync + 'static) {
        self.shared.set_failure_observer(Box::new(observer));
    }

    /// Sets a callback told how long each fdatasync of a segment took (for
    /// metrics). It runs on the thread that synced and must be quick. Only
    /// the first call has an effect.
    pub fn set_sync_observer(
        &self,
        observer: impl Fn(std::time::Duration) + Send + Sync + 'static,
    ) {
        self.shared.set_sync_observer(Box::new(observer));
    }

    /// Queues `entries` with [`LogStore::append`]'s rules and returns at
    /// once, before any I/O. The entries are readable immediately; they are
    /// durable when [`Wal::wait`] on the ticket returns or the listener
    /// reports its sequence.
    pub fn submit_append(&self, entries: Entries) -> Result<Ticket, StorageError> {
        self.submit_entries(entries, true)
    }

    /// Queues `entries` like [`Wal::submit_append`] but leaves the writer
    /// thread asleep: the caller means to [`Wal::wait`] for the ticket soon
    /// and so write the batch on its own thread, sparing two thread
    /// hand-offs. (A batch the writer thread has in flight, or starts
    /// meanwhile, takes these entries along as usual.)
    pub fn submit_append_to_wait(&self, entries: Entries) -> Result<Ticket, StorageError> {
        self.submit_entries(entries, false)
    }

    fn submit_entries(&self, entries: Entries, wake_writer: bool) -> Result<Ticket, StorageError> {
        // Encode before taking the lock, so that submitters encode in
        // parallel while a batch is being written.
        let mut encoded = Vec::new();
        let mut ends = Vec::with_capacity(entries.len());
        for entry in &entries {
            if entry.size_bytes() > MAX_RECORD_PAYLOAD_BYTES {
                return Err(StorageError::InvalidAppend {
                    reason: format!(
                        "entry {} has {} bytes; the most a WAL record holds is {MAX_RECORD_PAYLOAD_BYTES}",
                        entry.index,
                        entry.payload.size_bytes()
                    ),
                });
            }
            encode_entry(entry, &mut encoded);
            ends.push(encoded.len());
        }
        let count = entries.len() as u64;
        let mut state = self.shared.lock();
        state.commit.check_open()?;
        let first_index = state.index.purged().0.next();
        check_append(
            first_index,
            state.index.last(),
            |index| state.index.term(index),
            &entries,
        )?;
        let first = entries[0].index;
        // No entry in a segment is below its first index: after a
        // truncation, or a purge that replaced the log, start a new one.
        if first < state.active().id.first_index {
            state.roll(first);
        }
        if first <= state.index.last() {
            state.index.truncate_from(first);
            state.cache.truncate_from(first);
            state.remove_unused_segments();
        }
        let mut start = 0;
        // The cache holds its own copy of each entry (a payload is shared,
        // not copied).
        for (entry, end) in entries.iter().zip(ends) {
            let offset = state.place(&encoded[start..end], entry.index);
            start = end;
            let sequence = state.active().id.sequence;
            state.index.push(entry.index, entry.term, sequence, offset);
            state.cache.push(entry.clone());
        }
        let ticket = state.commit.submitted(Some(first));
        let keep_from = state.commit.keep_from();
        state.cache.evict(keep_from);
        self.finish_submission(state, wake_writer);
        self.shared.counters.add_entries(count);
        Ok(ticket)
    }

    /// Queues a hard state and returns at once; see [`Wal::submit_append`].
    /// Later submissions reach the disk after it.
    pub fn submit_hard_state(&self, hard_state: HardState) -> Result<Ticket, StorageError> {
        self.submit_hard_state_inner(hard_state, true)
    }

    fn submit_hard_state_inner(
        &self,
        hard_state: HardState,
        wake_writer: bool,
    ) -> Result<Ticket, StorageError> {
        let mut bytes = Vec::new();
        encode_record(&Record::HardState(hard_state), &mut bytes);
        let mut state = self.shared.lock();
        state.commit.check_open()?;
        if hard_state.term < state.hard_state.term {
            return Err(StorageError::InvalidHardState {
                saved: state.hard_state.term,
                new: hard_state.term,
            });
        }
        let next_index = state.index.last().next();
        state.place(&bytes, next_index);
        state.hard_state = hard_state;
        let ticket = state.commit.submitted(None);
        self.finish_submission(state, wake_writer);
        Ok(ticket)
    }

    /// Queues a purge with [`LogStore::purge_to`]'s rules and returns at
    /// once; see [`Wal::submit_append`]. The segments it empties are removed
    /// once it is durable.
    pub fn submit_purge(&self, index: LogIndex, term: Term) -> Result<Ticket, StorageError> {
        self.submit_purge_inner(index, term, true)
    }

    fn submit_purge_inner(
        &self,
        index: LogIndex,
        term: Term,
        wake_writer: bool,
    ) -> Result<Ticket, StorageError> {
        let mut state = self.shared.lock();
        state.commit.check_open()?;
        if index <= state.index.purged().0 {
            return Ok(state.commit.current_ticket());
        }
        let keeps_suffix = state.index.purge_keeps_suffix(index, term);
        let mut bytes = Vec::new();
        encode_record(
            &Record::Purge {
                index,
                term,
                keeps_suffix,
            },
            &mut bytes,
        );
        let next_index = state.index.last().next();
        state.place(&bytes, next_index);
        state.index.purge(index, term, keeps_suffix);
        let released = if keeps_suffix {
            state.cache.purge_to(index)
        } else {
            state.cache.take_all()
        };
        state.remove_unused_segments();
        let ticket = state.commit.submitted(None);
        self.finish_submission(state, wake_writer);
        // Off the caller's thread, a node's event loop: a purge after a
        // snapshot can release a whole cache budget of entries.
        if !released.is_empty() {
            crate::release::elsewhere(released);
        }
        Ok(ticket)
    }

    fn finish_submission(&self, state: std::sync::MutexGuard<'_, State>, wake_writer: bool) {
        let wake = wake_writer && !state.commit.io_busy;
        drop(state);
        if wake {
            self.shared.writer_wakeup.notify_one();
        }
    }

    /// Blocks until the submission of `ticket` is durable, and returns how
    /// far the log is durable. If no batch is being written, this thread
    /// writes the queued ones itself.
    pub fn wait(&self, ticket: Ticket) -> Result<Durable, StorageError> {
        self.shared.wait(ticket)
    }

    /// How far the log is durable now.
    pub fn durable(&self) -> Durable {
        self.shared.lock().commit.durable
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        self.shared.counters.snapshot()
    }

    /// Writes what is queued, stops the writer thread and releases the data
    /// directory. Returns the error that stopped the WAL, if one did.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.stop_writer();
        match &self.shared.lock().commit.failed {
            Some(failure) => Err(StorageError::Stopped(failure.clone())),
            None => Ok(()),
        }
    }

    fn stop_writer(&mut self) {
        self.shared.lock().commit.shutdown = true;
        self.shared.writer_wakeup.notify_all();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the WAL writer thread panicked");
            }
        }
    }

    /// The hard state last submitted.
    pub fn hard_state(&self) -> HardState {
        self.shared.lock().hard_state
    }

    /// See [`LogStore::entries`]; includes submitted entries not yet
    /// durable.
    pub fn entries(&self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>, StorageError> {
        let mut disk_runs = Vec::new();
        let mut cached = Vec::new();
        {
            let state = self.shared.lock();
            let last = state.index.last();
            check_range(low, high, state.index.purged().0.next(), last)?;
            let cache_first = state.cache.first().unwrap_or(last.next());
            let disk_high = high.min(cache_first.max(low));
            for run in state.index.runs(low, disk_high) {
                let segment = state.segment(run.segment).cloned().ok_or_else(|| {
                    StorageError::Corruption {
                        path: state.directory.clone(),
                        offset: 0,
                        reason: format!("no segment {} for entry {}", run.segment, run.first_index),
                    }
                })?;
                disk_runs.push((segment, run.first_index, run.offsets.to_vec()));
            }
            state.cache.copy_range(disk_high, high, &mut cached);
        }
        // Disk reads happen without the lock; the segment handles stay
        // valid even if a purge removes their files meanwhile.
        let mut entries = Vec::with_capacity((high.0 - low.0) as usize);
        for (segment, first_index, offsets) in disk_runs {
            segment.read_entries(first_index, &offsets, &mut entries)?;
        }
        entries.extend(cached);
        Ok(entries)
    }

    /// See [`LogStore::term`].
    pub fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        let state = self.shared.lock();
        state
            .index
            .term(index)
            .ok_or_else(|| term_error(index, state.index.purged().0.next(), state.index.last()))
    }

    /// See [`LogStore::first_index`].
    pub fn first_index(&self) -> LogIndex {
        self.shared.lock().index.purged().0.next()
    }

    /// See [`LogStore::last_index`].
    pub fn last_index(&self) -> LogIndex {
        self.shared.lock().index.last()
    }

    /// Bytes of entries the cache holds now.
    pub fn cache_size_bytes(&self) -> usize {
        self.shared.lock().cache.size_bytes()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

impl LogStore for Wal {
    fn hard_state(&self) -> HardState {
        Wal::hard_state(self)
    }

    fn save_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        let ticket = self.submit_hard_state_inner(hard_state, false)?;
        self.wait(ticket).map(drop)
    }

    fn append(&mut self, entries: Entries) -> Result<(), StorageError> {
        let ticket = self.submit_entries(entries, false)?;
        self.wait(ticket).map(drop)
    }

    fn entries(&self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>, StorageError> {
        Wal::entries(self, low, high)
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        Wal::term(self, index)
    }

    fn first_index(&self) -> LogIndex {
        Wal::first_index(self)
    }

    fn last_index(&self) -> LogIndex {
        Wal::last_index(self)
    }

    fn purge_to(&mut self, index: LogIndex, term: Term) -> Result<(), StorageError> {
        let ticket = self.submit_purge_inner(index, term, false)?;
        self.wait(ticket).map(drop)
    }
}
