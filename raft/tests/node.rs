//! End-to-end tests of the tokio driver: real nodes with the WAL on disk and
//! the gRPC transport on 127.0.0.1, in one process. One test binary, for
//! fast linking.

mod node {
    pub mod support;

    mod cluster;
    mod snapshot_refusals;
    mod stalls;
}
