//! Helpers shared by the storage tests.

use std::path::{Path, PathBuf};

use raft::storage::wal::record::decode_record;
use raft::storage::wal::segment::{SegmentId, SEGMENT_HEADER_BYTES};
use raft::storage::{ClusterId, Wal, WalOptions};
use raft::{Entry, EntryPayload, LogIndex, NodeId, Term};

/// Options with small segments, so that tests cross segment boundaries.
pub fn small_options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 4096,
        cache_size_bytes: 2048,
        ..WalOptions::new(ClusterId(1), NodeId(1))
    }
}

pub fn open(directory: &Path, options: &WalOptions) -> Wal {
    Wal::open(directory, options.clone())
        .unwrap_or_else(|error| panic!("opening {}: {error}", directory.display()))
}

pub fn entry(index: u64, term: u64, size: usize) -> Entry {
    let mut payload = format!("{index}/{term}:").into_bytes();
    payload.resize(size.max(payload.len()), b'x');
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Command(payload.into()),
    }
}

/// The segment files of a data directory, in sequence order.
pub fn segments(data_directory: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(SegmentId, PathBuf)> = std::fs::read_dir(data_directory.join("wal"))
        .expect("list wal directory")
        .filter_map(|item| {
            let path = item.expect("directory entry").path();
            let name = path.file_name()?.to_str()?.to_string();
            Some((SegmentId::parse_file_name(&name)?, path))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, path)| path).collect()
}

/// The offsets of the records in a segment file (up to the zeros of space
/// reserved ahead, if any).
pub fn record_offsets(segment: &Path) -> Vec<usize> {
    records(segment).0
}

/// Where the last record of a segment file ends.
pub fn data_end(segment: &Path) -> u64 {
    records(segment).1 as u64
}

fn records(segment: &Path) -> (Vec<usize>, usize) {
    let bytes = std::fs::read(segment).expect("read segment");
    let mut offsets = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset < bytes.len() && bytes[offset..].iter().any(|&byte| byte != 0) {
        let (_, len) = decode_record(&bytes[offset..]).expect("a valid record");
        offsets.push(offset);
        offset += len;
    }
    (offsets, offset)
}

/// Copies a data directory (without its lock holder) to `to`.
pub fn copy_directory(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for item in std::fs::read_dir(from).expect("list") {
        let path = item.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_directory(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}
