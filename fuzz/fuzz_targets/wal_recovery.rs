//! Recovery of a WAL whose segment holds arbitrary bytes after a valid
//! header: opening returns a WAL whose log reads back consistently, or an
//! error; it never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use raft::testing::{check_recovered_log, open_wal_with_records};

fuzz_target!(|records: &[u8]| {
    let directory = tempfile::tempdir().expect("temporary directory");
    if let Ok(wal) = open_wal_with_records(directory.path(), records) {
        check_recovered_log(&wal);
        wal.close().expect("close the recovered WAL");
    }
});
