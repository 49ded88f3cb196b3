//! Integration tests of the on-disk storage: conformance, recovery from
//! torn, corrupt and arbitrary files, data directory checks, group commit,
//! and snapshots (store, damage, transfer, size). One test binary, for fast
//! linking; the SIGKILL crash test is
//! `wal_crash.rs`.

mod storage {
    pub mod support;

    mod arbitrary_segments;
    mod conformance;
    mod data_directory;
    mod group_commit;
    mod recovery;
    mod snapshot_large;
    mod snapshot_store;
    pub mod snapshot_support;
    mod snapshot_transfer;
}
