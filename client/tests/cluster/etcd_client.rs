//! The `etcd-client` crate (a Rust client written for etcd) against a
//! 3-node cluster. Built only with `--features etcd-client-tests`: that
//! crate compiles its protos with a system `protoc`, which the default
//! build never needs.

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};

use crate::support::cluster::Cluster;

/// A client of every member of `cluster`.
async fn connect(cluster: &Cluster) -> Client {
    let endpoints: Vec<String> = cluster
        .ids()
        .into_iter()
        .map(|id| format!("http://{}", cluster.node(id).address))
        .collect();
    Client::connect(&endpoints, None)
        .await
        .expect("connect to the cluster")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn etcd_client_crate_puts_gets_ranges_runs_txns_and_deletes() {
    let cluster = Cluster::start(3).await;
    let mut client = connect(&cluster).await;

    // put, put with prev_kv, get.
    let first = client.put("greeting", "hello", None).await.expect("put");
    let created = first.header().expect("a header").revision();
    let second = client
        .put("greeting", "hi", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put with prev_kv");
    assert_eq!(second.header().expect("a header").revision(), created + 1);
    assert_eq!(
        second.prev_key().map(|kv| text(kv.value())),
        Some("hello".into())
    );
    let read = client.get("greeting", None).await.expect("get");
    let entry = &read.kvs()[0];
    assert_eq!((text(entry.value()), entry.version()), ("hi".into(), 2));
    assert_eq!(
        (entry.create_revision(), entry.mod_revision()),
        (created, created + 1)
    );

    // Ranges: a prefix, limited, counted, keys only.
    for (key, value) in [
        ("fruit/cherry", "red"),
        ("fruit/apple", "green"),
        ("fruity", "no"),
    ] {
        client.put(key, value, None).await.expect("put");
    }
    let prefix = || GetOptions::new().with_prefix();
    let keys = |response: &etcd_client::GetResponse| -> Vec<String> {
        response.kvs().iter().map(|kv| text(kv.key())).collect()
    };
    let all = client.get("fruit/", Some(prefix())).await.expect("range");
    assert_eq!(keys(&all), ["fruit/apple", "fruit/cherry"]);
    assert_eq!(all.count(), 2);
    let limited = client
        .get("fruit/", Some(prefix().with_limit(1)))
        .await
        .expect("limited range");
    assert_eq!(keys(&limited), ["fruit/apple"]);
    assert!(limited.more());
    assert_eq!(limited.count(), 2);
    let counted = client
        .get("fruit/", Some(prefix().with_count_only()))
        .await
        .expect("count");
    assert_eq!((counted.kvs().len(), counted.count()), (0, 2));
    let keys_only = client
        .get("fruit/", Some(prefix().with_keys_only()))
        .await
        .expect("keys only");
    assert_eq!(keys(&keys_only), ["fruit/apple", "fruit/cherry"]);
    assert!(keys_only.kvs().iter().all(|kv| kv.value().is_empty()));

    // Transactions: the success branch, then the failure branch.
    let swap = |expected: &str, replacement: &str| {
        Txn::new()
            .when([Compare::value("greeting", CompareOp::Equal, expected)])
            .and_then([
                TxnOp::put("greeting", replacement, None),
                TxnOp::get("greeting", None),
            ])
            .or_else([TxnOp::get("greeting", None)])
    };
    let read_value = |responses: Vec<TxnOpResponse>| -> Vec<String> {
        responses
            .into_iter()
            .filter_map(|response| match response {
                TxnOpResponse::Get(read) => Some(text(read.kvs()[0].value())),
                _ => None,
            })
            .collect()
    };
    let succeeded = client.txn(swap("hi", "bye")).await.expect("txn");
    assert!(succeeded.succeeded());
    assert_eq!(read_value(succeeded.op_responses()), ["bye"]);
    let failed = client.txn(swap("hi", "lost")).await.expect("txn");
    assert!(!failed.succeeded());
    assert_eq!(read_value(failed.op_responses()), ["bye"]);

    // Deletes with prev_kv.
    let deleted = client
        .delete(
            "fruit/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("delete a prefix");
    assert_eq!(deleted.deleted(), 2);
    let previous: Vec<(String, String)> = deleted
        .prev_kvs()
        .iter()
        .map(|kv| (text(kv.key()), text(kv.value())))
        .collect();
    assert_eq!(
        previous,
        [
            ("fruit/apple".to_string(), "green".to_string()),
            ("fruit/cherry".to_string(), "red".to_string())
        ]
    );
    assert_eq!(
        client
            .get("fruit/", Some(prefix()))
            .await
            .expect("get")
            .count(),
        0
    );
    assert_eq!(client.get("fruity", None).await.expect("get").count(), 1);

    // Members and status.
    let members = client.member_list().await.expect("member list");
    let mut ids: Vec<u64> = members.members().iter().map(|member| member.id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, cluster.ids());
    let status = client.status().await.expect("status");
    assert_eq!(status.version(), "3.4.0");
    assert!(cluster.ids().contains(&status.leader()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_crate_adds_promotes_updates_and_removes_a_member() {
    use etcd_client::MemberAddOptions;

    let mut cluster = Cluster::start(3).await;
    let mut client = connect(&cluster).await;
    let port = crate::support::cluster::free_ports(1)[0];
    let address = format!("127.0.0.1:{port}");
    let added = client
        .member_add(
            [format!("http://{address}")],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect("member add");
    let member = added.member().expect("the new member");
    let id = member.id();
    assert!(member.is_learner());
    assert_eq!(added.member_list().len(), 4);

    cluster.prepare_joining_at(id, &address);
    cluster.start_node(id);
    crate::support::eventually("the promotion", || {
        let mut client = client.clone();
        async move {
            client
                .member_promote(id)
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        }
    })
    .await;
    client
        .member_update(id, [format!("http://{address}")])
        .await
        .expect("member update");
    let listed = client.member_list().await.expect("member list");
    let new_member = listed
        .members()
        .iter()
        .find(|member| member.id() == id)
        .expect("listed");
    assert!(!new_member.is_learner());
    assert_eq!(new_member.peer_urls(), [format!("http://{address}")]);

    client.member_remove(id).await.expect("member remove");
    cluster.terminate(id);
    let listed = client.member_list().await.expect("member list");
    assert_eq!(listed.members().len(), 3);
    client
        .put("after-the-changes", "ok", None)
        .await
        .expect("the cluster writes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_crate_watches_live_and_past_events_progress_and_fragments() {
    use etcd_client::{EventType, WatchOptions};

    let cluster = Cluster::new(3).with_arguments(&[
        "--experimental-watch-progress-notify-interval".to_string(),
        "200ms".to_string(),
        "--max-request-bytes".to_string(),
        "4096".to_string(),
    ]);
    let mut cluster = cluster;
    cluster.start_all();
    cluster.wait_for_leader().await;
    let mut client = connect(&cluster).await;
    let first = client.put("feed/a", "1", None).await.expect("put");
    let first = first.header().expect("a header").revision();

    // From the past with prev_kv: the first put, then what follows live.
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(first)
        .with_prev_key()
        .with_fragment();
    let mut stream = client.watch("feed/", Some(options)).await.expect("a watch");
    let created = stream.message().await.expect("a response").expect("open");
    assert!(created.created());
    client.put("feed/a", "2", None).await.expect("put");
    client.delete("feed/a", None).await.expect("delete");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let response = stream.message().await.expect("a response").expect("open");
        for event in response.events() {
            let kv = event.kv().expect("a key");
            let prev = event.prev_kv().map(|prev| text(prev.value()));
            seen.push((event.event_type(), text(kv.value()), prev));
        }
    }
    assert_eq!(
        seen,
        vec![
            (EventType::Put, "1".into(), None),
            (EventType::Put, "2".into(), Some("1".into())),
            (EventType::Delete, "".into(), Some("2".into())),
        ]
    );

    // Idle, a watcher that asked for it is told its progress.
    let options = WatchOptions::new().with_prefix().with_progress_notify();
    let (mut requests, mut idle) = client
        .watch("quiet/", Some(options))
        .await
        .expect("a watch")
        .split();
    assert!(idle
        .message()
        .await
        .expect("created")
        .expect("open")
        .created());
    // The member the watch went to may not have applied the latest write
    // yet: its notifications (every 200 ms) reach the current revision
    // within a few, never pass it, and carry no events.
    let current = client.get("feed/a", None).await.expect("get");
    let current = current.header().expect("a header").revision();
    let mut notified = 0;
    for _ in 0..50 {
        let progress = idle.message().await.expect("progress").expect("open");
        assert!(progress.events().is_empty() && !progress.canceled());
        notified = progress.header().expect("a header").revision();
        assert!(notified <= current, "progress at {notified} past {current}");
        if notified == current {
            break;
        }
    }
    assert_eq!(
        notified, current,
        "progress notifications reach the current revision"
    );
    requests
        .request_progress()
        .await
        .expect("a progress request");
    let answer = idle.message().await.expect("progress").expect("open");
    assert_eq!(answer.watch_id(), -1);

    // One revision larger than the response limit (4096 bytes here: three
    // overwrites of 1,000-byte values, each event with its previous value)
    // reaches the watcher that allowed fragments in several responses.
    let large = "x".repeat(1000);
    let keys: Vec<String> = (0..3).map(|index| format!("feed/big{index}")).collect();
    for key in &keys {
        client
            .put(key.as_str(), large.clone(), None)
            .await
            .expect("put");
    }
    let mut singles = 0;
    while singles < 3 {
        let response = stream.message().await.expect("a response").expect("open");
        singles += response.events().len();
    }
    let overwrite: Vec<etcd_client::TxnOp> = keys
        .iter()
        .map(|key| etcd_client::TxnOp::put(key.as_str(), large.clone(), None))
        .collect();
    client
        .txn(etcd_client::Txn::new().and_then(overwrite))
        .await
        .expect("a txn of three large overwrites");
    let (mut events, mut responses) = (0, 0);
    while events < 3 {
        let response = stream.message().await.expect("a response").expect("open");
        events += response.events().len();
        responses += 1;
    }
    assert_eq!(events, 3);
    assert!(responses >= 2, "the revision came in {responses} response");
}
