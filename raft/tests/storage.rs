//! Integration tests of the on-disk storage: conformance, recovery from
//! torn and corrupt files (and arbitrary ones), data directory checks and
//! group commit. One test binary, for fast linking; the SIGKILL crash test is
//! `wal_crash.rs`.

mod storage {
    pub mod support;

    mod arbitrary_segments;
    mod conformance;
    mod data_directory;
    mod group_commit;
    mod recovery;
}
