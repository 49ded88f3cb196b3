//! A node whose event loop, applier, WAL writer or snapshot writer panics,
//! or whose WAL fails a write, stops whole, with a non-zero exit status and
//! one line saying why: never a half-dead process that keeps its port and
//! answers nothing useful.

use std::os::unix::process::ExitStatusExt as _;
use std::time::Duration;

use raft_client::run::PANIC_EXIT_STATUS;
use raft_proto::etcd::etcdserverpb::PutRequest;

use crate::support::cluster::Cluster;
use crate::support::requests::put_request;

/// How long a node may take to notice its dead part and exit.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

async fn panics_stop_the_process(point: &str) {
    let mut cluster = Cluster::new(1);
    // A snapshot after every applied entry, so that the snapshot writer
    // runs right after the first write.
    cluster.start_node_with(
        1,
        &["--snapshot-count", "1", "--snapshot-log-growth-ratio", "0"],
        &[("RUSTYRAFT_INJECT_PANIC", point)],
    );
    cluster.wait_for_leader().await;
    let mut kv = cluster.clients(1).kv;
    // The write arms the injected panic; its answer may never come.
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        kv.put(PutRequest {
            ..put_request("doomed", "value")
        }),
    )
    .await;
    let status = cluster
        .wait_for_exit(1, EXIT_WITHIN)
        .unwrap_or_else(|| panic!("a node whose {point} panicked is still running"));
    assert_eq!(
        status.code(),
        Some(PANIC_EXIT_STATUS),
        "exit status after a panic in the {point}: {status:?} (signal {:?})",
        status.signal()
    );
    let log = cluster.log(1);
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("the node stops"))
        .collect();
    assert_eq!(lines.len(), 1, "one line says why: {log}");
    assert!(
        lines[0].contains(&format!("injected panic in the {point}")),
        "{}",
        lines[0]
    );
    assert!(
        tokio::net::TcpStream::connect(&cluster.node(1).address)
            .await
            .is_err(),
        "the port is closed once the process is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_event_loop_stops_the_process() {
    panics_stop_the_process("event_loop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_applier_stops_the_process() {
    panics_stop_the_process("applier").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_wal_writer_stops_the_process() {
    panics_stop_the_process("wal_writer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_snapshot_writer_stops_the_process() {
    panics_stop_the_process("snapshot_writer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wal_write_stops_an_otherwise_idle_node() {
    // The only write fails on disk; nothing else would ever touch the WAL.
    let mut cluster = Cluster::new(1);
    cluster.start_node_with(1, &[], &[("RUSTYRAFT_INJECT_PANIC", "wal_io_error")]);
    cluster.wait_for_leader().await;
    let mut kv = cluster.clients(1).kv;
    let answer = tokio::time::timeout(
        Duration::from_secs(3),
        kv.put(put_request("doomed", "value")),
    )
    .await;
    assert!(
        !matches!(answer, Ok(Ok(_))),
        "a write that never reached the disk is not acknowledged: {answer:?}"
    );
    let status = cluster
        .wait_for_exit(1, EXIT_WITHIN)
        .expect("a node whose WAL failed is still running");
    assert_eq!(status.code(), Some(1), "{status:?}");
    let log = cluster.log(1);
    assert!(
        log.contains("the WAL failed") && log.contains("injected I/O error"),
        "{log}"
    );
}
