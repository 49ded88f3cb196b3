//! InstallSnapshot streams a node must not trust: refused before they take
//! the receive slot, cut off at the announced size and the node's limit,
//! ended when idle, taken over by a newer transfer; and a snapshot the core
//! does not need never becomes the node's snapshot.

use std::path::Path;
use std::time::Duration;

use raft::node::metrics::RefusalLabels;
use raft::node::NodeOptions;
use raft::storage::SnapshotStore;
use raft::transport::convert::membership_to_wire;
use raft::{LogIndex, Membership, NodeId, Term};
use raft_proto::raft as wire;
use raft_proto::raft::raft_peer_client::RaftPeerClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::support::*;

/// The largest snapshot the nodes here take.
const MAX_RECEIVE_BYTES: u64 = 64 << 10;

fn small_limit(options: &mut NodeOptions) {
    options.snapshots.max_receive_bytes = MAX_RECEIVE_BYTES;
}

/// A leader, one of its followers, and the leader's term.
async fn leader_and_follower(cluster: &Cluster) -> (NodeId, NodeId, Term) {
    propose(cluster, "first").await;
    let leader = cluster.leader().await;
    let follower = *cluster
        .running
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    (leader, follower, cluster.node(leader).status().term)
}

/// A header as `from` sends it to `to` in `term`.
fn header(from: NodeId, to: NodeId, term: Term) -> wire::Header {
    wire::Header {
        cluster_id: 42,
        from: from.0,
        to: to.0,
        term: term.0,
    }
}

/// The first chunk of a transfer of a snapshot at `index` of `term`
/// announcing `size` bytes.
fn first_chunk(
    header: wire::Header,
    index: LogIndex,
    term: Term,
    size: u64,
    data: Vec<u8>,
    done: bool,
) -> wire::InstallSnapshotChunk {
    let voters = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    wire::InstallSnapshotChunk {
        header: Some(header),
        metadata: Some(wire::SnapshotMetadata {
            last_included_index: index.0,
            last_included_term: term.0,
            configuration: Some(membership_to_wire(&voters)),
            size,
            checksum: 0,
        }),
        offset: 0,
        data: data.into(),
        done,
    }
}

/// A whole transfer in one chunk of ten bytes.
fn ten_bytes(header: wire::Header, index: LogIndex, term: Term) -> wire::InstallSnapshotChunk {
    first_chunk(header, index, term, 10, vec![0; 10], true)
}

/// A chunk after the first: `length` zero bytes at `offset`.
fn later_chunk(
    header: wire::Header,
    offset: u64,
    length: usize,
    done: bool,
) -> wire::InstallSnapshotChunk {
    wire::InstallSnapshotChunk {
        header: Some(header),
        metadata: None,
        offset,
        data: vec![0; length].into(),
        done,
    }
}

/// Opens a transfer to `to`: chunks go on the sender; the answer comes
/// from the task.
async fn open_transfer(
    cluster: &Cluster,
    to: NodeId,
) -> (
    mpsc::Sender<wire::InstallSnapshotChunk>,
    tokio::task::JoinHandle<Result<u64, Status>>,
) {
    let address = format!("http://{}", cluster.members[&to]);
    let mut client = RaftPeerClient::connect(address).await.expect("connect");
    let (chunks, stream) = mpsc::channel(4);
    let answer = tokio::spawn(async move {
        client
            .install_snapshot(ReceiverStream::new(stream))
            .await
            .map(|stored| stored.into_inner().last_included_index)
    });
    (chunks, answer)
}

/// A transfer whose first chunk announces 100 bytes and brings 10; no more
/// come while the sender is kept.
async fn stalled_transfer(
    cluster: &Cluster,
    to: NodeId,
    header: wire::Header,
) -> (
    mpsc::Sender<wire::InstallSnapshotChunk>,
    tokio::task::JoinHandle<Result<u64, Status>>,
) {
    let (sender, answer) = open_transfer(cluster, to).await;
    let term = Term(header.term);
    let chunk = first_chunk(header, LogIndex(1_000), term, 100, vec![0; 10], false);
    sender.send(chunk).await.expect("send");
    (sender, answer)
}

/// How a transfer was refused.
async fn refusal(answer: tokio::task::JoinHandle<Result<u64, Status>>) -> Status {
    tokio::time::timeout(LIMIT, answer)
        .await
        .expect("answered")
        .expect("joined")
        .expect_err("refused")
}

/// The answer to a transfer of `chunks`, the stream then closed.
async fn transfer(
    cluster: &Cluster,
    to: NodeId,
    chunks: Vec<wire::InstallSnapshotChunk>,
) -> Result<u64, Status> {
    let (sender, answer) = open_transfer(cluster, to).await;
    for chunk in chunks {
        if sender.send(chunk).await.is_err() {
            break;
        }
    }
    drop(sender);
    tokio::time::timeout(LIMIT, answer)
        .await
        .expect("answered")
        .expect("joined")
}

/// The files in `node`'s snapshot directory.
fn snapshot_files(cluster: &Cluster, node: NodeId) -> Vec<String> {
    let directory = cluster.data(node).join("snapshots");
    let mut names: Vec<String> = std::fs::read_dir(&directory)
        .map(|entries| {
            entries
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits (bounded) until `node`'s snapshot directory holds nothing.
async fn snapshot_directory_empties(cluster: &Cluster, node: NodeId) {
    tokio::time::timeout(LIMIT, async {
        while !snapshot_files(cluster, node).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("left behind: {:?}", snapshot_files(cluster, node)));
}

/// The bytes of a real snapshot file of `commands` at `index` of `term`.
fn snapshot_bytes(directory: &Path, index: LogIndex, term: Term) -> Vec<u8> {
    let store = SnapshotStore::open(directory).expect("store");
    let mut journal = Journal {
        commands: vec![b"forged".to_vec()],
        applied: index,
    };
    let file = store
        .save(
            &mut journal,
            term,
            Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
        )
        .expect("save");
    std::fs::read(file.path()).expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_does_not_belong_is_refused_before_anything_is_written() {
    let cluster = Cluster::adjusted(3, None, small_limit).await;
    let (leader, follower, term) = leader_and_follower(&cluster).await;
    let valid = header(leader, follower, term);
    let index = LogIndex(1_000);
    let cases = [
        (
            "another cluster",
            ten_bytes(
                wire::Header {
                    cluster_id: 7,
                    ..valid
                },
                index,
                term,
            ),
            Code::PermissionDenied,
        ),
        (
            "a sender that is no member",
            ten_bytes(wire::Header { from: 99, ..valid }, index, term),
            Code::PermissionDenied,
        ),
        (
            "a term past the limit",
            ten_bytes(
                wire::Header {
                    term: 1 << 62,
                    ..valid
                },
                index,
                term,
            ),
            Code::InvalidArgument,
        ),
        (
            "a snapshot term above the sender's",
            ten_bytes(valid, index, Term(term.0 + 1)),
            Code::InvalidArgument,
        ),
        (
            "more bytes announced than the node takes",
            first_chunk(
                valid,
                index,
                term,
                MAX_RECEIVE_BYTES + 1,
                vec![0; 10],
                false,
            ),
            Code::ResourceExhausted,
        ),
        (
            "nothing announced",
            first_chunk(valid, index, term, 0, Vec::new(), true),
            Code::ResourceExhausted,
        ),
        (
            "a first chunk past offset 0",
            wire::InstallSnapshotChunk {
                offset: 5,
                ..first_chunk(valid, index, term, 10, vec![0; 5], true)
            },
            Code::InvalidArgument,
        ),
    ];
    for (case, chunk, code) in cases {
        let refused = transfer(&cluster, follower, vec![chunk])
            .await
            .expect_err(case);
        assert_eq!(refused.code(), code, "{case}: {refused:?}");
        assert_eq!(
            snapshot_files(&cluster, follower),
            Vec::<String>::new(),
            "{case}"
        );
    }
    let refused = cluster
        .node(follower)
        .metrics()
        .peer_messages_refused
        .get_or_create(&RefusalLabels {
            reason: "wrong_cluster".to_string(),
        })
        .get();
    assert!(refused >= 1, "counted as a refused peer stream: {refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_byte_beyond_the_announced_size_is_kept() {
    let cluster = Cluster::adjusted(3, None, small_limit).await;
    let (leader, follower, term) = leader_and_follower(&cluster).await;
    let valid = header(leader, follower, term);
    // Announces one byte, then sends more than the node's limit.
    let mut chunks = vec![first_chunk(
        valid,
        LogIndex(1_000),
        term,
        1,
        vec![0; 1],
        false,
    )];
    for offset in (1..4 * MAX_RECEIVE_BYTES).step_by(4096) {
        chunks.push(later_chunk(valid, offset, 4096, false));
    }
    let refused = transfer(&cluster, follower, chunks)
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::DataLoss, "{refused:?}");
    assert!(
        refused.message().contains("announced 1 bytes"),
        "{refused:?}"
    );
    snapshot_directory_empties(&cluster, follower).await;

    // A chunk whose header differs from the first's ends the transfer.
    let chunks = vec![
        first_chunk(valid, LogIndex(1_000), term, 20, vec![0; 10], false),
        later_chunk(
            wire::Header {
                term: term.0 + 5,
                ..valid
            },
            10,
            10,
            true,
        ),
    ];
    let refused = transfer(&cluster, follower, chunks)
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    snapshot_directory_empties(&cluster, follower).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_transfer_ends_and_a_newer_one_takes_its_place() {
    let cluster = Cluster::new(3).await;
    let (leader, follower, term) = leader_and_follower(&cluster).await;
    let valid = header(leader, follower, term);

    // Sends its first chunk and then nothing: ended after ten election
    // timeouts (10 ms ticks, at most 20 ticks: 2 s).
    let (_idle, idle_answer) = stalled_transfer(&cluster, follower, valid).await;
    let started = std::time::Instant::now();
    let ended = refusal(idle_answer).await;
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    snapshot_directory_empties(&cluster, follower).await;

    // One holding the slot gives way to a newer one of the same term.
    let (stalled, stalled_answer) = stalled_transfer(&cluster, follower, valid).await;
    let scratch = tempfile::tempdir().expect("temporary directory");
    let bytes = snapshot_bytes(scratch.path(), LogIndex(1), term);
    let size = bytes.len() as u64;
    let stored = transfer(
        &cluster,
        follower,
        vec![first_chunk(valid, LogIndex(1), term, size, bytes, true)],
    )
    .await
    .expect("the newer transfer completes");
    assert_eq!(stored, 1);
    let replaced = refusal(stalled_answer).await;
    assert_eq!(replaced.code(), Code::Aborted, "{replaced:?}");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_snapshot_the_core_does_not_need_never_becomes_the_nodes() {
    let cluster = Cluster::new(3).await;
    let (leader, follower, term) = leader_and_follower(&cluster).await;
    // Entry 1 is committed on every node: the follower holds what a
    // snapshot at 1 covers, so its core refuses the snapshot.
    let scratch = tempfile::tempdir().expect("temporary directory");
    let bytes = snapshot_bytes(scratch.path(), LogIndex(1), term);
    let size = bytes.len() as u64;
    let stored = transfer(
        &cluster,
        follower,
        vec![first_chunk(
            header(leader, follower, term),
            LogIndex(1),
            term,
            size,
            bytes,
            true,
        )],
    )
    .await
    .expect("received in full");
    assert_eq!(stored, 1);
    snapshot_directory_empties(&cluster, follower).await;
    assert_eq!(
        cluster.node(follower).metrics().snapshots_installed.get(),
        0
    );
    // Its state is its own log's.
    let commands = cluster
        .node(follower)
        .read_local(|journal| journal.commands.clone());
    assert!(!commands.contains(&b"forged".to_vec()), "{commands:?}");
}
