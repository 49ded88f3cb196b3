//! End-to-end tests of real `raft_client run` processes: a 3-node cluster
//! on 127.0.0.1 answering the etcd v3 API, losing its leader to SIGKILL,
//! restarting whole, refusing bad input and strangers; `etcdctl` and the
//! `etcd-client` crate against it.
//!
//! Every node is a child process with its own data directory and log in a
//! temporary directory, killed when its test ends (see `support/`). A
//! failing test prints the tail of each node's log.

mod support;

#[path = "cluster/bench.rs"]
mod bench;
#[path = "cluster/compaction.rs"]
mod compaction;
#[cfg(feature = "etcd-client-tests")]
#[path = "cluster/etcd_client.rs"]
mod etcd_client_crate;
#[path = "cluster/etcdctl.rs"]
mod etcdctl;
#[path = "cluster/failures.rs"]
mod failures;
#[path = "cluster/leadership.rs"]
mod leadership;
#[path = "cluster/membership.rs"]
mod membership;
#[path = "cluster/metrics.rs"]
mod metrics;
#[path = "cluster/peer_port.rs"]
mod peer_port;
#[path = "cluster/refusals.rs"]
mod refusals;
#[path = "cluster/tls.rs"]
mod tls;
#[path = "cluster/watch.rs"]
mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft_proto::etcd::etcdserverpb::compare::CompareResult;
use raft_proto::etcd::etcdserverpb::kv_client::KvClient;
use raft_proto::etcd::etcdserverpb::{
    response_op, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, TxnRequest,
};
use tonic::transport::Channel;

use support::cluster::Cluster;
use support::eventually;
use support::requests::{
    everything_request, get_operation, get_request, keys, prefix_request, put, put_operation,
    put_request, range, revision_of, value_compare, values, version_compare,
};

/// Runs every KV call through `kv`, under keys starting with `prefix`, and
/// checks each answer as etcd would give it.
async fn exercise_kv(kv: &mut KvClient<Channel>, prefix: &str) {
    let key = |name: &str| format!("{prefix}{name}");

    // Put, overwrite with prev_kv, get.
    let first = put(kv, &key("a"), "1").await;
    let created = revision_of(&first.header);
    assert!(created > 1, "a put moves the revision past 1: {first:?}");
    assert_eq!(first.prev_kv, None, "no prev_kv unless asked for");
    let second = kv
        .put(PutRequest {
            prev_kv: true,
            ..put_request(&key("a"), "2")
        })
        .await
        .expect("put with prev_kv")
        .into_inner();
    assert_eq!(revision_of(&second.header), created + 1);
    let previous = second.prev_kv.expect("prev_kv was asked for");
    assert_eq!(
        (previous.value.as_slice(), previous.version),
        (&b"1"[..], 1)
    );
    let read = range(kv, get_request(&key("a"))).await;
    assert_eq!(read.count, 1);
    let entry = &read.kvs[0];
    assert_eq!(entry.value, b"2");
    assert_eq!(
        (entry.create_revision, entry.mod_revision, entry.version),
        (created, created + 1, 2)
    );
    assert_eq!(revision_of(&read.header), created + 1);

    // Ranges over a prefix: all, limited, counted, keys only.
    for fruit in ["cherry", "apple", "banana"] {
        put(kv, &key(&format!("fruit/{fruit}")), fruit).await;
    }
    put(kv, &key("fruitless"), "outside the prefix").await;
    let fruit = || prefix_request(&key("fruit/"));
    let all = range(kv, fruit()).await;
    let expected_keys: Vec<String> = ["apple", "banana", "cherry"]
        .iter()
        .map(|name| key(&format!("fruit/{name}")))
        .collect();
    assert_eq!(keys(&all), expected_keys, "sorted by key, prefix only");
    assert_eq!(values(&all), ["apple", "banana", "cherry"]);
    assert_eq!((all.count, all.more), (3, false));
    let limited = range(
        kv,
        RangeRequest {
            limit: 2,
            ..fruit()
        },
    )
    .await;
    assert_eq!(keys(&limited), expected_keys[..2]);
    assert_eq!((limited.count, limited.more), (3, true));
    let counted = range(
        kv,
        RangeRequest {
            count_only: true,
            ..fruit()
        },
    )
    .await;
    assert_eq!((counted.kvs.len(), counted.count), (0, 3));
    let keys_only = range(
        kv,
        RangeRequest {
            keys_only: true,
            ..fruit()
        },
    )
    .await;
    assert_eq!(keys(&keys_only), expected_keys);
    assert!(keys_only.kvs.iter().all(|entry| entry.value.is_empty()));

    // A transaction whose compare holds runs its success branch.
    let succeeded = kv
        .txn(TxnRequest {
            compare: vec![value_compare(&key("a"), CompareResult::Equal, "2")],
            success: vec![put_operation(&key("a"), "3"), get_operation(&key("a"))],
            failure: vec![put_operation(&key("lost"), "failure branch")],
        })
        .await
        .expect("txn")
        .into_inner();
    assert!(succeeded.succeeded);
    assert_eq!(succeeded.responses.len(), 2);
    match &succeeded.responses[1].response {
        Some(response_op::Response::ResponseRange(read)) => {
            assert_eq!(values(read), ["3"], "a read sees the put before it")
        }
        other => panic!("the second success operation is a range: {other:?}"),
    }
    assert_eq!(range(kv, get_request(&key("lost"))).await.count, 0);

    // A transaction whose compare fails runs its failure branch only.
    let failed = kv
        .txn(TxnRequest {
            compare: vec![version_compare(&key("a"), CompareResult::Equal, 1)],
            success: vec![put_operation(&key("a"), "success branch")],
            failure: vec![get_operation(&key("a"))],
        })
        .await
        .expect("txn")
        .into_inner();
    assert!(!failed.succeeded);
    match &failed.responses[..] {
        [operation] => match &operation.response {
            Some(response_op::Response::ResponseRange(read)) => {
                assert_eq!(values(read), ["3"]);
                assert_eq!(read.kvs[0].version, 3);
            }
            other => panic!("the failure operation is a range: {other:?}"),
        },
        other => panic!("one failure operation ran: {other:?}"),
    }
    assert_eq!(values(&range(kv, get_request(&key("a"))).await), ["3"]);

    // Deletes, with prev_kv: a prefix, then one key.
    let deleted = kv
        .delete_range(DeleteRangeRequest {
            key: fruit().key,
            range_end: fruit().range_end,
            prev_kv: true,
        })
        .await
        .expect("delete a prefix")
        .into_inner();
    assert_eq!(deleted.deleted, 3);
    let previous: Vec<(String, String)> = deleted
        .prev_kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        previous,
        expected_keys
            .iter()
            .cloned()
            .zip(["apple", "banana", "cherry"].map(String::from))
            .collect::<Vec<_>>()
    );
    assert_eq!(range(kv, fruit()).await.count, 0);
    assert_eq!(range(kv, get_request(&key("fruitless"))).await.count, 1);
    let deleted = kv
        .delete_range(DeleteRangeRequest {
            key: key("a").into_bytes(),
            range_end: Vec::new(),
            prev_kv: true,
        })
        .await
        .expect("delete a key")
        .into_inner();
    assert_eq!(deleted.deleted, 1);
    assert_eq!(deleted.prev_kvs[0].value, b"3");
    assert_eq!(range(kv, get_request(&key("a"))).await.count, 0);
}

#[tokio::test]
async fn kv_calls_answer_like_etcd_on_the_leader_and_through_a_follower() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower_of(leader);
    exercise_kv(&mut cluster.clients(leader).kv, "via-leader/").await;
    // A follower forwards writes and linearizable reads to the leader.
    exercise_kv(&mut cluster.clients(follower).kv, "via-follower/").await;

    // A write acknowledged through one member is read linearizably through
    // every member at once, and serializably once each has applied it.
    let written = put(&mut cluster.clients(follower).kv, "shared", "seen").await;
    for id in cluster.ids() {
        let read = range(&mut cluster.clients(id).kv, get_request("shared")).await;
        assert_eq!(values(&read), ["seen"], "linearizable read on node {id}");
        assert!(revision_of(&read.header) >= revision_of(&written.header));
    }
    for id in cluster.ids() {
        let kv = cluster.clients(id).kv;
        eventually(&format!("node {id} to apply the write locally"), || {
            let mut kv = kv.clone();
            async move {
                let request = RangeRequest {
                    serializable: true,
                    ..get_request("shared")
                };
                let read = kv.range(request).await.map_err(|s| s.to_string())?;
                match values(&read.into_inner()).as_slice() {
                    [value] if value == "seen" => Ok(()),
                    other => Err(format!("serializable read gave {other:?}")),
                }
            }
        })
        .await;
    }
}

/// A key written by the background writer, its value and the revision its
/// put was acknowledged at.
type Acknowledged = Arc<Mutex<Vec<(String, String, i64)>>>;

/// Puts `ack/00000`, `ack/00001`, ... through `kv` until `stop`, recording
/// every acknowledged put; failed puts (no leader, leader lost) are skipped
/// and counted. Returns the number of failures.
async fn write_until_stopped(
    mut kv: KvClient<Channel>,
    acknowledged: Acknowledged,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut failures = 0;
    let mut sequence = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let key = format!("ack/{sequence:05}");
        let value = format!("value-{sequence}");
        sequence += 1;
        match kv.put(put_request(&key, &value)).await {
            Ok(response) => {
                let revision = revision_of(&response.into_inner().header);
                acknowledged
                    .lock()
                    .expect("acknowledged")
                    .push((key, value, revision));
            }
            Err(_) => {
                failures += 1;
                // Pacing while the cluster elects a leader, not
                // synchronisation: the loop ends on `stop` alone.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    failures
}

/// A background writer through member `via` (see [`write_until_stopped`]):
/// what it has acknowledged, the flag that stops it, and its task.
struct Writer {
    acknowledged: Acknowledged,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Writer {
    /// Starts writing through member `via` of `cluster`.
    fn start(cluster: &Cluster, via: u64) -> Writer {
        let acknowledged: Acknowledged = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(write_until_stopped(
            cluster.clients(via).kv,
            acknowledged.clone(),
            stop.clone(),
        ));
        Writer {
            acknowledged,
            stop,
            task,
        }
    }

    /// How many writes were acknowledged so far.
    fn count(&self) -> usize {
        self.acknowledged.lock().expect("acknowledged").len()
    }

    /// Stops the writer; returns what it acknowledged and how many writes
    /// failed.
    async fn finish(self) -> (Vec<(String, String, i64)>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let failures = self.task.await.expect("the writer task");
        let acknowledged = self.acknowledged.lock().expect("acknowledged").clone();
        (acknowledged, failures)
    }
}

/// Asserts that `read` (by node `id`) holds every acknowledged write, at
/// the revision it was acknowledged at.
fn assert_all_acknowledged(id: u64, read: &RangeResponse, acknowledged: &[(String, String, i64)]) {
    let found: BTreeMap<String, (String, i64)> = read
        .kvs
        .iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            let value = String::from_utf8_lossy(&kv.value).into_owned();
            (key, (value, kv.mod_revision))
        })
        .collect();
    for (key, value, revision) in acknowledged {
        assert_eq!(
            found.get(key),
            Some(&(value.clone(), *revision)),
            "node {id}: acknowledged write of {key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_without_losing_acknowledged_writes_and_catches_up() {
    const WRITES_PER_PHASE: usize = 25;
    let mut cluster = Cluster::start(3).await;
    let old_leader = cluster.wait_for_leader().await;
    let survivor = cluster.follower_of(old_leader);
    let acknowledged: Acknowledged = Arc::default();
    let count = {
        let acknowledged = acknowledged.clone();
        move || acknowledged.lock().expect("acknowledged").len()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until_stopped(
        cluster.clients(survivor).kv,
        acknowledged.clone(),
        stop.clone(),
    ));
    eventually("writes through a follower before the kill", || async {
        match count() {
            n if n >= WRITES_PER_PHASE => Ok(n),
            n => Err(format!("{n} acknowledged")),
        }
    })
    .await;

    cluster.kill(old_leader);
    let acknowledged_before_kill = count();
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, old_leader, "a killed node cannot lead");
    eventually("writes to continue under the new leader", || async {
        match count() {
            n if n >= acknowledged_before_kill + WRITES_PER_PHASE => Ok(n),
            n => Err(format!(
                "{n} acknowledged, {acknowledged_before_kill} before the kill"
            )),
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let failures = writer.await.expect("the writer task");
    let acknowledged = acknowledged.lock().expect("acknowledged").clone();
    eprintln!(
        "{} writes acknowledged ({acknowledged_before_kill} before killing leader {old_leader}), \
         {failures} failed around the election of {new_leader}",
        acknowledged.len()
    );

    // Every acknowledged write is there, at the revision it was
    // acknowledged at, through each surviving member.
    for id in cluster.running() {
        let read = range(&mut cluster.clients(id).kv, prefix_request("ack/")).await;
        assert_all_acknowledged(id, &read, &acknowledged);
    }

    // The killed node restarts from its data directory and catches up:
    // once every applied index matches, so do the hashes of the key space.
    cluster.start_node(old_leader);
    let hashes = cluster.converged_hashes().await;
    let (_, hash, revision) = hashes[&new_leader];
    for (id, (applied, node_hash, node_revision)) in &hashes {
        assert_eq!(
            (*node_hash, *node_revision),
            (hash, revision),
            "node {id} (applied up to {applied}) against leader {new_leader}: {hashes:?}"
        );
    }
    let local_read = RangeRequest {
        serializable: true,
        ..prefix_request("ack/")
    };
    let read = range(&mut cluster.clients(old_leader).kv, local_read).await;
    assert_all_acknowledged(old_leader, &read, &acknowledged);
}

#[tokio::test]
async fn a_cluster_restarted_whole_keeps_its_state() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let mut kv = cluster.clients(leader).kv;
    for index in 0..30 {
        put(
            &mut kv,
            &format!("key/{index:02}"),
            &format!("first-{index}"),
        )
        .await;
    }
    for index in (0..30).step_by(3) {
        put(
            &mut kv,
            &format!("key/{index:02}"),
            &format!("second-{index}"),
        )
        .await;
    }
    kv.delete_range(DeleteRangeRequest {
        key: b"key/2".to_vec(),
        range_end: b"key/3".to_vec(),
        prev_kv: false,
    })
    .await
    .expect("delete a range");
    kv.txn(TxnRequest {
        compare: vec![value_compare("key/00", CompareResult::Equal, "second-0")],
        success: vec![put_operation("txn", "committed")],
        failure: Vec::new(),
    })
    .await
    .expect("txn");
    let before = range(&mut kv, everything_request()).await;
    assert_eq!(before.count, 21, "20 keys left of 30, and the txn's");
    let hashes_before = cluster.converged_hashes().await;

    for id in cluster.ids() {
        let status = cluster.terminate(id);
        assert!(
            status.success(),
            "node {id} exits cleanly on SIGTERM, not {status}"
        );
        assert!(
            cluster.log(id).contains("stopped"),
            "node {id} says it stopped"
        );
    }
    cluster.start_all();
    let leader = cluster.wait_for_leader().await;
    let mut kv = cluster.clients(leader).kv;
    let after = range(&mut kv, everything_request()).await;
    assert_eq!(
        after.kvs, before.kvs,
        "keys, values, revisions and versions"
    );
    assert_eq!(revision_of(&after.header), revision_of(&before.header));
    let hashes_after = cluster.converged_hashes().await;
    let summary = |hashes: &BTreeMap<u64, (u64, u32, i64)>| -> Vec<(u32, i64)> {
        hashes
            .values()
            .map(|&(_, hash, revision)| (hash, revision))
            .collect()
    };
    assert_eq!(summary(&hashes_after), summary(&hashes_before));

    // And the cluster goes on from the revision it had.
    let next = put(&mut kv, "after-restart", "yes").await;
    assert_eq!(revision_of(&next.header), revision_of(&before.header) + 1);
}

#[tokio::test]
async fn many_writes_in_flight_through_a_follower_each_get_their_own_answer() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower_of(leader);
    let kv = cluster.clients(follower).kv;
    put(&mut kv.clone(), "many/0", "before").await;
    // 200 writes at once through the follower share its forwarding stream
    // to the leader, in batches; each answer must be its own write's.
    let writes = (0..200).map(|i| {
        let mut kv = kv.clone();
        tokio::spawn(async move {
            let request = PutRequest {
                prev_kv: true,
                ..put_request(&format!("many/{i}"), &format!("value-{i}"))
            };
            let answer = kv.put(request).await.expect("forwarded put").into_inner();
            (i, answer)
        })
    });
    let mut revisions = std::collections::BTreeSet::new();
    for write in writes {
        let (i, answer) = write.await.expect("writer task");
        let revision = revision_of(&answer.header);
        assert!(
            revisions.insert(revision),
            "two writes answered revision {revision}"
        );
        let previous = answer
            .prev_kv
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        assert_eq!(
            previous.as_deref(),
            (i == 0).then_some("before"),
            "prev_kv of many/{i}"
        );
        // The key holds this write's value at the revision it was answered.
        let read = range(&mut kv.clone(), get_request(&format!("many/{i}"))).await;
        assert_eq!(values(&read), [format!("value-{i}")]);
        assert_eq!(
            read.kvs[0].mod_revision, revision,
            "mod_revision of many/{i}"
        );
    }
    assert_eq!(revisions.len(), 200);
}

#[tokio::test]
async fn a_forwarding_stream_from_another_cluster_is_refused() {
    use raft_proto::forward::forwarded_request::Request as Kind;
    use raft_proto::forward::kv_forward_client::KvForwardClient;
    use raft_proto::forward::{ForwardBatch, ForwardedRequest};
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let channel = raft_client::connect::endpoints::channel(&cluster.clients(leader).endpoint);
    let batch = ForwardBatch {
        requests: vec![ForwardedRequest {
            id: 1,
            request: Some(Kind::Command(Vec::new())),
        }],
    };
    let mut request = tonic::Request::new(tokio_stream::iter(vec![batch]));
    request.metadata_mut().insert(
        raft_client::server::forward::CLUSTER_ID_METADATA,
        "12345".parse().unwrap(),
    );
    let refused = KvForwardClient::new(channel).forward(request).await;
    match refused {
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
            assert!(status.message().contains("this is cluster"), "{status}");
        }
        Ok(_) => panic!("a stream from another cluster was accepted"),
    }
    assert_eq!(
        range(&mut cluster.clients(leader).kv, everything_request())
            .await
            .count,
        0
    );
}

#[tokio::test]
async fn a_write_forwarded_to_a_leader_that_stops_answering_fails_once_another_leads() {
    use rustix::process::Signal;
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower_of(leader);
    let mut kv = cluster.clients(follower).kv;
    // The follower's forwarding stream to the leader is open.
    put(&mut kv, "before", "pause").await;
    cluster.signal(leader, Signal::STOP);
    // The write waits on a leader that no longer answers. Once the others
    // elect a new one, the follower gives up on the old stream: the client
    // is told the outcome is unknown (and retries), rather than waiting for
    // the connection to time out, ten seconds and more.
    let request = tonic::Request::new(put_request("during", "pause"));
    let outcome = tokio::time::timeout(Duration::from_secs(8), kv.put(request)).await;
    match outcome {
        Ok(Err(status)) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status}"),
        Ok(Ok(_)) => {} // the new leader was known before the write was sent
        Err(_) => panic!("the forwarded write was still waiting 8 s after the leader paused"),
    }
    let others: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let new_leader = cluster.wait_for_leader_among(&others).await;
    assert_ne!(new_leader, leader);
    put(&mut kv, "during", "pause").await;
    cluster.signal(leader, Signal::CONT);
    let read = range(&mut kv, get_request("during")).await;
    assert_eq!(values(&read), ["pause"]);
}
