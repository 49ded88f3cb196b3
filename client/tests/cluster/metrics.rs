//! The node's Prometheus endpoint (`--metrics-address`).

use raft_proto::raft as wire;
use raft_proto::raft::raft_peer_client::RaftPeerClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::cluster::{free_ports, Cluster};
use crate::support::eventually;
use crate::support::process::ChildGuard;
use crate::support::requests::put_request;

/// GETs `path` from `address` with a bare HTTP/1.1 request.
async fn http_get(address: &str, path: &str) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|error| error.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| error.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|error| error.to_string())?;
    Ok(response)
}

/// The value of the sample named exactly `name` in a metrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_reports_role_commits_and_latencies() {
    let cluster = Cluster::new(1);
    let metrics_address = format!("127.0.0.1:{}", free_ports(1)[0]);
    let mut arguments = cluster.run_arguments(1);
    arguments.extend(["--metrics-address".to_string(), metrics_address.clone()]);
    let _node = ChildGuard::spawn(&arguments, &cluster.scratch().join("metrics-node.log"));
    let clients = cluster.clients(1);
    eventually("a put to the single node", || {
        let mut kv = clients.kv.clone();
        async move {
            kv.put(put_request("metered", "yes"))
                .await
                .map_err(|status| status.to_string())
        }
    })
    .await;
    let text = eventually("the metrics after the put", || {
        let address = metrics_address.clone();
        async move {
            let response = http_get(&address, "/metrics").await?;
            let committed = sample(&response, "raft_proposals_committed_total").unwrap_or(0.0);
            if committed >= 1.0 {
                Ok(response)
            } else {
                Err(format!("no committed proposal yet in: {response}"))
            }
        }
    })
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(sample(&text, "raft_role"), Some(3.0), "a lone voter leads");
    assert!(sample(&text, "raft_term").is_some_and(|term| term >= 1.0));
    assert!(sample(&text, "raft_commit_index").is_some_and(|index| index >= 2.0));
    assert!(sample(&text, "raft_fsync_latency_seconds_count").is_some_and(|count| count >= 1.0));
    assert!(sample(&text, "raft_append_latency_seconds_count").is_some_and(|count| count >= 1.0));
    // The put's proposal was timed to its commit, and its entry to its
    // application, before the put was answered.
    assert!(
        sample(&text, "raft_proposal_commit_seconds_count").is_some_and(|count| count >= 1.0),
        "{text}"
    );
    assert!(
        sample(&text, "raft_apply_latency_seconds_count").is_some_and(|count| count >= 1.0),
        "{text}"
    );
    assert!(sample(&text, "raft_elections_won_total").is_some_and(|won| won >= 1.0));
    // What tells a stall: the clock's lateness at every tick, the time the
    // state machine took per batch; heartbeat delays are declared (a lone
    // voter sends no heartbeats).
    assert!(
        sample(&text, "raft_event_loop_lag_seconds_count").is_some_and(|count| count >= 1.0),
        "{text}"
    );
    assert!(
        sample(&text, "raft_apply_duration_seconds_count").is_some_and(|count| count >= 1.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE raft_heartbeat_delay_seconds histogram"),
        "{text}"
    );
    // The store: one key, one change kept, nothing compacted yet.
    assert_eq!(sample(&text, "kv_keys"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "kv_history_changes"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "kv_compacted_revision"), Some(0.0), "{text}");
    assert!(sample(&text, "kv_revision").is_some_and(|revision| revision >= 2.0));
    // The process's memory, as Prometheus's own collectors name it.
    assert!(
        sample(&text, "process_resident_memory_bytes").is_some_and(|bytes| bytes > 1e6),
        "{text}"
    );

    // Forged peer messages are counted by why they were refused: one of
    // another cluster, one "from" a node that is no other member.
    let cluster_id = clients
        .kv
        .clone()
        .put(put_request("metered", "again"))
        .await
        .expect("put")
        .into_inner()
        .header
        .expect("a header")
        .cluster_id;
    for cluster_id in [cluster_id ^ 1, cluster_id] {
        let channel = raft_client::connect::endpoints::channel(&format!(
            "http://{}",
            cluster.node(1).address
        ));
        let forged = wire::PeerMessage {
            body: Some(wire::peer_message::Body::TimeoutNow(
                wire::TimeoutNowRequest {
                    header: Some(wire::Header {
                        cluster_id,
                        from: 1,
                        to: 1,
                        term: 1,
                    }),
                },
            )),
        };
        let _ = RaftPeerClient::new(channel)
            .stream(tokio_stream::iter(vec![forged]))
            .await;
    }
    let refused = |reason: &str| format!("raft_peer_messages_refused_total{{reason=\"{reason}\"}}");
    eventually("the refusals counted", || {
        let address = metrics_address.clone();
        let (wrong_cluster, unknown_sender) = (refused("wrong_cluster"), refused("unknown_sender"));
        async move {
            let response = http_get(&address, "/metrics").await?;
            let counted = |name: &str| sample(&response, name).unwrap_or(0.0) >= 1.0;
            if counted(&wrong_cluster) && counted(&unknown_sender) {
                Ok(response)
            } else {
                Err(format!("refusals not yet counted in: {response}"))
            }
        }
    })
    .await;
    // Anything but GET /metrics is refused.
    let other = http_get(&metrics_address, "/other").await.expect("answer");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
}
