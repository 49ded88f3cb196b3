//! Recovery from damaged files: torn tails are cut (at every possible byte
//! offset), anything else is refused with the file and offset named.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use raft::storage::wal::record::{encode_record, Record};
use raft::storage::{LogStore, StorageError, Wal, WalOptions};
use raft::{Entry, HardState, LogIndex, NodeId, Term};

use super::support::{
    copy_directory, data_end, entry, open, record_offsets, segments, small_options,
};

/// Small segments that end where their last record does: these tests
/// damage files at offsets counted from their end. (Segments with space
/// reserved ahead are tested at the end of this file.)
fn exact_options() -> WalOptions {
    WalOptions {
        preallocate: false,
        ..small_options()
    }
}

/// A closed WAL with entries 1..=count of `size` bytes, appended one by one.
fn wal_with_entries(count: u64, size: usize, options: &WalOptions) -> tempfile::TempDir {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut wal = open(directory.path(), options);
    for index in 1..=count {
        wal.append(vec![entry(index, 1, size)].into())
            .expect("append");
    }
    wal.close().expect("close");
    directory
}

fn all_entries(wal: &Wal) -> Vec<Entry> {
    wal.entries(wal.first_index(), wal.last_index().next())
        .expect("read the whole log")
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(len))
        .expect("truncate");
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset] ^= 0x40;
    fs::write(path, bytes).expect("write");
}

fn expect_corruption(result: Result<Wal, StorageError>, file: &Path, offset: u64) -> String {
    match result {
        Err(error @ StorageError::Corruption { .. }) => {
            let StorageError::Corruption {
                path,
                offset: found,
                ..
            } = &error
            else {
                unreachable!()
            };
            assert_eq!(path, file, "{error}");
            assert_eq!(*found, offset, "{error}");
            let message = error.to_string();
            assert!(message.contains(&file.display().to_string()), "{message}");
            assert!(message.contains(&format!("offset {offset}")), "{message}");
            message
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("expected corruption, but the WAL opened"),
    }
}

#[test]
fn a_torn_last_record_is_cut_at_every_byte_offset() {
    let options = exact_options();
    let pristine = wal_with_entries(30, 150, &options);
    let newest = segments(pristine.path()).pop().expect("a segment");
    let last_record = *record_offsets(&newest).last().expect("a record");
    let file_len = fs::metadata(&newest).expect("metadata").len() as usize;
    let expected: Vec<Entry> = (1..=29).map(|index| entry(index, 1, 150)).collect();
    let mut checked = 0;
    for cut in last_record..file_len {
        let copy = tempfile::tempdir().expect("temporary directory");
        copy_directory(pristine.path(), copy.path());
        let segment = copy
            .path()
            .join("wal")
            .join(newest.file_name().expect("name"));
        set_len(&segment, cut as u64);
        let mut wal = open(copy.path(), &options);
        assert_eq!(wal.last_index(), LogIndex(29), "cut at {cut}");
        assert_eq!(all_entries(&wal), expected, "cut at {cut}");
        let torn = wal.recovery_report().torn_tail.clone();
        if cut == last_record {
            assert_eq!(torn, None, "a cut at a record boundary is a clean end");
        } else {
            let torn = torn.unwrap_or_else(|| panic!("cut at {cut}: no torn tail reported"));
            assert_eq!(torn.path, segment);
            assert_eq!(torn.offset, last_record as u64);
            assert_eq!(torn.discarded_bytes, (cut - last_record) as u64);
        }
        // The file was cut back: appending again and reopening works.
        wal.append(vec![entry(30, 1, 150)].into())
            .expect("append after recovery");
        wal.close().expect("close");
        let wal = open(copy.path(), &options);
        assert_eq!(wal.last_index(), LogIndex(30), "cut at {cut}");
        assert_eq!(wal.recovery_report().torn_tail, None);
        checked += 1;
    }
    assert_eq!(checked, file_len - last_record);
}

#[test]
fn a_torn_hard_state_leaves_the_previous_one() {
    let options = exact_options();
    let directory = tempfile::tempdir().expect("temporary directory");
    let first = HardState {
        term: Term(2),
        voted_for: Some(NodeId(1)),
    };
    {
        let mut wal = open(directory.path(), &options);
        wal.append(vec![entry(1, 1, 10)].into()).expect("append");
        wal.save_hard_state(first).expect("save");
        wal.save_hard_state(HardState {
            term: Term(3),
            voted_for: None,
        })
        .expect("save");
    }
    let newest = segments(directory.path()).pop().expect("a segment");
    let len = fs::metadata(&newest).expect("metadata").len();
    set_len(&newest, len - 5);
    let wal = open(directory.path(), &options);
    assert_eq!(wal.hard_state(), first);
    assert_eq!(wal.last_index(), LogIndex(1));
}

#[test]
fn a_zero_filled_tail_is_unused_space_not_a_torn_record() {
    let options = exact_options();
    let directory = wal_with_entries(5, 100, &options);
    let newest = segments(directory.path()).pop().expect("a segment");
    let len = fs::metadata(&newest).expect("metadata").len();
    // The file grew but nothing was written there (or the writer reserved
    // the space): zeros from a record boundary to the end are the end of
    // the log, not a record cut short.
    set_len(&newest, len + 3000);
    let mut wal = open(directory.path(), &options);
    assert_eq!(wal.last_index(), LogIndex(5));
    assert_eq!(wal.recovery_report().torn_tail, None);
    // The next append goes right after the last record, over the zeros.
    wal.append(vec![entry(6, 1, 100)].into()).expect("append");
    wal.close().expect("close");
    assert_eq!(data_end(&newest), len + record_len(&entry(6, 1, 100)));
    let wal = open(directory.path(), &options);
    assert_eq!(
        all_entries(&wal),
        (1..=6)
            .map(|index| entry(index, 1, 100))
            .collect::<Vec<_>>()
    );
    assert_eq!(wal.recovery_report().torn_tail, None);
}

fn record_len(entry: &Entry) -> u64 {
    let mut bytes = Vec::new();
    encode_record(&Record::Entry(entry.clone()), &mut bytes);
    bytes.len() as u64
}

#[test]
fn an_unsynced_write_whose_pages_landed_out_of_order_is_torn() {
    // One batch: a large entry, then a small one. The page in the middle of
    // the large entry never reached the disk (zeros), the later one did.
    let options = WalOptions {
        preallocate: false,
        ..WalOptions::new(raft::ClusterId(1), NodeId(1))
    };
    let directory = wal_with_entries(3, 100, &options);
    let newest = segments(directory.path()).pop().expect("a segment");
    let mut bytes = fs::read(&newest).expect("read");
    let batch_start = bytes.len();
    encode_record(&Record::Entry(entry(4, 1, 6000)), &mut bytes);
    encode_record(&Record::Entry(entry(5, 1, 10)), &mut bytes);
    let sector = (batch_start / 512 + 2) * 512;
    bytes[sector..sector + 512].fill(0);
    fs::write(&newest, &bytes).expect("write");
    let wal = open(directory.path(), &options);
    assert_eq!(wal.last_index(), LogIndex(3));
    let torn = wal.recovery_report().torn_tail.clone().expect("torn tail");
    assert_eq!(torn.offset, batch_start as u64);
}

#[test]
fn damage_before_the_tail_is_corruption_naming_file_and_offset() {
    let options = exact_options();
    let directory = wal_with_entries(30, 150, &options);
    let newest = segments(directory.path()).pop().expect("a segment");
    let offsets = record_offsets(&newest);
    assert!(offsets.len() >= 4, "the newest segment has a few records");
    let damaged = offsets[offsets.len() - 3];
    flip_byte(&newest, damaged + 20);
    let message = expect_corruption(
        Wal::open(directory.path(), options),
        &newest,
        damaged as u64,
    );
    assert!(message.contains("checksum mismatch"), "{message}");
    assert!(message.contains("refusing to start"), "{message}");
}

#[test]
fn damage_to_the_last_record_of_an_older_segment_is_corruption() {
    let options = exact_options();
    let directory = wal_with_entries(60, 150, &options);
    let all = segments(directory.path());
    assert!(all.len() >= 3, "several segments");
    let older = &all[all.len() - 2];
    let last = *record_offsets(older).last().expect("a record");
    flip_byte(older, last + 15);
    expect_corruption(
        Wal::open(directory.path(), options.clone()),
        older,
        last as u64,
    );
    // Cutting an older segment short is corruption too, not a torn tail.
    let directory = wal_with_entries(60, 150, &options);
    let all = segments(directory.path());
    let older = &all[all.len() - 2];
    let last = *record_offsets(older).last().expect("a record");
    set_len(older, last as u64 + 7);
    expect_corruption(Wal::open(directory.path(), options), older, last as u64);
}

#[test]
fn garbage_after_the_tail_that_hides_valid_records_is_corruption() {
    // A damaged length field makes a record look torn, but valid records
    // follow: that is corruption, not a crash.
    let options = exact_options();
    let directory = wal_with_entries(30, 150, &options);
    let newest = segments(directory.path()).pop().expect("a segment");
    let offsets = record_offsets(&newest);
    let damaged = offsets[offsets.len() - 2];
    let mut bytes = fs::read(&newest).expect("read");
    bytes[damaged..damaged + 4].copy_from_slice(&u32::MAX.to_le_bytes()[..]);
    fs::write(&newest, bytes).expect("write");
    let message = expect_corruption(
        Wal::open(directory.path(), options),
        &newest,
        damaged as u64,
    );
    assert!(message.contains("a valid record follows"), "{message}");
}

#[test]
fn a_missing_segment_is_corruption() {
    let options = exact_options();
    let directory = wal_with_entries(60, 150, &options);
    let all = segments(directory.path());
    assert!(all.len() >= 3);
    fs::remove_file(&all[1]).expect("remove");
    let error = Wal::open(directory.path(), options).expect_err("a gap must be refused");
    let message = error.to_string();
    assert!(
        matches!(error, StorageError::Corruption { .. }),
        "{message}"
    );
    assert!(message.contains("are missing"), "{message}");
    assert!(message.contains(&all[2].display().to_string()), "{message}");
}

#[test]
fn a_record_from_a_newer_version_is_refused_even_at_the_tail() {
    let options = exact_options();
    let directory = wal_with_entries(3, 10, &options);
    let newest = segments(directory.path()).pop().expect("a segment");
    let mut bytes = fs::read(&newest).expect("read");
    let at = bytes.len();
    // A whole, checksummed record of an unknown type.
    let payload = [1u8, 2, 3];
    let checksum = crc32c::crc32c_append(crc32c::crc32c(&[42]), &payload);
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&[42, 0, 0, 0]);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes.extend_from_slice(&payload);
    fs::write(&newest, bytes).expect("write");
    let message = expect_corruption(Wal::open(directory.path(), options), &newest, at as u64);
    assert!(message.contains("newer version"), "{message}");
}

#[test]
fn a_half_created_segment_is_removed() {
    let options = exact_options();
    let directory = wal_with_entries(3, 10, &options);
    let leftover: PathBuf = directory
        .path()
        .join("wal")
        .join("00000000000000000099-00000000000000000004.wal.tmp");
    fs::write(&leftover, b"RRAFT").expect("write");
    let wal = open(directory.path(), &options);
    assert_eq!(wal.last_index(), LogIndex(3));
    assert_eq!(
        wal.recovery_report().removed_temporary_files,
        vec![leftover.clone()]
    );
    assert!(!leftover.exists());
}

#[test]
fn a_superseded_segment_left_by_a_crash_replays_correctly_and_is_removed() {
    let options = exact_options();
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut wal = open(directory.path(), &options);
    for index in 1..=60 {
        wal.append(vec![entry(index, 1, 150)].into())
            .expect("append");
    }
    let before = segments(directory.path());
    let newest = before.last().expect("segment").clone();
    let saved = fs::read(&newest).expect("read");
    // A new leader overwrites from index 5: the later segments become
    // obsolete and are removed once the overwrite is durable.
    wal.append(vec![entry(5, 2, 20), entry(6, 2, 20)].into())
        .expect("append");
    wal.close().expect("close");
    assert!(!newest.exists(), "the obsolete segment was removed");
    // As if the crash came before the removal.
    fs::write(&newest, saved).expect("restore");
    let wal = open(directory.path(), &options);
    assert_eq!(wal.last_index(), LogIndex(6));
    assert_eq!(wal.term(LogIndex(5)).ok(), Some(Term(2)));
    assert_eq!(wal.term(LogIndex(4)).ok(), Some(Term(1)));
    assert!(wal.recovery_report().removed_segments.contains(&newest));
    assert!(!newest.exists());
}

#[test]
fn a_segment_of_a_newer_format_is_refused() {
    let options = exact_options();
    let directory = wal_with_entries(3, 10, &options);
    let newest = segments(directory.path()).pop().expect("a segment");
    let mut bytes = fs::read(&newest).expect("read");
    bytes[8] = 2; // format version
    let checksum = crc32c::crc32c(&bytes[0..32]);
    bytes[32..36].copy_from_slice(&checksum.to_le_bytes());
    fs::write(&newest, bytes).expect("write");
    match Wal::open(directory.path(), options) {
        Err(StorageError::UnsupportedVersion {
            found: 2,
            supported: 1,
            ..
        }) => {}
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn segments_take_their_full_size_ahead_and_full_ones_are_cut_to_their_last_record() {
    let options = small_options();
    assert!(options.preallocate, "the default reserves space ahead");
    let directory = wal_with_entries(60, 150, &options);
    let files = segments(directory.path());
    assert!(
        files.len() >= 3,
        "the entries fill several segments: {files:?}"
    );
    let (newest, older) = files.split_last().expect("segments");
    for segment in older {
        let len = fs::metadata(segment).expect("metadata").len();
        assert_eq!(
            len,
            data_end(segment),
            "{} ends at its last record",
            segment.display()
        );
    }
    let reserved = fs::metadata(newest).expect("metadata").len();
    assert_eq!(reserved, options.segment_size_bytes);
    assert!(data_end(newest) < reserved);

    // Reopened: every entry, no torn tail, and appends go on after the
    // last record and survive another reopen.
    let mut wal = open(directory.path(), &options);
    assert_eq!(wal.recovery_report().torn_tail, None);
    let expected: Vec<Entry> = (1..=60).map(|index| entry(index, 1, 150)).collect();
    assert_eq!(all_entries(&wal), expected);
    wal.append(vec![entry(61, 1, 150)].into()).expect("append");
    wal.close().expect("close");
    let wal = open(directory.path(), &options);
    assert_eq!(wal.last_index(), LogIndex(61));
    assert_eq!(wal.recovery_report().torn_tail, None);

    // Opened without reserving, the same files read the same.
    drop(wal);
    let exact = open(directory.path(), &exact_options());
    assert_eq!(exact.last_index(), LogIndex(61));
}

#[test]
fn a_torn_record_in_reserved_space_is_cut_and_the_space_reserved_again() {
    let options = small_options();
    let directory = wal_with_entries(5, 100, &options);
    let newest = segments(directory.path()).pop().expect("a segment");
    let end = data_end(&newest);
    // Half of a sixth record landed in the reserved zeros before a crash.
    let mut record = Vec::new();
    encode_record(&Record::Entry(entry(6, 1, 100)), &mut record);
    let mut bytes = fs::read(&newest).expect("read");
    let half = record.len() / 2;
    bytes[end as usize..end as usize + half].copy_from_slice(&record[..half]);
    fs::write(&newest, &bytes).expect("write");

    let mut wal = open(directory.path(), &options);
    assert_eq!(wal.last_index(), LogIndex(5));
    let torn = wal.recovery_report().torn_tail.clone().expect("torn tail");
    assert_eq!(torn.offset, end);
    assert_eq!(
        fs::metadata(&newest).expect("metadata").len(),
        options.segment_size_bytes,
        "the cut segment is given its reserved size again"
    );
    wal.append(vec![entry(6, 1, 100)].into()).expect("append");
    wal.close().expect("close");
    let wal = open(directory.path(), &options);
    assert_eq!(wal.recovery_report().torn_tail, None);
    assert_eq!(
        all_entries(&wal),
        (1..=6)
            .map(|index| entry(index, 1, 100))
            .collect::<Vec<_>>()
    );
}
