//! Automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`),
//! and its flags refused when they do not read.

use raft_proto::etcd::etcdserverpb::RangeRequest;
use tonic::Code;

use crate::support::cluster::Cluster;
use crate::support::eventually;
use crate::support::process::ChildGuard;
use crate::support::requests::put_request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_auto_compaction_drops_history_older_than_the_retention() {
    let cluster = Cluster::new(1);
    let mut arguments = cluster.run_arguments(1);
    arguments.extend([
        "--auto-compaction-mode".to_string(),
        "periodic".to_string(),
        "--auto-compaction-retention".to_string(),
        "2s".to_string(),
    ]);
    let _node = ChildGuard::spawn(&arguments, &cluster.scratch().join("compacting-node.log"));
    let clients = cluster.clients(1);
    let first = eventually("a first put", || {
        let mut kv = clients.kv.clone();
        async move {
            kv.put(put_request("kept", "one"))
                .await
                .map_err(|status| status.to_string())
        }
    })
    .await
    .into_inner()
    .header
    .expect("a header")
    .revision;
    let mut kv = clients.kv.clone();
    kv.put(put_request("kept", "two"))
        .await
        .expect("a second put");
    let read_first = |mut kv: raft_proto::etcd::etcdserverpb::kv_client::KvClient<_>| async move {
        kv.range(RangeRequest {
            key: b"kept".to_vec(),
            revision: first,
            ..RangeRequest::default()
        })
        .await
    };
    // Right after the writes, the first revision still reads.
    let early = read_first(clients.kv.clone())
        .await
        .expect("a read at the first revision");
    assert_eq!(early.into_inner().kvs[0].value, b"one");
    // Within a few periods the leader compacts past it.
    let refused = eventually("the first revision compacted away", || {
        let kv = clients.kv.clone();
        async move {
            match read_first(kv).await {
                Err(status) => Ok(status),
                Ok(_) => Err("still readable".to_string()),
            }
        }
    })
    .await;
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert_eq!(
        refused.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    // The latest value is untouched.
    let latest = kv
        .range(RangeRequest {
            key: b"kept".to_vec(),
            ..RangeRequest::default()
        })
        .await
        .expect("a read of the latest");
    assert_eq!(latest.into_inner().kvs[0].value, b"two");
}
