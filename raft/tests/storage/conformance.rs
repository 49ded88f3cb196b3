//! The WAL runs the same conformance suite as the in-memory store, in
//! several configurations: defaults, tiny segments, and no cache (every
//! durable entry read back from disk).

use std::cell::RefCell;

use raft::storage::{ClusterId, Wal, WalOptions};
use raft::testing::{run_log_store_reopen_suite, run_log_store_suite};
use raft::NodeId;
use tempfile::TempDir;

fn configurations() -> Vec<(&'static str, WalOptions)> {
    let defaults = WalOptions::new(ClusterId(9), NodeId(2));
    vec![
        ("defaults", defaults.clone()),
        (
            "small segments",
            WalOptions {
                segment_size_bytes: 4096,
                ..defaults.clone()
            },
        ),
        (
            "small segments, no cache",
            WalOptions {
                segment_size_bytes: 4096,
                cache_size_bytes: 0,
                ..defaults
            },
        ),
    ]
}

/// Keeps the temporary directories alive until the suite ends.
struct Directories(RefCell<Vec<TempDir>>);

impl Directories {
    fn new() -> Directories {
        Directories(RefCell::new(Vec::new()))
    }

    fn make(&self, options: &WalOptions) -> Wal {
        let directory = tempfile::tempdir().expect("temporary directory");
        let wal = Wal::open(directory.path(), options.clone()).expect("open");
        self.0.borrow_mut().push(directory);
        wal
    }
}

#[test]
fn the_wal_passes_the_log_store_suite() {
    for (name, options) in configurations() {
        eprintln!("configuration: {name}");
        let directories = Directories::new();
        run_log_store_suite(|| directories.make(&options));
    }
}

#[test]
fn the_wal_passes_the_reopen_suite() {
    for (name, options) in configurations() {
        eprintln!("configuration: {name}");
        let directories = Directories::new();
        run_log_store_reopen_suite(
            || directories.make(&options),
            |wal: Wal| {
                let directory = wal.data_directory().to_path_buf();
                wal.close().expect("close");
                Wal::open(&directory, options.clone()).expect("reopen")
            },
        );
    }
}
