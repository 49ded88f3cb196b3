//! What a node refuses: bad requests (each with its status code, writing
//! nothing), messages and data of another cluster, and bad flags.

use std::time::Duration;

use raft_client::connect::endpoints::channel;
use raft_proto::etcd::etcdserverpb::lease_client::LeaseClient;
use raft_proto::etcd::etcdserverpb::watch_client::WatchClient;
use raft_proto::etcd::etcdserverpb::watch_request::RequestUnion;
use raft_proto::etcd::etcdserverpb::{
    request_op, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::support::cluster::{Cluster, TOKEN};
use crate::support::process::run_to_exit;
use crate::support::requests::{
    everything_request, get_request, put, put_request, range, revision_of,
};
use crate::support::{eventually, PATIENCE};

/// etcd's default request limit is 1.5 MiB; these sit either side of it.
const ONE_MIB: usize = 1 << 20;
const TWO_MIB: usize = 2 << 20;

/// Asserts that `result` failed with `code`.
fn assert_code<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    what: &str,
) {
    match result {
        Err(status) => assert_eq!(status.code(), code, "{what}: {status}"),
        Ok(response) => panic!("{what} was accepted: {:?}", response.into_inner()),
    }
}

fn txn_with(operation: request_op::Request) -> TxnRequest {
    TxnRequest {
        compare: Vec::new(),
        success: vec![RequestOp {
            request: Some(operation),
        }],
        failure: Vec::new(),
    }
}

#[tokio::test]
async fn bad_requests_get_their_status_code_and_write_nothing() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower_of(leader);
    let mut kv = cluster.clients(leader).kv;
    put(&mut kv, "existing", "value").await;
    // Just under the limit is fine.
    let big = kv
        .put(PutRequest {
            value: vec![b'x'; ONE_MIB],
            ..put_request("one-mib", "")
        })
        .await;
    assert!(big.is_ok(), "a 1 MiB value is under the limit: {big:?}");
    let before = cluster.status(leader).await.expect("status");
    let revision = revision_of(&range(&mut kv, everything_request()).await.header);

    for id in [leader, follower] {
        let clients = cluster.clients(id);
        let mut kv = clients.kv;
        let what = |request: &str| format!("{request} through node {id}");
        use Code::{InvalidArgument, OutOfRange, Unimplemented};
        assert_code(
            kv.put(put_request("", "value")).await,
            InvalidArgument,
            &what("a put of an empty key"),
        );
        assert_code(
            kv.range(get_request("")).await,
            InvalidArgument,
            &what("a range of an empty key"),
        );
        assert_code(
            kv.range(RangeRequest {
                range_end: b"a".to_vec(),
                ..get_request("b")
            })
            .await,
            InvalidArgument,
            &what("a range whose end is before its key"),
        );
        assert_code(
            kv.delete_range(DeleteRangeRequest {
                key: b"existing".to_vec(),
                range_end: b"a".to_vec(),
                prev_kv: false,
            })
            .await,
            InvalidArgument,
            &what("a delete whose end is before its key"),
        );
        assert_code(
            kv.put(PutRequest {
                value: vec![b'x'; TWO_MIB],
                ..put_request("two-mib", "")
            })
            .await,
            InvalidArgument,
            &what("a put of a 2 MiB value"),
        );
        assert_code(
            kv.txn(txn_with(request_op::Request::RequestPut(PutRequest {
                value: vec![b'x'; TWO_MIB],
                ..put_request("two-mib", "")
            })))
            .await,
            InvalidArgument,
            &what("a txn putting a 2 MiB value"),
        );
        assert_code(
            kv.txn(txn_with(request_op::Request::RequestPut(put_request(
                "", "value",
            ))))
            .await,
            InvalidArgument,
            &what("a txn putting an empty key"),
        );
        assert_code(
            kv.range(RangeRequest {
                revision: i64::MAX,
                ..get_request("existing")
            })
            .await,
            OutOfRange,
            &what("a read at a future revision"),
        );
        assert_code(
            kv.compact(CompactionRequest {
                revision: i64::MAX,
                physical: false,
            })
            .await,
            OutOfRange,
            &what("a compaction at a future revision"),
        );
        assert_code(
            kv.put(PutRequest {
                lease: 7,
                ..put_request("leased", "value")
            })
            .await,
            Unimplemented,
            &what("a put with a lease"),
        );
        assert_code(
            LeaseClient::new(channel(&clients.endpoint))
                .lease_grant(LeaseGrantRequest { ttl: 10, id: 0 })
                .await,
            Unimplemented,
            &what("LeaseGrant"),
        );
        // A watch of a backwards range is created and cancelled at once,
        // with etcd's reason.
        let backwards = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"b".to_vec(),
                range_end: b"a".to_vec(),
                ..WatchCreateRequest::default()
            })),
        };
        let mut responses = WatchClient::new(channel(&clients.endpoint))
            .watch(tokio_stream::iter(vec![backwards]).chain(tokio_stream::pending()))
            .await
            .expect("a watch stream")
            .into_inner();
        let refused = responses
            .message()
            .await
            .expect("a healthy stream")
            .expect("a response");
        assert!(
            refused.created && refused.canceled,
            "{}: {refused:?}",
            what("Watch")
        );
        assert_eq!(refused.cancel_reason, "mvcc: watcher range is empty");
    }

    // Nothing was written: same revision, no new key, and (unless an
    // election happened meanwhile) not even a log entry.
    let after_read = range(&mut kv, everything_request()).await;
    assert_eq!(revision_of(&after_read.header), revision);
    let mut names: Vec<&[u8]> = after_read.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    names.sort();
    assert_eq!(names, [&b"existing"[..], b"one-mib"]);
    let after = cluster.status(leader).await.expect("status");
    if after.raft_term == before.raft_term {
        assert_eq!(
            after.raft_index, before.raft_index,
            "a refused request is never proposed"
        );
    }
}

#[tokio::test]
async fn a_node_of_another_cluster_is_refused_by_the_members() {
    let mut cluster = Cluster::new(3);
    cluster.node_mut(3).token = "another-cluster".to_string();
    cluster.start_all();
    // Nodes 1 and 2 are a majority of the member list on their own.
    let leader = cluster.wait_for_leader_among(&[1, 2]).await;
    let mut kv = cluster.clients(leader).kv;
    put(&mut kv, "members-only", "yes").await;

    // Each side refuses the other's messages, and says so in its log.
    for (refuser, sender) in [(leader, 3), (3, leader)] {
        let expected = format!("message from node {sender} belongs to cluster");
        eventually(
            &format!("node {refuser}'s log to refuse node {sender}"),
            || async {
                match cluster.log(refuser).contains(&expected) {
                    true => Ok(()),
                    false => Err(format!("no {expected:?} in node {refuser}'s log")),
                }
            },
        )
        .await;
    }
    cluster.assert_alive();
    let stranger = cluster.status(3).await.expect("node 3 answers Status");
    let member = cluster.status(leader).await.expect("the leader's status");
    let cluster_id = |status: &raft_proto::etcd::etcdserverpb::StatusResponse| {
        status.header.as_ref().map_or(0, |header| header.cluster_id)
    };
    assert_ne!(cluster_id(&stranger), cluster_id(&member));
    assert_eq!(stranger.leader, 0, "node 3 never accepted a leader");
    assert_eq!(member.leader, leader, "node 3 did not disturb the leader");
    let mut stranger_kv = cluster.clients(3).kv;
    assert_code(
        stranger_kv.put(put_request("stranger", "no")).await,
        Code::Unavailable,
        "a put through node 3, which has no leader",
    );
    let local = stranger_kv
        .range(RangeRequest {
            serializable: true,
            ..get_request("members-only")
        })
        .await
        .expect("a local read on node 3")
        .into_inner();
    assert_eq!(local.count, 0, "node 3 received none of the cluster's data");
    let read = range(&mut kv, get_request("stranger")).await;
    assert_eq!(read.count, 0);
}

#[tokio::test]
async fn a_data_directory_of_another_cluster_is_refused_at_start() {
    let mut cluster = Cluster::start(1).await;
    put(&mut cluster.clients(1).kv, "kept", "yes").await;
    assert!(cluster.terminate(1).success());

    cluster.node_mut(1).token = "another-cluster".to_string();
    let finished = run_to_exit(&cluster.run_arguments(1), cluster.scratch(), PATIENCE);
    assert!(
        !finished.status.success(),
        "a node must not start on another cluster's data: {}",
        finished.stderr
    );
    let directory = cluster.node(1).data_directory.display().to_string();
    assert!(
        finished.stderr.contains("error: ")
            && finished.stderr.contains(&directory)
            && finished.stderr.contains("belongs to cluster"),
        "a clear error naming the directory: {}",
        finished.stderr
    );

    // The refusal did not damage the directory.
    cluster.node_mut(1).token = TOKEN.to_string();
    cluster.start_node(1);
    cluster.wait_for_leader().await;
    let read = range(&mut cluster.clients(1).kv, get_request("kept")).await;
    assert_eq!(read.kvs[0].value, b"yes");
}

#[test]
fn bad_flags_exit_non_zero_with_a_clear_message() {
    let cluster = Cluster::new(1);
    let address = cluster.node(1).address.clone();
    let run = |node: &str, members: &str, flags: &[&str]| -> Vec<String> {
        let mut arguments: Vec<String> = ["run", node, &address, members, "--data-dir"]
            .iter()
            .map(|argument| argument.to_string())
            .collect();
        arguments.push(cluster.scratch().join("data").display().to_string());
        arguments.extend(flags.iter().map(|flag| flag.to_string()));
        arguments
    };
    let members = cluster.members().to_string();
    let cases: Vec<(Vec<String>, &str)> =
        vec![
        (
            run("1", &members, &["--heartbeat-ms", "300", "--election-timeout-min-ms", "300"]),
            "the heartbeat interval (300 ms) must be below the minimum election timeout (300 ms)",
        ),
        (
            run("1", &members, &["--heartbeat-ms", "0"]),
            "the heartbeat interval must be at least 1 ms",
        ),
        (
            run("1", &members, &["--auto-compaction-mode", "hourly"]),
            "--auto-compaction-mode \"hourly\" is not one of periodic, revision",
        ),
        (
            run(
                "1",
                &members,
                &["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"],
            ),
            "--auto-compaction-retention \"1h\" is not a number of revisions",
        ),
        (
            run(
                "1",
                &members,
                &["--election-timeout-min-ms", "400", "--election-timeout-max-ms", "400"],
            ),
            "the minimum election timeout (400 ms) must be below the maximum (400 ms)",
        ),
        (
            run("1", "1=127.0.0.1", &[]),
            "member 1's address \"127.0.0.1\" is not of the form host:port",
        ),
        (
            run("1", &format!("one={address}"), &[]),
            "member id \"one\" is not a positive integer",
        ),
        (
            run("1", &format!("1={address},1=127.0.0.1:1"), &[]),
            "member id 1 appears twice",
        ),
        (
            run("1", &address, &[]),
            "is not of the form id=host:port",
        ),
        (run("2", &members, &[]), "is not in the member list"),
        (run("0", &members, &[]), "node id 0 is reserved"),
        (
            run("1", &members, &["--snapshot-count", "0"]),
            "interval_entries must be at least 1",
        ),
    ];
    for (arguments, message) in cases {
        let finished = run_to_exit(&arguments, cluster.scratch(), Duration::from_secs(20));
        assert!(
            !finished.status.success(),
            "{arguments:?} must fail: {}",
            finished.stderr
        );
        assert!(
            finished.stderr.contains("error: ") && finished.stderr.contains(message),
            "{arguments:?}: expected an error saying {message:?}, got: {}",
            finished.stderr
        );
        assert!(
            !finished.stderr.contains("panicked"),
            "{arguments:?} panicked: {}",
            finished.stderr
        );
    }
}
