//! Rebuilding the log from the segments at start.
//!
//! Segments are replayed in sequence order, record by record, with the same
//! rules the writer followed: an entry at or below the last index replaces
//! that suffix, the latest hard state wins, a purge drops a prefix. Replay is
//! therefore the log's history, and a crash between any two steps of the
//! writer (a segment created but an older one not yet removed, say) replays
//! to the state the writer had.
//!
//! # Torn tails and corruption
//!
//! Only the last batch the writer wrote can be incomplete after a crash, and
//! it is at the end of the newest segment. A record that fails to decode
//! there is a torn tail, truncated with a warning, when
//!
//! - it runs past the end of the file, or everything after it is zeros, or
//!   no valid record follows it anywhere in the file; or
//! - valid records do follow, but a whole zero-filled 512-byte sector lies
//!   between: pages of the unsynced batch reached the disk out of order.
//!
//! Zeros from a record boundary to the end of the newest segment are not a
//! record at all: that is the space the writer reserved and has not used
//! yet (see `segment.rs`), the end of the log.
//!
//! Anything else is corruption, and so is any decoding failure in an older
//! segment, a gap in the indexes that no purge explains, or a valid record
//! this build does not understand: the WAL refuses to start rather than
//! drop entries that may have been committed.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::cache::EntryCache;
use super::offsets::OffsetIndex;
use super::record::{decode_record, plausible_record_start, DecodeError, Record};
use super::segment::{sync_directory, SegmentFile, SegmentId, SEGMENT_HEADER_BYTES};
use crate::storage::StorageError;
use crate::types::{HardState, LogIndex};

/// What recovery found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments read.
    pub segments_scanned: usize,
    /// Records decoded.
    pub records_scanned: u64,
    /// The torn final record that was cut off, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Segments whose entries were all truncated or purged before a crash
    /// prevented their removal; removed now.
    pub removed_segments: Vec<PathBuf>,
    /// Segments a crash left half-created; removed.
    pub removed_temporary_files: Vec<PathBuf>,
}

/// A record cut short by a crash, and truncated by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Where the torn record started; the file now ends here.
    pub offset: u64,
    /// How many bytes were cut off.
    pub discarded_bytes: u64,
}

/// The log as rebuilt from disk.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Segments in sequence order; the last is the one to append to.
    pub segments: Vec<Arc<SegmentFile>>,
    /// The length of the last segment.
    pub active_len: u64,
    pub index: OffsetIndex,
    pub cache: EntryCache,
    pub hard_state: HardState,
    pub report: RecoveryReport,
}

/// Replays the segments in `directory`; `None` when there are none.
pub(crate) fn recover(
    directory: &Path,
    cache_budget_bytes: usize,
) -> Result<Option<Recovered>, StorageError> {
    let mut report = RecoveryReport::default();
    let ids = remove_superseded(
        directory,
        list_segments(directory, &mut report)?,
        &mut report,
    )?;
    if ids.is_empty() {
        if !report.removed_temporary_files.is_empty() || !report.removed_segments.is_empty() {
            sync_directory(directory)?;
        }
        return Ok(None);
    }
    let mut replay = Replay {
        directory: directory.to_path_buf(),
        index: OffsetIndex::default(),
        cache: EntryCache::new(cache_budget_bytes),
        hard_state: HardState::default(),
        gaps: Vec::new(),
    };
    let mut segments = Vec::with_capacity(ids.len());
    let mut active_len = 0;
    for (position, &id) in ids.iter().enumerate() {
        let newest = position + 1 == ids.len();
        let path = directory.join(id.file_name());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(StorageError::io("open segment", &path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(StorageError::io("read segment", &path))?;
        if bytes.len() > u32::MAX as usize {
            return Err(corrupt(&path, 0, "segment larger than 4 GiB".into()));
        }
        id.check_header(&path, &bytes)?;
        let mut offset = SEGMENT_HEADER_BYTES;
        while offset < bytes.len() {
            match decode_record(&bytes[offset..]) {
                Ok((record, len)) => {
                    replay.apply(record, id, &path, offset as u32)?;
                    report.records_scanned += 1;
                    offset += len;
                }
                Err(_) if newest && bytes[offset..].iter().all(|&byte| byte == 0) => break,
                Err(error) => {
                    if !newest || !is_torn_tail(&bytes, offset, &error) {
                        return Err(corrupt(
                            &path,
                            offset as u64,
                            describe(&bytes, offset, &error),
                        ));
                    }
                    let discarded_bytes = (bytes.len() - offset) as u64;
                    warn!(
                        file = %path.display(),
                        offset,
                        discarded_bytes,
                        "WAL ends with a torn record (a write cut short by a crash); \
                         truncating the segment there"
                    );
                    file.set_len(offset as u64)
                        .and_then(|()| file.sync_all())
                        .map_err(StorageError::io("truncate torn tail of", &path))?;
                    report.torn_tail = Some(TornTail {
                        path: path.clone(),
                        offset: offset as u64,
                        discarded_bytes,
                    });
                    break;
                }
            }
        }
        if newest {
            active_len = offset as u64;
        }
        report.segments_scanned += 1;
        segments.push(Arc::new(SegmentFile::existing(id, path, file)));
    }
    replay.check_complete()?;

    // Older segments without live entries were superseded (truncated or
    // purged) before a crash kept the writer from removing them.
    let mut kept = Vec::with_capacity(segments.len());
    let last = segments.len() - 1;
    for (position, segment) in segments.into_iter().enumerate() {
        if position < last && !replay.index.uses_segment(segment.id.sequence) {
            fs::remove_file(&segment.path).map_err(|source| StorageError::Io {
                action: "remove superseded segment",
                path: segment.path.clone(),
                source,
            })?;
            report.removed_segments.push(segment.path.clone());
        } else {
            kept.push(segment);
        }
    }
    if !report.removed_segments.is_empty() || !report.removed_temporary_files.is_empty() {
        sync_directory(directory)?;
    }
    Ok(Some(Recovered {
        segments: kept,
        active_len,
        index: replay.index,
        cache: replay.cache,
        hard_state: replay.hard_state,
        report,
    }))
}

fn list_segments(
    directory: &Path,
    report: &mut RecoveryReport,
) -> Result<Vec<SegmentId>, StorageError> {
    let io_error = |source| StorageError::Io {
        action: "list",
        path: directory.to_path_buf(),
        source,
    };
    let mut ids = Vec::new();
    for item in fs::read_dir(directory).map_err(io_error)? {
        let item = item.map_err(io_error)?;
        let name = item.file_name().to_string_lossy().into_owned();
        if let Some(id) = SegmentId::parse_file_name(&name) {
            ids.push(id);
        } else if SegmentId::is_temporary_file_name(&name) {
            let path = item.path();
            warn!(file = %path.display(), "removing a segment left half-created by a crash");
            fs::remove_file(&path).map_err(|source| StorageError::Io {
                action: "remove",
                path: path.clone(),
                source,
            })?;
            report.removed_temporary_files.push(path);
        } else {
            warn!(file = %item.path().display(), "ignoring an unknown file in the WAL directory");
        }
    }
    ids.sort();
    Ok(ids)
}

/// Removes the segments that a later one supersedes, and returns the rest.
///
/// A segment whose first index is at or below an older segment's first
/// index was started by a truncation (or after a purge that replaced the
/// log): it was created holding its first entry, so its existence proves
/// that every entry of the older segment was removed, and it restates the
/// hard state and purge point. The writer removes such older segments once
/// the new one is durable; a crash may leave some of them, in any subset,
/// and replaying those would break the log into pieces.
fn remove_superseded(
    directory: &Path,
    ids: Vec<SegmentId>,
    report: &mut RecoveryReport,
) -> Result<Vec<SegmentId>, StorageError> {
    let mut kept = Vec::with_capacity(ids.len());
    let mut lowest_later_first = LogIndex(u64::MAX);
    for id in ids.into_iter().rev() {
        if lowest_later_first <= id.first_index {
            let path = directory.join(id.file_name());
            warn!(file = %path.display(), "removing a segment that a truncation made obsolete");
            fs::remove_file(&path).map_err(|source| StorageError::Io {
                action: "remove superseded segment",
                path: path.clone(),
                source,
            })?;
            report.removed_segments.push(path);
        } else {
            kept.push(id);
        }
        lowest_later_first = lowest_later_first.min(id.first_index);
    }
    kept.reverse();
    Ok(kept)
}

/// Whether the undecodable record at `offset` of the newest segment is the
/// torn end of an unsynced write rather than damage to synced data.
fn is_torn_tail(bytes: &[u8], offset: usize, error: &DecodeError) -> bool {
    if matches!(
        error,
        DecodeError::UnknownRecordType(_)
            | DecodeError::UnknownEntryKind(_)
            | DecodeError::UnknownPurgeFlags(_)
            | DecodeError::BadPayloadLength { .. }
    ) {
        return false; // a whole, checksummed record: not torn
    }
    match next_valid_record(bytes, offset) {
        None => true,
        Some(next) => has_zero_sector(bytes, offset, next),
    }
}

/// The offset of the first valid record after `offset`, searching at every
/// byte.
fn next_valid_record(bytes: &[u8], offset: usize) -> Option<usize> {
    (offset + 1..bytes.len()).find(|&start| {
        plausible_record_start(&bytes[start..]) && decode_record(&bytes[start..]).is_ok()
    })
}

/// Whether a whole 512-byte sector (aligned in the file) within
/// `[from, to)` is all zeros.
fn has_zero_sector(bytes: &[u8], from: usize, to: usize) -> bool {
    const SECTOR: usize = 512;
    let mut start = from.div_ceil(SECTOR) * SECTOR;
    while start + SECTOR <= to {
        if bytes[start..start + SECTOR].iter().all(|&byte| byte == 0) {
            return true;
        }
        start += SECTOR;
    }
    false
}

fn describe(bytes: &[u8], offset: usize, error: &DecodeError) -> String {
    match next_valid_record(bytes, offset) {
        Some(next) => format!("{error}, yet a valid record follows at offset {next}"),
        None => error.to_string(),
    }
}

fn corrupt(path: &Path, offset: u64, reason: String) -> StorageError {
    StorageError::Corruption {
        path: path.to_path_buf(),
        offset,
        reason,
    }
}

/// An index gap met during replay: allowed only if a later purge covers it
/// (the segments before it were removed after that purge).
struct Gap {
    expected: LogIndex,
    found: LogIndex,
    path: PathBuf,
    offset: u32,
}

struct Replay {
    directory: PathBuf,
    index: OffsetIndex,
    cache: EntryCache,
    hard_state: HardState,
    gaps: Vec<Gap>,
}

impl Replay {
    fn apply(
        &mut self,
        record: Record,
        segment: SegmentId,
        path: &Path,
        offset: u32,
    ) -> Result<(), StorageError> {
        let fail = |reason: String| Err(corrupt(path, u64::from(offset), reason));
        match record {
            Record::Entry(entry) => {
                if entry.index < segment.first_index {
                    return fail(format!(
                        "entry {} in a segment whose first index is {}",
                        entry.index, segment.first_index
                    ));
                }
                if entry.index <= self.index.purged().0 {
                    return Ok(()); // in a snapshot already
                }
                let expected = self.index.last().next();
                if entry.index > expected {
                    self.gaps.push(Gap {
                        expected,
                        found: entry.index,
                        path: path.to_path_buf(),
                        offset,
                    });
                    self.index.restart_at(entry.index);
                    self.cache.clear();
                } else if entry.index < expected {
                    self.index.truncate_from(entry.index);
                    self.cache.truncate_from(entry.index);
                }
                if let Some(previous) = self.index.term(entry.index.previous()) {
                    if previous > entry.term {
                        return fail(format!(
                            "entry {} has {} but the entry before it has {previous}",
                            entry.index, entry.term
                        ));
                    }
                }
                self.index
                    .push(entry.index, entry.term, segment.sequence, offset);
                self.cache.push(entry);
                self.cache.evict(LogIndex(u64::MAX));
            }
            Record::HardState(hard_state) => {
                if hard_state.term < self.hard_state.term {
                    return fail(format!(
                        "hard state term goes back from {} to {}",
                        self.hard_state.term, hard_state.term
                    ));
                }
                self.hard_state = hard_state;
            }
            Record::Purge {
                index,
                term,
                keeps_suffix,
            } => {
                if index <= self.index.purged().0 {
                    return Ok(()); // restated by a newer segment, or older
                }
                if keeps_suffix {
                    // Past the end, or below the first live entry across a
                    // gap, there is no entry to check: the segments that
                    // held them were removed after this purge.
                    let found = self.index.term(index);
                    if index >= self.index.first_live()
                        && index <= self.index.last()
                        && found != Some(term)
                    {
                        return fail(format!(
                            "a purge up to {index} of {term} keeps the entries after it, \
                             but the log has {found:?} there"
                        ));
                    }
                    self.cache.purge_to(index);
                } else {
                    self.cache.clear();
                }
                self.index.purge(index, term, keeps_suffix);
            }
        }
        Ok(())
    }

    /// Entries may be missing before a gap only if a later purge covers
    /// them: the log must end up contiguous from the purge point. (A gap
    /// that a purge made irrelevant, by covering it or by replacing the
    /// whole log, is the normal trace of segments removed after a purge.)
    fn check_complete(&self) -> Result<(), StorageError> {
        if self.index.is_contiguous() {
            return Ok(());
        }
        let first_live = self.index.first_live();
        let missing = format!(
            "entries {} to {} are missing",
            self.index.purged().0.next(),
            first_live.previous()
        );
        Err(
            match self.gaps.iter().rev().find(|gap| gap.found == first_live) {
                Some(gap) => corrupt(
                    &gap.path,
                    u64::from(gap.offset),
                    format!(
                        "{missing}: the log jumps from {} to {} here",
                        gap.expected.previous(),
                        gap.found
                    ),
                ),
                None => corrupt(&self.directory, 0, missing),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_sectors_are_found_only_when_whole_and_aligned() {
        let mut bytes = vec![1u8; 2048];
        bytes[600..1100].fill(0);
        assert!(
            !has_zero_sector(&bytes, 0, 2048),
            "no aligned sector is all zero"
        );
        bytes[1024..1536].fill(0);
        assert!(has_zero_sector(&bytes, 700, 1600));
        assert!(!has_zero_sector(&bytes, 700, 1500));
    }
}
