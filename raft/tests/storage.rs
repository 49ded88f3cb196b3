//! Integration tests of the on-disk storage: conformance, recovery from
//! torn and corrupt files, data directory checks, group commit, and
//! snapshots (store and damage). One test binary, for fast linking; the SIGKILL crash test is
//! `wal_crash.rs`.

mod storage {
    pub mod support;

    mod conformance;
    mod data_directory;
    mod group_commit;
    mod recovery;
    mod snapshot_store;
    pub mod snapshot_support;
}
